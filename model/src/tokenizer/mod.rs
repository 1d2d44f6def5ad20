//! Tokenizers: from GGUF metadata (byte-level BPE with llama.cpp's
//! pre-tokenizers, or SentencePiece-style) and from Hugging Face
//! `tokenizer.json` folders, behind one [`Tokenizer`] type.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use asdsl_model::{gguf::Gguf, tokenizer::Tokenizer};
//! let bytes = std::fs::read("model.gguf")?;
//! let gguf = Gguf::parse(&bytes)?;
//! let tok = Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", true)?;
//! let mut stream = tok.stream_decoder();
//! for &id in &ids {
//!     print!("{}", stream.push(id)?);
//! }
//! print!("{}", stream.finish());
//! # Ok(()) }
//! ```

mod bpe;
mod error;
mod gguf_tok;
mod hf;
mod spm;
pub mod vocab;

use std::collections::BTreeSet;
use std::path::Path;

pub use bpe::{ByteMap, known_pre_tokenizers};
pub use error::TokenizerError;
pub use gguf_tok::GgufTokenizer;
pub use hf::{HfTokenizer, HfTokenizerFiles};
pub use vocab::{TokenType, Vocab, VocabKind};

use crate::gguf::GgufHeader;

/// A tokenizer of either origin.
#[derive(Debug)]
pub enum Tokenizer {
    /// From GGUF metadata.
    Gguf(Box<GgufTokenizer>),
    /// From a Hugging Face folder.
    Hf(Box<HfTokenizer>),
}

impl Tokenizer {
    /// The tokenizer of a GGUF file.
    pub fn from_gguf(header: &GgufHeader) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer::Gguf(Box::new(GgufTokenizer::from_gguf(header)?)))
    }

    /// The tokenizer of a Hugging Face model folder.
    pub fn from_hf_folder(folder: &Path) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer::Hf(Box::new(HfTokenizer::from_folder(folder)?)))
    }

    /// A Hugging Face tokenizer from the texts of its files (`source` names
    /// them in errors): the tokenizer inside a file of `asdsl quantize`.
    pub fn from_hf_files(files: &HfTokenizerFiles, source: &str) -> Result<Tokenizer, TokenizerError> {
        Ok(Tokenizer::Hf(Box::new(HfTokenizer::from_files(files, source)?)))
    }

    /// Encodes a prompt: BOS (and EOS) as the model's metadata asks; special
    /// token strings (`<|im_start|>`) become their ids when `parse_special`.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, true, parse_special)
    }

    /// Encodes with explicit control of BOS/EOS (`add_special`).
    pub fn encode_with(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Gguf(t) => Ok(t.encode_with(text, add_special, parse_special)),
            Tokenizer::Hf(t) => t.encode_with(text, add_special, parse_special),
        }
    }

    /// Decodes ids to text, special tokens included as their text; bytes
    /// that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.decode_with(ids, false)
    }

    /// Decodes ids, leaving out control tokens when `skip_special`.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        match self {
            Tokenizer::Gguf(t) => Ok(String::from_utf8_lossy(&t.decode_bytes(ids, !skip_special)?).into_owned()),
            Tokenizer::Hf(t) => t.decode_with(ids, skip_special),
        }
    }

    /// A decoder for streaming output one token at a time.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The BOS id, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().bos,
            Tokenizer::Hf(t) => t.bos(),
        }
    }

    /// Whether [`encode`](Self::encode) starts with BOS.
    pub fn add_bos(&self) -> bool {
        match self {
            Tokenizer::Gguf(t) => t.vocab().add_bos && t.vocab().bos.is_some(),
            Tokenizer::Hf(t) => t.add_bos() && t.bos().is_some(),
        }
    }

    /// The EOS id, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().eos,
            Tokenizer::Hf(t) => t.eos(),
        }
    }

    /// Every id that ends generation: EOS, EOT/EOM, and control tokens such
    /// as `<|im_end|>` or `<|eot_id|>`.
    pub fn eos_ids(&self) -> BTreeSet<u32> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().eog.clone(),
            Tokenizer::Hf(t) => t.eos_ids().clone(),
        }
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Gguf(t) => t.vocab().len(),
            Tokenizer::Hf(t) => t.vocab_size(),
        }
    }

    /// The vocabulary text of token `id` (as stored, not decoded).
    pub fn token_str(&self, id: u32) -> Option<String> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().tokens.get(id as usize).cloned(),
            Tokenizer::Hf(t) => t.token_str(id),
        }
    }

    /// The text of the BOS token, for chat templates.
    pub fn bos_text(&self) -> Option<String> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().bos.and_then(|id| t.vocab().tokens.get(id as usize).cloned()),
            Tokenizer::Hf(t) => t.bos_text().map(str::to_owned),
        }
    }

    /// The text of the EOS token, for chat templates.
    pub fn eos_text(&self) -> Option<String> {
        match self {
            Tokenizer::Gguf(t) => t.vocab().eos.and_then(|id| t.vocab().tokens.get(id as usize).cloned()),
            Tokenizer::Hf(t) => t.eos_text().map(str::to_owned),
        }
    }
}

