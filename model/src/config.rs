//! The model configuration: the shape of a llama-family transformer and its
//! positional encoding, read from a Hugging Face `config.json` (and, for GGUF
//! files, from their metadata).
//!
//! Every field the runtime needs is validated once here: a missing, zero or
//! inconsistent field is a [`ModelError::Config`] naming the file and the
//! field, so that nothing later has to guess.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ModelError, Result};

/// The most transformer blocks a configuration may declare (real models
/// have at most a few hundred).
pub const MAX_LAYERS: usize = 1 << 16;

/// The model families the runtime knows.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `LlamaForCausalLM` (also SmolLM2, Llama 3).
    Llama,
    /// `MistralForCausalLM` (llama with a sliding window that we do not need
    /// within the context lengths we run).
    Mistral,
    /// `Qwen2ForCausalLM`: q/k/v biases.
    Qwen2,
    /// `Phi3ForCausalLM` (Phi-3, Phi-4-mini): fused qkv and gate/up
    /// projections, partial rotary, LongRoPE.
    Phi3,
}

impl Arch {
    /// The `model_type` name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Phi3 => "phi3",
        }
    }

    /// The architecture of a `model_type` (HF) or `general.architecture` (GGUF) name.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "mistral" => Some(Arch::Mistral),
            "qwen2" => Some(Arch::Qwen2),
            "phi3" => Some(Arch::Phi3),
            _ => None,
        }
    }
}

/// How the rotary embedding pairs dimensions.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` pairs with `i + rotary_dim/2` (Hugging Face's
    /// `rotate_half`, ggml's NEOX mode). Every HF checkpoint uses this.
    Neox,
    /// Dimension `2i` pairs with `2i + 1` (ggml's normal mode: llama GGUF
    /// files, whose q/k rows were permuted at conversion).
    Interleaved,
}

/// Scaling of the rotary frequencies.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE: `inv_freq[i] = theta^(-2i/d)`.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The factor.
        factor: f32,
    },
    /// Llama 3's frequency-dependent scaling.
    Llama3 {
        /// Scale of the low frequencies.
        factor: f32,
        /// Wavelengths above `original / low_freq_factor` are scaled fully.
        low_freq_factor: f32,
        /// Wavelengths below `original / high_freq_factor` are not scaled.
        high_freq_factor: f32,
        /// The pretraining context.
        original_max_position_embeddings: usize,
    },
    /// LongRoPE (Phi-3, Phi-4-mini): per-frequency factors, short ones while
    /// the sequence fits the original context and long ones beyond it, and a
    /// scale on cos/sin.
    LongRope {
        /// Factors used while the sequence is at most `original_max_position_embeddings`.
        short_factor: Vec<f32>,
        /// Factors used beyond it.
        long_factor: Vec<f32>,
        /// The pretraining context.
        original_max_position_embeddings: usize,
        /// The scale on cos and sin: `sqrt(1 + ln(s) / ln(original))` with
        /// `s = max_position_embeddings / original` (1 when `s <= 1`), unless
        /// the config gives `attention_factor`.
        attention_factor: f32,
    },
}

