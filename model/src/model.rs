//! A loaded model: its configuration and weights, every matrix already
//! resolved to the kernel variant that runs it. Immutable once loaded; the
//! per-sequence state (KV cache, scratch buffers) is a [`State`](crate::forward::State).

use std::path::Path;
use std::time::Instant;

use asdsl_kernels::Format;
use asdsl_kernels::tune::{LoadedPlan, MatrixKey};
use rayon::prelude::*;

use crate::config::{Arch, ModelConfig};
use crate::error::{ModelError, Result};
use crate::geometry::KeyUse;
use crate::hf::SafetensorsFiles;
use crate::linear::{Linear, dequantize_row};
use crate::quant::{QuantSpec, Role};
use crate::resolve::{Activations, Resolver};

/// The token embedding table.
#[derive(Debug)]
pub enum Embedding {
    /// Row-major f32, `vocab x hidden`.
    F32(Vec<f32>),
    /// Rows of blocks of `format` (as stored in a GGUF file), dequantized one
    /// row per token.
    Quantized {
        /// The format.
        format: Format,
        /// Bytes per row.
        row_bytes: usize,
        /// The rows.
        data: Vec<u8>,
    },
}

impl Embedding {
    /// Writes the embedding of `token` (`hidden` floats) to `out`.
    pub fn row(&self, token: usize, out: &mut [f32]) -> Result<()> {
        let hidden = out.len();
        match self {
            Embedding::F32(table) => {
                let row = table
                    .get(token * hidden..(token + 1) * hidden)
                    .ok_or_else(|| ModelError::Invalid(format!("token {token} is outside the embedding table")))?;
                out.copy_from_slice(row);
                Ok(())
            }
            Embedding::Quantized { format, row_bytes, data } => {
                let row = data
                    .get(token * row_bytes..(token + 1) * row_bytes)
                    .ok_or_else(|| ModelError::Invalid(format!("token {token} is outside the embedding table")))?;
                dequantize_row(*format, row, out)
            }
        }
    }
}

/// The query/key/value projections of a block.
// One value per layer, never moved in a hot path: boxing would only add a hop.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Qkv {
    /// One matrix of `q_dim + 2 kv_dim` rows (q, then k, then v).
    Fused(Linear),
    /// Three matrices (when their formats differ).
    Split {
        /// Query.
        q: Linear,
        /// Key.
        k: Linear,
        /// Value.
        v: Linear,
    },
}

/// The gate and up projections of a block's MLP.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GateUp {
    /// One matrix of `2 * intermediate` rows (gate, then up).
    Fused(Linear),
    /// Two matrices (when their formats differ).
    Split {
        /// Gate.
        gate: Linear,
        /// Up.
        up: Linear,
    },
}

/// One transformer block.
#[derive(Debug)]
pub struct Layer {
    /// RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// q, k, v projections.
    pub qkv: Qkv,
    /// Attention output projection.
    pub o: Linear,
    /// RMSNorm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// Gate and up projections.
    pub gate_up: GateUp,
    /// Down projection.
    pub down: Linear,
}

impl Layer {
    /// The block's matrices with their roles, in forward order.
    fn named_linears(&self) -> Vec<(&'static str, &Linear)> {
        let mut v = Vec::new();
        match &self.qkv {
            Qkv::Fused(l) => v.push(("qkv", l)),
            Qkv::Split { q, k, v: vv } => v.extend([("q", q), ("k", k), ("v", vv)]),
        }
        v.push(("o", &self.o));
        match &self.gate_up {
            GateUp::Fused(l) => v.push(("gate_up", l)),
            GateUp::Split { gate, up } => v.extend([("gate", gate), ("up", up)]),
        }
        v.push(("down", &self.down));
        v
    }

    fn linears(&self) -> Vec<&Linear> {
        let mut v = Vec::new();
        match &self.qkv {
            Qkv::Fused(l) => v.push(l),
            Qkv::Split { q, k, v: vv } => v.extend([q, k, vv]),
        }
        v.push(&self.o);
        match &self.gate_up {
            GateUp::Fused(l) => v.push(l),
            GateUp::Split { gate, up } => v.extend([gate, up]),
        }
        v.push(&self.down);
        v
    }
}

