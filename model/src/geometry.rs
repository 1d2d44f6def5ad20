//! Named model geometries: the shapes of well-known models, so that they
//! can be tuned, benchmarked and (later) built with random weights without
//! a download.
//!
//! A plain data module: [`Geometry`] holds the dimensions, and
//! [`Geometry::matrices`] / [`Geometry::matrix_keys`] list the GEMVs of one
//! decode step (one token), with how many times each runs per token.
//! Matrices are `rows x cols` = output features x input features (the
//! weight as stored by Hugging Face, `[out, in]`).
//!
//! | name | model | hidden | layers | heads / kv | head dim | FFN | vocab | fused qkv, gate_up | tied |
//! |---|---|---|---|---|---|---|---|---|---|
//! | `smollm2-135m` | SmolLM2-135M | 576 | 30 | 9 / 3 | 64 | 1536 | 49152 | no | yes |
//! | `llama-1b` | TinyLlama-1.1B | 2048 | 22 | 32 / 4 | 64 | 5632 | 32000 | no | no |
//! | `phi4-mini` | Phi-4-mini | 3072 | 32 | 24 / 8 | 128 | 8192 | 200064 | yes | yes |
//! | `llama-8b` | Llama-3-8B | 4096 | 32 | 32 / 8 | 128 | 14336 | 128256 | no | no |
//!
//! Every matrix, the output head included, uses the one weight format
//! passed to [`Geometry::matrix_keys`] (a real GGUF file may keep the head or
//! the embedding in another type).

use std::fmt;

use asdsl_kernels::Format;
use asdsl_kernels::KernelError;
use asdsl_kernels::tune::MatrixKey;

/// The shape of a decoder-only transformer (llama family: attention with
/// grouped query heads, SwiGLU MLP).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Short name (`phi4-mini`).
    pub name: &'static str,
    /// The model it describes.
    pub model: &'static str,
    /// Hidden size (residual stream width).
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// MLP intermediate size.
    pub ffn: usize,
    /// Vocabulary size (rows of the output head).
    pub vocab: usize,
    /// Q, K and V are one matrix (`qkv_proj`).
    pub fused_qkv: bool,
    /// Gate and up are one matrix (`gate_up_proj`).
    pub fused_gate_up: bool,
    /// The output head is the token embedding.
    pub tied_embeddings: bool,
}

/// SmolLM2-135M.
pub const SMOLLM2_135M: Geometry = Geometry {
    name: "smollm2-135m",
    model: "SmolLM2-135M",
    hidden: 576,
    layers: 30,
    heads: 9,
    kv_heads: 3,
    head_dim: 64,
    ffn: 1536,
    vocab: 49152,
    fused_qkv: false,
    fused_gate_up: false,
    tied_embeddings: true,
};

/// TinyLlama-1.1B.
pub const LLAMA_1B: Geometry = Geometry {
    name: "llama-1b",
    model: "TinyLlama-1.1B",
    hidden: 2048,
    layers: 22,
    heads: 32,
    kv_heads: 4,
    head_dim: 64,
    ffn: 5632,
    vocab: 32000,
    fused_qkv: false,
    fused_gate_up: false,
    tied_embeddings: false,
};

/// Phi-4-mini (phi3 architecture).
pub const PHI4_MINI: Geometry = Geometry {
    name: "phi4-mini",
    model: "Phi-4-mini",
    hidden: 3072,
    layers: 32,
    heads: 24,
    kv_heads: 8,
    head_dim: 128,
    ffn: 8192,
    vocab: 200064,
    fused_qkv: true,
    fused_gate_up: true,
    tied_embeddings: true,
};

/// Llama-3-8B.
pub const LLAMA_8B: Geometry = Geometry {
    name: "llama-8b",
    model: "Llama-3-8B",
    hidden: 4096,
    layers: 32,
    heads: 32,
    kv_heads: 8,
    head_dim: 128,
    ffn: 14336,
    vocab: 128256,
    fused_qkv: false,
    fused_gate_up: false,
    tied_embeddings: false,
};

/// Every named geometry, smallest first.
pub const GEOMETRIES: [Geometry; 4] = [SMOLLM2_135M, LLAMA_1B, PHI4_MINI, LLAMA_8B];

/// Looks a geometry up by name (case-insensitive).
pub fn geometry(name: &str) -> Option<Geometry> {
    GEOMETRIES.iter().copied().find(|g| g.name.eq_ignore_ascii_case(name))
}

/// The names of every geometry, comma-separated (for messages).
pub fn names() -> String {
    GEOMETRIES.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
}

/// One weight matrix of a decode step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DecodeMatrix {
    /// Its role: `qkv`, `q`, `k`, `v`, `o`, `gate_up`, `gate`, `up`, `down`, `output`.
    pub name: &'static str,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// How many such matrices one token multiplies (layers, or 1 for the head).
    pub count: usize,
}

/// A distinct GEMV key of a decode step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key: MatrixKey,
    /// The roles that share it, joined by `+` (`q+o`).
    pub names: String,
    /// Calls per token.
    pub count: usize,
}