/// The shape and hyper-parameters of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The family.
    pub arch: Arch,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention: divides `num_heads`).
    pub num_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding and output matrices).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f32,
    /// Dimensions of each head that are rotated (`head_dim *
    /// partial_rotary_factor`; even).
    pub rotary_dim: usize,
    /// Pairing of rotated dimensions.
    pub rope_style: RopeStyle,
    /// Frequency scaling.
    pub rope_scaling: RopeScaling,
    /// The longest context the model was made for.
    pub max_position_embeddings: usize,
    /// The output head is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q, k and v projections have biases (qwen2, or llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (generation stops at any of them).
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Width of the query projection (`num_heads * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key (and value) projection (`num_kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Reads a Hugging Face `config.json`, merging end-of-sequence ids from
    /// a `generation_config.json` beside it when there is one.
    pub fn from_hf_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let gen_path = path.parent().map(|dir| dir.join("generation_config.json"));
        let generation = gen_path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
        let gen_path = gen_path.unwrap_or_else(|| PathBuf::from("generation_config.json"));
        ModelConfig::from_hf_texts(&text, path, generation.as_deref(), &gen_path)
    }

    /// Parses the text of a `config.json` (`path` names it in errors) and,
    /// when given, of its `generation_config.json` (named `gen_path`).
    pub fn from_hf_texts(text: &str, path: &Path, generation: Option<&str>, gen_path: &Path) -> Result<ModelConfig> {
        let json: Value =
            serde_json::from_str(text).map_err(|source| ModelError::Json { path: path.to_path_buf(), source })?;
        let mut config = ModelConfig::from_hf_json(&json, path)?;
        if let Some(text) = generation {
            let json: Value = serde_json::from_str(text)
                .map_err(|source| ModelError::Json { path: gen_path.to_path_buf(), source })?;
            for id in token_ids(&json, "eos_token_id", gen_path)? {
                if !config.eos_token_ids.contains(&id) {
                    config.eos_token_ids.push(id);
                }
            }
            if config.bos_token_id.is_none() {
                config.bos_token_id = token_ids(&json, "bos_token_id", gen_path)?.first().copied();
            }
        }
        Ok(config)
    }

    /// Parses the JSON of a Hugging Face `config.json` (`path` names it in errors).
    pub fn from_hf_json(json: &Value, path: &Path) -> Result<ModelConfig> {
        let f = Fields { json, path };
        let model_type = f.string("model_type")?;
        let arch = Arch::from_name(&model_type).ok_or_else(|| {
            ModelError::config(
                path,
                "model_type",
                format!("`{model_type}` is not supported (llama, mistral, qwen2, phi3)"),
            )
        })?;
        if let Some(act) = f.opt_string("hidden_act")?
            && act != "silu"
        {
            return Err(ModelError::config(path, "hidden_act", format!("`{act}` is not supported (silu)")));
        }
        let hidden_size = f.positive("hidden_size")?;
        let num_heads = f.positive("num_attention_heads")?;
        let num_kv_heads = f.opt_positive("num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match f.opt_positive("head_dim")? {
            Some(d) => d,
            None => {
                if !hidden_size.is_multiple_of(num_heads) {
                    return Err(ModelError::config(
                        path,
                        "num_attention_heads",
                        format!("{num_heads} heads do not divide hidden_size {hidden_size} (and no head_dim is given)"),
                    ));
                }
                hidden_size / num_heads
            }
        };
        if !num_heads.is_multiple_of(num_kv_heads) {
            return Err(ModelError::config(
                path,
                "num_key_value_heads",
                format!("{num_kv_heads} key/value heads do not divide {num_heads} attention heads"),
            ));
        }
        let max_position_embeddings = f.positive("max_position_embeddings")?;
        // transformers 5 moves rope settings into `rope_parameters`; older
        // configs have `rope_theta` and `rope_scaling` at the top level.
        let rope_params = json.get("rope_parameters").filter(|v| v.is_object());
        let rope_scaling_json = json.get("rope_scaling").filter(|v| v.is_object()).or(rope_params);
        let rope_theta = match f.opt_f64("rope_theta")? {
            Some(t) => t,
            None => rope_params.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64).unwrap_or(10000.0),
        };
        if rope_theta.is_nan() || rope_theta <= 0.0 {
            return Err(ModelError::config(path, "rope_theta", format!("must be positive, got {rope_theta}")));
        }
        let partial = match f.opt_f64("partial_rotary_factor")? {
            Some(p) => p,
            None => {
                rope_scaling_json.and_then(|s| s.get("partial_rotary_factor")).and_then(Value::as_f64).unwrap_or(1.0)
            }
        };
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(ModelError::config(path, "partial_rotary_factor", format!("must be in (0, 1], got {partial}")));
        }
        let rotary_dim = (head_dim as f64 * partial) as usize;
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
            return Err(ModelError::config(
                path,
                "partial_rotary_factor",
                format!(
                    "{partial} of head_dim {head_dim} gives {rotary_dim} rotary dimensions (must be even and positive)"
                ),
            ));
        }
        let top_original = f.opt_positive("original_max_position_embeddings")?;
        let rope_scaling =
            parse_rope_scaling(rope_scaling_json, path, rotary_dim, max_position_embeddings, top_original)?;
        let rms_norm_eps = f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6);
        if rms_norm_eps.is_nan() || rms_norm_eps <= 0.0 {
            return Err(ModelError::config(path, "rms_norm_eps", format!("must be positive, got {rms_norm_eps}")));
        }
        let qkv_bias = match arch {
            Arch::Qwen2 => true,
            _ => f.opt_bool("attention_bias")?.unwrap_or(false),
        };
        if f.opt_bool("mlp_bias")?.unwrap_or(false) {
            return Err(ModelError::config(path, "mlp_bias", "MLP biases are not supported"));
        }
        let bos = token_ids(json, "bos_token_id", path)?;
        let config = ModelConfig {
            arch,
            hidden_size,
            intermediate_size: f.positive("intermediate_size")?,
            num_layers: f.positive("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: f.positive("vocab_size")?,
            rms_norm_eps: rms_norm_eps as f32,
            rope_theta: rope_theta as f32,
            rotary_dim,
            rope_style: RopeStyle::Neox,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            bos_token_id: bos.first().copied(),
            eos_token_ids: token_ids(json, "eos_token_id", path)?,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the relations between fields (`path` names the source in errors).
    pub fn validate(&self, path: &Path) -> Result<()> {
        let err = |field: &str, reason: String| Err(ModelError::config(path, field, reason));
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return err(field, "must be positive".into());
            }
        }
        if self.num_layers > MAX_LAYERS {
            return err("num_hidden_layers", format!("{} layers (at most {MAX_LAYERS})", self.num_layers));
        }
        // The matrices' sizes must be computable: no product of the fields
        // may overflow (a hostile config could otherwise wrap the shapes
        // the tensors are checked against).
        let product = |factors: &[usize]| -> Option<usize> {
            factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f)).filter(|&n| n <= isize::MAX as usize / 4)
        };
        let qkv_rows = product(&[self.num_heads, self.head_dim])
            .zip(product(&[2, self.num_kv_heads, self.head_dim]))
            .and_then(|(q, kv)| q.checked_add(kv));
        for (field, size) in [
            ("head_dim", qkv_rows.and_then(|rows| product(&[rows, self.hidden_size]))),
            ("intermediate_size", product(&[2, self.intermediate_size, self.hidden_size])),
            ("vocab_size", product(&[self.vocab_size, self.hidden_size])),
        ] {
            if size.is_none() {
                return err(field, "too large: the matrix sizes it implies overflow".into());
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return err(
                "num_key_value_heads",
                format!("{} key/value heads do not divide {} heads", self.num_kv_heads, self.num_heads),
            );
        }
        if self.rotary_dim == 0 || self.rotary_dim > self.head_dim || !self.rotary_dim.is_multiple_of(2) {
            return err(
                "rotary_dim",
                format!(
                    "{} rotary dimensions for head_dim {} (must be even, 1..=head_dim)",
                    self.rotary_dim, self.head_dim
                ),
            );
        }
        if let RopeScaling::LongRope { short_factor, long_factor, .. } = &self.rope_scaling {
            for (name, f) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                if f.len() != self.rotary_dim / 2 {
                    return err(
                        &format!("rope_scaling.{name}"),
                        format!(
                            "{} factors, but {} rotary dimensions need {}",
                            f.len(),
                            self.rotary_dim,
                            self.rotary_dim / 2
                        ),
                    );
                }
            }
        }
        for &id in self.eos_token_ids.iter().chain(self.bos_token_id.iter()) {
            if id as usize >= self.vocab_size {
                return err("eos_token_id", format!("token {id} is outside the vocabulary of {}", self.vocab_size));
            }
        }
        Ok(())
    }
}

