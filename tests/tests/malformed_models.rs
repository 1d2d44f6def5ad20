//! A corpus of malformed model files, built from valid ones, loaded the way
//! the runtime loads them: every case must give an error that names the
//! file and the problem, never a panic (issue 6).
//!
//! - GGUF: a small random-weight llama file ([`RandomModel`] of a tiny
//!   geometry) is truncated at every section boundary, and patched field by
//!   field (counts, lengths, offsets, dimensions, types, alignment, keys,
//!   vocabulary entries, weights). The parser alone is covered byte by byte
//!   in `gguf_reader.rs`; here each case goes through [`Model::load_gguf_bytes`]
//!   and [`Tokenizer::from_gguf`].
//! - Hugging Face folders: `../shared/fixtures/hf/llama-tiny` copied to a
//!   scratch folder and corrupted (config.json fields, safetensors header,
//!   data, tensors).
//!
//! NaN or Inf weights: float tensors (norms, f32/f16/bf16 matrices) are
//! refused at load ([`ModelError::NonFiniteWeight`]); a NaN or Inf in a
//! quantized block's scale is caught when it reaches the logits
//! ([`ModelError::NonFiniteLogits`]) rather than sampled into text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use asdsl_model::generate::{GenerateOptions, generate};
use asdsl_model::gguf::{Array, GgmlType, Gguf, GgufError, GgufWriter, Value};
use asdsl_model::kernels::Format;
use asdsl_model::memory::{self, Available};
use asdsl_model::random::RandomModel;
use asdsl_model::tokenizer::{Tokenizer, TokenizerError};
use asdsl_model::{Exec, LoadOptions, Model, ModelError, QuantSpec, Sampler, SamplerConfig};
use asdsl_tests::{TINY, tiny_plan_naming};

/// The name the corrupted files are loaded under.
const NAME: &str = "corpus/tiny.gguf";

fn valid() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let model = RandomModel { geometry: TINY, quant: QuantSpec::Uniform(Format::Q8_0), seed: 6 };
        model.to_gguf(&|_, _| {}).unwrap().to_bytes().unwrap()
    })
}

fn load(bytes: &[u8]) -> Result<Model, ModelError> {
    Model::load_gguf_bytes(bytes, Path::new(NAME), &LoadOptions::default(), Instant::now())
}

/// Loads `bytes` as the runtime does (model, then tokenizer) and returns the
/// error message, which must name the file.
fn load_error(bytes: &[u8]) -> String {
    let err = match load(bytes) {
        Ok(_) => match Gguf::parse(bytes)
            .map_err(|e| e.to_string())
            .and_then(|g| Tokenizer::from_gguf(&g).map_err(|e| e.to_string()))
        {
            Ok(_) => panic!("a corrupt file loaded"),
            // the CLI puts the file name before tokenizer errors
            Err(e) => format!("tokenizer of {NAME}: {e}"),
        },
        Err(e) => e.to_string(),
    };
    assert!(err.contains(NAME), "the error does not name the file: {err}");
    err
}

/// Where the fields of a GGUF file are, found by walking it.
#[derive(Debug, Default)]
struct Layout {
    /// (key, offset of the key's length, offset of the type id, offset of the value, end).
    kvs: Vec<(String, usize, usize, usize, usize)>,
    /// (name, offset of the name's length, offset of the dims, offset of the type id, offset of the data offset, end).
    tensors: Vec<(String, usize, usize, usize, usize, usize)>,
    /// Where the tensor table ends (padding follows).
    table_end: usize,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The end of a value of type `ty` starting at `at` (a valid file).
fn value_end(b: &[u8], ty: u32, at: usize) -> usize {
    match ty {
        0 | 1 | 7 => at + 1,
        2 | 3 => at + 2,
        4..=6 => at + 4,
        10..=12 => at + 8,
        8 => at + 8 + u64_at(b, at) as usize,
        9 => {
            let (elem, len) = (u32_at(b, at), u64_at(b, at + 4) as usize);
            (0..len).fold(at + 12, |p, _| value_end(b, elem, p))
        }
        _ => panic!("type {ty}"),
    }
}

fn layout(b: &[u8]) -> Layout {
    let (n_tensors, n_kv) = (u64_at(b, 8) as usize, u64_at(b, 16) as usize);
    let mut out = Layout::default();
    let mut p = 24;
    for _ in 0..n_kv {
        let len = u64_at(b, p) as usize;
        let key = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).unwrap();
        let ty_at = p + 8 + len;
        let end = value_end(b, u32_at(b, ty_at), ty_at + 4);
        out.kvs.push((key, p, ty_at, ty_at + 4, end));
        p = end;
    }
    for _ in 0..n_tensors {
        let len = u64_at(b, p) as usize;
        let name = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).unwrap();
        let dims_at = p + 8 + len + 4;
        let n_dims = u32_at(b, p + 8 + len) as usize;
        let ty_at = dims_at + 8 * n_dims;
        out.tensors.push((name, p, dims_at, ty_at, ty_at + 4, ty_at + 12));
        p = ty_at + 12;
    }
    out.table_end = p;
    out
}

