//! Quantized checkpoints: `asdsl quantize` turns a Hugging Face folder into
//! one safetensors file of quantized blocks with everything needed to run
//! it (config, tokenizer, chat template). It loads by mmap, without
//! quantizing again: the blocks are only packed for this machine's variants.
//!
//! # The file
//!
//! A safetensors file whose `__metadata__` holds
//!
//! - `asdsl.format` = `quantized-checkpoint` and `asdsl.version` = `1`;
//! - `asdsl.quant`: the `--quant` choice it was made with;
//! - `asdsl.config.json`: the source's config.json, as text; and, when the
//!   source has them, `asdsl.generation_config.json`,
//!   `asdsl.tokenizer.json`, `asdsl.tokenizer_config.json` and
//!   `asdsl.chat_template.jinja`;
//! - `asdsl.matrices`: a JSON object from each quantized matrix's tensor
//!   name to `{"format": "q4_k", "cols": 576}`.
//!
//! and the tensors (`M` a matrix, `V` an f32 vector):
//!
//! | name | |
//! |---|---|
//! | `embed` | `[vocab, hidden]`, BF16, F16 or F32: the narrowest that holds it exactly |
//! | `layers.{i}.attn_norm`, `layers.{i}.ffn_norm`, `norm` | V `[hidden]` |
//! | `layers.{i}.{qkv,q,k,v,o,gate_up,gate,up,down}`, `output` | M |
//! | `{matrix}.bias` | V `[rows]` |
//!
//! A matrix is F32 `[rows, cols]`, or U8 `[rows, row_bytes]` holding rows of
//! its format's blocks (a native format's rows padded to whole groups), its
//! format named in `asdsl.matrices`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use asdsl_kernels::Format;
use rayon::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::hf::SafetensorsFiles;
use crate::load_hf::{HfCheckpoint, Ticker};
use crate::model::{Embedding, GateUp, Layer, LoadInfo, LoadOptions, Model, Qkv};
use crate::quant::QuantSpec;
use crate::resolve::Resolver;
use crate::stored::{StoredMatrix, StoredWeights, padded_row_bytes};
use crate::tokenizer::HfTokenizerFiles;

/// A tensor to write: name, element type, shape and its bytes (borrowed
/// from the checkpoint where they already are bytes).
type NamedBytes<'a> = (String, Dtype, Vec<usize>, Cow<'a, [u8]>);

/// The value of `asdsl.format`.
const FORMAT_NAME: &str = "quantized-checkpoint";
/// The value of `asdsl.version` this code writes and reads.
const VERSION: &str = "1";

/// One quantized matrix's entry in `asdsl.matrices`.
#[derive(Debug, Serialize, Deserialize)]
struct MatrixEntry {
    format: String,
    cols: usize,
}

/// A checkpoint quantized in memory, ready to be written.
#[derive(Debug)]
pub struct QuantizedCheckpoint {
    /// The `--quant` choice.
    pub quant: QuantSpec,
    /// The source's config.json text.
    pub config_json: String,
    /// The source's generation_config.json text.
    pub generation_json: Option<String>,
    /// The tokenizer's files, when the source has a tokenizer.json.
    pub tokenizer: Option<HfTokenizerFiles>,
    /// The token embeddings (`vocab x hidden`).
    pub embedding: Vec<f32>,
    /// The blocks.
    pub layers: Vec<Layer<StoredMatrix>>,
    /// The final norm weight.
    pub norm: Vec<f32>,
    /// The output head.
    pub output: StoredMatrix,
}