fn parse_rope_scaling(
    json: Option<&Value>,
    path: &Path,
    rotary_dim: usize,
    max_pos: usize,
    top_original: Option<usize>,
) -> Result<RopeScaling> {
    let Some(s) = json else { return Ok(RopeScaling::None) };
    let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(Value::as_str).unwrap_or("default");
    let field = |name: &str| format!("rope_scaling.{name}");
    let num = |name: &str| -> Result<f32> {
        let v = s
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| ModelError::config(path, field(name), "missing or not a number"))?;
        if v.is_nan() || v <= 0.0 {
            return Err(ModelError::config(path, field(name), format!("must be positive, got {v}")));
        }
        Ok(v as f32)
    };
    let original = || -> Result<usize> {
        s.get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .or(top_original)
            .filter(|&v| v > 0)
            .ok_or_else(|| ModelError::config(path, field("original_max_position_embeddings"), "missing or zero"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "llama3" => {
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(ModelError::config(
                    path,
                    field("high_freq_factor"),
                    format!("{high} must exceed low_freq_factor {low}"),
                ));
            }
            Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original()?,
            })
        }
        "longrope" | "su" => {
            let factors = |name: &str| -> Result<Vec<f32>> {
                let arr = s
                    .get(name)
                    .and_then(Value::as_array)
                    .ok_or_else(|| ModelError::config(path, field(name), "missing or not a list"))?;
                let v: Option<Vec<f32>> = arr.iter().map(|x| x.as_f64().map(|x| x as f32)).collect();
                let v = v.ok_or_else(|| ModelError::config(path, field(name), "not a list of numbers"))?;
                if v.len() != rotary_dim / 2 {
                    return Err(ModelError::config(
                        path,
                        field(name),
                        format!("{} factors, but {rotary_dim} rotary dimensions need {}", v.len(), rotary_dim / 2),
                    ));
                }
                if v.iter().any(|&x| x.is_nan() || x <= 0.0) {
                    return Err(ModelError::config(path, field(name), "factors must be positive"));
                }
                Ok(v)
            };
            // As transformers: the config's `original_max_position_embeddings`
            // (top level first), the scale s = max_position / original.
            let original = top_original.map_or_else(original, Ok)?;
            let attention_factor = match s.get("attention_factor").and_then(Value::as_f64) {
                Some(a) => a as f32,
                None => {
                    let scale = max_pos as f64 / original as f64;
                    if scale <= 1.0 { 1.0 } else { (1.0 + scale.ln() / (original as f64).ln()).sqrt() as f32 }
                }
            };
            Ok(RopeScaling::LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                original_max_position_embeddings: original,
                attention_factor,
            })
        }
        other => Err(ModelError::config(
            path,
            "rope_scaling.rope_type",
            format!("`{other}` is not supported (default, linear, llama3, longrope)"),
        )),
    }
}

