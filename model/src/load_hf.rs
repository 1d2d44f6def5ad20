//! Loading a Hugging Face model folder (config.json and safetensors): float
//! matrices quantized as `--quant` says, then packed for their variants.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::hf::SafetensorsFiles;
use crate::model::{Embedding, GateUp, Layer, LoadInfo, LoadOptions, Model, Qkv};
use crate::quant::{QuantSpec, Role};
use crate::resolve::Resolver;
use crate::stored::StoredMatrix;

/// A Hugging Face checkpoint, read a layer at a time into stored matrices
/// (quantized as the [`QuantSpec`] says). Matrices that read the same input
/// and get the same format are stacked into one (q/k/v, gate/up).
#[derive(Debug)]
pub struct HfCheckpoint {
    dir: PathBuf,
    /// The configuration.
    pub config: ModelConfig,
    files: SafetensorsFiles,
    spec: QuantSpec,
}

impl HfCheckpoint {
    /// Opens the folder `dir`: its config.json and safetensors files.
    pub fn open(dir: &Path, spec: QuantSpec) -> Result<HfCheckpoint> {
        if !dir.is_dir() {
            return Err(ModelError::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder")));
        }
        let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
        let files = SafetensorsFiles::open_dir(dir)?;
        Ok(HfCheckpoint { dir: dir.to_path_buf(), config, files, spec })
    }

    /// The token embedding table (`vocab x hidden`, f32).
    pub fn embedding(&self) -> Result<Vec<f32>> {
        let c = &self.config;
        self.files.f32("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])
    }

    /// The final norm weight.
    pub fn norm(&self) -> Result<Vec<f32>> {
        self.files.f32("model.norm.weight", &[self.config.hidden_size])
    }

    /// The output head; `embedding` is the embedding table, which it is when
    /// the embeddings are tied.
    pub fn output(&self, embedding: &[f32]) -> Result<StoredMatrix> {
        let c = &self.config;
        let (vocab, h, n) = (c.vocab_size, c.hidden_size, c.num_layers);
        let format = self.spec.format_for(Role::Output, n, n, h);
        if c.tie_word_embeddings {
            return StoredMatrix::quantize(vocab, h, embedding.to_vec(), format);
        }
        if !self.files.contains("lm_head.weight") {
            return Err(ModelError::MissingTensor { name: "lm_head.weight".into(), path: self.dir.clone() });
        }
        StoredMatrix::quantize(vocab, h, self.files.f32("lm_head.weight", &[vocab, h])?, format)
    }

    /// Block `i`, its matrices quantized.
    pub fn layer(&self, i: usize) -> Result<Layer<StoredMatrix>> {
        let c = &self.config;
        let files = &self.files;
        let (h, qd, kvd, inter, n) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.num_layers);
        let format = |role: Role, cols: usize| self.spec.format_for(role, i, n, cols);
        let p = format!("model.layers.{i}");
        let tensor = |name: &str, shape: &[usize]| files.f32(&format!("{p}.{name}"), shape);
        let qkv_bias = |name: &str, rows: usize| -> Result<Option<Vec<f32>>> {
            if c.qkv_bias { Ok(Some(tensor(&format!("self_attn.{name}.bias"), &[rows])?)) } else { Ok(None) }
        };
        let with_bias = |m: StoredMatrix, bias: Option<Vec<f32>>| match bias {
            Some(b) => m.with_bias(b),
            None => Ok(m),
        };
        let qkv = if files.contains(&format!("{p}.self_attn.qkv_proj.weight")) {
            let w = tensor("self_attn.qkv_proj.weight", &[qd + 2 * kvd, h])?;
            let m = StoredMatrix::quantize(qd + 2 * kvd, h, w, format(Role::Qkv, h))?;
            Qkv::Fused(with_bias(m, qkv_bias("qkv_proj", qd + 2 * kvd)?)?)
        } else {
            let wq = tensor("self_attn.q_proj.weight", &[qd, h])?;
            let wk = tensor("self_attn.k_proj.weight", &[kvd, h])?;
            let wv = tensor("self_attn.v_proj.weight", &[kvd, h])?;
            let (bq, bk, bv) = (qkv_bias("q_proj", qd)?, qkv_bias("k_proj", kvd)?, qkv_bias("v_proj", kvd)?);
            let (fq, fk, fv) = (format(Role::Q, h), format(Role::K, h), format(Role::V, h));
            if fq == fk && fk == fv {
                let m = StoredMatrix::quantize(qd + 2 * kvd, h, [wq, wk, wv].concat(), fq)?;
                let bias = match (bq, bk, bv) {
                    (Some(bq), Some(bk), Some(bv)) => Some([bq, bk, bv].concat()),
                    _ => None,
                };
                Qkv::Fused(with_bias(m, bias)?)
            } else {
                Qkv::Split {
                    q: with_bias(StoredMatrix::quantize(qd, h, wq, fq)?, bq)?,
                    k: with_bias(StoredMatrix::quantize(kvd, h, wk, fk)?, bk)?,
                    v: with_bias(StoredMatrix::quantize(kvd, h, wv, fv)?, bv)?,
                }
            }
        };
        let o = StoredMatrix::quantize(h, qd, tensor("self_attn.o_proj.weight", &[h, qd])?, format(Role::O, qd))?;
        let gate_up = if files.contains(&format!("{p}.mlp.gate_up_proj.weight")) {
            let w = tensor("mlp.gate_up_proj.weight", &[2 * inter, h])?;
            GateUp::Fused(StoredMatrix::quantize(2 * inter, h, w, format(Role::GateUp, h))?)
        } else {
            let wg = tensor("mlp.gate_proj.weight", &[inter, h])?;
            let wu = tensor("mlp.up_proj.weight", &[inter, h])?;
            let (fg, fu) = (format(Role::Gate, h), format(Role::Up, h));
            if fg == fu {
                GateUp::Fused(StoredMatrix::quantize(2 * inter, h, [wg, wu].concat(), fg)?)
            } else {
                GateUp::Split {
                    gate: StoredMatrix::quantize(inter, h, wg, fg)?,
                    up: StoredMatrix::quantize(inter, h, wu, fu)?,
                }
            }
        };
        let down =
            StoredMatrix::quantize(h, inter, tensor("mlp.down_proj.weight", &[h, inter])?, format(Role::Down, inter))?;
        Ok(Layer {
            attn_norm: tensor("input_layernorm.weight", &[h])?,
            qkv,
            o,
            ffn_norm: tensor("post_attention_layernorm.weight", &[h])?,
            gate_up,
            down,
        })
    }
}

/// Calls `progress` with (done, total) each time `tick` is called, from any thread.
pub(crate) struct Ticker<'a> {
    done: std::sync::atomic::AtomicUsize,
    total: usize,
    progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
}