impl QuantizedCheckpoint {
    /// Reads and quantizes the Hugging Face folder `dir` (layers in
    /// parallel); `progress` is called with (layers done, layers in all).
    pub fn from_hf(
        dir: &Path,
        quant: QuantSpec,
        progress: Option<&(dyn Fn(usize, usize) + Sync)>,
    ) -> Result<QuantizedCheckpoint> {
        let checkpoint = HfCheckpoint::open(dir, quant)?;
        crate::memory::check(&dir.display().to_string(), crate::memory::hf_dir_load_bytes(dir, quant)?)?;
        let n = checkpoint.config.num_layers;
        let ticker = Ticker::new(n + 1, progress);
        let read = |name: &str| -> Result<Option<String>> {
            let path = dir.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            std::fs::read_to_string(&path).map(Some).map_err(|e| ModelError::io(&path, e))
        };
        let config_json = read("config.json")?.ok_or_else(|| {
            ModelError::io(dir.join("config.json"), std::io::Error::from(std::io::ErrorKind::NotFound))
        })?;
        let tokenizer = match dir.join("tokenizer.json").is_file() {
            true => Some(HfTokenizerFiles::read(dir)?),
            false => None,
        };
        let embedding = checkpoint.embedding()?;
        let layers = (0..n)
            .into_par_iter()
            .map(|i| {
                let layer = checkpoint.layer(i)?;
                ticker.tick();
                Ok(layer)
            })
            .collect::<Result<_>>()?;
        let output = checkpoint.output(&embedding)?;
        ticker.tick();
        Ok(QuantizedCheckpoint {
            quant,
            config_json,
            generation_json: read("generation_config.json")?,
            tokenizer,
            embedding,
            layers,
            norm: checkpoint.norm()?,
            output,
        })
    }

