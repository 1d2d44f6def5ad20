//! Loading a GGUF file (llama, qwen2 and phi3 architectures): quantized
//! tensors run as stored, in their own format (never dequantized and
//! requantized); f32/f16/bf16 tensors become f32 matrices.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use memmap2::Mmap;
use rayon::prelude::*;

use crate::config::{Arch, ModelConfig, RopeScaling, RopeStyle};
use crate::error::{ModelError, Result};
use crate::gguf::{GgmlType, Gguf, GgufModelConfig, TensorInfo};
use crate::linear::Linear;
use crate::load_hf::Ticker;
use crate::model::{Embedding, GateUp, Layer, LoadInfo, LoadOptions, Model, Qkv};
use crate::resolve::Resolver;

impl Model {
    /// Loads a GGUF file. `options.quant` does not apply: tensors run as stored.
    pub fn load_gguf(path: &Path, options: &LoadOptions<'_>) -> Result<Model> {
        let start = Instant::now();
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is opened read-only and mapped privately; we rely
        // on it not being modified during the load (every tensor is copied
        // out before the map is dropped). All accesses are bounds checked.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        Model::load_gguf_bytes(&mmap, path, options, start)
    }

    /// Loads a GGUF file held in memory (`path` names it in messages);
    /// `start` is when the load began (for [`LoadInfo::load_seconds`]).
    pub fn load_gguf_bytes(bytes: &[u8], path: &Path, options: &LoadOptions<'_>, start: Instant) -> Result<Model> {
        let gguf = Gguf::parse(bytes).map_err(|e| gguf_err(path, e))?;
        let config = config_from_gguf(&gguf, path)?;
        crate::memory::check(&path.display().to_string(), crate::memory::gguf_load_bytes(gguf.header()))?;
        let c = &config;
        let (h, qd, kvd, inter, vocab) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.vocab_size);
        let n = c.num_layers;
        let resolver = Resolver::new(options.plan, options.threads, options.activations);
        let ticker = Ticker::new(n + 1, options.progress);
        let t = |name: &str| -> Result<&TensorInfo> {
            gguf.tensor(name).ok_or_else(|| ModelError::MissingTensor { name: name.into(), path: path.into() })
        };
        let shape = |info: &TensorInfo, rows: usize, cols: usize| -> Result<()> {
            if info.cols() as usize != cols || info.rows() as usize != rows {
                return Err(ModelError::TensorShape {
                    name: info.name.clone(),
                    expected: vec![rows, cols],
                    found: info.dims.iter().rev().map(|&d| d as usize).collect(),
                });
            }
            Ok(())
        };
        let vector = |name: &str, len: usize| -> Result<Vec<f32>> {
            let info = t(name)?;
            shape(info, 1, len)?;
            float_data(info, gguf.tensor_bytes(info))
        };
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            let info = t(name)?;
            shape(info, rows, cols)?;
            let bytes = gguf.tensor_bytes(info);
            match info.format() {
                Some(format) => Linear::from_blocks(rows, cols, bytes, format, &resolver),
                None => Linear::f32(rows, cols, float_data(info, bytes)?),
            }
        };
        // Matrices that read the same input and share a format run as one
        // (rows stacked: a block-quantized row is self-contained): one GEMV
        // call instead of several per token. `None` when they cannot.
        let stacked = |parts: &[(&str, usize)]| -> Result<Option<Linear>> {
            let mut format = None;
            let mut blocks = Vec::new();
            let mut rows = 0;
            for &(name, part_rows) in parts {
                let info = t(name)?;
                shape(info, part_rows, h)?;
                match (info.format(), format) {
                    (Some(f), None) => format = Some(f),
                    (Some(f), Some(g)) if f == g => {}
                    _ => return Ok(None),
                }
                blocks.extend_from_slice(gguf.tensor_bytes(info));
                rows += part_rows;
            }
            match format {
                Some(f) => Linear::from_blocks(rows, h, &blocks, f, &resolver).map(Some),
                None => Ok(None),
            }
        };
        let layers: Vec<Layer> = (0..n)
            .into_par_iter()
            .map(|i| -> Result<Layer> {
                let p = format!("blk.{i}");
                let qkv = if gguf.tensor(&format!("{p}.attn_qkv.weight")).is_some() {
                    Qkv::Fused(matrix(&format!("{p}.attn_qkv.weight"), qd + 2 * kvd, h)?)
                } else {
                    let (qn, kn, vn) =
                        (format!("{p}.attn_q.weight"), format!("{p}.attn_k.weight"), format!("{p}.attn_v.weight"));
                    let biased = gguf.tensor(&format!("{p}.attn_q.bias")).is_some();
                    let bias = |name: &str, rows| vector(&format!("{p}.{name}.bias"), rows);
                    match stacked(&[(&qn, qd), (&kn, kvd), (&vn, kvd)])? {
                        Some(mut qkv) => {
                            if biased {
                                qkv = qkv.with_bias(
                                    [bias("attn_q", qd)?, bias("attn_k", kvd)?, bias("attn_v", kvd)?].concat(),
                                )?;
                            }
                            Qkv::Fused(qkv)
                        }
                        None => {
                            let mut q = matrix(&qn, qd, h)?;
                            let mut k = matrix(&kn, kvd, h)?;
                            let mut v = matrix(&vn, kvd, h)?;
                            if biased {
                                q = q.with_bias(bias("attn_q", qd)?)?;
                                k = k.with_bias(bias("attn_k", kvd)?)?;
                                v = v.with_bias(bias("attn_v", kvd)?)?;
                            }
                            Qkv::Split { q, k, v }
                        }
                    }
                };
                let gate_up = if gguf.tensor(&format!("{p}.ffn_gate.weight")).is_some() {
                    let (gn, un) = (format!("{p}.ffn_gate.weight"), format!("{p}.ffn_up.weight"));
                    match stacked(&[(&gn, inter), (&un, inter)])? {
                        Some(fused) => GateUp::Fused(fused),
                        None => GateUp::Split { gate: matrix(&gn, inter, h)?, up: matrix(&un, inter, h)? },
                    }
                } else {
                    // Phi-3: ffn_up holds gate then up.
                    GateUp::Fused(matrix(&format!("{p}.ffn_up.weight"), 2 * inter, h)?)
                };
                let layer = Layer {
                    attn_norm: vector(&format!("{p}.attn_norm.weight"), h)?,
                    qkv,
                    o: matrix(&format!("{p}.attn_output.weight"), h, qd)?,
                    ffn_norm: vector(&format!("{p}.ffn_norm.weight"), h)?,
                    gate_up,
                    down: matrix(&format!("{p}.ffn_down.weight"), h, inter)?,
                };
                ticker.tick();
                Ok(layer)
            })
            .collect::<Result<_>>()?;
        let embd = t("token_embd.weight")?;
        shape(embd, vocab, h)?;
        let embd_bytes = gguf.tensor_bytes(embd);
        let embed = match embd.format() {
            Some(format) => Embedding::Quantized { format, row_bytes: format.row_bytes(h)?, data: embd_bytes.to_vec() },
            None => Embedding::F32(float_data(embd, embd_bytes)?),
        };
        let output = if gguf.tensor("output.weight").is_some() {
            matrix("output.weight", vocab, h)?
        } else {
            matrix("token_embd.weight", vocab, h)?
        };
        ticker.tick();
        let mut model = Model {
            norm: vector("output_norm.weight", h)?,
            config,
            embed,
            layers,
            output,
            needs_q8: false,
            info: LoadInfo { quant: "as stored".into(), ..LoadInfo::default() },
        };
        model.finish(start, &resolver);
        Ok(model)
    }
}