/// Token ids of a field that may be a number, a list of numbers or null.
fn token_ids(json: &Value, field: &str, path: &Path) -> Result<Vec<u32>> {
    let bad = || ModelError::config(path, field, "must be a token id or a list of token ids");
    let as_id = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
    match json.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(|v| as_id(v).ok_or_else(bad)).collect(),
        Some(v) => Ok(vec![as_id(v).ok_or_else(bad)?]),
    }
}

/// Typed access to the fields of a JSON config, with errors naming the file.
struct Fields<'a> {
    json: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, reason: &str) -> ModelError {
        ModelError::Config { path: PathBuf::from(self.path), field: field.into(), reason: reason.into() }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.json.get(field).filter(|v| !v.is_null())
    }

    fn string(&self, field: &str) -> Result<String> {
        self.opt_string(field)?.ok_or_else(|| self.err(field, "missing"))
    }

    fn opt_string(&self, field: &str) -> Result<Option<String>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| self.err(field, "not a string")),
        }
    }

    fn positive(&self, field: &str) -> Result<usize> {
        self.opt_positive(field)?.ok_or_else(|| self.err(field, "missing"))
    }

    fn opt_positive(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(0) => Err(self.err(field, "must be positive, got 0")),
                Some(n) => Ok(Some(n as usize)),
                None => Err(self.err(field, "not a non-negative integer")),
            },
        }
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.err(field, "not a number")),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.err(field, "not a boolean")),
        }
    }
}