    /// Writes the checkpoint to `path` (through a temporary file beside it,
    /// renamed when complete, so an interrupted write leaves nothing).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<NamedBytes<'_>> = Vec::new();
        let mut matrices = BTreeMap::new();
        let mut vector = |name: String, v: &[f32]| {
            tensors.push((name, Dtype::F32, vec![v.len()], f32_bytes(v).into()));
        };
        vector("norm".into(), &self.norm);
        for (i, layer) in self.layers.iter().enumerate() {
            vector(format!("layers.{i}.attn_norm"), &layer.attn_norm);
            vector(format!("layers.{i}.ffn_norm"), &layer.ffn_norm);
        }
        let named = self
            .layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.named_matrices().into_iter().map(move |(role, m)| (format!("layers.{i}.{role}"), m)))
            .chain([("output".to_string(), &self.output)]);
        for (name, m) in named {
            if let Some(bias) = &m.bias {
                tensors.push((format!("{name}.bias"), Dtype::F32, vec![bias.len()], f32_bytes(bias).into()));
            }
            match &m.weights {
                StoredWeights::F32(w) => tensors.push((name, Dtype::F32, vec![m.rows, m.cols], f32_bytes(w).into())),
                StoredWeights::Blocks { format, bytes } => {
                    let entry = MatrixEntry { format: format.to_string(), cols: m.cols };
                    matrices.insert(name.clone(), entry);
                    tensors.push((name, Dtype::U8, vec![m.rows, padded_row_bytes(*format, m.cols)], bytes.into()));
                }
            }
        }
        let hidden = self.norm.len();
        let vocab = self.embedding.len() / hidden.max(1);
        let (dtype, bytes) = exact_float_bytes(&self.embedding);
        tensors.push(("embed".into(), dtype, vec![vocab, hidden], bytes.into()));

        let mut metadata = HashMap::from([
            ("asdsl.format".to_string(), FORMAT_NAME.to_string()),
            ("asdsl.version".to_string(), VERSION.to_string()),
            ("asdsl.quant".to_string(), self.quant.to_string()),
            ("asdsl.config.json".to_string(), self.config_json.clone()),
            ("asdsl.matrices".to_string(), serde_json::to_string(&matrices).map_err(json_error(path))?),
        ]);
        if let Some(text) = &self.generation_json {
            metadata.insert("asdsl.generation_config.json".into(), text.clone());
        }
        if let Some(files) = &self.tokenizer {
            let texts = [Some(&files.tokenizer), files.tokenizer_config.as_ref(), None, files.chat_template.as_ref()];
            for (name, text) in HfTokenizerFiles::NAMES.iter().zip(texts) {
                if let Some(text) = text {
                    metadata.insert(format!("asdsl.{name}"), text.clone());
                }
            }
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                let view = TensorView::new(*dtype, shape.clone(), data)
                    .map_err(|e| ModelError::Safetensors { path: path.into(), reason: e.to_string() })?;
                Ok((name.as_str(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        // The crate writes a temporary file beside `path` and renames it.
        safetensors::serialize_to_file(views, Some(metadata), path)
            .map_err(|e| ModelError::Safetensors { path: path.into(), reason: format!("writing: {e}") })?;
        // Its temporary file is private (0600); a model file is not.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| ModelError::io(path, e))?;
        }
        Ok(())
    }
}

/// The embedding table as bytes of the narrowest float type that holds
/// every value exactly (a bf16 or f16 checkpoint's table stays that size).
fn exact_float_bytes(values: &[f32]) -> (Dtype, Vec<u8>) {
    if values.iter().all(|v| half::bf16::from_f32(*v).to_f32().to_bits() == v.to_bits()) {
        return (Dtype::BF16, values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect());
    }
    if values.iter().all(|v| half::f16::from_f32(*v).to_f32().to_bits() == v.to_bits()) {
        return (Dtype::F16, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect());
    }
    (Dtype::F32, f32_bytes(values))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn json_error(path: &Path) -> impl Fn(serde_json::Error) -> ModelError + '_ {
    move |source| ModelError::Json { path: path.into(), source }
}

/// A quantized checkpoint file, memory-mapped, its metadata read.
#[derive(Debug)]
pub struct QuantizedFile {
    path: PathBuf,
    files: SafetensorsFiles,
    metadata: HashMap<String, String>,
    matrices: HashMap<String, MatrixEntry>,
}

impl QuantizedFile {
    /// Opens `path` and checks its metadata.
    pub fn open(path: &Path) -> Result<QuantizedFile> {
        let files = SafetensorsFiles::open_file(path)?;
        let metadata = files.metadata().cloned().unwrap_or_default();
        let bad = |reason: String| ModelError::Safetensors { path: path.into(), reason };
        match (metadata.get("asdsl.format").map(String::as_str), metadata.get("asdsl.version")) {
            (Some(FORMAT_NAME), Some(v)) if v == VERSION => {}
            (Some(FORMAT_NAME), v) => {
                return Err(bad(format!(
                    "written by a version of asdsl quantize this one cannot read (file version {}, this reads {VERSION})",
                    v.map_or("none", String::as_str)
                )));
            }
            _ => {
                return Err(bad(
                    "a safetensors file, but not one written by `asdsl quantize`: give the model's folder (with config.json) instead"
                        .into(),
                ));
            }
        }
        let matrices_text = metadata.get("asdsl.matrices").ok_or_else(|| bad("no `asdsl.matrices` metadata".into()))?;
        let matrices: HashMap<String, MatrixEntry> = serde_json::from_str(matrices_text)
            .map_err(|e| bad(format!("metadata `asdsl.matrices` is not valid: {e}")))?;
        Ok(QuantizedFile { path: path.to_path_buf(), files, metadata, matrices })
    }

    /// The `--quant` choice it was made with.
    pub fn quant(&self) -> &str {
        self.metadata.get("asdsl.quant").map_or("?", String::as_str)
    }

    /// The model configuration.
    pub fn config(&self) -> Result<ModelConfig> {
        let text = self.metadata.get("asdsl.config.json").ok_or_else(|| ModelError::Safetensors {
            path: self.path.clone(),
            reason: "no `asdsl.config.json` metadata".into(),
        })?;
        let config_path = self.path.join("config.json");
        let gen_path = self.path.join("generation_config.json");
        let generation = self.metadata.get("asdsl.generation_config.json").map(String::as_str);
        ModelConfig::from_hf_texts(text, &config_path, generation, &gen_path)
    }

    /// The tokenizer's files, when the source had a tokenizer.
    pub fn tokenizer_files(&self) -> Option<HfTokenizerFiles> {
        let text = |name: &str| self.metadata.get(&format!("asdsl.{name}")).cloned();
        let [tokenizer, tokenizer_config, generation_config, chat_template] = HfTokenizerFiles::NAMES;
        Some(HfTokenizerFiles {
            tokenizer: text(tokenizer)?,
            tokenizer_config: text(tokenizer_config),
            generation_config: text(generation_config),
            chat_template: text(chat_template),
        })
    }

    /// Bytes a load keeps: the blocks and f32 tensors as stored, 16-bit
    /// tensors widened to f32.
    pub fn load_bytes(&self) -> u64 {
        let resident = |name: &str| match self.files.raw(name) {
            Ok(raw) if matches!(raw.dtype, Dtype::BF16 | Dtype::F16) => 2 * raw.data.len() as u64,
            Ok(raw) => raw.data.len() as u64,
            Err(_) => 0,
        };
        self.files.names().map(resident).fold(0, u64::saturating_add)
    }

    /// An f32 vector of `len` values.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.files.f32(name, &[len])
    }

    /// The matrix `name` of `rows x cols`, packed for its variants.
    fn matrix(&self, name: &str, rows: usize, cols: usize, resolver: &Resolver<'_>) -> Result<crate::linear::Linear> {
        let raw = self.files.raw(name)?;
        let mismatch = |wanted: String| ModelError::Safetensors {
            path: self.path.clone(),
            reason: format!("matrix `{name}` is {:?} {:?}, the model needs {wanted}", raw.dtype, raw.shape),
        };
        let linear = match self.matrices.get(name) {
            None => {
                if raw.shape != [rows, cols] {
                    return Err(mismatch(format!("{rows}x{cols} weights")));
                }
                crate::linear::Linear::f32(rows, cols, crate::hf::to_f32(name, raw.dtype, raw.data)?)?
            }
            Some(entry) => {
                let format: Format = entry.format.parse().map_err(|e| ModelError::Safetensors {
                    path: self.path.clone(),
                    reason: format!("matrix `{name}`: {e}"),
                })?;
                let row_bytes = padded_row_bytes(format, cols);
                if raw.dtype != Dtype::U8 || entry.cols != cols || raw.shape != [rows, row_bytes] {
                    return Err(mismatch(format!(
                        "U8 [{rows}, {row_bytes}] ({rows} rows of {cols} weights in {format})"
                    )));
                }
                crate::linear::Linear::from_blocks(rows, cols, raw.data, format, resolver)?
            }
        };
        let bias_name = format!("{name}.bias");
        match self.files.contains(&bias_name) {
            true => linear.with_bias(self.vector(&bias_name, rows)?),
            false => Ok(linear),
        }
    }

    /// Whether block `i` has the matrix `role` (to tell fused from split).
    fn has(&self, i: usize, role: &str) -> bool {
        self.files.contains(&format!("layers.{i}.{role}"))
    }
}

