//! The bodies of the fuzz targets in `fuzz/` (cargo-fuzz), as ordinary
//! functions so that the stable test `tests/tests/fuzz_seeds.rs` runs every
//! committed seed and crash regression through the same code.
//!
//! Each function takes arbitrary bytes and must return without panicking;
//! the assertions inside check invariants that must hold for any input (a
//! parsed tensor lies in the file, a parsed plan re-parses to itself, ids
//! are in the vocabulary, ...). [`TARGETS`] lists them by target name.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use asdsl_model::chat::{ChatError, ChatMessage, ChatTemplate};
use asdsl_model::config::ModelConfig;
use asdsl_model::gguf::{Array, Gguf, GgufHeader, GgufModelConfig, GgufWriter, Value};
use asdsl_model::hf::SafetensorsFiles;
use asdsl_model::kernels::tune::{LoadedPlan, Plan, PlanStatus};
use asdsl_model::tokenizer::{ByteMap, Tokenizer};
use asdsl_model::{LoadOptions, Model};

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and
/// the `fuzz/corpus/<name>` folder) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("gguf_header", gguf_header),
    ("gguf_model", gguf_model),
    ("safetensors_header", safetensors_header),
    ("config_json", config_json),
    ("plan_json", plan_json),
    ("tokenizer_text", tokenizer_text),
    ("tokenizer_vocab", tokenizer_vocab),
    ("chat_template", chat_template),
];

/// GGUF header, metadata and tensor table: [`Gguf::parse`], then every
/// accessor on every key, the model config and tokenizer of the header, and
/// a round trip through [`GgufWriter`].
pub fn gguf_header(data: &[u8]) {
    let Ok(gguf) = Gguf::parse(data) else { return };
    for t in gguf.tensors() {
        let range = t.file_range();
        assert!(range.start <= range.end && range.end <= data.len(), "tensor `{}` outside the file", t.name);
        assert_eq!(gguf.tensor_bytes(t).len() as u64, t.n_bytes);
        assert_eq!(gguf.tensor(&t.name), Some(t));
        let _ = (t.cols(), t.rows(), t.format());
    }
    for (key, value) in gguf.metadata() {
        let _ = value.type_description();
        let _ = (gguf.get_str(key), gguf.get_u32(key), gguf.get_bool(key), gguf.get_f32(key));
        let _ = (gguf.get_str_array(key), gguf.get_f32_array(key), gguf.get_i32_array(key));
    }
    let _ = GgufModelConfig::from_header(&gguf);
    if let Ok(tok) = Tokenizer::from_gguf(&gguf) {
        exercise_tokenizer(&tok, "Hello <s> world<|im_end|> 123 \u{e9}\u{1f680}", &[0, 1, 2, 3, u32::MAX]);
    }
    // Writing the parsed file back gives a file that parses to the same.
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata() {
        w.metadata(key.clone(), value.clone()).expect("parsed metadata can be written");
    }
    for t in gguf.tensors() {
        w.tensor(t.name.clone(), &t.dims, t.ggml_type, gguf.tensor_bytes(t).to_vec())
            .expect("a parsed tensor can be written");
    }
    let bytes = w.to_bytes().expect("a parsed file can be written");
    let again = Gguf::parse(&bytes).expect("a written file parses");
    assert_eq!(again.metadata().len(), gguf.metadata().len());
    assert_eq!(again.tensors().len(), gguf.tensors().len());
    for (a, b) in again.tensors().iter().zip(gguf.tensors()) {
        assert_eq!((&a.name, &a.dims, a.ggml_type), (&b.name, &b.dims, b.ggml_type));
        assert_eq!(again.tensor_bytes(a), gguf.tensor_bytes(b));
    }
}

/// A whole GGUF model load from bytes ([`Model::load_gguf_bytes`]).
pub fn gguf_model(data: &[u8]) {
    let options = LoadOptions::default();
    let _ = Model::load_gguf_bytes(data, Path::new("fuzz.gguf"), &options, Instant::now());
}

thread_local! {
    static SCRATCH: Cell<Option<PathBuf>> = const { Cell::new(None) };
}

/// A scratch file of this thread (the safetensors reader maps a file).
fn scratch_file(data: &[u8]) -> PathBuf {
    let path = SCRATCH.with(|cell| {
        let path = cell.take().unwrap_or_else(|| {
            let dir = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
            let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_alphanumeric(), "");
            dir.join(format!("asdsl-fuzz-{}-{thread}.safetensors", std::process::id()))
        });
        cell.set(Some(path.clone()));
        path
    });
    std::fs::write(&path, data).expect("writing the scratch file");
    path
}