fn kv<'a>(l: &'a Layout, key: &str) -> &'a (String, usize, usize, usize, usize) {
    l.kvs.iter().find(|k| k.0 == key).unwrap_or_else(|| panic!("no key {key}"))
}

fn tensor<'a>(l: &'a Layout, name: &str) -> &'a (String, usize, usize, usize, usize, usize) {
    l.tensors.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

/// The valid file with `patch` applied.
fn patched(patch: impl FnOnce(&mut Vec<u8>, &Layout)) -> Vec<u8> {
    let mut b = valid().to_vec();
    let l = layout(&b);
    patch(&mut b, &l);
    b
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The valid file rewritten with metadata values replaced (`None` drops the key).
fn rewritten(edit: impl Fn(&str, &Value) -> Option<Value>) -> Vec<u8> {
    let gguf = Gguf::parse(valid()).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in gguf.metadata() {
        if let Some(v) = edit(key, value) {
            w.metadata(key.clone(), v).unwrap();
        }
    }
    for t in gguf.tensors() {
        w.tensor(t.name.clone(), &t.dims, t.ggml_type, gguf.tensor_bytes(t).to_vec()).unwrap();
    }
    w.to_bytes().unwrap()
}

fn gguf_error(bytes: &[u8]) -> GgufError {
    match load(bytes) {
        Err(ModelError::GgufFile { path, error }) => {
            assert_eq!(path, PathBuf::from(NAME));
            error
        }
        Err(other) => panic!("expected a GGUF error, got {other}"),
        Ok(_) => panic!("a corrupt file loaded"),
    }
}

#[test]
fn the_valid_file_loads_and_generates() {
    let model = load(valid()).unwrap();
    let tok = Tokenizer::from_gguf(Gguf::parse(valid()).unwrap().header()).unwrap();
    let ids = tok.encode("hello", false).unwrap();
    let exec = Exec::new(1).unwrap();
    let mut state = model.new_state(64, 8).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let options = GenerateOptions { max_tokens: 4, ignore_eos: true, stop_tokens: vec![] };
    let generation = generate(&model, &mut state, &exec, &mut sampler, &ids, &options, |_| true).unwrap();
    assert_eq!(generation.ids.len(), 4);
}

#[test]
fn truncated_at_every_section_boundary() {
    let b = valid();
    let l = layout(b);
    let header = Gguf::parse(b).unwrap();
    let data_end = header.tensors().iter().map(|t| t.file_range().end).max().unwrap();
    let mut cuts = vec![0, 3, 4, 7, 8, 15, 16, 23, 24];
    for &(_, key_at, ty_at, value_at, end) in &l.kvs {
        cuts.extend([key_at + 1, key_at + 8, ty_at, value_at, value_at + 9, end - 1, end]);
    }
    for &(_, name_at, dims_at, ty_at, offset_at, end) in &l.tensors {
        cuts.extend([name_at + 4, dims_at, dims_at + 8, ty_at, offset_at, end - 1, end]);
    }
    cuts.extend([l.table_end, header.data_start - 1, header.data_start, header.data_start + 1]);
    for t in header.tensors() {
        let r = t.file_range();
        cuts.extend([r.start, r.start + 1, r.end - 1]);
    }
    cuts.extend([data_end - 1, data_end]);
    cuts.retain(|&c| c < data_end);
    cuts.sort_unstable();
    cuts.dedup();
    assert!(cuts.len() > 100, "{} cuts", cuts.len());
    for cut in cuts {
        let err = gguf_error(&b[..cut]);
        assert!(
            matches!(
                err,
                GgufError::Truncated { .. }
                    | GgufError::CountTooLarge { .. }
                    | GgufError::TensorOutOfBounds { .. }
                    | GgufError::BadMagic { .. }
            ),
            "cut at {cut}: {err}"
        );
        load_error(&b[..cut]);
    }
}

#[test]
fn counts_and_lengths_in_the_billions() {
    // tensor count, metadata count
    for (at, count) in [(8, 3_000_000_000u64), (8, u64::MAX), (16, 3_000_000_000), (16, u64::MAX)] {
        let b = patched(|b, _| put_u64(b, at, count));
        let err = gguf_error(&b);
        assert!(matches!(err, GgufError::CountTooLarge { .. }), "{at} {count}: {err}");
        assert!(load_error(&b).contains(&count.to_string()));
    }
    // a key's length, a string value's length
    let b = patched(|b, l| put_u64(b, kv(l, "general.name").1, 4_000_000_000));
    assert!(matches!(gguf_error(&b), GgufError::Truncated { .. }));
    let b = patched(|b, l| put_u64(b, kv(l, "general.name").3, u64::MAX));
    let err = load_error(&b);
    assert!(err.contains("general.name"), "{err}");
    // the vocabulary's length, one token's length, a tensor name's length
    let b = patched(|b, l| put_u64(b, kv(l, "tokenizer.ggml.tokens").3 + 4, 3_000_000_000));
    let err = load_error(&b);
    assert!(err.contains("tokenizer.ggml.tokens") && err.contains("3000000000"), "{err}");
    let b = patched(|b, l| put_u64(b, kv(l, "tokenizer.ggml.tokens").3 + 12, 1 << 40));
    assert!(load_error(&b).contains("string 0 of `tokenizer.ggml.tokens`"));
    let b = patched(|b, l| put_u64(b, tensor(l, "blk.0.attn_q.weight").1, u64::MAX));
    assert!(matches!(gguf_error(&b), GgufError::Truncated { .. }));
    // a dimension count
    let b = patched(|b, l| put_u32(b, tensor(l, "blk.0.attn_q.weight").2 - 4, 1_000_000));
    assert!(matches!(gguf_error(&b), GgufError::TooManyDims { .. }));
}

#[test]
fn offsets_and_sizes_past_the_end_or_overlapping() {
    let q = "blk.0.attn_q.weight";
    for offset in [1u64 << 40, u64::MAX - 31, (valid().len() as u64).next_multiple_of(32)] {
        let b = patched(|b, l| put_u64(b, tensor(l, q).4, offset));
        let err = gguf_error(&b);
        assert!(matches!(&err, GgufError::TensorOutOfBounds { tensor, .. } if tensor == q), "{offset}: {err}");
        assert!(load_error(&b).contains(q));
    }
    // a dimension that makes the tensor run past the end
    let b = patched(|b, l| put_u64(b, tensor(l, "output.weight").2 + 8, 1 << 30));
    assert!(matches!(gguf_error(&b), GgufError::TensorOutOfBounds { .. }));
    // two tensors at the same offset
    let b = patched(|b, l| {
        let first = u64_at(b, tensor(l, "blk.0.attn_k.weight").4);
        put_u64(b, tensor(l, "blk.0.attn_v.weight").4, first);
    });
    assert!(matches!(gguf_error(&b), GgufError::OverlappingTensors { .. }));
    // misaligned data
    let b = patched(|b, l| {
        let at = tensor(l, q).4;
        let offset = u64_at(b, at);
        put_u64(b, at, offset + 1);
    });
    let err = gguf_error(&b);
    assert!(matches!(&err, GgufError::MisalignedTensor { alignment: 32, .. }), "{err}");
}

#[test]
fn dimension_products_that_overflow() {
    let q = "blk.0.attn_q.weight";
    for (d0, d1) in [(1u64 << 32, 1u64 << 32), (u64::MAX, 2), (1 << 62, 4), (32, 1 << 62)] {
        let b = patched(|b, l| {
            put_u64(b, tensor(l, q).2, d0);
            put_u64(b, tensor(l, q).2 + 8, d1);
        });
        let err = gguf_error(&b);
        assert!(matches!(err, GgufError::DimsOverflow { .. } | GgufError::PartialBlock { .. }), "{d0} x {d1}: {err}");
        assert!(load_error(&b).contains(q));
    }
}

#[test]
fn unknown_and_unsupported_tensor_types() {
    let norm = "blk.0.attn_norm.weight";
    for (ty, unknown) in [(99u32, true), (u32::MAX, true), (16, false), (39, false)] {
        let b = patched(|b, l| put_u32(b, tensor(l, norm).3, ty));
        let err = gguf_error(&b);
        match &err {
            GgufError::UnknownTensorType { tensor, type_name, .. } => {
                assert_eq!((tensor.as_str(), type_name == "unknown"), (norm, unknown), "{ty}: {err}")
            }
            other => panic!("{ty}: {other}"),
        }
    }
    // a type the reader sizes but the loader does not run: I8 norms
    let b = patched(|b, l| put_u32(b, tensor(l, norm).3, 24));
    match load(&b) {
        Err(ModelError::UnsupportedDtype { name, dtype }) => assert_eq!((name.as_str(), dtype.as_str()), (norm, "I8")),
        other => panic!("{:?}", other.err()),
    }
    // a quantized type whose block does not divide the row
    let b = patched(|b, l| put_u32(b, tensor(l, "blk.0.attn_q.weight").3, GgmlType::Q4_K.0));
    assert!(matches!(gguf_error(&b), GgufError::PartialBlock { .. }));
}

#[test]
fn alignment_of_the_wrong_type_or_value() {
    // general.file_type has the same length as general.alignment: rename it.
    let as_alignment = |ty: u32, value: u32| {
        patched(|b, l| {
            let (_, key_at, ty_at, value_at, _) = *kv(l, "general.file_type");
            b[key_at + 8..key_at + 8 + 17].copy_from_slice(b"general.alignment");
            put_u32(b, ty_at, ty);
            put_u32(b, value_at, value);
        })
    };
    for value in [0u32, 3, 48, 1 << 21, 1 << 31] {
        let err = gguf_error(&as_alignment(4, value));
        assert!(matches!(err, GgufError::BadAlignment { .. }), "{value}: {err}");
        assert!(err.to_string().contains("general.alignment"), "{err}");
    }
    for ty in [5u32, 6] {
        let err = gguf_error(&as_alignment(ty, 32));
        assert!(matches!(err, GgufError::BadAlignment { .. }), "type {ty}: {err}");
    }
    // a valid but different alignment moves the data section: misaligned or out of bounds
    let err = gguf_error(&as_alignment(4, 1 << 20));
    assert!(matches!(err, GgufError::MisalignedTensor { .. } | GgufError::TensorOutOfBounds { .. }), "{err}");
}

#[test]
fn tokenizer_arrays_of_the_wrong_element_type() {
    let cases: [(&str, Value); 4] = [
        ("tokenizer.ggml.tokens", Value::Array(Array::U32((0..2048).collect()))),
        ("tokenizer.ggml.scores", Value::Array(Array::String(vec!["0.5".into(); 2048]))),
        ("tokenizer.ggml.token_type", Value::Array(Array::F32(vec![1.0; 2048]))),
        ("tokenizer.ggml.tokens", Value::String("not an array".into())),
    ];
    for (key, replacement) in cases {
        let b = rewritten(|k, v| Some(if k == key { replacement.clone() } else { v.clone() }));
        let header = Gguf::parse(&b).unwrap();
        let err = Tokenizer::from_gguf(&header).err().unwrap_or_else(|| panic!("{key} accepted"));
        assert!(matches!(err, TokenizerError::Metadata(GgufError::WrongType { .. })), "{key}: {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    // arrays that disagree in length
    let b = rewritten(|k, v| match (k, v) {
        ("tokenizer.ggml.scores", Value::Array(Array::F32(s))) => Some(Value::Array(Array::F32(s[..10].to_vec()))),
        _ => Some(v.clone()),
    });
    let err = Tokenizer::from_gguf(Gguf::parse(&b).unwrap().header()).expect_err("short scores accepted");
    assert!(err.to_string().contains("scores"), "{err}");
}

#[test]
fn vocabulary_entries_that_are_not_utf8_or_bad_byte_tokens() {
    // a token's bytes made invalid UTF-8: the file does not parse
    let b = patched(|b, l| {
        let first_token = kv(l, "tokenizer.ggml.tokens").3 + 12; // type, length, then the first string
        let len = u64_at(b, first_token) as usize;
        assert!(len > 0);
        b[first_token + 8] = 0xff;
    });
    let err = gguf_error(&b);
    assert!(matches!(err, GgufError::InvalidUtf8 { .. }), "{err}");
    assert!(err.to_string().contains("string 0 of `tokenizer.ggml.tokens`"), "{err}");
    // byte tokens that are not <0xNN>
    for bad in ["<0x-1>", "<0x100>", "<0x>", "<0xG1>", "<0x+F>", "0x41", ""] {
        let b = rewritten(|k, v| match (k, v) {
            ("tokenizer.ggml.tokens", Value::Array(Array::String(t))) => {
                let mut t = t.clone();
                t[3 + 0x41] = bad.to_string(); // <unk>, <s>, </s>, then the byte tokens
                Some(Value::Array(Array::String(t)))
            }
            _ => Some(v.clone()),
        });
        let header = Gguf::parse(&b).unwrap();
        match Tokenizer::from_gguf(&header) {
            Err(err) => assert!(matches!(err, TokenizerError::Vocab(_)), "{bad}: {err}"),
            // accepted only if it never turns into a byte
            Ok(tok) => {
                let ids = tok.encode("A\u{1F600}", false).unwrap();
                tok.decode(&ids).unwrap();
            }
        }
    }
}

#[test]
fn config_keys_missing_zero_or_inconsistent() {
    let u32_key = |key: &'static str, value: u32| {
        rewritten(move |k, v| Some(if k == key { Value::U32(value) } else { v.clone() }))
    };
    // zero sizes
    for key in [
        "llama.embedding_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.feed_forward_length",
        "llama.context_length",
        "llama.vocab_size",
    ] {
        let err = load_error(&u32_key(key, 0));
        assert!(err.contains(key), "{err}");
    }
    // kv heads that do not divide the heads
    assert!(load_error(&u32_key("llama.attention.head_count_kv", 3)).contains("head_count_kv"));
    // sizes that contradict the tensors
    for (key, value) in [
        ("llama.embedding_length", 128),
        ("llama.feed_forward_length", 256),
        ("llama.vocab_size", 2049),
        ("llama.attention.head_count", 2),
    ] {
        let b = u32_key(key, value);
        match load(&b) {
            Err(ModelError::TensorShape { name, .. }) => assert!(!name.is_empty()),
            Err(ModelError::GgufFile { error, .. }) => panic!("{key}: {error}"),
            Err(other) => assert!(other.to_string().contains(NAME) || other.to_string().contains("shape"), "{other}"),
            Ok(_) => panic!("{key} = {value} loaded"),
        }
    }
    // a missing key, a key of the wrong type, an unsupported architecture
    let b = rewritten(|k, v| (k != "llama.embedding_length").then(|| v.clone()));
    assert!(matches!(gguf_error(&b), GgufError::MissingKey { .. }));
    let b = rewritten(|k, v| Some(if k == "llama.block_count" { Value::String("2".into()) } else { v.clone() }));
    assert!(matches!(gguf_error(&b), GgufError::WrongType { .. }));
    let b = rewritten(|k, v| Some(if k == "llama.block_count" { Value::I32(-2) } else { v.clone() }));
    assert!(matches!(gguf_error(&b), GgufError::OutOfRange { .. }));
    let b = rewritten(|k, v| Some(if k == "general.architecture" { Value::String("gpt2".into()) } else { v.clone() }));
    assert!(load_error(&b).contains("gpt2"));
    let b = rewritten(|k, v| {
        Some(if k == "llama.attention.layer_norm_rms_epsilon" { Value::F32(f32::NAN) } else { v.clone() })
    });
    assert!(load_error(&b).contains("layer_norm_rms_epsilon"));
    // an end-of-sequence id outside the vocabulary
    let b = u32_key("tokenizer.ggml.eos_token_id", 5000);
    assert!(load_error(&b).contains("eos_token_id"));
}

#[test]
fn shapes_that_contradict_the_config_and_missing_tensors() {
    // attn_q stored as 32 x 128 instead of 64 x 64 (same size)
    let b = patched(|b, l| {
        let dims = tensor(l, "blk.0.attn_q.weight").2;
        put_u64(b, dims, 128);
        put_u64(b, dims + 8, 32);
    });
    match load(&b) {
        Err(ModelError::TensorShape { name, expected, found }) => {
            assert_eq!(name, "blk.0.attn_q.weight");
            assert_eq!((expected, found), (vec![64, 64], vec![32, 128]));
        }
        other => panic!("{:?}", other.err()),
    }
    // renamed tensors: missing
    for name in ["blk.1.ffn_down.weight", "token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight"] {
        let b = patched(|b, l| {
            let at = tensor(l, name).1 + 8;
            b[at] = b'X';
        });
        match load(&b) {
            Err(ModelError::MissingTensor { name: missing, path }) => {
                assert_eq!((missing.as_str(), path), (name, PathBuf::from(NAME)));
            }
            other => panic!("{name}: {:?}", other.err()),
        }
        load_error(&b);
    }
}

#[test]
fn nan_and_inf_weights() {
    // float tensors: refused at load, naming the tensor and the element
    for (bits, shown) in [(f32::NAN.to_bits(), "NaN"), (f32::INFINITY.to_bits(), "inf")] {
        let b = patched(|b, _| {
            let g = Gguf::parse(valid()).unwrap();
            let r = g.tensor("blk.1.ffn_norm.weight").unwrap().file_range();
            put_u32(b, r.start + 4 * 7, bits);
        });
        match load(&b) {
            Err(ModelError::NonFiniteWeight { name, index, .. }) => {
                assert_eq!((name.as_str(), index), ("blk.1.ffn_norm.weight", 7))
            }
            other => panic!("{:?}", other.err()),
        }
        let err = load(&b).err().unwrap().to_string();
        assert!(err.contains(shown) && err.contains("blk.1.ffn_norm.weight"), "{err}");
    }
    // a NaN scale in a quantized block: the generation stops with an error
    let b = patched(|b, _| {
        let g = Gguf::parse(valid()).unwrap();
        let r = g.tensor("output.weight").unwrap().file_range();
        // every Q8_0 block starts with its f16 scale: make them all NaN
        for block in r.step_by(34) {
            b[block..block + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
        }
    });
    let model = load(&b).expect("quantized scales are not scanned at load");
    let exec = Exec::new(1).unwrap();
    let mut state = model.new_state(32, 8).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let options = GenerateOptions { max_tokens: 4, ignore_eos: true, stop_tokens: vec![] };
    let result = generate(&model, &mut state, &exec, &mut sampler, &[1, 70, 80], &options, |_| true);
    assert!(matches!(result, Err(ModelError::NonFiniteLogits { position: 2 })), "{:?}", result.err());
}

#[test]
fn a_huge_max_tokens_does_not_size_an_allocation() {
    let model = load(valid()).unwrap();
    let exec = Exec::new(1).unwrap();
    let mut state = model.new_state(16, 8).unwrap();
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    let options = GenerateOptions { max_tokens: usize::MAX, ignore_eos: true, stop_tokens: vec![] };
    let g = generate(&model, &mut state, &exec, &mut sampler, &[1, 2, 3], &options, |_| true).unwrap();
    assert_eq!(g.ids.len(), 14);
}

#[test]
fn memory_guard_refuses_a_model_larger_than_the_limit() {
    let header = Gguf::parse(valid()).unwrap();
    let needed = memory::gguf_load_bytes(header.header());
    // the Q8_0 matrices as stored, the f32 norms
    let matrices: u64 = header.tensors().iter().map(|t| t.n_bytes).sum();
    assert_eq!(needed, matrices);
    let limit = |bytes| Some(Available { bytes, source: "a test".into() });
    memory::check_against(NAME, needed, limit(needed)).unwrap();
    memory::check_against(NAME, needed, None).unwrap();
    let err = memory::check_against(NAME, needed, limit(needed / 2)).unwrap_err();
    assert!(matches!(err, ModelError::OutOfMemory { .. }));
    let text = err.to_string();
    assert!(text.contains(NAME) && text.contains("KiB") && text.contains("a test"), "{text}");
    // a file without tensors needs nothing
    let mut big = GgufWriter::new();
    big.metadata("general.architecture", Value::String("llama".into())).unwrap();
    let bytes = big.to_bytes().unwrap();
    assert_eq!(memory::gguf_load_bytes(Gguf::parse(&bytes).unwrap().header()), 0);
}

/// Hugging Face folders: the llama fixture copied and corrupted.
mod hf {
    use super::*;

    fn fixture() -> Option<PathBuf> {
        Some(asdsl_tests::shared_dir()?.join("fixtures/hf/llama-tiny"))
    }

    /// A writable copy of the fixture's config.json and model.safetensors in a scratch folder.
    fn copy(name: &str) -> Option<PathBuf> {
        let src = fixture()?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("malformed-hf-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::write(dir.join(file), std::fs::read(src.join(file)).unwrap()).unwrap();
        }
        Some(dir)
    }

    fn load_dir(dir: &Path) -> Result<Model, ModelError> {
        Model::load(dir, &LoadOptions { quant: QuantSpec::F32, ..LoadOptions::default() })
    }

    fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
        let path = dir.join("config.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(json.as_object_mut().unwrap());
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }

    /// The error of loading `dir`, which must name a file in it.
    fn error(dir: &Path) -> ModelError {
        let err = load_dir(dir).expect_err("a corrupt folder loaded");
        let text = err.to_string();
        let names_it = text.contains(&dir.display().to_string());
        let about_a_tensor = matches!(err, ModelError::TensorShape { .. } | ModelError::NonFiniteWeight { .. });
        assert!(names_it || about_a_tensor, "the error names neither the file nor a tensor: {text}");
        err
    }

    #[test]
    fn the_copy_loads() {
        let Some(dir) = copy("valid") else { return };
        load_dir(&dir).unwrap();
    }

    #[test]
    fn config_json_missing_zero_wrong_or_inconsistent() {
        let Some(dir) = copy("config") else { return };
        let original = std::fs::read(dir.join("config.json")).unwrap();
        let reset = || std::fs::write(dir.join("config.json"), &original).unwrap();
        use serde_json::json;
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("hidden_size", serde_json::Value::Null, "missing"),
            ("num_hidden_layers", json!(0), "must be positive"),
            ("vocab_size", json!(0), "must be positive"),
            ("hidden_size", json!("128"), "not a non-negative integer"),
            ("hidden_size", json!(-128), "not a non-negative integer"),
            ("hidden_size", json!(1.5), "not a non-negative integer"),
            ("num_key_value_heads", json!(3), "do not divide"),
            ("rms_norm_eps", json!(-1.0), "must be positive"),
            ("rope_theta", json!("big"), "not a number"),
            ("model_type", json!("gpt2"), "not supported"),
            ("model_type", json!(7), "not a string"),
            ("eos_token_id", json!(100000), "outside the vocabulary"),
            ("eos_token_id", json!("x"), "token id"),
            ("max_position_embeddings", json!(0), "must be positive"),
            ("num_hidden_layers", json!(1_000_000_000u64), "at most 65536"),
            ("head_dim", json!(1u64 << 60), "too large"),
            ("vocab_size", json!(u64::MAX), "too large"),
        ];
        for (field, value, expected) in cases {
            reset();
            edit_config(&dir, |c| {
                if value.is_null() {
                    c.remove(field);
                } else {
                    c.insert(field.to_string(), value.clone());
                }
            });
            let err = error(&dir);
            let text = err.to_string();
            assert!(text.contains("config.json") && text.contains(expected), "{field} = {value}: {text}");
        }
        // sizes that contradict the tensors
        for (field, value) in [("hidden_size", 256), ("intermediate_size", 64), ("vocab_size", 1000)] {
            reset();
            edit_config(&dir, |c| {
                c.insert(field.into(), value.into());
            });
            assert!(matches!(error(&dir), ModelError::TensorShape { .. }), "{field}");
        }
        // not JSON, not an object, missing
        for text in ["{\"hidden_size\": 12", "[]", ""] {
            std::fs::write(dir.join("config.json"), text).unwrap();
            let err = error(&dir);
            assert!(matches!(err, ModelError::Json { .. } | ModelError::Config { .. }), "{text}: {err}");
        }
        std::fs::remove_file(dir.join("config.json")).unwrap();
        assert!(matches!(error(&dir), ModelError::Io { .. }));
    }

    #[test]
    fn safetensors_header_data_and_tensors() {
        let Some(dir) = copy("safetensors") else { return };
        let path = dir.join("model.safetensors");
        let original = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
        let with = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let err = error(&dir);
            let names_the_file = err.to_string().contains("model.safetensors");
            assert!(names_the_file || matches!(err, ModelError::MissingTensor { .. }), "{err}");
            err
        };
        // header length in the billions, zero, past the end
        for len in [u64::MAX, 1 << 40, 0, original.len() as u64] {
            let mut b = original.clone();
            b[..8].copy_from_slice(&len.to_le_bytes());
            assert!(matches!(with(&b), ModelError::Safetensors { .. }), "{len}");
        }
        // bad header JSON
        let mut b = original.clone();
        b[8] = b'[';
        assert!(matches!(with(&b), ModelError::Safetensors { .. }));
        let mut b = original.clone();
        b[8 + header_len / 2] = 0xff;
        assert!(matches!(with(&b), ModelError::Safetensors { .. }));
        // truncated at the header, in the data, one byte short
        for cut in [4, 8 + header_len / 2, 8 + header_len + 10, original.len() - 1] {
            assert!(matches!(with(&original[..cut]), ModelError::Safetensors { .. }), "{cut}");
        }
        // offsets past the end and overlapping: rewrite the header
        let header: serde_json::Value = serde_json::from_slice(&original[8..8 + header_len]).unwrap();
        let data = &original[8 + header_len..];
        let rebuild = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
            let mut h = header.clone();
            edit(h.as_object_mut().unwrap());
            let text = serde_json::to_vec(&h).unwrap();
            let mut b = (text.len() as u64).to_le_bytes().to_vec();
            b.extend_from_slice(&text);
            b.extend_from_slice(data);
            b
        };
        let name = "model.norm.weight";
        let err = with(&rebuild(&|h| {
            h[name]["data_offsets"] = serde_json::json!([0, u64::MAX]);
        }));
        assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
        let err = with(&rebuild(&|h| {
            h[name]["data_offsets"] = serde_json::json!([0, data.len() + 4096]);
        }));
        assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
        let err = with(&rebuild(&|h| {
            h[name]["data_offsets"] = serde_json::json!([0, 256]);
        }));
        assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
        let err = with(&rebuild(&|h| {
            h[name]["shape"] = serde_json::json!([u64::MAX, 4]);
        }));
        assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
        let err = with(&rebuild(&|h| {
            h[name]["dtype"] = serde_json::json!("F4X");
        }));
        assert!(matches!(err, ModelError::Safetensors { .. }), "{err}");
        // a tensor renamed: missing
        let err = with(&rebuild(&|h| {
            let t = h.remove(name).unwrap();
            h.insert("model.norm.weightX".into(), t);
        }));
        assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
        // a NaN weight (bf16 0x7fc0) in the final norm
        let offsets = &header[name]["data_offsets"];
        let start = 8 + header_len + offsets[0].as_u64().unwrap() as usize;
        let mut b = original.clone();
        b[start + 2..start + 4].copy_from_slice(&[0xc0, 0x7f]);
        std::fs::write(&path, &b).unwrap();
        match load_dir(&dir) {
            Err(ModelError::NonFiniteWeight { name: n, index: 1, .. }) => assert_eq!(n, name),
            other => panic!("{:?}", other.err()),
        }
        // no safetensors at all
        std::fs::remove_file(&path).unwrap();
        let err = error(&dir);
        assert!(matches!(err, ModelError::Unsupported(_)), "{err}");
    }
}

