//! GGUF tokenizers: SmolLM2's byte-level BPE against llama.cpp's ids, a
//! synthetic SentencePiece vocabulary, streaming decode, and hostile
//! vocabularies.

use asdsl_model::gguf::{Array, Gguf, GgufError, GgufHeader, GgufWriter, Value};
use asdsl_model::tokenizer::{Tokenizer, TokenizerError};
use serde_json::Value as Json;

struct Case {
    prompt: String,
    ids: Vec<u32>,
    ids_no_special: Vec<u32>,
    greedy_new_ids: Vec<u32>,
    greedy_new_text: String,
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// The SmolLM2 tokenizer and llama.cpp's reference cases, if the shared
/// fixtures are present.
fn smollm2() -> Option<(Tokenizer, Vec<Case>)> {
    let shared = asdsl_tests::shared_dir()?;
    let bytes = std::fs::read(shared.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let gguf = Gguf::parse(&bytes).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let json: Json = serde_json::from_str(
        &std::fs::read_to_string(shared.join("fixtures/gguf/smollm2-q4_1-llamacpp.json")).unwrap(),
    )
    .unwrap();
    let cases = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_owned(),
            ids: ids(&c["ids"]),
            ids_no_special: ids(&c["ids_no_special"]),
            greedy_new_ids: ids(&c["greedy_new_ids"]),
            greedy_new_text: c["greedy_new_text"].as_str().unwrap().to_owned(),
        })
        .collect();
    Some((tok, cases))
}

#[test]
fn smollm2_ids_equal_llama_cpp() {
    let Some((tok, cases)) = smollm2() else { return };
    assert_eq!(cases.len(), 5);
    for case in &cases {
        assert_eq!(tok.encode(&case.prompt, true).unwrap(), case.ids, "special: {:?}", case.prompt);
        assert_eq!(tok.encode(&case.prompt, false).unwrap(), case.ids_no_special, "no special: {:?}", case.prompt);
    }
    // the chat prompt really exercises special tokens
    assert_ne!(cases[2].ids, cases[2].ids_no_special);
}

#[test]
fn smollm2_decode_round_trips() {
    let Some((tok, cases)) = smollm2() else { return };
    for case in &cases {
        assert_eq!(tok.decode(&case.ids).unwrap(), case.prompt);
        assert_eq!(tok.decode(&case.ids_no_special).unwrap(), case.prompt);
        let ours = tok.encode(&case.prompt, false).unwrap();
        assert_eq!(tok.decode(&ours).unwrap(), case.prompt);
        // llama.cpp's pieces of the greedy continuation
        assert_eq!(tok.decode_with(&case.greedy_new_ids, true).unwrap(), case.greedy_new_text);
        // token by token, text arrives complete
        let mut stream = tok.stream_decoder();
        let mut text = String::new();
        for &id in &case.ids_no_special {
            text.push_str(&stream.push(id).unwrap());
            assert!(!text.contains('\u{FFFD}'), "{:?}", case.prompt);
        }
        text.push_str(&stream.finish());
        assert_eq!(text, case.prompt);
    }
}

#[test]
fn smollm2_special_facts() {
    let Some((tok, _)) = smollm2() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
    assert!(!tok.add_bos());
    let eos = tok.eos_ids();
    assert!(eos.contains(&2) && eos.contains(&0), "{eos:?}");
    assert_eq!(tok.token_str(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.token_str(49152), None);
    assert!(matches!(tok.decode(&[49152]), Err(TokenizerError::UnknownId { id: 49152, .. })));
    // control tokens are skipped on request and in streaming
    assert_eq!(tok.decode_with(&[1, 504, 2], true).unwrap(), "The");
    let mut stream = tok.stream_decoder();
    assert_eq!(stream.push(2).unwrap(), "");
    // multi-byte characters split over tokens are held back until complete
    let ids = tok.encode("東京🚀", false).unwrap();
    let mut stream = tok.stream_decoder();
    let pieces: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
    assert_eq!(pieces.concat() + &stream.finish(), "東京🚀");
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
    // empty and whitespace-only text
    assert_eq!(tok.encode("", true).unwrap(), Vec::<u32>::new());
    for text in [" ", "\n\n", "   x  ", "a\u{0}b", "\u{FEFF}\u{200B}"] {
        assert_eq!(tok.decode(&tok.encode(text, false).unwrap()).unwrap(), text);
    }
}

#[test]
fn smollm2_survives_arbitrary_text() {
    let Some((tok, _)) = smollm2() else { return };
    let long_word = "a".repeat(100_000);
    let many_spaces = " ".repeat(50_000) + "x";
    let digits = "7".repeat(10_000);
    let specials = "<|im_start|><|im_end|><|im_start".repeat(1000);
    for text in [long_word.as_str(), &many_spaces, &digits, &specials] {
        let ids = tok.encode(text, true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}

// ---------------------------------------------------------------- synthetic

/// A SentencePiece (`llama`) vocabulary: unk, bos, eos, 256 byte tokens and
/// a few pieces with scores.
fn spm_writer(extra: &[(&str, i32, f32)]) -> GgufWriter {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (text, ty, score) in [
        ("▁", 1, -1.0),
        ("h", 1, -2.0),
        ("e", 1, -2.0),
        ("l", 1, -2.0),
        ("o", 1, -2.0),
        ("w", 1, -2.0),
        ("r", 1, -2.0),
        ("d", 1, -2.0),
        ("▁h", 1, -1.5),
        ("ll", 1, -1.2),
        ("▁he", 1, -1.1),
        ("▁hell", 1, -1.0),
        ("▁hello", 1, -0.5),
        ("▁w", 1, -1.5),
        ("or", 1, -1.4),
        ("▁wor", 1, -1.3),
        ("ld", 1, -1.3),
        ("▁world", 1, -0.4),
    ]
    .iter()
    .chain(extra)
    {
        tokens.push(text.to_string());
        types.push(*ty);
        scores.push(*score);
    }
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.model", Value::String("llama".into())).unwrap();
    w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))).unwrap();
    w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types))).unwrap();
    w.metadata("tokenizer.ggml.scores", Value::Array(Array::F32(scores))).unwrap();
    w.metadata("tokenizer.ggml.bos_token_id", Value::U32(1)).unwrap();
    w.metadata("tokenizer.ggml.eos_token_id", Value::U32(2)).unwrap();
    w
}