/// A safetensors file: its header through [`SafetensorsFiles::open_file`],
/// then every tensor's bytes and, for float types, its conversion to f32.
pub fn safetensors_header(data: &[u8]) {
    let path = scratch_file(data);
    let Ok(files) = SafetensorsFiles::open_file(&path) else { return };
    let names: Vec<String> = files.names().map(str::to_owned).collect();
    for name in &names {
        assert!(files.contains(name));
        let raw = files.raw(name).expect("a listed tensor is readable");
        let shape = raw.shape.to_vec();
        if let Ok(values) = files.f32(name, &shape) {
            let elements = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(Some(values.len()), elements, "tensor `{name}`");
        }
    }
}

/// A Hugging Face `config.json`: [`ModelConfig::from_hf_json`]; a config it
/// accepts validates and its derived sizes do not overflow.
pub fn config_json(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let path = Path::new("config.json");
    let Ok(config) = ModelConfig::from_hf_json(&json, path) else { return };
    config.validate(path).expect("a parsed config validates");
    let _ = (config.q_dim(), config.kv_dim());
}

/// A kernel plan: [`Plan::from_json`]; an accepted plan re-parses to
/// itself, and every entry's choice is made without error or panic.
pub fn plan_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("plan.json");
    let Ok(plan) = Plan::from_json(text, path) else { return };
    let again = Plan::from_json(&plan.to_json(), path).expect("a parsed plan re-parses");
    assert_eq!(again, plan);
    let _ = plan.check(path);
    let _ =
        plan.check_against(path, &plan.asdsl_version, &plan.registry_hash, plan.registry_variants, &plan.fingerprint);
    for e in &plan.entries {
        let _ = plan.entry(&e.key, e.threads);
        if let Ok(choice) = plan.choose(&e.key, e.threads) {
            assert!(e.key.admits(choice.variant), "{} chosen for {}", choice.variant.name, e.key);
        }
    }
    let entries = plan.entries.len();
    let keys: Vec<_> = plan.entries.iter().map(|e| (e.key, e.threads)).collect();
    let loaded = LoadedPlan { plan: Some(plan), status: PlanStatus::Used { path: path.to_path_buf(), entries } };
    let _ = loaded.status.to_string();
    for (key, threads) in keys {
        let _ = loaded.choose(&key, threads);
    }
}

/// The fixed tokenizers of [`tokenizer_text`]: byte-level BPE with each
/// pre-tokenizer, and SentencePiece.
fn fixed_tokenizers() -> &'static [Tokenizer] {
    static TOKENIZERS: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let mut all: Vec<Tokenizer> = [None, Some("gpt2"), Some("llama3"), Some("qwen2"), Some("smollm")]
            .into_iter()
            .map(|pre| tokenizer_from(&bpe_vocab(pre)).expect("the fixed BPE vocabulary loads"))
            .collect();
        all.push(tokenizer_from(&spm_vocab()).expect("the fixed SPM vocabulary loads"));
        all
    })
}

fn tokenizer_from(w: &GgufWriter) -> Option<Tokenizer> {
    let bytes = w.to_bytes().ok()?;
    let header = GgufHeader::parse(&bytes).ok()?;
    Tokenizer::from_gguf(&header).ok()
}

/// A small byte-level BPE vocabulary: the 256 byte characters, some merges,
/// control and user-defined tokens.
fn bpe_vocab(pre: Option<&str>) -> GgufWriter {
    let byte_map = ByteMap::new();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_map.encode(&[b])).collect();
    let words = ["he", "ll", "hell", "hello", "Ġw", "Ġwor", "or", "ld", "Ġworld", "Ġ1", "12", "ĠĠ", "ĊĊ"];
    tokens.extend(words.map(String::from));
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ 1", "1 2", "Ġ Ġ", "Ċ Ċ"];
    let mut types = vec![1i32; tokens.len()];
    for (text, ty) in [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)] {
        tokens.push(text.into());
        types.push(ty);
    }
    let mut w = GgufWriter::new();
    let n = tokens.len() as u32;
    let _ = w.metadata("tokenizer.ggml.model", Value::String("gpt2".into()));
    if let Some(pre) = pre {
        let _ = w.metadata("tokenizer.ggml.pre", Value::String(pre.into()));
    }
    let _ = w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    let _ = w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    let _ = w.metadata("tokenizer.ggml.merges", Value::Array(Array::String(merges.map(String::from).to_vec())));
    let _ = w.metadata("tokenizer.ggml.bos_token_id", Value::U32(n - 4));
    let _ = w.metadata("tokenizer.ggml.eos_token_id", Value::U32(n - 2));
    w
}

