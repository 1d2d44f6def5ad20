//! A loaded model: its configuration and weights, every matrix already
//! resolved to the kernel variant that runs it. Immutable once loaded; the
//! per-sequence state (KV cache, scratch buffers) is a [`State`](crate::forward::State).

use std::path::Path;
use std::time::Instant;

use asdsl_kernels::Format;
use asdsl_kernels::tune::{LoadedPlan, MatrixKey};

use crate::config::{Arch, ModelConfig};
use crate::error::{ModelError, Result};
use crate::geometry::KeyUse;
use crate::linear::{Linear, dequantize_row};
use crate::quant::QuantSpec;
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

/// The query/key/value projections of a block. `M` is the matrix type: a
/// [`Linear`] ready to run, or a [`StoredMatrix`](crate::stored::StoredMatrix)
/// on its way to or from a file.
// One value per layer, never moved in a hot path: boxing would only add a hop.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Qkv<M = Linear> {
    /// One matrix of `q_dim + 2 kv_dim` rows (q, then k, then v).
    Fused(M),
    /// Three matrices (when their formats differ).
    Split {
        /// Query.
        q: M,
        /// Key.
        k: M,
        /// Value.
        v: M,
    },
}

/// The gate and up projections of a block's MLP.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum GateUp<M = Linear> {
    /// One matrix of `2 * intermediate` rows (gate, then up).
    Fused(M),
    /// Two matrices (when their formats differ).
    Split {
        /// Gate.
        gate: M,
        /// Up.
        up: M,
    },
}

/// One transformer block.
#[derive(Debug)]
pub struct Layer<M = Linear> {
    /// RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// q, k, v projections.
    pub qkv: Qkv<M>,
    /// Attention output projection.
    pub o: M,
    /// RMSNorm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// Gate and up projections.
    pub gate_up: GateUp<M>,
    /// Down projection.
    pub down: M,
}

impl<M> Layer<M> {
    /// The same block with every matrix converted by `f`.
    pub fn try_map<N, E>(self, mut f: impl FnMut(M) -> Result<N, E>) -> Result<Layer<N>, E> {
        Ok(Layer {
            attn_norm: self.attn_norm,
            qkv: match self.qkv {
                Qkv::Fused(m) => Qkv::Fused(f(m)?),
                Qkv::Split { q, k, v } => Qkv::Split { q: f(q)?, k: f(k)?, v: f(v)? },
            },
            o: f(self.o)?,
            ffn_norm: self.ffn_norm,
            gate_up: match self.gate_up {
                GateUp::Fused(m) => GateUp::Fused(f(m)?),
                GateUp::Split { gate, up } => GateUp::Split { gate: f(gate)?, up: f(up)? },
            },
            down: f(self.down)?,
        })
    }

    /// The block's matrices with their roles, in forward order.
    pub fn named_matrices(&self) -> Vec<(&'static str, &M)> {
        let mut v = Vec::new();
        match &self.qkv {
            Qkv::Fused(m) => v.push(("qkv", m)),
            Qkv::Split { q, k, v: vv } => v.extend([("q", q), ("k", k), ("v", vv)]),
        }
        v.push(("o", &self.o));
        match &self.gate_up {
            GateUp::Fused(m) => v.push(("gate_up", m)),
            GateUp::Split { gate, up } => v.extend([("gate", gate), ("up", up)]),
        }
        v.push(("down", &self.down));
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
    /// Every matrix of the model.
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> =
            self.layers.iter().flat_map(|l| l.named_matrices().into_iter().map(|(_, m)| m)).collect();
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
        let mut named: Vec<(&str, &Linear)> = self.layers.iter().flat_map(Layer::named_matrices).collect();
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
            Ok(()) if is_safetensors(path) => Model::load_quantized(path, options),
            Ok(()) | Err(_) => Err(ModelError::Unsupported(format!(
                "{}: not a GGUF file, a file of `asdsl quantize` or a Hugging Face model folder \
                 (with config.json and safetensors)",
                path.display()
            ))),
        }
    }
}

/// Whether `path` starts like a safetensors file: an 8-byte header length,
/// then the header's JSON object.
pub fn is_safetensors(path: &Path) -> bool {
    let mut head = [0u8; 9];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && head[8] == b'{'
}