fn tokenizer_of(w: &GgufWriter) -> Result<Tokenizer, TokenizerError> {
    let bytes = w.to_bytes().unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    Tokenizer::from_gguf(&header)
}

#[test]
fn spm_encodes_with_prefix_space_merges_and_byte_fallback() {
    let tok = tokenizer_of(&spm_writer(&[])).unwrap();
    let id = |t: &str| (0..tok.vocab_size() as u32).find(|&i| tok.token_str(i).as_deref() == Some(t)).unwrap();
    assert!(tok.add_bos());
    assert_eq!(tok.encode("hello world", false).unwrap(), vec![1, id("▁hello"), id("▁world")]);
    assert_eq!(tok.encode_with("hello world", false, false).unwrap(), vec![id("▁hello"), id("▁world")]);
    // é is not a piece: its two UTF-8 bytes
    let ids = tok.encode_with("hé", false, false).unwrap();
    assert_eq!(ids, vec![id("▁h"), id("<0xC3>"), id("<0xA9>")]);
    assert_eq!(tok.decode(&ids).unwrap(), "hé");
    assert_eq!(tok.decode(&tok.encode_with("hello world", false, false).unwrap()).unwrap(), "hello world");
    // special tokens: a space prefix after each
    assert_eq!(tok.encode_with("<s>hello", false, true).unwrap(), vec![1, id("▁hello")]);
    assert_eq!(tok.decode_with(&[1, id("▁hello"), 2], true).unwrap(), " hello");
    // a lone invalid byte decodes to U+FFFD, never a panic
    assert_eq!(tok.decode(&[id("<0xFF>")]).unwrap(), "\u{FFFD}");
    let mut stream = tok.stream_decoder();
    assert_eq!(stream.push(id("<0xE6>")).unwrap(), "");
    assert_eq!(stream.push(id("<0x9D>")).unwrap(), "");
    assert_eq!(stream.push(id("<0xB1>")).unwrap(), "東");
    assert_eq!(stream.push(id("<0xFF>")).unwrap(), "\u{FFFD}");
    assert_eq!(stream.push(id("<0xE6>")).unwrap(), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
}

#[test]
fn hostile_byte_tokens_are_load_errors() {
    for bad in ["<0x-1>", "<0xZZ>", "<0x1>", "<0x100>", "<0x>", "0x41", "<0x4G>", ""] {
        let mut w = spm_writer(&[]);
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into(), bad.into()];
        tokens.extend((0..10).map(|i| format!("t{i}")));
        let types: Vec<i32> = [2, 3, 3, 6].into_iter().chain([1; 10]).collect();
        w = replace(w, "tokenizer.ggml.tokens", Value::Array(Array::String(tokens)));
        w = replace(w, "tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
        w = replace(w, "tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; 14])));
        let err = tokenizer_of(&w).unwrap_err();
        assert!(matches!(err, TokenizerError::Vocab(ref m) if m.contains("byte")), "{bad}: {err}");
    }
    // as plain (normal) tokens the same texts are fine
    let tok = tokenizer_of(&spm_writer(&[("<0x-1>", 1, -9.0), ("<0xZZ>", 1, -9.0)])).unwrap();
    let ids = tok.encode_with("<0x-1>", false, false).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "<0x-1>");
}

/// A copy of `w` with `key` set to `value` (other keys kept in order).
fn replace(w: GgufWriter, key: &str, value: Value) -> GgufWriter {
    let bytes = w.to_bytes().unwrap();
    let g = GgufHeader::parse(&bytes).unwrap();
    let mut out = GgufWriter::new();
    for (k, v) in g.metadata() {
        out.metadata(k.clone(), if k == key { value.clone() } else { v.clone() }).unwrap();
    }
    out
}

#[test]
fn hostile_vocabularies_give_clear_errors() {
    // token types of the wrong element type, or the wrong length
    let w = replace(spm_writer(&[]), "tokenizer.ggml.token_type", Value::Array(Array::String(vec!["1".into()])));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Metadata(GgufError::WrongType { .. }))));
    let w = replace(spm_writer(&[]), "tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 3])));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Vocab(_))));
    let w = replace(spm_writer(&[]), "tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; 2])));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Vocab(_))));
    // tokens as integers
    let w = replace(spm_writer(&[]), "tokenizer.ggml.tokens", Value::Array(Array::I32(vec![1, 2])));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Metadata(GgufError::WrongType { .. }))));
    // an unknown token type, a special id outside the vocabulary
    let n = 3 + 256 + 18;
    let mut types = vec![1; n];
    types[5] = 99;
    let w = replace(spm_writer(&[]), "tokenizer.ggml.token_type", Value::Array(Array::I32(types)));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Vocab(_))));
    let w = replace(spm_writer(&[]), "tokenizer.ggml.eos_token_id", Value::U32(1_000_000));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Vocab(_))));
    let w = replace(spm_writer(&[]), "tokenizer.ggml.bos_token_id", Value::String("1".into()));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Metadata(GgufError::WrongType { .. }))));
    // an unknown model
    let w = replace(spm_writer(&[]), "tokenizer.ggml.model", Value::String("rwkv".into()));
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Vocab(_))));
    // no tokenizer at all
    let w = GgufWriter::new();
    assert!(matches!(tokenizer_of(&w), Err(TokenizerError::Metadata(GgufError::MissingKey { .. }))));
}

