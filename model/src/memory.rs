//! Memory guards: a load that would need more memory than the machine has
//! available is refused with a message before anything large is allocated
//! (rather than being killed by the kernel's OOM killer half way, or
//! aborting on a failed allocation).
//!
//! The available memory is `MemAvailable` from `/proc/meminfo`, lowered to
//! what the cgroup (v2) still allows when the process runs under a memory
//! limit (`memory.max - memory.current`). [`MEMORY_LIMIT_ENV`]
//! (`ASDSL_MEMORY_LIMIT`) overrides it: a size (`512M`, `8G`, `1.5GiB`, or
//! bytes) to pretend that much is available, or `off` to disable the guard.
//! Where neither is known (no `/proc`), there is no guard.
//!
//! The estimates ([`gguf_load_bytes`], [`hf_load_bytes`], [`state_bytes`],
//! [`random_model_bytes`]) count what a load keeps resident (packed weights,
//! f32 tables, the KV cache), not transient buffers nor the memory-mapped
//! file (page cache the kernel can drop), so they refuse only loads that
//! cannot fit.

use std::path::Path;

use asdsl_kernels::Format;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::geometry::Geometry;
use crate::gguf::{GgmlType, GgufHeader};
use crate::hf::SafetensorsFiles;
use crate::quant::{QuantSpec, Role};

/// The environment variable that overrides the available memory: a size
/// (`512M`, `8G`, `1.5GiB`, a number of bytes) or `off`.
pub const MEMORY_LIMIT_ENV: &str = "ASDSL_MEMORY_LIMIT";

/// How much memory a load may use, and where that figure comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// Where the figure comes from, for messages.
    pub source: String,
}

/// The memory available to this process: [`MEMORY_LIMIT_ENV`] if set,
/// else `MemAvailable` (and the cgroup's remaining limit, if lower).
/// `Ok(None)`: unknown or disabled (no guard). An unparsable
/// [`MEMORY_LIMIT_ENV`] is an error.
pub fn available() -> Result<Option<Available>> {
    if let Some(value) = std::env::var_os(MEMORY_LIMIT_ENV) {
        let text = value.to_string_lossy();
        let text = text.trim();
        if text.is_empty() {
            return Ok(system_available());
        }
        if ["off", "none", "unlimited"].contains(&text.to_ascii_lowercase().as_str()) {
            return Ok(None);
        }
        let bytes = parse_size(text).ok_or_else(|| {
            ModelError::Invalid(format!(
                "{MEMORY_LIMIT_ENV}=`{text}` is not a size (bytes, or with a suffix: 512M, 8G, 1.5GiB) or `off`"
            ))
        })?;
        return Ok(Some(Available { bytes, source: format!("{MEMORY_LIMIT_ENV}={text}") }));
    }
    Ok(system_available())
}

/// `MemAvailable` from `/proc/meminfo`, lowered to the cgroup's remaining
/// limit; `None` when unknown.
fn system_available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mem_available = meminfo_kib(&meminfo, "MemAvailable")? * 1024;
    let hint = format!("set {MEMORY_LIMIT_ENV} to override");
    let mut out = Available { bytes: mem_available, source: format!("MemAvailable in /proc/meminfo; {hint}") };
    if let Some(left) = cgroup_left()
        && left < out.bytes
    {
        out = Available { bytes: left, source: format!("the cgroup memory limit; {hint}") };
    }
    Some(out)
}

/// The value in KiB of `field` in the text of `/proc/meminfo`.
fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// What the cgroup v2 memory limit of this process still allows, if it has one.
fn cgroup_left() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // v2: a single line `0::/path`.
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    let max: u64 = std::fs::read_to_string(dir.join("memory.max")).ok()?.trim().parse().ok()?;
    let current: u64 = std::fs::read_to_string(dir.join("memory.current")).ok()?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// Parses a size: bytes, or a number (fractions allowed) with a binary
/// suffix `K`, `M`, `G`, `T` (optionally followed by `iB` or `B`; any case).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let lower = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (number, shift) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 10),
        Some((i, 'm')) => (&lower[..i], 20),
        Some((i, 'g')) => (&lower[..i], 30),
        Some((i, 't')) => (&lower[..i], 40),
        _ => (lower, 0),
    };
    let number = number.trim();
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(1u64 << shift);
    }
    let x: f64 = number.parse().ok()?;
    let bytes = x * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Refuses `needed` bytes for `what` (a file, a KV cache) when more than
/// the [`available`] memory.
pub fn check(what: &str, needed: u64) -> Result<()> {
    check_against(what, needed, available()?)
}

/// Refuses `needed` bytes for `what` when more than `available` (`None`:
/// no limit).
pub fn check_against(what: &str, needed: u64, available: Option<Available>) -> Result<()> {
    let Some(avail) = available else { return Ok(()) };
    if needed > avail.bytes {
        return Err(ModelError::OutOfMemory {
            what: what.to_string(),
            needed,
            available: avail.bytes,
            source_of_limit: avail.source,
        });
    }
    Ok(())
}

