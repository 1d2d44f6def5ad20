//! `asdsl info`: the machine as the kernels see it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use asdsl_kernels::cpu::{self, CpuInfo, FORCE_ISA_ENV, PREFETCH_ENV};
use asdsl_kernels::variant::{Isa, Variant};
use clap::Args;
use serde::Serialize;

use super::{human_bytes, registry};

/// The long help of `asdsl info`.
pub const LONG_ABOUT: &str = "Show the CPU (vendor, brand, family/model/stepping), the ISA features the kernels \
    care about, logical and physical cores, the cache hierarchy, which kernel ISAs may run \
    (hardware support and the ASDSL_FORCE_ISA cap), the best one, and how many kernel variants \
    the registry holds along each axis of the variant space.";

/// Arguments of `asdsl info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Everything `asdsl info` reports.
#[derive(Debug, Serialize)]
struct InfoReport {
    cpu: CpuInfo,
    /// The raw ASDSL_FORCE_ISA value, if set.
    force_isa_env: Option<String>,
    /// The parsed cap (`None`: no cap).
    isa_cap: Option<String>,
    /// Why ASDSL_FORCE_ISA is unusable, if it is.
    isa_cap_error: Option<String>,
    /// Best ISA the kernels may use.
    best_isa: String,
    isas: Vec<IsaStatus>,
    /// How far ahead the decode kernels prefetch weights, in bytes (0: not
    /// at all): ASDSL_PREFETCH or this CPU's default.
    prefetch_distance: usize,
    registry: RegistryCounts,
}

#[derive(Debug, Serialize)]
struct IsaStatus {
    isa: String,
    /// The hardware supports it.
    hardware: bool,
    /// It may run (hardware and cap).
    available: bool,
    /// Why not, if not.
    reason: Option<String>,
}

/// How many registry variants have each value of an axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AxisCount {
    /// The value, as in variant names.
    pub value: String,
    /// Variants with that value.
    pub count: usize,
}

/// Registry variant counts, in total and per axis (values in natural order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryCounts {
    /// All variants.
    pub total: usize,
    /// Variants whose ISA may run here.
    pub runnable: usize,
    /// Per weight format.
    pub format: Vec<AxisCount>,
    /// Per tile rows.
    pub tile_rows: Vec<AxisCount>,
    /// Per columns per pass.
    pub columns: Vec<AxisCount>,
    /// Per sparsity.
    pub sparsity: Vec<AxisCount>,
    /// Per activation path.
    pub activation: Vec<AxisCount>,
    /// Per ISA.
    pub isa: Vec<AxisCount>,
}

impl RegistryCounts {
    fn axes(&self) -> [(&'static str, &[AxisCount]); 6] {
        [
            ("format", &self.format),
            ("tile rows", &self.tile_rows),
            ("columns", &self.columns),
            ("sparsity", &self.sparsity),
            ("activation", &self.activation),
            ("isa", &self.isa),
        ]
    }
}

fn count_by<K: Ord, D: ToString>(
    variants: &[Variant],
    key: impl Fn(&Variant) -> K,
    show: impl Fn(K) -> D,
) -> Vec<AxisCount> {
    let mut map = BTreeMap::new();
    for v in variants {
        *map.entry(key(v)).or_insert(0usize) += 1;
    }
    map.into_iter().map(|(k, count)| AxisCount { value: show(k).to_string(), count }).collect()
}

/// Counts `variants` per axis; `runnable` says whether an ISA may run here.
pub fn count_variants(variants: &[Variant], runnable: impl Fn(Isa) -> bool) -> RegistryCounts {
    RegistryCounts {
        total: variants.len(),
        runnable: variants.iter().filter(|v| runnable(v.isa)).count(),
        format: count_by(variants, |v| v.format, |f| f),
        tile_rows: count_by(variants, |v| v.tile_rows, |r| r),
        columns: count_by(variants, |v| v.columns, |c| c),
        sparsity: count_by(variants, |v| v.sparsity, |s| s),
        activation: count_by(variants, |v| v.activation, |a| a),
        isa: count_by(variants, |v| v.isa, |i| i),
    }
}

/// Runs `asdsl info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let cpu = cpu::detect();
    let cap = cpu::isa_cap();
    let cap_ok = cap.as_ref().ok().copied().flatten();
    let cap_error = cap.as_ref().err().map(|e| e.to_string());
    let isas = Isa::ALL
        .iter()
        .map(|&isa| {
            let hardware = cpu.supports(isa);
            let (available, reason) = match cpu::check(isa) {
                Ok(()) => (true, None),
                Err(asdsl_kernels::KernelError::IsaUnavailable { reason, .. }) => {
                    (false, Some(reason.strip_prefix("is ").map(str::to_string).unwrap_or(reason)))
                }
                Err(_) if hardware => (false, Some(format!("{FORCE_ISA_ENV} is invalid"))),
                Err(_) => (false, Some("this CPU does not support it".to_string())),
            };
            IsaStatus { isa: isa.to_string(), hardware, available, reason }
        })
        .collect();
    let registry = count_variants(registry(), |isa| cpu::available(isa).unwrap_or(false));
    let report = InfoReport {
        cpu: cpu.clone(),
        force_isa_env: std::env::var(FORCE_ISA_ENV).ok(),
        isa_cap: cap_ok.map(|c| c.to_string()),
        isa_cap_error: cap_error,
        best_isa: cpu::best_isa().to_string(),
        isas,
        // (main refuses an invalid ASDSL_PREFETCH before any command runs)
        prefetch_distance: cpu::prefetch_distance()?,
        registry,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("serializing the info report")?);
    } else {
        print_text(&report);
    }
    cap.with_context(|| format!("{FORCE_ISA_ENV} is invalid"))?;
    Ok(())
}

