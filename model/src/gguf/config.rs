//! Model hyper-parameters from GGUF metadata (`{arch}.embedding_length`, ...)
//! for the llama, qwen2 and phi3 architectures, as a plain struct the
//! runtime adapts to its own configuration type.

use super::{GgufError, GgufHeader};

/// Architectures whose metadata [`GgufModelConfig::from_header`] reads.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "phi3"];

/// Hyper-parameters of a transformer as the GGUF metadata states them.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufModelConfig {
    /// `general.architecture`.
    pub architecture: String,
    /// `{arch}.embedding_length`: hidden size.
    pub hidden_size: u32,
    /// `{arch}.block_count`: layers.
    pub num_layers: u32,
    /// `{arch}.attention.head_count`.
    pub num_heads: u32,
    /// `{arch}.attention.head_count_kv` (defaults to `num_heads`).
    pub num_kv_heads: u32,
    /// `{arch}.feed_forward_length`: MLP intermediate size.
    pub intermediate_size: u32,
    /// `{arch}.context_length`: trained context.
    pub context_length: u32,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: f32,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_theta: f32,
    /// `{arch}.rope.dimension_count` (default: the head size).
    pub rope_dims: u32,
    /// `{arch}.attention.key_length` when given, else hidden / heads.
    pub head_dim: u32,
    /// `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`,
    /// else the rows of `token_embd.weight`.
    pub vocab_size: u32,
    /// `{arch}.rope.scaling.type` when present (`linear`, `yarn`, `longrope`, ...).
    pub rope_scaling_type: Option<String>,
    /// `{arch}.rope.scaling.factor` when present.
    pub rope_scaling_factor: Option<f32>,
    /// `{arch}.rope.scaling.original_context_length` when present.
    pub rope_original_context: Option<u32>,
    /// Whether the file has no separate `output.weight` (the embedding is tied).
    pub tied_embeddings: bool,
}

fn bad(key: &str, reason: impl Into<String>) -> GgufError {
    GgufError::OutOfRange { key: key.to_owned(), value: reason.into(), expected: "a consistent model".to_owned() }
}

impl GgufModelConfig {
    /// Reads and checks the hyper-parameters (nonzero sizes, heads dividing
    /// the hidden size, kv heads dividing heads, finite positive epsilon).
    pub fn from_header(header: &GgufHeader) -> Result<GgufModelConfig, GgufError> {
        let arch = header.require_str("general.architecture")?.to_owned();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(GgufError::OutOfRange {
                key: "general.architecture".to_owned(),
                value: arch,
                expected: format!("one of {SUPPORTED_ARCHITECTURES:?}"),
            });
        }
        let key = |suffix: &str| format!("{arch}.{suffix}");
        let nonzero = |suffix: &str| -> Result<u32, GgufError> {
            let k = key(suffix);
            let v = header.require_u32(&k)?;
            if v == 0 { Err(bad(&k, "0")) } else { Ok(v) }
        };
        let hidden_size = nonzero("embedding_length")?;
        let num_layers = nonzero("block_count")?;
        let num_heads = nonzero("attention.head_count")?;
        let num_kv_heads = header.get_u32(&key("attention.head_count_kv"))?.unwrap_or(num_heads);
        if num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
            return Err(bad(
                &key("attention.head_count_kv"),
                format!("{num_kv_heads} does not divide {num_heads} heads"),
            ));
        }
        let intermediate_size = nonzero("feed_forward_length")?;
        let context_length = nonzero("context_length")?;
        let head_dim = match header.get_u32(&key("attention.key_length"))? {
            Some(0) => return Err(bad(&key("attention.key_length"), "0")),
            Some(d) => d,
            None => {
                if !hidden_size.is_multiple_of(num_heads) {
                    return Err(bad(
                        &key("embedding_length"),
                        format!("{hidden_size} is not a multiple of {num_heads} heads"),
                    ));
                }
                hidden_size / num_heads
            }
        };
        let rms_norm_eps = header.require_f32(&key("attention.layer_norm_rms_epsilon"))?;
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(bad(&key("attention.layer_norm_rms_epsilon"), rms_norm_eps.to_string()));
        }
        let rope_theta = header.get_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(bad(&key("rope.freq_base"), rope_theta.to_string()));
        }
        let rope_dims = header.get_u32(&key("rope.dimension_count"))?.unwrap_or(head_dim);
        if rope_dims == 0 || rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(bad(&key("rope.dimension_count"), format!("{rope_dims} (head size {head_dim})")));
        }
        let vocab_size = match header.get_u32(&key("vocab_size"))? {
            Some(v) => v,
            None => match header.get_str_array("tokenizer.ggml.tokens")? {
                Some(tokens) => u32::try_from(tokens.len()).map_err(|_| bad("tokenizer.ggml.tokens", "too many"))?,
                None => header
                    .tensor("token_embd.weight")
                    .and_then(|t| u32::try_from(t.rows()).ok())
                    .ok_or_else(|| GgufError::MissingKey { key: key("vocab_size") })?,
            },
        };
        if vocab_size == 0 {
            return Err(bad(&key("vocab_size"), "0"));
        }
        Ok(GgufModelConfig {
            hidden_size,
            num_layers,
            num_heads,
            num_kv_heads,
            intermediate_size,
            context_length,
            rms_norm_eps,
            rope_theta,
            rope_dims,
            head_dim,
            vocab_size,
            rope_scaling_type: header.get_str(&key("rope.scaling.type"))?.map(str::to_owned),
            rope_scaling_factor: header.get_f32(&key("rope.scaling.factor"))?,
            rope_original_context: header.get_u32(&key("rope.scaling.original_context_length"))?,
            tied_embeddings: header.tensor("output.weight").is_none(),
            architecture: arch,
        })
    }
}