/// Bytes a GGUF load keeps: quantized tensors as stored, float tensors as
/// f32, and the tied output head (packed from the embedding) once more.
pub fn gguf_load_bytes(header: &GgufHeader) -> u64 {
    let resident = |t: &crate::gguf::TensorInfo| match t.ggml_type {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => t.n_elements.saturating_mul(4),
        _ => t.n_bytes,
    };
    let mut total = header.tensors().iter().map(resident).fold(0u64, u64::saturating_add);
    if header.tensor("output.weight").is_none()
        && let Some(embd) = header.tensor("token_embd.weight")
    {
        total = total.saturating_add(resident(embd));
    }
    total
}

/// Bytes of `rows x cols` weights in `format` (`None`: f32).
fn matrix_bytes(rows: u64, cols: u64, format: Option<Format>) -> u64 {
    let per_row = match format {
        Some(f) => {
            let info = f.info();
            cols.div_ceil(info.block_len as u64).saturating_mul(info.block_bytes as u64)
        }
        None => cols.saturating_mul(4),
    };
    rows.saturating_mul(per_row)
}

/// Bytes a Hugging Face load keeps: every matrix quantized as `quant` says
/// for an ordinary matrix (`q4_k` for `q4_k_m`), the embedding table as f32
/// (and quantized again as the tied output head), vectors as f32.
pub fn hf_load_bytes(files: &SafetensorsFiles, quant: QuantSpec) -> u64 {
    let mut total = 0u64;
    let mut has_head = false;
    let mut embed = None;
    for (name, shape) in files.shapes() {
        let (rows, cols) = match shape {
            [cols] => (1, *cols as u64),
            [rows, cols] => (*rows as u64, *cols as u64),
            other => (1, other.iter().map(|&d| d as u64).fold(1u64, u64::saturating_mul)),
        };
        has_head |= name == "lm_head.weight";
        let bytes = if shape.len() == 2 && name != "model.embed_tokens.weight" {
            matrix_bytes(rows, cols, quant.format_for(Role::Q, 0, 1, cols as usize))
        } else {
            if name == "model.embed_tokens.weight" {
                embed = Some((rows, cols));
            }
            matrix_bytes(rows, cols, None)
        };
        total = total.saturating_add(bytes);
    }
    if let (false, Some((rows, cols))) = (has_head, embed) {
        let format = quant.format_for(Role::Output, 1, 1, cols as usize);
        total = total.saturating_add(matrix_bytes(rows, cols, format));
    }
    total
}

/// [`hf_load_bytes`] of the checkpoint in the folder `dir` (only its
/// safetensors headers are read).
pub fn hf_dir_load_bytes(dir: &Path, quant: QuantSpec) -> Result<u64> {
    Ok(hf_load_bytes(&SafetensorsFiles::open_dir(dir)?, quant))
}

/// Bytes of the per-sequence state of `config` for `context` positions and
/// prompt batches of `batch` tokens: the KV cache and the scratch buffers.
pub fn state_bytes(config: &ModelConfig, context: usize, batch: usize) -> u64 {
    let c = config;
    let (ctx, b) = (context as u64, batch.min(context) as u64);
    let kv = (c.num_layers as u64).saturating_mul(ctx).saturating_mul(c.kv_dim() as u64).saturating_mul(2);
    let per_token =
        (4 * c.hidden_size + 4 * c.q_dim() + 4 * c.kv_dim() + 4 * c.intermediate_size + c.vocab_size) as u64;
    let scores = (c.num_heads as u64).saturating_mul(ctx);
    kv.saturating_add(b.saturating_mul(per_token)).saturating_add(scores).saturating_mul(4)
}

/// Bytes a random-weight model of `geometry` takes to build and load: its
/// GGUF bytes in memory plus the loaded (packed) weights, about twice the
/// weights in `quant`'s ordinary-matrix format.
pub fn random_model_bytes(geometry: &Geometry, quant: QuantSpec) -> u64 {
    let g = geometry;
    let h = g.hidden as u64;
    let format = quant.format_for(Role::Q, 0, 1, g.hidden);
    let per_layer = matrix_bytes((g.q_rows() + 2 * g.kv_rows()) as u64, h, format)
        + matrix_bytes(h, g.q_rows() as u64, format)
        + matrix_bytes(2 * g.ffn as u64, h, format)
        + matrix_bytes(h, g.ffn as u64, quant.format_for(Role::Q, 0, 1, g.ffn));
    let heads = if g.tied_embeddings { 2 } else { 3 }; // embedding, output head, its packed copy
    let weights = (g.layers as u64).saturating_mul(per_layer).saturating_add(
        matrix_bytes(g.vocab as u64, h, quant.format_for(Role::Output, 1, 1, g.hidden)).saturating_mul(heads),
    );
    weights.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("2tb"), Some(2 << 40));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size(" 10 MiB "), Some(10 << 20));
        for bad in ["", "G", "-1", "1e400", "12x", "huge", "99999999999999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn meminfo_fields() {
        let text = "MemTotal:       16318716 kB\nMemFree:         1215812 kB\nMemAvailable:    9342308 kB\n";
        assert_eq!(meminfo_kib(text, "MemAvailable"), Some(9_342_308));
        assert_eq!(meminfo_kib(text, "MemTotal"), Some(16_318_716));
        assert_eq!(meminfo_kib(text, "SwapFree"), None);
    }
}
