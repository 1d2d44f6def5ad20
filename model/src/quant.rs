//! Which format each matrix of a float checkpoint is quantized to at load
//! (`--quant`).

use std::fmt;
use std::str::FromStr;

use asdsl_kernels::Format;

use crate::error::ModelError;

/// The `--quant` choice for float checkpoints.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QuantSpec {
    /// Keep f32 weights (the exact path, for checking against references).
    F32,
    /// Every matrix in one format (`q8_0`, `q4_0`, `q4_k`, `q4g32`, ...).
    Uniform(Format),
    /// What llama.cpp's `Q4_K_M` does (the default):
    ///
    /// - the output head: `q6_k`;
    /// - `attn_v` and `ffn_down`: `q6_k` in the layers llama.cpp's
    ///   `use_more_bits` picks (the first and last eighth, and every third
    ///   layer between), `q4_k` elsewhere;
    /// - a fused qkv matrix (Phi-3): `q5_k`;
    /// - everything else: `q4_k`.
    ///
    /// The embedding table stays f32 (it is read one row per token, not
    /// multiplied).
    Q4KM,
}

/// The role of a matrix in a block, for [`QuantSpec::format_for`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Fused query/key/value projection (as stored in the checkpoint).
    Qkv,
    /// Attention output projection.
    O,
    /// MLP gate projection.
    Gate,
    /// MLP up projection.
    Up,
    /// Fused gate/up projection (as stored in the checkpoint).
    GateUp,
    /// MLP down projection.
    Down,
    /// The output head.
    Output,
}

impl QuantSpec {
    /// The format for a matrix of `role` in `layer` of `layers`, with rows of
    /// `cols` weights; `None` means f32.
    ///
    /// K-quants need rows of whole 256-weight blocks; narrower rows fall
    /// back as llama.cpp does (`q4_k` → `q5_0`, `q5_k` → `q5_1`, `q6_k` →
    /// `q8_0`), and a GGUF format whose block still does not divide the row
    /// falls back to f32. Native formats pad rows and always apply.
    pub fn format_for(self, role: Role, layer: usize, layers: usize, cols: usize) -> Option<Format> {
        let wanted = match self {
            QuantSpec::F32 => return None,
            QuantSpec::Uniform(f) => f,
            QuantSpec::Q4KM => {
                let more_bits = use_more_bits(layer, layers);
                match role {
                    Role::Output => Format::Q6K,
                    Role::V | Role::Down if more_bits => Format::Q6K,
                    Role::Qkv => Format::Q5K,
                    _ => Format::Q4K,
                }
            }
        };
        fit(wanted, cols)
    }
}

/// llama.cpp's `use_more_bits(i_layer, n_layers)`.
fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// `format`, or its fallback for rows of `cols` weights.
fn fit(format: Format, cols: usize) -> Option<Format> {
    if !format.is_gguf() {
        return Some(format);
    }
    let format = if cols.is_multiple_of(format.info().block_len) {
        format
    } else {
        match format {
            Format::Q4K => Format::Q5_0,
            Format::Q5K => Format::Q5_1,
            Format::Q6K => Format::Q8_0,
            other => other,
        }
    };
    cols.is_multiple_of(format.info().block_len).then_some(format)
}

impl fmt::Display for QuantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantSpec::F32 => f.write_str("f32"),
            QuantSpec::Uniform(format) => write!(f, "{format}"),
            QuantSpec::Q4KM => f.write_str("q4_k_m"),
        }
    }
}

impl FromStr for QuantSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(QuantSpec::F32),
            "q4_k_m" | "default" => Ok(QuantSpec::Q4KM),
            "f16" | "bf16" => Err(ModelError::Unsupported(format!(
                "--quant {s}: 16-bit float weights have no kernel yet; use f32, q8_0 or a quantized format"
            ))),
            other => other
                .parse::<Format>()
                .map(QuantSpec::Uniform)
                .map_err(|e| ModelError::Invalid(format!("--quant {s}: {e}; also f32 and q4_k_m (the default)"))),
        }
    }
}