impl<'a> Ticker<'a> {
    pub(crate) fn new(total: usize, progress: Option<&'a (dyn Fn(usize, usize) + Sync)>) -> Ticker<'a> {
        Ticker { done: std::sync::atomic::AtomicUsize::new(0), total, progress }
    }

    pub(crate) fn tick(&self) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(progress) = self.progress {
            progress(done, self.total);
        }
    }
}

impl Model {
    /// Loads a Hugging Face model folder (config.json and safetensors),
    /// quantizing float matrices as `options.quant` says.
    pub fn load_hf(dir: &Path, options: &LoadOptions<'_>) -> Result<Model> {
        let start = Instant::now();
        let checkpoint = HfCheckpoint::open(dir, options.quant)?;
        crate::memory::check(&dir.display().to_string(), crate::memory::hf_dir_load_bytes(dir, options.quant)?)?;
        let resolver = Resolver::new(options.plan, options.threads, options.activations);
        let n = checkpoint.config.num_layers;
        let ticker = Ticker::new(n + 1, options.progress);
        let embedding = checkpoint.embedding()?;
        let layers: Vec<Layer> = (0..n)
            .into_par_iter()
            .map(|i| {
                let layer = checkpoint.layer(i)?.try_map(|m| m.into_linear(&resolver))?;
                ticker.tick();
                Ok(layer)
            })
            .collect::<Result<_>>()?;
        let output = checkpoint.output(&embedding)?.into_linear(&resolver)?;
        ticker.tick();
        let mut model = Model {
            norm: checkpoint.norm()?,
            config: checkpoint.config,
            embed: Embedding::F32(embedding),
            layers,
            output,
            needs_q8: false,
            info: LoadInfo { quant: options.quant.to_string(), ..LoadInfo::default() },
        };
        model.finish(start, &resolver);
        Ok(model)
    }
}