/// A tiny byte-level BPE vocabulary (all 256 byte characters, a few merges).
fn bpe_writer(pre: Option<&str>, merges: Vec<String>) -> GgufWriter {
    let byte_map = asdsl_model::tokenizer::ByteMap::new();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_map.encode(&[b])).collect();
    tokens.extend(["he", "ll", "hell", "hello", "Ġw", "Ġwor", "or", "ld", "Ġworld"].map(String::from));
    tokens.push("<|end|>".into());
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    let mut w = GgufWriter::new();
    w.metadata("tokenizer.ggml.model", Value::String("gpt2".into())).unwrap();
    if let Some(pre) = pre {
        w.metadata("tokenizer.ggml.pre", Value::String(pre.into())).unwrap();
    }
    w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))).unwrap();
    w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types))).unwrap();
    w.metadata("tokenizer.ggml.merges", Value::Array(Array::String(merges))).unwrap();
    w.metadata("tokenizer.ggml.eos_token_id", Value::U32(265)).unwrap();
    w
}

fn standard_merges() -> Vec<String> {
    ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"].map(String::from).to_vec()
}

#[test]
fn bpe_pre_tokenizers_and_merges() {
    for pre in [None, Some("gpt2"), Some("llama3"), Some("llama-bpe"), Some("qwen2"), Some("smollm")] {
        let tok = tokenizer_of(&bpe_writer(pre, standard_merges())).unwrap();
        assert_eq!(tok.encode("hello world", false).unwrap(), vec![259, 264], "{pre:?}");
        assert_eq!(tok.encode("hello world<|end|>", true).unwrap(), vec![259, 264, 265], "{pre:?}");
        for text in ["hello world", "Héllo\n\n  wörld 123 4567 it's", "🚀🚀 x"] {
            assert_eq!(tok.decode(&tok.encode(text, false).unwrap()).unwrap(), text, "{pre:?} {text:?}");
        }
        assert!(tok.eos_ids().contains(&265));
    }
    // digits: smollm splits each, llama3 groups by three, qwen2 each
    let digits = |pre| tokenizer_of(&bpe_writer(Some(pre), vec![])).unwrap().encode("12345", false).unwrap().len();
    assert_eq!(digits("smollm"), 5);
    assert_eq!(digits("qwen2"), 5);
    assert_eq!(digits("llama3"), 5); // no merges: one token per byte either way
    // unknown pre-tokenizer and malformed merges
    assert!(matches!(
        tokenizer_of(&bpe_writer(Some("no-such-pre"), standard_merges())),
        Err(TokenizerError::UnknownPreTokenizer(..))
    ));
    assert!(matches!(tokenizer_of(&bpe_writer(None, vec!["nospace".into()])), Err(TokenizerError::Vocab(_))));
    // merges naming tokens that do not exist are ignored
    let tok = tokenizer_of(&bpe_writer(None, vec!["x y".into(), "ab cd".into(), " ".into()]));
    assert!(matches!(tok, Err(TokenizerError::Vocab(_))));
    let tok = tokenizer_of(&bpe_writer(None, vec!["x y".into(), "ab cd".into()])).unwrap();
    assert_eq!(tok.encode("xy", false).unwrap(), vec![b'x' as u32, b'y' as u32]);
}
