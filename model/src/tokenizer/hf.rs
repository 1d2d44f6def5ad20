//! Hugging Face tokenizers (`tokenizer.json`) through the `tokenizers` crate,
//! with BOS/EOS facts from `tokenizer_config.json` and
//! `generation_config.json`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;

use super::TokenizerError;
use super::vocab::END_OF_GENERATION_TEXTS;

/// A Hugging Face tokenizer with the special-token facts of its folder.
#[derive(Debug)]
pub struct HfTokenizer {
    /// Splits special tokens out of the text.
    with_special: tokenizers::Tokenizer,
    /// Encodes special-token strings as plain text.
    without_special: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
    bos_text: Option<String>,
    eos_text: Option<String>,
}

/// The texts of a Hugging Face tokenizer's files: `tokenizer.json` and,
/// when the folder has them, `tokenizer_config.json`,
/// `generation_config.json` and `chat_template.jinja`. Read from a folder,
/// or carried inside a file of `asdsl quantize`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HfTokenizerFiles {
    /// `tokenizer.json`.
    pub tokenizer: String,
    /// `tokenizer_config.json`.
    pub tokenizer_config: Option<String>,
    /// `generation_config.json`.
    pub generation_config: Option<String>,
    /// `chat_template.jinja`.
    pub chat_template: Option<String>,
}