impl Model {
    /// Loads a file written by `asdsl quantize`: its blocks are packed for
    /// the variants resolved on this machine, nothing is quantized again.
    /// `options.quant` does not apply.
    pub fn load_quantized(path: &Path, options: &LoadOptions<'_>) -> Result<Model> {
        let start = Instant::now();
        let file = QuantizedFile::open(path)?;
        let config = file.config()?;
        crate::memory::check(&path.display().to_string(), file.load_bytes())?;
        let c = &config;
        let (h, qd, kvd, inter, vocab) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.vocab_size);
        let n = c.num_layers;
        let resolver = Resolver::new(options.plan, options.threads, options.activations);
        let ticker = Ticker::new(n + 1, options.progress);
        let layers: Vec<Layer> = (0..n)
            .into_par_iter()
            .map(|i| -> Result<Layer> {
                let m = |role: &str, rows, cols| file.matrix(&format!("layers.{i}.{role}"), rows, cols, &resolver);
                let qkv = match file.has(i, "qkv") {
                    true => Qkv::Fused(m("qkv", qd + 2 * kvd, h)?),
                    false => Qkv::Split { q: m("q", qd, h)?, k: m("k", kvd, h)?, v: m("v", kvd, h)? },
                };
                let gate_up = match file.has(i, "gate_up") {
                    true => GateUp::Fused(m("gate_up", 2 * inter, h)?),
                    false => GateUp::Split { gate: m("gate", inter, h)?, up: m("up", inter, h)? },
                };
                let layer = Layer {
                    attn_norm: file.vector(&format!("layers.{i}.attn_norm"), h)?,
                    qkv,
                    o: m("o", h, qd)?,
                    ffn_norm: file.vector(&format!("layers.{i}.ffn_norm"), h)?,
                    gate_up,
                    down: m("down", h, inter)?,
                };
                ticker.tick();
                Ok(layer)
            })
            .collect::<Result<_>>()?;
        let output = file.matrix("output", vocab, h, &resolver)?;
        ticker.tick();
        let mut model = Model {
            embed: Embedding::F32(file.files.f32("embed", &[vocab, h])?),
            norm: file.vector("norm", h)?,
            config,
            layers,
            output,
            needs_q8: false,
            info: LoadInfo { quant: format!("{} (quantized file)", file.quant()), ..LoadInfo::default() },
        };
        model.finish(start, &resolver);
        Ok(model)
    }
}
