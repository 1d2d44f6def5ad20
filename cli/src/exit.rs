//! Exit codes: every error is classified, by the typed errors in its chain,
//! into one of a few documented codes, so that scripts can tell a missing
//! file from a malformed one, an unsupported model or a resource limit.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other error (internal, writing the output, ...) |
//! | 2 | usage: invalid arguments or options (clap's own code too) |
//! | 3 | an input file or folder is missing or cannot be read |
//! | 4 | a malformed input: model file, config.json, safetensors header, tokenizer, plan, NaN/Inf weights |
//! | 5 | unsupported: architecture, tensor type, format, instruction set |
//! | 6 | a resource limit: memory, context length, thread count |
//! | 130 | interrupted (Ctrl-C) |

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use asdsl_kernels::KernelError;
use asdsl_kernels::tune::PlanError;
use asdsl_model::ModelError;
use asdsl_model::chat::ChatError;
use asdsl_model::gguf::GgufError;
use asdsl_model::tokenizer::TokenizerError;

/// The exit codes table for `--help` and the README.
pub const EXIT_CODES_HELP: &str = "Exit codes:\n  \
    0    success\n  \
    1    any other error (internal, writing the output)\n  \
    2    usage: invalid arguments or options\n  \
    3    an input file or folder is missing or cannot be read\n  \
    4    a malformed model, config.json, safetensors, tokenizer or plan file (NaN/Inf weights too)\n  \
    5    unsupported: architecture, tensor type, weight format, instruction set\n  \
    6    a resource limit: memory, context length, thread count\n  \
    130  interrupted (Ctrl-C)";

/// What went wrong, as an exit code.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything else.
    Other = 1,
    /// 2: invalid arguments.
    Usage = 2,
    /// 3: an input is missing or unreadable.
    Input = 3,
    /// 4: an input is malformed.
    Malformed = 4,
    /// 5: an input or request that asdsl does not support.
    Unsupported = 5,
    /// 6: memory, context or threads beyond what is available or allowed.
    Resource = 6,
    /// 130: interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error the command line raises itself, with its exit code.
#[derive(Debug)]
pub struct Fail {
    /// The exit code.
    pub code: Exit,
    /// The message.
    pub message: String,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// An [`anyhow::Error`] with exit code `code`.
pub fn fail(code: Exit, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fail { code, message: message.into() })
}

/// `err`, with "`doing` PATH" as context unless its message already names `path`.
pub fn about<E>(err: E, doing: &str, path: &Path) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    let shown = path.display().to_string();
    let named = err.to_string().contains(&shown);
    let err = anyhow::Error::new(err);
    if named { err } else { err.context(format!("{doing} {shown}")) }
}

/// The message of an error with its chain of causes, `: `-separated, a
/// cause left out when the message before it already contains it (typed
/// errors often repeat their source in their own message).
pub fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The exit code of an error: that of the first typed error in its chain.
pub fn classify(err: &anyhow::Error) -> Exit {
    err.chain().find_map(classify_one).unwrap_or(Exit::Other)
}

fn classify_one(e: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    if let Some(f) = e.downcast_ref::<Fail>() {
        return Some(f.code);
    }
    if let Some(m) = e.downcast_ref::<ModelError>() {
        return Some(model(m));
    }
    if let Some(g) = e.downcast_ref::<GgufError>() {
        return Some(gguf(g));
    }
    if let Some(p) = e.downcast_ref::<PlanError>() {
        return Some(plan(p));
    }
    if let Some(k) = e.downcast_ref::<KernelError>() {
        return Some(kernel(k));
    }
    if let Some(t) = e.downcast_ref::<TokenizerError>() {
        return Some(tokenizer(t));
    }
    if e.downcast_ref::<ChatError>().is_some() || e.downcast_ref::<serde_json::Error>().is_some() {
        return Some(Exit::Malformed);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(io_error(io));
    }
    None
}

fn model(e: &ModelError) -> Exit {
    match e {
        ModelError::Io { source, .. } => io_error(source),
        ModelError::Json { .. }
        | ModelError::Config { .. }
        | ModelError::Safetensors { .. }
        | ModelError::MissingTensor { .. }
        | ModelError::TensorShape { .. }
        | ModelError::NonFiniteWeight { .. }
        | ModelError::NonFiniteLogits { .. } => Exit::Malformed,
        ModelError::GgufFile { error, .. } | ModelError::Gguf(error) => gguf(error),
        ModelError::UnsupportedDtype { .. } | ModelError::Unsupported(_) => Exit::Unsupported,
        ModelError::Invalid(_) => Exit::Usage,
        ModelError::ContextOverflow { .. } | ModelError::OutOfMemory { .. } => Exit::Resource,
        ModelError::Kernel(k) => kernel(k),
        ModelError::Plan(p) => plan(p),
        ModelError::Tokenizer(t) => tokenizer(t),
        ModelError::Chat(_) => Exit::Malformed,
        #[allow(unreachable_patterns)] // variants added later default to "other"
        _ => Exit::Other,
    }
}

