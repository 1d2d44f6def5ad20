//! A vocabulary read from GGUF metadata, with token attributes and the
//! special tokens that split text before tokenization.

use std::collections::{BTreeSet, HashMap};

use super::TokenizerError;
use crate::gguf::GgufHeader;

/// The type of a token (`tokenizer.ggml.token_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// 1: ordinary text.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: control (BOS, EOS, chat markers).
    Control,
    /// 4: user-defined, matched in text like a control token.
    UserDefined,
    /// 5: unused.
    Unused,
    /// 6: a single byte `<0xNN>`.
    Byte,
}

impl TokenType {
    fn from_id(id: i32) -> Option<TokenType> {
        Some(match id {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// The vocabulary model (`tokenizer.ggml.model`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// `gpt2`: byte-level BPE with merges.
    Bpe,
    /// `llama`: SentencePiece-style with scores and byte fallback.
    Spm,
}

/// Token texts that llama.cpp treats as end of generation when they are
/// control tokens (besides the declared EOS/EOT/EOM ids).
pub(crate) const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|eom_id|>",
    "<｜end▁of▁sentence｜>",
];

/// A GGUF vocabulary.
#[derive(Clone, Debug)]
pub struct Vocab {
    /// Which algorithm.
    pub kind: VocabKind,
    /// Token texts by id.
    pub tokens: Vec<String>,
    /// Token types by id.
    pub types: Vec<TokenType>,
    /// SentencePiece scores by id (zeros when absent).
    pub scores: Vec<f32>,
    /// The byte of each byte token (`<0xNN>`), by id.
    pub byte_values: HashMap<u32, u8>,
    /// Id of each text (the last id when a text repeats, as llama.cpp).
    pub text_to_id: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    pub special_tokens: Vec<u32>,
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Unknown.
    pub unk: Option<u32>,
    /// Padding.
    pub pad: Option<u32>,
    /// All ids that end generation.
    pub eog: BTreeSet<u32>,
    /// Whether encoding with `add_special` starts with BOS.
    pub add_bos: bool,
    /// Whether encoding with `add_special` ends with EOS.
    pub add_eos: bool,
    /// SentencePiece: a space before the text (and after special tokens).
    pub add_space_prefix: bool,
    /// `tokenizer.ggml.pre` (BPE), `default` when absent.
    pub pre: String,
}

/// Parses `<0xNN>` (exactly two hex digits).
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Vocab {
    /// Reads the vocabulary from GGUF metadata, checking that arrays agree
    /// in length, special ids are in range and byte tokens are well formed.
    pub fn from_gguf(header: &GgufHeader) -> Result<Vocab, TokenizerError> {
        let model = header.require_str("tokenizer.ggml.model")?;
        let kind = match model {
            "gpt2" => VocabKind::Bpe,
            "llama" => VocabKind::Spm,
            other => {
                return Err(TokenizerError::Vocab(format!(
                    "tokenizer.ggml.model `{other}` is not supported (gpt2 and llama are)"
                )));
            }
        };
        let tokens = header
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| TokenizerError::Vocab("tokenizer.ggml.tokens is missing".into()))?
            .to_vec();
        let n = tokens.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(TokenizerError::Vocab(format!("vocabulary of {n} tokens")));
        }
        let types = match header.get_i32_array("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n],
            Some(ids) => {
                if ids.len() != n {
                    return Err(TokenizerError::Vocab(format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        ids.len()
                    )));
                }
                ids.iter()
                    .enumerate()
                    .map(|(i, &t)| {
                        TokenType::from_id(t)
                            .ok_or_else(|| TokenizerError::Vocab(format!("token {i} has unknown token type {t}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let scores = match header.get_f32_array("tokenizer.ggml.scores")? {
            None => vec![0.0; n],
            Some(s) if s.len() == n => s,
            Some(s) => {
                return Err(TokenizerError::Vocab(format!(
                    "tokenizer.ggml.scores has {} entries for {n} tokens",
                    s.len()
                )));
            }
        };
        let mut byte_values = HashMap::new();
        let mut text_to_id = HashMap::with_capacity(n);
        for (id, (text, ty)) in tokens.iter().zip(&types).enumerate() {
            let id = id as u32;
            if *ty == TokenType::Byte {
                let byte = parse_byte_token(text).ok_or_else(|| {
                    TokenizerError::Vocab(format!("token {id} has type byte but its text {text:?} is not <0xNN>"))
                })?;
                byte_values.insert(id, byte);
            }
            text_to_id.insert(text.clone(), id);
        }
        let mut special_tokens: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                matches!(types[id as usize], TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
                    && !tokens[id as usize].is_empty()
            })
            .collect();
        special_tokens.sort_by(|&a, &b| tokens[b as usize].len().cmp(&tokens[a as usize].len()).then(a.cmp(&b)));

        let special_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            match header.get_u32(key)? {
                Some(id) if (id as usize) < n => Ok(Some(id)),
                Some(id) => Err(TokenizerError::Vocab(format!("{key} = {id} is outside the vocabulary of {n}"))),
                None => Ok(default.filter(|&id| (id as usize) < n)),
            }
        };
        let (default_bos, default_eos, default_unk) = match kind {
            VocabKind::Spm => (Some(1), Some(2), Some(0)),
            VocabKind::Bpe => (Some(11), Some(11), None),
        };
        let bos = special_id("tokenizer.ggml.bos_token_id", default_bos)?;
        let eos = special_id("tokenizer.ggml.eos_token_id", default_eos)?;
        let unk = special_id("tokenizer.ggml.unknown_token_id", default_unk)?;
        // a padding id out of range is harmless: ignore it
        let pad = header.get_u32("tokenizer.ggml.padding_token_id")?.filter(|&id| (id as usize) < n);
        let mut eog = BTreeSet::new();
        eog.extend(eos);
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog.extend(special_id(key, None)?);
        }
        for (id, text) in tokens.iter().enumerate() {
            if types[id] == TokenType::Control && END_OF_GENERATION_TEXTS.contains(&text.as_str()) {
                eog.insert(id as u32);
            }
        }
        let add_bos = header.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(kind == VocabKind::Spm);
        let add_eos = header.get_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let add_space_prefix = header.get_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(kind == VocabKind::Spm);
        let pre = header.get_str("tokenizer.ggml.pre")?.unwrap_or("default").to_owned();
        Ok(Vocab {
            kind,
            tokens,
            types,
            scores,
            byte_values,
            text_to_id,
            special_tokens,
            bos,
            eos,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            pre,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Splits `text` into raw-text pieces and special tokens, as llama.cpp's
    /// `tokenizer_st_partition`: special tokens longest first, each matched
    /// everywhere in the remaining raw text. Without `parse_special` only
    /// user-defined tokens are matched.
    pub fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for &id in &self.special_tokens {
            let ty = self.types[id as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            if !fragments.iter().any(|f| matches!(f, Fragment::Text(t) if t.contains(needle))) {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    next.push(fragment);
                    continue;
                };
                while let Some(pos) = rest.find(needle) {
                    if pos > 0 {
                        next.push(Fragment::Text(&rest[..pos]));
                    }
                    next.push(Fragment::Token(id));
                    rest = &rest[pos + needle.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }
}

/// A piece of partitioned text.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fragment<'t> {
    /// Text to tokenize.
    Text(&'t str),
    /// A special token matched in the text.
    Token(u32),
}