impl Geometry {
    /// Rows of the fused QKV projection (or of Q alone, plus K and V).
    pub fn q_rows(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Rows of K (and of V).
    pub fn kv_rows(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Every weight matrix one decode step multiplies, in forward order.
    pub fn matrices(&self) -> Vec<DecodeMatrix> {
        let (h, l) = (self.hidden, self.layers);
        let m = |name, rows, cols, count| DecodeMatrix { name, rows, cols, count };
        let mut out = Vec::new();
        if self.fused_qkv {
            out.push(m("qkv", self.q_rows() + 2 * self.kv_rows(), h, l));
        } else {
            out.push(m("q", self.q_rows(), h, l));
            out.push(m("k", self.kv_rows(), h, l));
            out.push(m("v", self.kv_rows(), h, l));
        }
        out.push(m("o", h, self.q_rows(), l));
        if self.fused_gate_up {
            out.push(m("gate_up", 2 * self.ffn, h, l));
        } else {
            out.push(m("gate", self.ffn, h, l));
            out.push(m("up", self.ffn, h, l));
        }
        out.push(m("down", h, self.ffn, l));
        out.push(m("output", self.vocab, h, 1));
        out
    }

    /// The distinct dense one-column GEMV keys of one decode step in
    /// `format`, with their roles and calls per token, in forward order.
    /// Fails if a matrix does not fit the format (GGUF formats need rows of
    /// whole blocks, e.g. 256 columns for the K formats).
    pub fn matrix_keys(&self, format: Format) -> Result<Vec<KeyUse>, KernelError> {
        let mut out: Vec<KeyUse> = Vec::new();
        for m in self.matrices() {
            format.row_bytes(m.cols)?;
            let key = MatrixKey::dense(format, m.rows, m.cols);
            match out.iter_mut().find(|u| u.key == key) {
                Some(u) => {
                    u.names.push('+');
                    u.names.push_str(m.name);
                    u.count += m.count;
                }
                None => out.push(KeyUse { key, names: m.name.to_string(), count: m.count }),
            }
        }
        Ok(out)
    }

    /// Weight bytes one token reads in `format` (every matrix once per use).
    pub fn bytes_per_token(&self, format: Format) -> Result<u64, KernelError> {
        let mut total = 0u64;
        for m in self.matrices() {
            total += format.row_bytes(m.cols)? as u64 * m.rows as u64 * m.count as u64;
        }
        Ok(total)
    }

    /// Weights (parameters) of the GEMV matrices, the head included once.
    pub fn gemv_parameters(&self) -> u64 {
        self.matrices().iter().map(|m| (m.rows * m.cols * m.count) as u64).sum()
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): hidden {}, {} layers, {}/{} heads of {}, FFN {}, vocab {}{}{}{}",
            self.name,
            self.model,
            self.hidden,
            self.layers,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.ffn,
            self.vocab,
            if self.fused_qkv { ", fused qkv" } else { "" },
            if self.fused_gate_up { ", fused gate_up" } else { "" },
            if self.tied_embeddings { ", tied embeddings" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve() {
        for g in GEOMETRIES {
            assert_eq!(geometry(g.name), Some(g));
            assert_eq!(g.heads % g.kv_heads, 0, "{}", g.name);
        }
        assert_eq!(geometry("PHI4-MINI"), Some(PHI4_MINI));
        assert!(geometry("gpt-5").is_none());
    }

    #[test]
    fn phi4_mini_keys() {
        let keys = PHI4_MINI.matrix_keys(Format::Q4_0).unwrap();
        let shapes: Vec<(&str, usize, usize, usize)> =
            keys.iter().map(|u| (u.names.as_str(), u.key.rows, u.key.cols, u.count)).collect();
        assert_eq!(
            shapes,
            [
                ("qkv", 5120, 3072, 32),
                ("o", 3072, 3072, 32),
                ("gate_up", 16384, 3072, 32),
                ("down", 3072, 8192, 32),
                ("output", 200064, 3072, 1),
            ]
        );
        // About 3.8 billion GEMV weights (the embedding, tied, counted once).
        let p = PHI4_MINI.gemv_parameters();
        assert!((3_700_000_000..3_900_000_000).contains(&p), "{p}");
        // Q4_0: 18 bytes per 32 weights.
        assert_eq!(PHI4_MINI.bytes_per_token(Format::Q4_0).unwrap(), p / 32 * 18);
    }

    #[test]
    fn shared_keys_merge() {
        let keys = LLAMA_1B.matrix_keys(Format::Q8_0).unwrap();
        let names: Vec<&str> = keys.iter().map(|u| u.names.as_str()).collect();
        assert_eq!(names, ["q+o", "k+v", "gate+up", "down", "output"]);
        assert_eq!(keys[0].count, 44);
        assert_eq!((keys[1].key.rows, keys[1].key.cols), (256, 2048));
        let keys = LLAMA_8B.matrix_keys(Format::Q4_0).unwrap();
        assert_eq!((keys[2].key.rows, keys[2].key.cols, keys[2].count), (14336, 4096, 64));
        assert_eq!(keys[4].key.rows, 128256);
    }

    #[test]
    fn formats_that_do_not_fit_are_errors() {
        // 576 columns are not whole 256-weight super-blocks.
        assert!(SMOLLM2_135M.matrix_keys(Format::Q4K).is_err());
        assert!(SMOLLM2_135M.matrix_keys(Format::Q4_0).is_ok());
    }
}
