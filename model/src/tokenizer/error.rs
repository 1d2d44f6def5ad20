//! Errors of the tokenizers.

use thiserror::Error;

use crate::gguf::GgufError;

/// Everything that can go wrong loading or running a tokenizer.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// The GGUF metadata of the tokenizer is malformed (wrong types, ...).
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// The vocabulary is inconsistent or names an unsupported model.
    #[error("tokenizer vocabulary: {0}")]
    Vocab(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer asdsl does not implement.
    #[error("unknown BPE pre-tokenizer `{0}` (tokenizer.ggml.pre); known: {1}")]
    UnknownPreTokenizer(String, String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    UnknownId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// An error from the Hugging Face `tokenizers` crate.
    #[error("Hugging Face tokenizer {path}: {message}")]
    Hf {
        /// The tokenizer.json (or folder).
        path: String,
        /// The message.
        message: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}