fn gguf_err(path: &Path, e: crate::gguf::GgufError) -> ModelError {
    ModelError::GgufFile { path: path.into(), error: e }
}

/// The runtime configuration of a GGUF file's metadata.
fn config_from_gguf(gguf: &Gguf<'_>, path: &Path) -> Result<ModelConfig> {
    let g = GgufModelConfig::from_header(gguf.header()).map_err(|e| gguf_err(path, e))?;
    let arch = Arch::from_name(&g.architecture).ok_or_else(|| {
        ModelError::config(path, "general.architecture", format!("`{}` is not supported", g.architecture))
    })?;
    let key = |k: &str| format!("{}.{k}", g.architecture);
    let rope_scaling = match g.rope_scaling_type.as_deref() {
        None | Some("none") => RopeScaling::None,
        Some("linear") => RopeScaling::Linear { factor: g.rope_scaling_factor.unwrap_or(1.0) },
        Some(other) => {
            return Err(ModelError::config(
                path,
                key("rope.scaling.type"),
                format!("`{other}` is not supported in GGUF files yet"),
            ));
        }
    };
    if arch == Arch::Phi3 && gguf.tensor("rope_factors_long.weight").is_some() {
        return Err(ModelError::Unsupported(format!(
            "{}: LongRoPE factors in GGUF files are not supported yet",
            path.display()
        )));
    }
    let u32_key = |k: &str| -> Result<Option<u32>> { gguf.get_u32(k).map_err(|e| gguf_err(path, e)) };
    let bos = u32_key("tokenizer.ggml.bos_token_id")?;
    let eos: Vec<u32> = [u32_key("tokenizer.ggml.eos_token_id")?, u32_key("tokenizer.ggml.eot_token_id")?]
        .into_iter()
        .flatten()
        .collect();
    let config = ModelConfig {
        arch,
        hidden_size: g.hidden_size as usize,
        intermediate_size: g.intermediate_size as usize,
        num_layers: g.num_layers as usize,
        num_heads: g.num_heads as usize,
        num_kv_heads: g.num_kv_heads as usize,
        head_dim: g.head_dim as usize,
        vocab_size: g.vocab_size as usize,
        rms_norm_eps: g.rms_norm_eps,
        rope_theta: g.rope_theta,
        rotary_dim: g.rope_dims as usize,
        // llama.cpp: llama runs RoPE in normal (interleaved) mode on q/k rows
        // permuted at conversion; qwen2 and phi3 in NEOX mode.
        rope_style: if arch == Arch::Llama { RopeStyle::Interleaved } else { RopeStyle::Neox },
        rope_scaling,
        max_position_embeddings: g.context_length as usize,
        tie_word_embeddings: g.tied_embeddings,
        qkv_bias: gguf.tensor("blk.0.attn_q.bias").is_some(),
        bos_token_id: bos,
        eos_token_ids: eos,
    };
    config.validate(path)?;
    Ok(config)
}

/// f32, f16 or bf16 tensor data as f32.
fn float_data(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let dtype = match info.ggml_type {
        GgmlType::F32 => safetensors::Dtype::F32,
        GgmlType::F16 => safetensors::Dtype::F16,
        GgmlType::BF16 => safetensors::Dtype::BF16,
        other => {
            return Err(ModelError::UnsupportedDtype { name: info.name.clone(), dtype: other.name().to_string() });
        }
    };
    crate::hf::to_f32(&info.name, dtype, bytes)
}