impl HfTokenizerFiles {
    /// The file names, in the order of the fields.
    pub const NAMES: [&'static str; 4] =
        ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

    /// Reads the files of `folder`; `tokenizer.json` must be there.
    pub fn read(folder: &Path) -> Result<HfTokenizerFiles, TokenizerError> {
        let read = |name: &str| -> Result<Option<String>, TokenizerError> {
            let path = folder.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            std::fs::read_to_string(&path)
                .map(Some)
                .map_err(|source| TokenizerError::Io { path: path.display().to_string(), source })
        };
        let [tokenizer, tokenizer_config, generation_config, chat_template] = HfTokenizerFiles::NAMES;
        let Some(tokenizer) = read(tokenizer)? else {
            return Err(TokenizerError::Hf {
                path: folder.join(tokenizer).display().to_string(),
                message: "no tokenizer.json in the folder".into(),
            });
        };
        Ok(HfTokenizerFiles {
            tokenizer,
            tokenizer_config: read(tokenizer_config)?,
            generation_config: read(generation_config)?,
            chat_template: read(chat_template)?,
        })
    }
}

/// Parses the JSON `text` of the file `path`, if there is one.
fn parse_json(text: Option<&str>, path: &str) -> Result<Option<Json>, TokenizerError> {
    text.map(serde_json::from_str)
        .transpose()
        .map_err(|e| TokenizerError::Json { path: path.to_string(), message: e.to_string() })
}

/// A token given in tokenizer_config.json as a string or `{"content": ...}`.
fn token_text(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::String(s) => Some(s.clone()),
        Json::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl HfTokenizer {
    /// Loads `tokenizer.json` from `folder`, with `tokenizer_config.json`,
    /// `generation_config.json` and `chat_template.jinja` when present.
    pub fn from_folder(folder: &Path) -> Result<HfTokenizer, TokenizerError> {
        HfTokenizer::from_files(&HfTokenizerFiles::read(folder)?, &folder.display().to_string())
    }

    /// Builds the tokenizer from the texts of its files; `source` (a folder
    /// or file) names them in errors.
    pub fn from_files(files: &HfTokenizerFiles, source: &str) -> Result<HfTokenizer, TokenizerError> {
        let path = |name: &str| format!("{source}/{name}");
        let hf_error = |message: String| TokenizerError::Hf { path: path("tokenizer.json"), message };
        let with_special: tokenizers::Tokenizer = files.tokenizer.parse().map_err(|e| hf_error(format!("{e}")))?;
        let mut without_special = with_special.clone();
        without_special.set_encode_special_tokens(true);

        let config =
            parse_json(files.tokenizer_config.as_deref(), &path("tokenizer_config.json"))?.unwrap_or(Json::Null);
        let generation =
            parse_json(files.generation_config.as_deref(), &path("generation_config.json"))?.unwrap_or(Json::Null);
        let bos_text = token_text(config.get("bos_token"));
        let eos_text = token_text(config.get("eos_token"));
        let id_of = |text: &Option<String>| text.as_deref().and_then(|t| with_special.token_to_id(t));
        let vocab_size = with_special.get_vocab_size(true);
        let in_range = |id: u64| u32::try_from(id).ok().filter(|&id| (id as usize) < vocab_size);
        let bos = id_of(&bos_text).or_else(|| generation.get("bos_token_id").and_then(Json::as_u64).and_then(in_range));
        let eos = id_of(&eos_text).or_else(|| match generation.get("eos_token_id") {
            Some(Json::Number(n)) => n.as_u64().and_then(in_range),
            Some(Json::Array(a)) => a.first().and_then(Json::as_u64).and_then(in_range),
            _ => None,
        });
        let mut eog: BTreeSet<u32> = eos.into_iter().collect();
        match generation.get("eos_token_id") {
            Some(Json::Number(n)) => eog.extend(n.as_u64().and_then(in_range)),
            Some(Json::Array(a)) => eog.extend(a.iter().filter_map(Json::as_u64).filter_map(in_range)),
            _ => {}
        }
        for text in END_OF_GENERATION_TEXTS {
            eog.extend(with_special.token_to_id(text));
        }
        // BOS: as tokenizer_config says; when it is silent, add the BOS it
        // names unless the post-processor already does.
        let post_processor_adds_bos = match (bos, with_special.encode("a", true)) {
            (Some(bos), Ok(enc)) => enc.get_ids().first() == Some(&bos),
            _ => false,
        };
        let add_bos = match config.get("add_bos_token").and_then(Json::as_bool) {
            Some(flag) => flag && !post_processor_adds_bos,
            None => bos.is_some() && !post_processor_adds_bos,
        };
        let add_eos = config.get("add_eos_token").and_then(Json::as_bool).unwrap_or(false);
        let chat_template = match config.get("chat_template") {
            Some(Json::String(s)) => Some(s.clone()),
            // a list of named templates: take "default"
            Some(Json::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str)
                .map(str::to_owned),
            _ => None,
        }
        .or_else(|| files.chat_template.clone());
        Ok(HfTokenizer {
            with_special,
            without_special,
            bos,
            eos,
            eog,
            add_bos,
            add_eos,
            chat_template,
            bos_text,
            eos_text,
        })
    }

    /// Encodes `text`; BOS/EOS added when `add_special` and the config asks.
    pub fn encode_with(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let tokenizer = if parse_special { &self.with_special } else { &self.without_special };
        let encoding = tokenizer
            .encode(text, add_special)
            .map_err(|e| TokenizerError::Hf { path: "tokenizer.json".into(), message: e.to_string() })?;
        let mut ids = Vec::with_capacity(encoding.get_ids().len() + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// Decodes ids to text (special tokens dropped when `skip_special`).
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        let vocab_size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(TokenizerError::UnknownId { id, vocab_size });
        }
        self.with_special
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Hf { path: "tokenizer.json".into(), message: e.to_string() })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.with_special.get_vocab_size(true)
    }

    /// The text of token `id`.
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.with_special.id_to_token(id)
    }

    /// BOS id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// EOS id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &BTreeSet<u32> {
        &self.eog
    }

    /// Whether encoding with special tokens starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// `chat_template` from tokenizer_config.json (or chat_template.jinja).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// BOS text, for chat templates.
    pub fn bos_text(&self) -> Option<&str> {
        self.bos_text.as_deref()
    }

    /// EOS text, for chat templates.
    pub fn eos_text(&self) -> Option<&str> {
        self.eos_text.as_deref()
    }
}
