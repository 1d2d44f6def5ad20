//! Seeded random-weight models of a named [`Geometry`], as GGUF files of the
//! `llama` architecture, so that asdsl and llama.cpp can be measured on
//! identical bytes (`asdsl export`), or benchmarked without a download
//! (`asdsl bench --geometry`).
//!
//! - Every matrix is stored split as llama.cpp's `llama` architecture
//!   expects (`attn_q`, `attn_k`, `attn_v`, `ffn_gate`, `ffn_up`, ...), also
//!   for geometries whose real model fuses them (Phi-4-mini): the bytes per
//!   token are the same.
//! - Weights are uniform in ±0.035 (standard deviation 0.02, as at
//!   initialization), from a SplitMix64 stream per row seeded by the seed and
//!   the tensor's name: the same seed gives the same file on any machine and
//!   thread count. Norm weights are 1.
//! - Formats follow a [`QuantSpec`] of GGUF formats (`q4_0`, `q4_k_m`, ...),
//!   with its fallbacks for rows that do not fit a block. The token
//!   embedding takes the matrices' format (the output head's when tied).
//! - The vocabulary is SentencePiece-style (`tokenizer.ggml.model = llama`):
//!   `<unk>`, `<s>`, `</s>`, the 256 byte tokens, printable ASCII with and
//!   without the word prefix `▁`, two-letter pieces, then filler pieces, so
//!   any text tokenizes (byte fallback) in both tools.

use asdsl_kernels::Format;
use asdsl_kernels::pack::quantize_matrix;
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::geometry::Geometry;
use crate::gguf::{Array, GgmlType, GgufWriter, Value};
use crate::quant::{QuantSpec, Role};

/// Half-width of the uniform weight distribution (standard deviation 0.02).
const WEIGHT_RANGE: f32 = 0.034_641;
/// Context length written to the file.
const CONTEXT_LENGTH: u32 = 4096;

/// A random-weight model to build.
#[derive(Copy, Clone, Debug)]
pub struct RandomModel {
    /// Its shape.
    pub geometry: Geometry,
    /// Weight formats (GGUF formats only: llama.cpp must read the file).
    pub quant: QuantSpec,
    /// The seed of every weight.
    pub seed: u64,
}