/// A small SentencePiece vocabulary: unknown, BOS, EOS, the 256 byte
/// tokens and some scored pieces.
fn spm_vocab() -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let pieces = [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("▁h", -1.5),
        ("ll", -1.2),
        ("▁hell", -1.1),
        ("▁hello", -0.5),
        ("▁w", -1.5),
        ("or", -1.4),
        ("▁wor", -1.3),
        ("ld", -1.3),
        ("▁world", -0.4),
        ("▁▁", -3.0),
    ];
    for (text, score) in pieces {
        tokens.push(text.into());
        types.push(1);
        scores.push(score);
    }
    let mut w = GgufWriter::new();
    let _ = w.metadata("tokenizer.ggml.model", Value::String("llama".into()));
    let _ = w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    let _ = w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    let _ = w.metadata("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    let _ = w.metadata("tokenizer.ggml.bos_token_id", Value::U32(1));
    let _ = w.metadata("tokenizer.ggml.eos_token_id", Value::U32(2));
    w
}

/// Token ids from bytes: little-endian u16s, some beyond any vocabulary.
fn ids_of(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(2).map(|c| u32::from(c[0]) | (u32::from(*c.get(1).unwrap_or(&0)) << 8)).collect()
}

/// Encodes and decodes with `tok`; ids are in the vocabulary, decoding
/// never fails on ids it produced, and streaming agrees with decoding.
fn exercise_tokenizer(tok: &Tokenizer, text: &str, extra_ids: &[u32]) {
    let n = tok.vocab_size();
    for (add_special, parse_special) in [(true, true), (false, false)] {
        let ids = tok.encode_with(text, add_special, parse_special).expect("encoding a GGUF vocabulary");
        assert!(ids.iter().all(|&id| (id as usize) < n), "an id outside the vocabulary of {n}");
        tok.decode(&ids).expect("decoding encoded ids");
        tok.decode_with(&ids, true).expect("decoding encoded ids");
    }
    let mut all: Vec<u32> = extra_ids.to_vec();
    all.extend((0..n.min(64) as u32).chain([n as u32, n as u32 + 1]));
    for skip in [false, true] {
        let _ = tok.decode_with(&all, skip);
    }
    let mut stream = tok.stream_decoder();
    for &id in &all {
        let _ = stream.push(id);
    }
    let _ = stream.finish();
}