/// A model ready to run.
#[derive(Debug)]
pub struct Model {
    /// The configuration.
    pub config: ModelConfig,
    /// Token embeddings.
    pub embed: Embedding,
    /// The blocks.
    pub layers: Vec<Layer>,
    /// Final RMSNorm weight.
    pub norm: Vec<f32>,
    /// The output head (`vocab x hidden`).
    pub output: Linear,
    /// Whether any matrix takes int8 activations.
    pub needs_q8: bool,
    /// What was loaded and how.
    pub info: LoadInfo,
}

/// A summary of a load.
#[derive(Clone, Debug, Default)]
pub struct LoadInfo {
    /// The `--quant` choice (for float checkpoints) or `as stored`.
    pub quant: String,
    /// Seconds the load took.
    pub load_seconds: f64,
    /// Bytes of matrix weights read per token.
    pub weight_bytes: usize,
    /// Matrices per format (`f32` for float matrices), sorted by name.
    pub formats: Vec<(String, usize)>,
    /// Matrices per kernel variant name, sorted by name.
    pub variants: Vec<(String, usize)>,
    /// Where the variants came from: the plan's status and how many
    /// matrices took its entries (one line, for people).
    pub plan: String,
}

/// Options of a load.
#[derive(Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Formats for float checkpoints.
    pub quant: QuantSpec,
    /// Threads the model will run on (given to the variant resolver).
    pub threads: usize,
    /// Called with (matrices done, matrices in all) as quantization proceeds.
    pub progress: Option<&'a (dyn Fn(usize, usize) + Sync)>,
    /// The kernel plan (`None`: the heuristic default for every matrix).
    pub plan: Option<&'a LoadedPlan>,
    /// The activation path (default: as planned).
    pub activations: Activations,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("quant", &self.quant)
            .field("threads", &self.threads)
            .field("plan", &self.plan.map(|p| p.status.to_string()))
            .field("activations", &self.activations)
            .finish()
    }
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        LoadOptions {
            quant: QuantSpec::Q4KM,
            threads: 1,
            progress: None,
            plan: None,
            activations: Activations::Planned,
        }
    }
}