impl RandomModel {
    /// The GGUF file, in memory. `progress` is called with (tensors done,
    /// tensors in all).
    pub fn to_gguf(&self, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<GgufWriter> {
        let mut w = GgufWriter::new();
        self.metadata(&mut w)?;
        let tensors = self.tensors()?;
        let total = tensors.len();
        for (done, t) in tensors.iter().enumerate() {
            let (ggml_type, data) = match t.format {
                Some(format) => {
                    let ggml = format.ggml_type().map(GgmlType).ok_or_else(|| {
                        ModelError::Unsupported(format!("{format} is not a GGUF type; export needs GGUF formats"))
                    })?;
                    (ggml, random_blocks(self.seed, &t.name, t.rows, t.cols, format)?)
                }
                None => (GgmlType::F32, norm_weights(t.cols)),
            };
            // ggml order: the contiguous dimension first.
            let dims: Vec<u64> = if t.rows == 1 { vec![t.cols as u64] } else { vec![t.cols as u64, t.rows as u64] };
            w.tensor(t.name.clone(), &dims, ggml_type, data)?;
            progress(done + 1, total);
        }
        Ok(w)
    }

    /// llama.cpp's `general.file_type` for the spec (its `llama_ftype`).
    fn file_type(&self) -> u32 {
        match self.quant {
            QuantSpec::Q4KM => 15,
            QuantSpec::F32 => 0,
            QuantSpec::Uniform(f) => match f {
                Format::Q4_0 => 2,
                Format::Q4_1 => 3,
                Format::Q8_0 => 7,
                Format::Q5_0 => 8,
                Format::Q5_1 => 9,
                Format::Q4K => 14, // Q4_K_S: every matrix Q4_K
                Format::Q5K => 16, // Q5_K_S
                Format::Q6K => 18,
                Format::Native(_) => 0,
            },
        }
    }

    fn metadata(&self, w: &mut GgufWriter) -> Result<()> {
        let g = &self.geometry;
        let u32_of = |v: usize| -> Result<Value> {
            u32::try_from(v).map(Value::U32).map_err(|_| ModelError::Invalid(format!("{v} does not fit a u32")))
        };
        w.metadata("general.architecture", Value::String("llama".into()))?;
        w.metadata(
            "general.name",
            Value::String(format!("asdsl random {} {} seed {}", g.name, self.quant, self.seed)),
        )?;
        w.metadata("general.file_type", Value::U32(self.file_type()))?;
        w.metadata("general.quantization_version", Value::U32(2))?;
        w.metadata("llama.context_length", Value::U32(CONTEXT_LENGTH))?;
        w.metadata("llama.embedding_length", u32_of(g.hidden)?)?;
        w.metadata("llama.block_count", u32_of(g.layers)?)?;
        w.metadata("llama.feed_forward_length", u32_of(g.ffn)?)?;
        w.metadata("llama.attention.head_count", u32_of(g.heads)?)?;
        w.metadata("llama.attention.head_count_kv", u32_of(g.kv_heads)?)?;
        w.metadata("llama.attention.key_length", u32_of(g.head_dim)?)?;
        w.metadata("llama.attention.value_length", u32_of(g.head_dim)?)?;
        w.metadata("llama.rope.dimension_count", u32_of(g.head_dim)?)?;
        w.metadata("llama.rope.freq_base", Value::F32(10_000.0))?;
        w.metadata("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))?;
        w.metadata("llama.vocab_size", u32_of(g.vocab)?)?;
        let (tokens, scores, types) = vocabulary(g.vocab)?;
        w.metadata("tokenizer.ggml.model", Value::String("llama".into()))?;
        w.metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))?;
        w.metadata("tokenizer.ggml.scores", Value::Array(Array::F32(scores)))?;
        w.metadata("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))?;
        w.metadata("tokenizer.ggml.unknown_token_id", Value::U32(0))?;
        w.metadata("tokenizer.ggml.bos_token_id", Value::U32(1))?;
        w.metadata("tokenizer.ggml.eos_token_id", Value::U32(2))?;
        w.metadata("tokenizer.ggml.add_bos_token", Value::Bool(true))?;
        w.metadata("tokenizer.ggml.add_eos_token", Value::Bool(false))?;
        w.metadata("tokenizer.ggml.add_space_prefix", Value::Bool(true))?;
        Ok(())
    }

    /// Every tensor, in llama.cpp's order.
    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        let g = &self.geometry;
        let (h, n) = (g.hidden, g.layers);
        let spec = self.quant;
        let format = |role: Role, layer: usize, cols: usize| -> Result<Option<Format>> {
            match spec.format_for(role, layer, n, cols) {
                Some(f) if f.is_gguf() => Ok(Some(f)),
                Some(f) => Err(ModelError::Unsupported(format!(
                    "--quant {spec}: {f} is not a GGUF type; llama.cpp could not read the file"
                ))),
                None => Err(ModelError::Unsupported(format!(
                    "--quant {spec}: a row of {cols} weights has no GGUF format in this spec (f32 matrices are not exported)"
                ))),
            }
        };
        let matrix = |name: String, rows, cols, f: Option<Format>| TensorSpec { name, rows, cols, format: f };
        let norm = |name: String| TensorSpec { name, rows: 1, cols: h, format: None };
        let output_format = format(Role::Output, n, h)?;
        let embed_format = if g.tied_embeddings { output_format } else { format(Role::Q, 0, h)? };
        let mut out = vec![matrix("token_embd.weight".into(), g.vocab, h, embed_format)];
        for i in 0..n {
            let p = format!("blk.{i}");
            out.push(norm(format!("{p}.attn_norm.weight")));
            out.push(matrix(format!("{p}.attn_q.weight"), g.q_rows(), h, format(Role::Q, i, h)?));
            out.push(matrix(format!("{p}.attn_k.weight"), g.kv_rows(), h, format(Role::K, i, h)?));
            out.push(matrix(format!("{p}.attn_v.weight"), g.kv_rows(), h, format(Role::V, i, h)?));
            out.push(matrix(format!("{p}.attn_output.weight"), h, g.q_rows(), format(Role::O, i, g.q_rows())?));
            out.push(norm(format!("{p}.ffn_norm.weight")));
            out.push(matrix(format!("{p}.ffn_gate.weight"), g.ffn, h, format(Role::Gate, i, h)?));
            out.push(matrix(format!("{p}.ffn_up.weight"), g.ffn, h, format(Role::Up, i, h)?));
            out.push(matrix(format!("{p}.ffn_down.weight"), h, g.ffn, format(Role::Down, i, g.ffn)?));
        }
        out.push(norm("output_norm.weight".into()));
        if !g.tied_embeddings {
            out.push(matrix("output.weight".into(), g.vocab, h, output_format));
        }
        Ok(out)
    }
}