fn gguf(e: &GgufError) -> Exit {
    match e {
        GgufError::Io { source, .. } => io_error(source),
        GgufError::UnsupportedVersion(_) => Exit::Unsupported,
        // A type ggml defines (IQ2_XXS, ...) that asdsl cannot run; an id
        // ggml does not define is a malformed file.
        GgufError::UnknownTensorType { type_name, .. } if type_name != "unknown" => Exit::Unsupported,
        GgufError::OutOfRange { key, .. } if key == "general.architecture" => Exit::Unsupported,
        GgufError::Write(_) => Exit::Other,
        _ => Exit::Malformed,
    }
}

fn plan(e: &PlanError) -> Exit {
    match e {
        PlanError::Io { source, .. } => io_error(source),
        PlanError::Corrupt { .. } | PlanError::Version { .. } => Exit::Malformed,
        PlanError::AsdslVersion { .. } | PlanError::Registry { .. } | PlanError::Fingerprint { .. } => {
            Exit::Unsupported
        }
        PlanError::NoVariant(_) => Exit::Unsupported,
        PlanError::Invalid(_) => Exit::Usage,
        PlanError::Kernel(k) => kernel(k),
    }
}

fn kernel(e: &KernelError) -> Exit {
    match e {
        KernelError::IsaUnavailable { .. } => Exit::Unsupported,
        KernelError::UnknownFormat(_) | KernelError::UnknownVariant(_) => Exit::Usage,
        KernelError::Io(io) => io_error(io),
        _ => Exit::Other,
    }
}

fn tokenizer(e: &TokenizerError) -> Exit {
    match e {
        TokenizerError::Metadata(g) => match gguf(g) {
            Exit::Other => Exit::Malformed,
            code => code,
        },
        TokenizerError::UnknownPreTokenizer(..) => Exit::Unsupported,
        TokenizerError::UnknownId { .. } => Exit::Usage,
        TokenizerError::Io { source, .. } => io_error(source),
        _ => Exit::Malformed,
    }
}

fn io_error(e: &std::io::Error) -> Exit {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | PermissionDenied | IsADirectory | NotADirectory | UnexpectedEof | InvalidData | InvalidInput => {
            Exit::Input
        }
        OutOfMemory | StorageFull | QuotaExceeded | FileTooLarge => Exit::Resource,
        _ => Exit::Other,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn typed_errors_anywhere_in_the_chain_set_the_code() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(ModelError::io("m.gguf", io)).context("loading m.gguf");
        assert_eq!(classify(&e), Exit::Input);
        let e = anyhow::Error::new(ModelError::GgufFile {
            path: "m.gguf".into(),
            error: GgufError::BadMagic { found: b"GGUX".to_vec() },
        });
        assert_eq!(classify(&e), Exit::Malformed);
        let e = anyhow::Error::new(ModelError::Unsupported("gpt2".into())).context("x").context("y");
        assert_eq!(classify(&e), Exit::Unsupported);
        let e = anyhow::Error::new(ModelError::ContextOverflow { needed: 10, context: 5 });
        assert_eq!(classify(&e), Exit::Resource);
        assert_eq!(classify(&fail(Exit::Interrupted, "interrupted")), Exit::Interrupted);
        assert_eq!(classify(&anyhow::anyhow!("plain")), Exit::Other);
        let r: Result<(), _> = Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe"));
        assert_eq!(classify(&r.context("writing").unwrap_err()), Exit::Other);
        // an outer CLI classification wins over an inner typed error
        let inner = anyhow::Error::new(ModelError::Invalid("x".into()));
        let wrapped = anyhow::Error::new(Fail { code: Exit::Resource, message: format!("{inner}") });
        assert_eq!(classify(&wrapped), Exit::Resource);
    }

    #[test]
    fn messages_do_not_repeat_their_causes() {
        let inner = GgufError::MissingKey { key: "k".into() };
        let e = anyhow::Error::new(TokenizerError::Metadata(inner)).context("tokenizer of m.gguf");
        assert_eq!(message(&e), "tokenizer of m.gguf: tokenizer metadata: metadata key `k` is missing");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = anyhow::Error::new(ModelError::io("m.gguf", io));
        assert_eq!(message(&e), "cannot read m.gguf: gone");
    }

    #[test]
    fn about_names_the_path_once() {
        let e = about(ModelError::config("/x/config.json", "hidden_size", "missing"), "loading", Path::new("/x"));
        assert_eq!(format!("{e:#}"), "/x/config.json: field `hidden_size`: missing");
        let e = about(ModelError::Invalid("bad".into()), "loading", Path::new("/y"));
        assert_eq!(format!("{e:#}"), "loading /y: bad");
    }
}