/// Encode and decode with fixed vocabularies. The first byte picks the
/// tokenizer and mode; the rest is text (lossy UTF-8) or, in decode mode,
/// u16 token ids. Without special-token parsing, BPE and SentencePiece
/// texts (without `▁`) round-trip exactly; streaming BPE decode equals
/// whole decode.
pub fn tokenizer_text(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let tokenizers = fixed_tokenizers();
    let index = usize::from(mode & 7) % tokenizers.len();
    let tok = &tokenizers[index];
    let is_spm = index == tokenizers.len() - 1;
    if mode & 0x80 != 0 {
        let ids = ids_of(rest);
        let n = tok.vocab_size();
        let whole = tok.decode_with(&ids, true);
        assert_eq!(whole.is_ok(), ids.iter().all(|&id| (id as usize) < n));
        let _ = tok.decode_with(&ids, false);
        let mut stream = tok.stream_decoder();
        let mut streamed = String::new();
        let mut ok = true;
        for &id in &ids {
            match stream.push(id) {
                Ok(text) => streamed.push_str(&text),
                Err(_) => ok = false,
            }
        }
        streamed.push_str(&stream.finish());
        if let (Ok(whole), true, false) = (whole, ok, is_spm) {
            assert_eq!(streamed, whole, "streamed and whole decode differ for {ids:?}");
        }
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let (add_special, parse_special) = (mode & 0x08 != 0, mode & 0x10 != 0);
    let ids = tok.encode_with(&text, add_special, parse_special).expect("encoding a GGUF vocabulary");
    assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
    let decoded = tok.decode(&ids).expect("decoding encoded ids");
    let spm_marker = is_spm && text.contains('▁');
    if !(add_special || parse_special || spm_marker) {
        assert_eq!(decoded, text, "round trip of {text:?} through {ids:?}");
    }
}

/// Reads one `\n`-terminated line.
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A fuzzed vocabulary. Layout: a flags byte, then sections separated by
/// NUL: tokens (one per line, the first byte of a line its token type,
/// `'0' + type`), merges (one per line), the text to encode, and u16 ids
/// to decode. The flags pick the model (`gpt2`/`llama`), the
/// pre-tokenizer, special ids and options; the vocabulary is written as
/// GGUF metadata and loaded with [`Tokenizer::from_gguf`].
pub fn tokenizer_vocab(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut sections = rest.splitn(4, |&b| b == 0);
    let (vocab, merges) = (sections.next().unwrap_or_default(), sections.next().unwrap_or_default());
    let (text, ids) = (sections.next().unwrap_or_default(), sections.next().unwrap_or_default());
    let mut tokens = Vec::new();
    let mut types = Vec::new();
    let mut scores = Vec::new();
    let mut left = vocab;
    while !left.is_empty() {
        let (line, next) = split_line(left);
        left = next;
        let (ty, token) = line.split_first().map_or((1, &[][..]), |(&t, rest)| (i32::from(t) - i32::from(b'0'), rest));
        scores.push(-(tokens.len() as f32) / 8.0);
        tokens.push(String::from_utf8_lossy(token).into_owned());
        types.push(ty);
    }
    let mut merge_list = Vec::new();
    let mut left = merges;
    while !left.is_empty() {
        let (line, next) = split_line(left);
        left = next;
        merge_list.push(String::from_utf8_lossy(line).into_owned());
    }
    let spm = flags & 1 != 0;
    let mut w = GgufWriter::new();
    let _ = w.metadata("tokenizer.ggml.model", Value::String(if spm { "llama" } else { "gpt2" }.into()));
    let pre = ["default", "gpt2", "llama3", "qwen2", "smollm", "qwen2", "nonesuch"].get(usize::from((flags >> 1) & 7));
    if let Some(pre) = pre {
        let _ = w.metadata("tokenizer.ggml.pre", Value::String((*pre).into()));
    }
    let _ = w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
    if flags & 0x10 != 0 {
        let _ = w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    }
    if flags & 0x20 != 0 {
        let _ = w.metadata("tokenizer.ggml.scores", Value::Array(Array::F32(scores)));
    }
    if !spm || flags & 0x40 != 0 {
        let _ = w.metadata("tokenizer.ggml.merges", Value::Array(Array::String(merge_list)));
    }
    if flags & 0x80 != 0 {
        let _ = w.metadata("tokenizer.ggml.add_space_prefix", Value::Bool(!spm));
        let _ = w.metadata("tokenizer.ggml.add_eos_token", Value::Bool(true));
        let _ = w.metadata("tokenizer.ggml.bos_token_id", Value::U32(u32::from(flags)));
        let _ = w.metadata("tokenizer.ggml.unknown_token_id", Value::U32(0));
    }
    let Some(tok) = tokenizer_from(&w) else { return };
    exercise_tokenizer(&tok, &String::from_utf8_lossy(text), &ids_of(ids));
}

/// Fuel for one render in [`chat_template`] (a tenth of the default, for
/// fuzzing speed; the limits work the same way).
pub const FUZZ_FUEL: u64 = 500_000;
/// Output cap for one render in [`chat_template`].
pub const FUZZ_MAX_OUTPUT: usize = 1 << 20;

/// A hostile chat template: the bytes before the first NUL are the
/// template (lossy UTF-8), the rest NUL-separated message contents with
/// roles system/user/assistant in turn. Rendering ends, within the fuel
/// and output cap, with text or an error; a panic of the template engine,
/// which `render` turns into [`ChatError::EnginePanic`], panics here.
pub fn chat_template(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    let source = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let roles = ["system", "user", "assistant", "user"];
    let messages: Vec<ChatMessage> =
        parts.zip(roles.iter().cycle()).map(|(c, role)| ChatMessage::new(*role, String::from_utf8_lossy(c))).collect();
    let mut template = ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into()));
    template.fuel = FUZZ_FUEL;
    template.max_output = FUZZ_MAX_OUTPUT;
    for add_generation_prompt in [true, false] {
        match template.render(&messages, add_generation_prompt) {
            Ok(text) => assert!(text.len() <= FUZZ_MAX_OUTPUT),
            // caught and turned into an error by `render`: still a bug to find
            Err(ChatError::EnginePanic(message)) => panic!("minijinja panicked: {message}"),
            Err(_) => {}
        }
    }
}
