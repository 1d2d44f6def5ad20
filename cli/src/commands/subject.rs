//! What a command that takes `--model` or `--geometry` works on: the
//! distinct GEMV keys of one decode step, with their calls per token.

use std::path::Path;

use anyhow::{Context, Result, bail};
use asdsl_kernels::Format;
use asdsl_model::geometry::{self, KeyUse};
use asdsl_model::{LoadOptions, Model, QuantSpec};

/// The GEMV keys of a named geometry in one format, or of a model's
/// matrices as loaded: what `asdsl tune` tunes and `asdsl roofline` bounds.
pub struct Subject {
    /// `phi4-mini` or the model's file name.
    pub title: String,
    /// One line for people.
    pub description: String,
    /// The formats (`q4_0`, or a model's formats).
    pub formats: String,
    /// The distinct keys with their calls per token.
    pub uses: Vec<KeyUse>,
}

impl Subject {
    /// The model at `model` (float weights quantized to `quant`), else the
    /// geometry named `geometry` in `quant`.
    pub fn of(model: Option<&Path>, geometry: Option<&str>, quant: Format) -> Result<Subject> {
        if let Some(path) = model {
            let options = LoadOptions { quant: QuantSpec::Uniform(quant), threads: 1, ..LoadOptions::default() };
            let model = Model::load(path, &options).with_context(|| format!("loading {}", path.display()))?;
            let uses = model.decode_keys();
            if uses.is_empty() {
                bail!("{} has no quantized matrices to tune (f32 weights run no kernel variant)", path.display());
            }
            let formats: Vec<String> = model.info.formats.iter().map(|(f, n)| format!("{n} {f}")).collect();
            let c = &model.config;
            return Ok(Subject {
                title: path
                    .file_name()
                    .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
                description: format!(
                    "{} ({:?}): hidden {}, {} layers, {}/{} heads of {}, FFN {}, vocab {}",
                    path.display(),
                    c.arch,
                    c.hidden_size,
                    c.num_layers,
                    c.num_heads,
                    c.num_kv_heads,
                    c.head_dim,
                    c.intermediate_size,
                    c.vocab_size
                ),
                formats: formats.join(", "),
                uses,
            });
        }
        let name = geometry.unwrap_or_default();
        let g = geometry::geometry(name)
            .with_context(|| format!("unknown geometry `{name}` (known: {})", geometry::names()))?;
        let uses = g.matrix_keys(quant).with_context(|| format!("{} in {}", g.name, quant))?;
        Ok(Subject { title: g.name.to_string(), description: g.to_string(), formats: quant.to_string(), uses })
    }

    /// Matrices one token multiplies.
    pub fn matrices(&self) -> usize {
        self.uses.iter().map(|u| u.count).sum()
    }

    /// Weight bytes one token reads.
    pub fn bytes_per_token(&self) -> Result<u64> {
        let mut total = 0;
        for u in &self.uses {
            total += u.key.weight_bytes()? * u.count as u64;
        }
        Ok(total)
    }
}