fn print_text(r: &InfoReport) {
    let c = &r.cpu;
    println!("CPU");
    println!("  brand            {}", if c.brand.is_empty() { "(unknown)" } else { &c.brand });
    println!(
        "  vendor           {}, family {} model {} (0x{:x}) stepping {}",
        c.vendor, c.family, c.model, c.model, c.stepping
    );
    println!("  cores            {} logical, {} physical", c.logical_cores, c.physical_cores);
    println!(
        "  features         {}",
        if c.features.is_empty() { "(none detected)".to_string() } else { c.features.join(" ") }
    );
    println!("Caches");
    if c.caches.is_empty() {
        println!("  (unknown)");
    }
    for cache in &c.caches {
        let shared = if cache.shared_by_logical > 1 {
            format!("shared by {} logical CPUs", cache.shared_by_logical)
        } else {
            "per logical CPU".to_string()
        };
        println!("  L{} {:<12} {:>9}   {shared}", cache.level, cache.kind.name(), human_bytes(cache.size_bytes));
    }
    println!("Kernel ISA");
    let env = match (&r.force_isa_env, &r.isa_cap, &r.isa_cap_error) {
        (_, _, Some(err)) => format!("INVALID: {err}"),
        (_, Some(cap), None) => format!("{cap} (capped)"),
        (Some(raw), None, None) => format!("`{raw}` (no cap)"),
        (None, None, None) => "unset (no cap)".to_string(),
    };
    println!("  {FORCE_ISA_ENV:<17}{env}");
    for s in &r.isas {
        let status = match (&s.available, &s.reason) {
            (true, _) => "yes".to_string(),
            (false, Some(reason)) => format!("no: {reason}"),
            (false, None) => "no".to_string(),
        };
        println!("  {:<17}{status}", s.isa);
    }
    println!("  {:<17}{}", "best", r.best_isa);
    let prefetch = match r.prefetch_distance {
        0 => "off".to_string(),
        bytes => format!("{bytes} bytes ahead"),
    };
    // (a blank value means the default, as in `cpu::parse_prefetch`)
    let set = std::env::var(PREFETCH_ENV).is_ok_and(|v| !v.trim().is_empty());
    let source = if set { PREFETCH_ENV } else { "this CPU's default" };
    println!("  {:<17}{prefetch} ({source})", "prefetch");
    let reg = &r.registry;
    println!("Registry           {} variants, {} runnable here", reg.total, reg.runnable);
    for (axis, counts) in reg.axes() {
        if counts.is_empty() {
            continue;
        }
        let list: Vec<String> = counts.iter().map(|a| format!("{} {}", a.value, a.count)).collect();
        println!("  {axis:<17}{}", list.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use asdsl_kernels::Format;
    use asdsl_kernels::kernel::KernelArgs;
    use asdsl_kernels::variant::{Activation, Sparsity};

    use super::*;

    /// Never called: the tests only count descriptors.
    unsafe fn noop(_: &KernelArgs<'_>) {}

    fn variant(format: Format, tile_rows: usize, sparsity: Sparsity, activation: Activation, isa: Isa) -> Variant {
        Variant { name: "test", format, tile_rows, columns: 1, sparsity, activation, isa, kernel: noop }
    }

    #[test]
    fn counts_per_axis() {
        let vs = [
            variant(Format::Q4_0, 4, Sparsity::Dense, Activation::Q8, Isa::Avx512Vnni),
            variant(Format::Q4_0, 1, Sparsity::Dense, Activation::F32, Isa::Scalar),
            variant(Format::Q8_0, 4, Sparsity::ColumnSparse, Activation::F32, Isa::Avx2),
        ];
        let c = count_variants(&vs, |isa| isa <= Isa::Avx2);
        assert_eq!(c.total, 3);
        assert_eq!(c.runnable, 2);
        let pairs = |v: &[AxisCount]| v.iter().map(|a| (a.value.clone(), a.count)).collect::<Vec<_>>();
        assert_eq!(pairs(&c.format), [("q4_0".to_string(), 2), ("q8_0".to_string(), 1)]);
        assert_eq!(pairs(&c.tile_rows), [("1".to_string(), 1), ("4".to_string(), 2)]);
        assert_eq!(pairs(&c.columns), [("1".to_string(), 3)]);
        assert_eq!(pairs(&c.sparsity), [("dense".to_string(), 2), ("colsparse".to_string(), 1)]);
        assert_eq!(pairs(&c.activation), [("f32".to_string(), 2), ("q8".to_string(), 1)]);
        assert_eq!(pairs(&c.isa), [("scalar".to_string(), 1), ("avx2".to_string(), 1), ("avx512vnni".to_string(), 1)]);
        let empty = count_variants(&[], |_| true);
        assert_eq!((empty.total, empty.runnable, empty.format.len()), (0, 0, 0));
    }
}