/// Streaming decode: feed ids one at a time and get the text that is
/// complete so far. Incomplete UTF-8 sequences at the end are held back
/// until the next token completes them; [`finish`](Self::finish) flushes
/// what remains (invalid bytes as U+FFFD).
#[derive(Debug)]
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    /// GGUF: bytes not yet emitted.
    pending: Vec<u8>,
    /// Tokens so far (Hugging Face: decoded by difference).
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    emitted_any: bool,
}

impl<'t> StreamDecoder<'t> {
    /// A fresh decoder.
    pub fn new(tokenizer: &'t Tokenizer) -> StreamDecoder<'t> {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            emitted_any: false,
        }
    }

    /// Adds a token; returns the text it completes (possibly empty).
    /// Control tokens are not rendered.
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        match self.tokenizer {
            Tokenizer::Gguf(t) => {
                let start = self.pending.len();
                t.token_bytes(id, false, &mut self.pending)?;
                // SentencePiece: the first piece loses the prefix space
                if !self.emitted_any
                    && self.pending.len() > start
                    && t.vocab().kind == VocabKind::Spm
                    && t.vocab().add_space_prefix
                    && self.pending.first() == Some(&b' ')
                {
                    self.pending.remove(0);
                }
                if self.pending.len() > start {
                    self.emitted_any = true;
                }
                Ok(self.take_complete())
            }
            Tokenizer::Hf(t) => {
                if id as usize >= t.vocab_size() {
                    return Err(TokenizerError::UnknownId { id, vocab_size: t.vocab_size() });
                }
                self.ids.push(id);
                let prefix = t.decode_with(&self.ids[self.prefix_offset..self.read_offset], true)?;
                let full = t.decode_with(&self.ids[self.prefix_offset..], true)?;
                if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') {
                    let new = full.get(prefix.len()..).unwrap_or_default().to_owned();
                    self.prefix_offset = self.read_offset;
                    self.read_offset = self.ids.len();
                    Ok(new)
                } else {
                    Ok(String::new())
                }
            }
        }
    }

    /// Takes the longest valid UTF-8 prefix of the pending bytes, replacing
    /// invalid sequences that cannot be completed by U+FFFD.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // valid_up_to marks a char boundary of valid UTF-8
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // incomplete sequence at the end: wait for more bytes
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Flushes the held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        match self.tokenizer {
            Tokenizer::Gguf(_) => {
                let out = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                out
            }
            Tokenizer::Hf(t) => {
                let prefix = t.decode_with(&self.ids[self.prefix_offset..self.read_offset], true).unwrap_or_default();
                let full = t.decode_with(&self.ids[self.prefix_offset..], true).unwrap_or_default();
                self.prefix_offset = self.ids.len();
                self.read_offset = self.ids.len();
                full.get(prefix.len()..).unwrap_or_default().to_owned()
            }
        }
    }
}