/// One tensor of the file: a matrix (`rows x cols`, quantized) or a norm
/// weight vector (`rows == 1`, f32).
struct TensorSpec {
    name: String,
    rows: usize,
    cols: usize,
    format: Option<Format>,
}

/// The f32 bytes of a norm weight of `len` ones.
fn norm_weights(len: usize) -> Vec<u8> {
    (0..len).flat_map(|_| 1.0f32.to_le_bytes()).collect()
}

/// SplitMix64: a small, fast, well-mixed generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a tensor name, mixed with the seed.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `rows x cols` random weights quantized to `format`, rows in parallel.
fn random_blocks(seed: u64, name: &str, rows: usize, cols: usize, format: Format) -> Result<Vec<u8>> {
    const ROWS_PER_JOB: usize = 64;
    let base = tensor_seed(seed, name);
    let row_bytes = format.row_bytes(cols)?;
    let mut out = vec![0u8; rows * row_bytes];
    out.par_chunks_mut(ROWS_PER_JOB * row_bytes).enumerate().try_for_each(|(job, dst)| -> Result<()> {
        let first = job * ROWS_PER_JOB;
        let n = dst.len() / row_bytes;
        let mut weights = Vec::with_capacity(n * cols);
        for row in first..first + n {
            let mut state = base ^ (row as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            weights.extend((0..cols).map(|_| {
                let unit = (splitmix(&mut state) >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
                (2.0 * unit - 1.0) * WEIGHT_RANGE
            }));
        }
        dst.copy_from_slice(&quantize_matrix(format, n, cols, &weights)?);
        Ok(())
    })?;
    Ok(out)
}

/// A SentencePiece-style vocabulary of `size` tokens: (pieces, scores,
/// token types: 1 normal, 2 unknown, 3 control, 6 byte).
fn vocabulary(size: usize) -> Result<(Vec<String>, Vec<f32>, Vec<i32>)> {
    let mut pieces: Vec<(String, i32)> = vec![("<unk>".into(), 2), ("<s>".into(), 3), ("</s>".into(), 3)];
    pieces.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 6)));
    let printable = || (b'!'..=b'~').map(char::from);
    pieces.push(("\u{2581}".into(), 1));
    pieces.extend(printable().map(|c| (format!("\u{2581}{c}"), 1)));
    pieces.extend(printable().map(|c| (c.to_string(), 1)));
    for a in b'a'..=b'z' {
        for b in b'a'..=b'z' {
            let pair = format!("{}{}", char::from(a), char::from(b));
            pieces.push((format!("\u{2581}{pair}"), 1));
            pieces.push((pair, 1));
        }
    }
    if size < pieces.len() {
        return Err(ModelError::Invalid(format!(
            "a vocabulary of {size} tokens is too small for the random model's {} base pieces",
            pieces.len()
        )));
    }
    let mut filler = 0usize;
    while pieces.len() < size {
        pieces.push((format!("\u{2581}w{filler}"), 1));
        filler += 1;
    }
    // Earlier pieces merge first; control and byte tokens score 0.
    let scores = pieces.iter().enumerate().map(|(i, (_, ty))| if *ty == 1 { -(i as f32) } else { 0.0 }).collect();
    let types = pieces.iter().map(|(_, ty)| *ty).collect();
    Ok((pieces.into_iter().map(|(p, _)| p).collect(), scores, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_unique_and_sized() {
        let (tokens, scores, types) = vocabulary(32000).unwrap();
        assert_eq!((tokens.len(), scores.len(), types.len()), (32000, 32000, 32000));
        let unique: std::collections::HashSet<_> = tokens.iter().collect();
        assert_eq!(unique.len(), tokens.len());
        assert!(vocabulary(100).is_err());
    }

    #[test]
    fn weights_do_not_depend_on_threads() {
        let a = random_blocks(7, "t", 130, 64, Format::Q8_0).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let b = pool.install(|| random_blocks(7, "t", 130, 64, Format::Q8_0)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, random_blocks(8, "t", 130, 64, Format::Q8_0).unwrap());
    }
}