/// Plans that are truncated, corrupt, from another CPU, naming a variant
/// that no longer exists, or absurdly large: the load falls back to the
/// heuristic default and says why in one line.
#[test]
fn damaged_plans_fall_back_to_the_heuristic_in_one_line() {
    use asdsl_model::kernels::tune::plan::{LoadedPlan, MAX_PLAN_BYTES, PlanStatus};

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("malformed-plans");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = tiny_plan_naming("q8_0.r4.c1.dense.q8.scalar").to_json();
    let mut other_cpu = tiny_plan_naming("q8_0.r4.c1.dense.q8.scalar");
    other_cpu.fingerprint.vendor = "ImaginaryVendor".into();
    let cases = [
        ("truncated.json", json[..json.len() * 2 / 3].to_string(), "not a valid plan file"),
        ("corrupt.json", json.replacen("\"threads\": 1", "\"threads\": \"one\"", 1), "not a valid plan file"),
        ("other-cpu.json", other_cpu.to_json(), "tuned on another machine (vendor: plan `ImaginaryVendor`"),
        (
            "gone.json",
            tiny_plan_naming("q8_0.r4.c1.dense.q8.avx1024").to_json(),
            "`q8_0.r4.c1.dense.q8.avx1024` no longer exists",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let plan = LoadedPlan::load(Some(&path));
        let options = LoadOptions { plan: Some(&plan), ..LoadOptions::default() };
        let model = Model::load_gguf_bytes(valid(), Path::new(NAME), &options, Instant::now()).unwrap();
        let line = &model.info.plan;
        assert!(line.contains(needle) && line.contains("heuristic"), "{name}: {line}");
        assert!(!line.contains('\n'), "{name}: {line}");
        if name != "gone.json" {
            assert!(matches!(plan.status, PlanStatus::Refused(_)), "{name}");
            assert!(line.contains(name), "{name}: {line}");
        }
    }
    // a plan file larger than any plan is refused without being read
    let path = dir.join("huge.json");
    std::fs::File::create(&path).unwrap().set_len(MAX_PLAN_BYTES + 1).unwrap();
    let line = LoadedPlan::load(Some(&path)).status.to_string();
    assert!(line.contains("more than a plan can be") && line.contains("heuristic"), "{line}");
}
