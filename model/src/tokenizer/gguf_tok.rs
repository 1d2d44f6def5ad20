//! The tokenizer of a GGUF file: vocabulary plus BPE or SPM model.

use super::TokenizerError;
use super::bpe::BpeModel;
use super::spm;
use super::vocab::{Fragment, TokenType, Vocab, VocabKind};
use crate::gguf::GgufHeader;

/// A tokenizer built from GGUF metadata, encoding as llama.cpp does.
#[derive(Debug)]
pub struct GgufTokenizer {
    vocab: Vocab,
    bpe: Option<BpeModel>,
}

impl GgufTokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(header: &GgufHeader) -> Result<GgufTokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(header)?;
        let bpe = match vocab.kind {
            VocabKind::Bpe => Some(BpeModel::from_gguf(header, &vocab)?),
            VocabKind::Spm => None,
        };
        Ok(GgufTokenizer { vocab, bpe })
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Encodes `text`: special-token strings are matched first when
    /// `parse_special` (user-defined tokens always), BOS/EOS added when
    /// `add_special` and the metadata asks for them.
    pub fn encode_with(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let vocab = &self.vocab;
        let mut out = Vec::new();
        if add_special && vocab.add_bos {
            out.extend(vocab.bos);
        }
        let fragments = vocab.partition(text, parse_special);
        match &self.bpe {
            Some(bpe) => {
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => bpe.encode_text(vocab, t, &mut out),
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            None => {
                let mut prev_special = true;
                for fragment in fragments {
                    match fragment {
                        Fragment::Text(t) => {
                            let mut escaped = String::with_capacity(t.len() + 3);
                            if vocab.add_space_prefix && prev_special {
                                escaped.push('▁');
                            }
                            for c in t.chars() {
                                escaped.push(if c == ' ' { '▁' } else { c });
                            }
                            spm::encode_text(vocab, &escaped, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
        }
        if add_special && vocab.add_eos {
            out.extend(vocab.eos);
        }
        out
    }

    /// The bytes token `id` stands for. Control and unknown tokens give
    /// their text when `render_special`, else nothing.
    pub fn token_bytes(&self, id: u32, render_special: bool, out: &mut Vec<u8>) -> Result<(), TokenizerError> {
        let vocab = &self.vocab;
        let index = id as usize;
        let (Some(text), Some(&ty)) = (vocab.tokens.get(index), vocab.types.get(index)) else {
            return Err(TokenizerError::UnknownId { id, vocab_size: vocab.len() });
        };
        match ty {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if render_special {
                    out.extend_from_slice(text.as_bytes());
                }
            }
            TokenType::UserDefined => out.extend_from_slice(text.as_bytes()),
            TokenType::Byte => {
                // checked at load: every byte token has a value
                if let Some(&b) = vocab.byte_values.get(&id) {
                    out.push(b);
                }
            }
            TokenType::Normal => match &self.bpe {
                Some(bpe) => bpe.byte_map.decode_into(text, out),
                None => {
                    for c in text.chars() {
                        let c = if c == '▁' { ' ' } else { c };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            },
        }
        Ok(())
    }

    /// Decodes ids to bytes (special tokens rendered when `render_special`);
    /// for SentencePiece with a space prefix, the first piece loses its
    /// leading space, as llama.cpp's detokenizer does.
    pub fn decode_bytes(&self, ids: &[u32], render_special: bool) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let start = out.len();
            self.token_bytes(id, render_special, &mut out)?;
            if i == 0 && self.bpe.is_none() && self.vocab.add_space_prefix && out.get(start) == Some(&b' ') {
                out.remove(start);
            }
        }
        Ok(out)
    }
}