impl Model {
    /// Loads a Hugging Face model folder (config.json and safetensors),
    /// quantizing float matrices as `options.quant` says.
    pub fn load_hf(dir: &Path, options: &LoadOptions<'_>) -> Result<Model> {
        let start = Instant::now();
        if !dir.is_dir() {
            return Err(ModelError::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, "not a model folder")));
        }
        let config = ModelConfig::from_hf_file(&dir.join("config.json"))?;
        let files = SafetensorsFiles::open_dir(dir)?;
        let c = &config;
        let (h, qd, kvd, inter, vocab) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.vocab_size);
        let n = c.num_layers;
        let spec = options.quant;
        let resolver = Resolver::new(options.plan, options.threads, options.activations);
        let total = n * 4 + 1;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let tick = || {
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Some(p) = options.progress {
                p(d, total);
            }
        };
        let linear = |w: &[f32], rows: usize, cols: usize, format: Option<Format>| -> Result<Linear> {
            match format {
                None => Linear::f32(rows, cols, w.to_vec()),
                Some(f) => Linear::quantize(rows, cols, w, f, &resolver),
            }
        };
        let embed_table = files.f32("model.embed_tokens.weight", &[vocab, h])?;
        let layers: Vec<Layer> = (0..n)
            .into_par_iter()
            .map(|i| -> Result<Layer> {
                let p = format!("model.layers.{i}");
                let attn_norm = files.f32(&format!("{p}.input_layernorm.weight"), &[h])?;
                let ffn_norm = files.f32(&format!("{p}.post_attention_layernorm.weight"), &[h])?;
                let fused_qkv = format!("{p}.self_attn.qkv_proj.weight");
                let bias = |name: &str, rows: usize| -> Result<Option<Vec<f32>>> {
                    if c.qkv_bias {
                        Ok(Some(files.f32(&format!("{p}.self_attn.{name}.bias"), &[rows])?))
                    } else {
                        Ok(None)
                    }
                };
                let qkv = if files.contains(&fused_qkv) {
                    let w = files.f32(&fused_qkv, &[qd + 2 * kvd, h])?;
                    let mut l = linear(&w, qd + 2 * kvd, h, spec.format_for(Role::Qkv, i, n, h))?;
                    if c.qkv_bias {
                        l = l.with_bias(files.f32(&format!("{p}.self_attn.qkv_proj.bias"), &[qd + 2 * kvd])?)?;
                    }
                    Qkv::Fused(l)
                } else {
                    let wq = files.f32(&format!("{p}.self_attn.q_proj.weight"), &[qd, h])?;
                    let wk = files.f32(&format!("{p}.self_attn.k_proj.weight"), &[kvd, h])?;
                    let wv = files.f32(&format!("{p}.self_attn.v_proj.weight"), &[kvd, h])?;
                    let (bq, bk, bv) = (bias("q_proj", qd)?, bias("k_proj", kvd)?, bias("v_proj", kvd)?);
                    let fq = spec.format_for(Role::Q, i, n, h);
                    let fk = spec.format_for(Role::K, i, n, h);
                    let fv = spec.format_for(Role::V, i, n, h);
                    if fq == fk && fk == fv {
                        let w = [wq, wk, wv].concat();
                        let mut l = linear(&w, qd + 2 * kvd, h, fq)?;
                        if let (Some(bq), Some(bk), Some(bv)) = (bq, bk, bv) {
                            l = l.with_bias([bq, bk, bv].concat())?;
                        }
                        Qkv::Fused(l)
                    } else {
                        let with = |l: Linear, b: Option<Vec<f32>>| match b {
                            Some(b) => l.with_bias(b),
                            None => Ok(l),
                        };
                        Qkv::Split {
                            q: with(linear(&wq, qd, h, fq)?, bq)?,
                            k: with(linear(&wk, kvd, h, fk)?, bk)?,
                            v: with(linear(&wv, kvd, h, fv)?, bv)?,
                        }
                    }
                };
                tick();
                let wo = files.f32(&format!("{p}.self_attn.o_proj.weight"), &[h, qd])?;
                let o = linear(&wo, h, qd, spec.format_for(Role::O, i, n, qd))?;
                tick();
                let fused_gu = format!("{p}.mlp.gate_up_proj.weight");
                let gate_up = if files.contains(&fused_gu) {
                    let w = files.f32(&fused_gu, &[2 * inter, h])?;
                    GateUp::Fused(linear(&w, 2 * inter, h, spec.format_for(Role::GateUp, i, n, h))?)
                } else {
                    let wg = files.f32(&format!("{p}.mlp.gate_proj.weight"), &[inter, h])?;
                    let wu = files.f32(&format!("{p}.mlp.up_proj.weight"), &[inter, h])?;
                    let (fg, fu) = (spec.format_for(Role::Gate, i, n, h), spec.format_for(Role::Up, i, n, h));
                    if fg == fu {
                        GateUp::Fused(linear(&[wg, wu].concat(), 2 * inter, h, fg)?)
                    } else {
                        GateUp::Split { gate: linear(&wg, inter, h, fg)?, up: linear(&wu, inter, h, fu)? }
                    }
                };
                tick();
                let wd = files.f32(&format!("{p}.mlp.down_proj.weight"), &[h, inter])?;
                let down = linear(&wd, h, inter, spec.format_for(Role::Down, i, n, inter))?;
                tick();
                Ok(Layer { attn_norm, qkv, o, ffn_norm, gate_up, down })
            })
            .collect::<Result<_>>()?;
        let norm = files.f32("model.norm.weight", &[h])?;
        let out_format = spec.format_for(Role::Output, n, n, h);
        let output = if c.tie_word_embeddings || !files.contains("lm_head.weight") {
            if !c.tie_word_embeddings {
                return Err(ModelError::MissingTensor { name: "lm_head.weight".into(), path: dir.to_path_buf() });
            }
            linear(&embed_table, vocab, h, out_format)?
        } else {
            linear(&files.f32("lm_head.weight", &[vocab, h])?, vocab, h, out_format)?
        };
        tick();
        let mut model = Model {
            config,
            embed: Embedding::F32(embed_table),
            layers,
            norm,
            output,
            needs_q8: false,
            info: LoadInfo { quant: spec.to_string(), ..LoadInfo::default() },
        };
        model.finish(start, &resolver);
        Ok(model)
    }

    /// Every matrix of the model.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = self.layers.iter().flat_map(Layer::linears).collect();
        v.push(&self.output);
        v
    }

    /// Fills in `needs_q8` and the load summary.
    pub(crate) fn finish(&mut self, start: Instant, resolver: &Resolver<'_>) {
        self.info.plan = resolver.summary();
        let linears = self.linears();
        let needs_q8 = linears.iter().any(|l| l.needs_q8());
        let mut formats = std::collections::BTreeMap::<String, usize>::new();
        let mut variants = std::collections::BTreeMap::<String, usize>::new();
        let mut bytes = 0;
        for l in &linears {
            *formats.entry(l.format().map_or("f32".to_string(), |f| f.to_string())).or_default() += 1;
            for name in l.variant_names() {
                *variants.entry(name.to_string()).or_default() += 1;
            }
            bytes += l.weight_bytes();
        }
        self.needs_q8 = needs_q8;
        self.info.formats = formats.into_iter().collect();
        self.info.variants = variants.into_iter().collect();
        self.info.weight_bytes = bytes;
        self.info.load_seconds = start.elapsed().as_secs_f64();
    }

    /// The distinct dense one-column GEMV keys of one decode step (the
    /// quantized matrices; f32 ones run no kernel variant), with their roles
    /// and calls per token, in forward order: what `asdsl tune --model` tunes.
    pub fn decode_keys(&self) -> Vec<KeyUse> {
        let mut named: Vec<(&str, &Linear)> = self.layers.iter().flat_map(Layer::named_linears).collect();
        named.push(("output", &self.output));
        let mut out: Vec<KeyUse> = Vec::new();
        for (name, l) in named {
            let Some(format) = l.format() else { continue };
            let key = MatrixKey::dense(format, l.rows(), l.cols());
            match out.iter_mut().find(|u| u.key == key) {
                Some(u) => {
                    if !u.names.split('+').any(|n| n == name) {
                        u.names.push('+');
                        u.names.push_str(name);
                    }
                    u.count += 1;
                }
                None => out.push(KeyUse { key, names: name.to_string(), count: 1 }),
            }
        }
        out
    }

    /// Parameters: every matrix (the output head once), the embedding when
    /// it is not the output head, and the norm weights.
    pub fn parameters(&self) -> u64 {
        let c = &self.config;
        let matrices: u64 = self.linears().iter().map(|l| (l.rows() * l.cols()) as u64).sum();
        let embedding = if c.tie_word_embeddings { 0 } else { (c.vocab_size * c.hidden_size) as u64 };
        let norms = ((2 * c.num_layers + 1) * c.hidden_size) as u64;
        matrices + embedding + norms
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.config.arch
    }
}

impl Model {
    /// Loads a model from a Hugging Face folder or a GGUF file.
    pub fn load(path: &Path, options: &LoadOptions<'_>) -> Result<Model> {
        if path.is_dir() {
            return Model::load_hf(path, options);
        }
        if !path.exists() {
            return Err(ModelError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
        let mut magic = [0u8; 4];
        let read = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map_err(|e| ModelError::io(path, e));
        match read {
            Ok(()) if &magic == b"GGUF" => Model::load_gguf(path, options),
            Ok(()) | Err(_) => Err(ModelError::Unsupported(format!(
                "{}: not a GGUF file or a Hugging Face model folder (with config.json and safetensors)",
                path.display()
            ))),
        }
    }
}
