//! Typed errors of the model runtime.

use std::path::PathBuf;

use asdsl_kernels::KernelError;
use thiserror::Error;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file (config.json, the safetensors index, ...) is not valid JSON.
    #[error("{} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A configuration field is missing, zero, of the wrong type or
    /// inconsistent with another.
    #[error("{}: field `{field}`: {reason}", path.display())]
    Config {
        /// The configuration file (config.json, or a GGUF file for its metadata).
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A safetensors file is malformed.
    #[error("{}: {reason}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF file that is malformed (or holds something unsupported): the
    /// reader's error, with the file.
    #[error("{}: {error}", path.display())]
    GgufFile {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (part of this error's message, so not
        /// also its `source`).
        error: crate::gguf::GgufError,
    },
    /// A weight that is NaN or infinite: refused at load, since it would
    /// only ever produce NaN text.
    #[error("tensor `{name}` has a non-finite weight ({value}) at element {index}")]
    NonFiniteWeight {
        /// The tensor.
        name: String,
        /// The element (row-major).
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f32,
    },
    /// The forward pass produced NaN or infinite logits (weights whose
    /// quantization scales are NaN or infinite, for instance).
    #[error("the model produced non-finite logits at position {position} (its weights or scales contain NaN or Inf)")]
    NonFiniteLogits {
        /// The position of the token whose logits they are.
        position: usize,
    },
    /// Loading (or running) would need more memory than is available.
    #[error(
        "{what} needs about {} of memory, but only {} is available ({source_of_limit})",
        human_bytes(*needed),
        human_bytes(*available)
    )]
    OutOfMemory {
        /// What needs it (a model file, a KV cache).
        what: String,
        /// Bytes needed (an estimate, not below what is kept resident).
        needed: u64,
        /// Bytes available.
        available: u64,
        /// Where the limit comes from (`MemAvailable in /proc/meminfo`, or the override).
        source_of_limit: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("tensor `{name}` is missing from {}", path.display())]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The model folder or file.
        path: PathBuf,
    },
    /// A tensor's shape does not match the configuration.
    #[error("tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    TensorShape {
        /// The tensor name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has an element type the loader does not handle.
    #[error("tensor `{name}` has element type {dtype}, which is not supported here")]
    UnsupportedDtype {
        /// The tensor name.
        name: String,
        /// Its element type.
        dtype: String,
    },
    /// A model, option or combination that is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// An invalid argument (token id out of range, empty prompt, ...).
    #[error("{0}")]
    Invalid(String),
    /// The prompt (plus what is to be generated) does not fit the context.
    #[error("{needed} tokens do not fit the context of {context} tokens")]
    ContextOverflow {
        /// Positions needed.
        needed: usize,
        /// The context length.
        context: usize,
    },
    /// An error from the kernel library.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// No kernel variant for a matrix (from the plan or the heuristic default).
    #[error(transparent)]
    Plan(#[from] asdsl_kernels::tune::PlanError),
    /// A malformed GGUF file or metadata value.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A tokenizer that cannot be loaded or run.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    /// A chat template that cannot be rendered.
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatError),
}

impl ModelError {
    /// A [`ModelError::Config`] for `field` of `path`.
    pub fn config(path: impl Into<PathBuf>, field: impl Into<String>, reason: impl Into<String>) -> ModelError {
        ModelError::Config { path: path.into(), field: field.into(), reason: reason.into() }
    }

    /// A [`ModelError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ModelError {
        ModelError::Io { path: path.into(), source }
    }
}

/// `bytes` in the largest binary unit that keeps the number at least 1
/// (`512 B`, `48 KiB`, `1.50 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Results of the model runtime.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
