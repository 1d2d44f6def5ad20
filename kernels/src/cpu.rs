//! CPU detection and ISA availability, decided once per process.
//!
//! [`detect`] reads the processor's identity, the instruction-set features
//! that matter to the kernels, the core counts and the cache hierarchy
//! (CPUID leaf 4 on Intel, `0x8000_001D` on AMD, sysfs as fallback). The
//! result is cached in a [`OnceLock`].
//!
//! Which kernel ISA may run is the intersection of what the hardware (and the
//! OS) supports and the cap set by the environment variable
//! [`FORCE_ISA_ENV`] (`ASDSL_FORCE_ISA=scalar|avx2|avx512`), also read once.
//! The decision logic is in pure functions ([`parse_force_isa`],
//! [`cap_allows`], [`missing_features`], [`availability`], [`best_of`]) so
//! that it is testable with made-up feature lists and caps.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::KernelError;
use crate::variant::Isa;

/// The environment variable that caps the kernel ISA: `scalar`, `avx2` or `avx512`.
pub const FORCE_ISA_ENV: &str = "ASDSL_FORCE_ISA";

/// The features reported in [`CpuInfo::features`], in this order (those the
/// CPU has). Names are Rust's `target_feature` names.
pub const REPORTED_FEATURES: &[&str] = &[
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512vnni",
    "avx512bf16",
    "avx512fp16",
    "avxvnni",
    "amx-tile",
    "amx-int8",
    "amx-bf16",
];

/// Features every x86 kernel ISA above scalar needs (AVX2 tier).
const AVX2_FEATURES: &[&str] = &["avx", "avx2", "fma", "f16c", "bmi2"];
/// Additional features of the AVX-512 tier.
const AVX512_FEATURES: &[&str] = &["avx512f", "avx512bw", "avx512vl", "avx512dq"];
/// Additional feature of the AVX-512 VNNI tier.
const VNNI_FEATURES: &[&str] = &["avx512vnni"];

/// What a cache holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Data only.
    Data,
    /// Instructions only.
    Instruction,
    /// Data and instructions.
    Unified,
}

impl CacheKind {
    /// Short name: `data`, `instruction`, `unified`.
    pub fn name(self) -> &'static str {
        match self {
            CacheKind::Data => "data",
            CacheKind::Instruction => "instruction",
            CacheKind::Unified => "unified",
        }
    }
}

/// One level of the cache hierarchy, as seen from one core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// 1, 2, 3 (4 on some parts).
    pub level: u8,
    /// Data, instruction or unified.
    pub kind: CacheKind,
    /// Capacity of one instance of this cache, in bytes.
    pub size_bytes: u64,
    /// How many logical CPUs share one instance (clamped to the logical CPUs
    /// this process can use).
    pub shared_by_logical: u32,
}

/// The machine, as the kernels and the plan fingerprint see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// CPUID vendor string (`GenuineIntel`, `AuthenticAMD`, ...; `unknown` off x86).
    pub vendor: String,
    /// Brand string (`Intel(R) Xeon(R) ...`).
    pub brand: String,
    /// Display family (base + extended family).
    pub family: u32,
    /// Display model (base + extended model where the vendor defines it).
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
    /// The [`REPORTED_FEATURES`] this CPU and OS support.
    pub features: Vec<String>,
    /// Logical CPUs this process may run on (`std::thread::available_parallelism`).
    pub logical_cores: usize,
    /// Physical cores (sysfs topology, at most `logical_cores`; `logical_cores` if unknown).
    pub physical_cores: usize,
    /// Caches, by level then kind.
    pub caches: Vec<CacheInfo>,
}

impl CpuInfo {
    /// Whether the CPU has the feature (a [`REPORTED_FEATURES`] name).
    pub fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    /// The first data or unified cache of `level`.
    pub fn cache(&self, level: u8) -> Option<&CacheInfo> {
        self.caches.iter().find(|c| c.level == level && c.kind != CacheKind::Instruction)
    }

    /// Size of the largest-level data or unified cache (the last-level cache), if known.
    pub fn last_level_cache_bytes(&self) -> Option<u64> {
        self.caches.iter().filter(|c| c.kind != CacheKind::Instruction).max_by_key(|c| c.level).map(|c| c.size_bytes)
    }

    /// Size of one core's L2, if known.
    pub fn l2_bytes(&self) -> Option<u64> {
        self.cache(2).map(|c| c.size_bytes)
    }

    /// Size of the L3, if known.
    pub fn l3_bytes(&self) -> Option<u64> {
        self.cache(3).map(|c| c.size_bytes)
    }

    /// Whether the hardware (and OS) supports `isa`, ignoring the [`FORCE_ISA_ENV`] cap.
    pub fn supports(&self, isa: Isa) -> bool {
        missing_features(&self.features, isa).is_empty()
    }
}

/// The machine this process runs on (detected once).
pub fn detect() -> &'static CpuInfo {
    static INFO: OnceLock<CpuInfo> = OnceLock::new();
    INFO.get_or_init(detect_uncached)
}

/// Whether the hardware supports `isa` (ignoring [`FORCE_ISA_ENV`]).
pub fn supported(isa: Isa) -> bool {
    detect().supports(isa)
}

/// The cap set by [`FORCE_ISA_ENV`]: `None` when unset (or empty), the
/// forced tier otherwise (`Isa::Avx512` stands for both AVX-512 tiers). An
/// invalid value is an error, every time it is asked.
pub fn isa_cap() -> Result<Option<Isa>, KernelError> {
    static CAP: OnceLock<Result<Option<Isa>, String>> = OnceLock::new();
    CAP.get_or_init(|| {
        let value = std::env::var(FORCE_ISA_ENV).ok();
        parse_force_isa(value.as_deref()).map_err(|e| match e {
            KernelError::Invalid(msg) => msg,
            other => other.to_string(),
        })
    })
    .clone()
    .map_err(KernelError::Invalid)
}

/// Whether kernels of `isa` may run here: the hardware has it and
/// [`FORCE_ISA_ENV`] does not force it off. Errors only on an invalid
/// [`FORCE_ISA_ENV`].
pub fn available(isa: Isa) -> Result<bool, KernelError> {
    Ok(availability(&detect().features, isa_cap()?, isa).is_ok())
}

/// Like [`available`], but says why not: [`KernelError::IsaUnavailable`]
/// naming the missing CPU features or the forcing environment variable. The
/// error's `variant` field is `*.{isa}` (any variant of that ISA); use
/// [`check_variant`] to name a variant.
pub fn check(isa: Isa) -> Result<(), KernelError> {
    check_variant(&format!("*.{isa}"), isa)
}

/// [`check`] for a named variant, so that the error names it.
pub fn check_variant(variant: &str, isa: Isa) -> Result<(), KernelError> {
    availability(&detect().features, isa_cap()?, isa).map_err(|reason| KernelError::IsaUnavailable {
        variant: variant.to_string(),
        isa: isa.to_string(),
        reason,
    })
}

/// The best ISA that may run here (hardware and cap). With an invalid
/// [`FORCE_ISA_ENV`] this is `Isa::Scalar`, the one choice that can never run
/// an unsupported instruction; use [`try_best_isa`] to see the error.
pub fn best_isa() -> Isa {
    try_best_isa().unwrap_or(Isa::Scalar)
}

/// The best ISA that may run here, or the error of an invalid [`FORCE_ISA_ENV`].
pub fn try_best_isa() -> Result<Isa, KernelError> {
    Ok(best_of(&detect().features, isa_cap()?))
}

/// The environment variable that sets the decode kernels' software
/// prefetch distance: `off` (or 0), or a distance in bytes.
pub const PREFETCH_ENV: &str = "ASDSL_PREFETCH";

/// The software prefetch distance (bytes ahead in the weight stream; 0 for
/// none) of the decode kernels: [`PREFETCH_ENV`] if set, else
/// [`default_prefetch_distance`] for this CPU. An invalid value is an error.
pub fn prefetch_distance() -> Result<usize, KernelError> {
    let value = std::env::var(PREFETCH_ENV).ok();
    Ok(parse_prefetch(value.as_deref())?.unwrap_or_else(|| default_prefetch_distance(&detect().vendor)))
}

/// Parses a [`PREFETCH_ENV`] value: `None` or blank for the default, `off`
/// or `0` for none, else a distance in bytes (a multiple of 64 up to 1 MiB).
pub fn parse_prefetch(value: Option<&str>) -> Result<Option<usize>, KernelError> {
    let Some(raw) = value else { return Ok(None) };
    let v = raw.trim().to_ascii_lowercase();
    let invalid = || {
        KernelError::Invalid(format!(
            "{PREFETCH_ENV}=`{raw}` is not `off` or a distance in bytes (a multiple of 64, at most 1048576)"
        ))
    };
    match v.as_str() {
        "" => Ok(None),
        "off" => Ok(Some(0)),
        _ => match v.parse::<usize>() {
            Ok(bytes) if bytes.is_multiple_of(64) && bytes <= 1 << 20 => Ok(Some(bytes)),
            _ => Err(invalid()),
        },
    }
}

/// The software prefetch distance (bytes) of the decode kernels where it is on.
pub const PREFETCH_DISTANCE: usize = 4096;

/// The default prefetch distance for a CPU vendor: off on AMD (and Hygon),
/// whose hardware prefetchers keep the kernels' streams fed (on Zen 3 the
/// decode kernels were faster without software prefetch in 15 of 16 cases
/// of an A/B, Q4_K by up to 1.18x, and a plain read by 1.18x);
/// [`PREFETCH_DISTANCE`] elsewhere, as measured on the Intel machines (see
/// `kernels/BENCHMARKS.md`). A rule by vendor, not a measurement: the plan
/// does not choose it yet.
pub fn default_prefetch_distance(vendor: &str) -> usize {
    match vendor {
        "AuthenticAMD" | "HygonGenuine" => 0,
        _ => PREFETCH_DISTANCE,
    }
}

/// Parses a [`FORCE_ISA_ENV`] value. `None` or an empty (all-blank) value
/// means no cap. Case and surrounding blanks are ignored.
pub fn parse_force_isa(value: Option<&str>) -> Result<Option<Isa>, KernelError> {
    let Some(raw) = value else { return Ok(None) };
    let v = raw.trim().to_ascii_lowercase();
    match v.as_str() {
        "" => Ok(None),
        "scalar" => Ok(Some(Isa::Scalar)),
        "avx2" => Ok(Some(Isa::Avx2)),
        "avx512" => Ok(Some(Isa::Avx512)),
        _ => Err(KernelError::Invalid(format!(
            "{FORCE_ISA_ENV}=`{raw}` is not one of scalar, avx2, avx512 (unset it to use the best ISA of this CPU)"
        ))),
    }
}

/// The tier of an ISA for capping: scalar 0, AVX2 1, both AVX-512 ISAs 2.
fn tier(isa: Isa) -> u8 {
    match isa {
        Isa::Scalar => 0,
        Isa::Avx2 => 1,
        Isa::Avx512 | Isa::Avx512Vnni => 2,
    }
}

/// Whether the cap allows `isa` (`None` allows everything; `Some(Avx512)` allows both AVX-512 ISAs).
pub fn cap_allows(cap: Option<Isa>, isa: Isa) -> bool {
    cap.is_none_or(|c| tier(isa) <= tier(c))
}

/// The CPU features `isa` needs.
pub fn required_features(isa: Isa) -> Vec<&'static str> {
    let mut req = Vec::new();
    if tier(isa) >= 1 {
        req.extend_from_slice(AVX2_FEATURES);
    }
    if tier(isa) >= 2 {
        req.extend_from_slice(AVX512_FEATURES);
    }
    if isa == Isa::Avx512Vnni {
        req.extend_from_slice(VNNI_FEATURES);
    }
    req
}

/// The features `isa` needs that `features` lacks (empty: the hardware supports it).
pub fn missing_features<S: AsRef<str>>(features: &[S], isa: Isa) -> Vec<&'static str> {
    required_features(isa).into_iter().filter(|r| !features.iter().any(|f| f.as_ref() == *r)).collect()
}

/// Whether `isa` may run on a CPU with `features` under `cap`; the error is
/// the reason, phrased to follow "which ...".
pub fn availability<S: AsRef<str>>(features: &[S], cap: Option<Isa>, isa: Isa) -> Result<(), String> {
    let missing = missing_features(features, isa);
    if !missing.is_empty() {
        return Err(format!("this CPU does not support (missing: {})", missing.join(", ")));
    }
    if let Some(c) = cap
        && !cap_allows(cap, isa)
    {
        return Err(format!("is forced off by {FORCE_ISA_ENV}={c}"));
    }
    Ok(())
}

/// The best ISA available on a CPU with `features` under `cap`.
pub fn best_of<S: AsRef<str>>(features: &[S], cap: Option<Isa>) -> Isa {
    Isa::ALL.iter().rev().copied().find(|&isa| availability(features, cap, isa).is_ok()).unwrap_or(Isa::Scalar)
}

fn detect_uncached() -> CpuInfo {
    let logical = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let physical = sysfs_physical_cores().map(|p| p.clamp(1, logical)).unwrap_or(logical);
    let mut info = arch::identify();
    info.logical_cores = logical;
    info.physical_cores = physical;
    let mut caches = arch::caches(&info.vendor);
    let sysfs = sysfs_caches();
    if caches.is_empty() {
        caches = sysfs.clone();
    }
    // CPUID reports how many logical CPUs *could* share a cache (an upper
    // bound of APIC ids); sysfs knows how many do.
    for c in &mut caches {
        if let Some(s) = sysfs.iter().find(|s| s.level == c.level && s.kind == c.kind) {
            c.shared_by_logical = s.shared_by_logical;
        }
        c.shared_by_logical = c.shared_by_logical.clamp(1, logical as u32);
    }
    caches.sort_by_key(|c| (c.level, c.kind));
    caches.dedup();
    info.caches = caches;
    info
}

// Miri cannot run CPUID: there the CPU reports no features, so only the
// scalar variants run (scripts/miri.sh).
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod arch {
    use std::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};

    use super::{CacheInfo, CacheKind, CpuInfo};

    fn reg_bytes(regs: &[u32]) -> String {
        let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_le_bytes()).collect();
        String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string()
    }

    pub(super) fn identify() -> CpuInfo {
        let leaf0 = __cpuid(0);
        let max_leaf = leaf0.eax;
        let vendor = reg_bytes(&[leaf0.ebx, leaf0.edx, leaf0.ecx]);
        let max_ext = __cpuid(0x8000_0000).eax;
        let brand = if max_ext >= 0x8000_0004 {
            let mut regs = Vec::with_capacity(12);
            for leaf in 0x8000_0002..=0x8000_0004u32 {
                let r = __cpuid(leaf);
                regs.extend([r.eax, r.ebx, r.ecx, r.edx]);
            }
            reg_bytes(&regs)
        } else {
            String::new()
        };
        let (mut family, mut model, mut stepping) = (0, 0, 0);
        if max_leaf >= 1 {
            let eax = __cpuid(1).eax;
            stepping = eax & 0xF;
            let base_model = (eax >> 4) & 0xF;
            let base_family = (eax >> 8) & 0xF;
            let ext_model = (eax >> 16) & 0xF;
            let ext_family = (eax >> 20) & 0xFF;
            family = if base_family == 0xF { base_family + ext_family } else { base_family };
            let amd_like = vendor == "AuthenticAMD" || vendor == "HygonGenuine";
            let use_ext_model = if amd_like { base_family == 0xF } else { base_family == 0x6 || base_family == 0xF };
            model = if use_ext_model { (ext_model << 4) | base_model } else { base_model };
        }
        CpuInfo {
            vendor,
            brand,
            family,
            model,
            stepping,
            features: features(max_leaf),
            logical_cores: 0,
            physical_cores: 0,
            caches: Vec::new(),
        }
    }

    fn features(max_leaf: u32) -> Vec<String> {
        let mut f: Vec<&str> = Vec::new();
        macro_rules! probe {
            ($($name:tt),*) => {
                $(if std::is_x86_feature_detected!($name) { f.push($name); })*
            };
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512dq",
            "avx512vnni",
            "avx512bf16",
            "avx512fp16",
            "avxvnni"
        );
        // AMX detection in `is_x86_feature_detected!` is unstable; read CPUID
        // leaf 7 and require the OS to have enabled the tile state (XCR0 bits 17, 18).
        if max_leaf >= 7 && amx_os_enabled() {
            let edx = __cpuid_count(7, 0).edx;
            for (bit, name) in [(24, "amx-tile"), (25, "amx-int8"), (22, "amx-bf16")] {
                if edx & (1 << bit) != 0 {
                    f.push(name);
                }
            }
        }
        super::REPORTED_FEATURES.iter().filter(|r| f.contains(r)).map(|s| s.to_string()).collect()
    }

    fn amx_os_enabled() -> bool {
        let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
        if !osxsave {
            return false;
        }
        // SAFETY: CPUID.1:ECX.OSXSAVE is set, so the OS has enabled XGETBV
        // and XCR0 (register 0) can be read.
        let xcr0 = unsafe { _xgetbv(0) };
        xcr0 & (0b11 << 17) == (0b11 << 17)
    }

    pub(super) fn caches(vendor: &str) -> Vec<CacheInfo> {
        let leaf = match vendor {
            "GenuineIntel" if __cpuid(0).eax >= 4 => 4,
            "AuthenticAMD" | "HygonGenuine" => {
                let max_ext = __cpuid(0x8000_0000).eax;
                let topo_ext = max_ext >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 22) != 0;
                if max_ext >= 0x8000_001D && topo_ext {
                    0x8000_001D
                } else {
                    return Vec::new();
                }
            }
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for sub in 0..16 {
            let r = __cpuid_count(leaf, sub);
            let kind = match r.eax & 0x1F {
                0 => break,
                1 => CacheKind::Data,
                2 => CacheKind::Instruction,
                3 => CacheKind::Unified,
                _ => continue,
            };
            let level = ((r.eax >> 5) & 0x7) as u8;
            let shared = ((r.eax >> 14) & 0xFFF) + 1;
            let ways = u64::from((r.ebx >> 22) & 0x3FF) + 1;
            let partitions = u64::from((r.ebx >> 12) & 0x3FF) + 1;
            let line = u64::from(r.ebx & 0xFFF) + 1;
            let sets = u64::from(r.ecx) + 1;
            out.push(CacheInfo { level, kind, size_bytes: ways * partitions * line * sets, shared_by_logical: shared });
        }
        out
    }
}

#[cfg(any(not(target_arch = "x86_64"), miri))]
mod arch {
    use super::{CacheInfo, CpuInfo};

    pub(super) fn identify() -> CpuInfo {
        CpuInfo {
            vendor: "unknown".to_string(),
            brand: std::env::consts::ARCH.to_string(),
            family: 0,
            model: 0,
            stepping: 0,
            features: Vec::new(),
            logical_cores: 0,
            physical_cores: 0,
            caches: Vec::new(),
        }
    }

    pub(super) fn caches(_vendor: &str) -> Vec<CacheInfo> {
        Vec::new()
    }
}

/// Counts distinct (package, core) pairs over `/sys/devices/system/cpu/cpu*/topology`.
fn sysfs_physical_cores() -> Option<usize> {
    let mut cores = BTreeSet::new();
    for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let topo = entry.path().join("topology");
        let read = |f: &str| std::fs::read_to_string(topo.join(f)).ok().and_then(|s| s.trim().parse::<i64>().ok());
        if let (Some(pkg), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((pkg, core));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Caches of cpu0 from `/sys/devices/system/cpu/cpu0/cache/index*`.
fn sysfs_caches() -> Vec<CacheInfo> {
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("index") {
            continue;
        }
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).ok().map(|s| s.trim().to_string());
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size")) else { continue };
        let Ok(level) = level.parse::<u8>() else { continue };
        let kind = match kind.as_str() {
            "Data" => CacheKind::Data,
            "Instruction" => CacheKind::Instruction,
            "Unified" => CacheKind::Unified,
            _ => continue,
        };
        let Some(size_bytes) = parse_size(&size) else { continue };
        let shared_by_logical = read("shared_cpu_list").map(|l| cpu_list_len(&l)).unwrap_or(1).max(1);
        out.push(CacheInfo { level, kind, size_bytes, shared_by_logical });
    }
    out.sort_by_key(|c| (c.level, c.kind));
    out
}

/// Parses a sysfs cache size such as `48K`, `2048K`, `260M`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// Number of CPUs in a sysfs list such as `0-3,8,10-11`.
fn cpu_list_len(list: &str) -> u32 {
    list.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(part.trim().parse::<u32>().is_ok()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPR: &[&str] =
        &["sse4.2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni"];
    const HASWELL: &[&str] = &["sse4.2", "avx", "avx2", "fma", "f16c", "bmi2"];
    const SKYLAKE_X: &[&str] =
        &["sse4.2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl", "avx512dq"];

    #[test]
    fn parse_values() {
        assert_eq!(parse_force_isa(None).unwrap(), None);
        assert_eq!(parse_force_isa(Some("")).unwrap(), None);
        assert_eq!(parse_force_isa(Some("  ")).unwrap(), None);
        assert_eq!(parse_force_isa(Some("scalar")).unwrap(), Some(Isa::Scalar));
        assert_eq!(parse_force_isa(Some("AVX2")).unwrap(), Some(Isa::Avx2));
        assert_eq!(parse_force_isa(Some(" avx512 ")).unwrap(), Some(Isa::Avx512));
        for bad in ["sse", "avx512vnni2", "neon", "avx-512"] {
            let err = parse_force_isa(Some(bad)).unwrap_err();
            assert!(matches!(err, KernelError::Invalid(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains(FORCE_ISA_ENV), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn prefetch_values() {
        assert_eq!(parse_prefetch(None).unwrap(), None);
        assert_eq!(parse_prefetch(Some(" ")).unwrap(), None);
        assert_eq!(parse_prefetch(Some("OFF")).unwrap(), Some(0));
        assert_eq!(parse_prefetch(Some("0")).unwrap(), Some(0));
        assert_eq!(parse_prefetch(Some(" 8192 ")).unwrap(), Some(8192));
        for bad in ["100", "-64", "4k", "2097152", "on"] {
            let err = parse_prefetch(Some(bad)).unwrap_err().to_string();
            assert!(err.contains(PREFETCH_ENV) && err.contains(bad), "{bad}: {err}");
        }
        assert_eq!(default_prefetch_distance("AuthenticAMD"), 0);
        assert_eq!(default_prefetch_distance("GenuineIntel"), PREFETCH_DISTANCE);
    }

    #[test]
    fn cap_tiers() {
        for isa in Isa::ALL.iter().copied() {
            assert!(cap_allows(None, isa));
        }
        assert!(cap_allows(Some(Isa::Scalar), Isa::Scalar));
        assert!(!cap_allows(Some(Isa::Scalar), Isa::Avx2));
        assert!(cap_allows(Some(Isa::Avx2), Isa::Avx2));
        assert!(!cap_allows(Some(Isa::Avx2), Isa::Avx512));
        assert!(!cap_allows(Some(Isa::Avx2), Isa::Avx512Vnni));
        assert!(cap_allows(Some(Isa::Avx512), Isa::Avx512));
        assert!(cap_allows(Some(Isa::Avx512), Isa::Avx512Vnni));
    }

    #[test]
    fn hardware_requirements() {
        assert!(missing_features::<&str>(&[], Isa::Scalar).is_empty());
        assert_eq!(missing_features::<&str>(&["avx", "avx2", "fma", "f16c"], Isa::Avx2), vec!["bmi2"]);
        assert!(missing_features(HASWELL, Isa::Avx2).is_empty());
        assert!(!missing_features(HASWELL, Isa::Avx512).is_empty());
        assert!(missing_features(SKYLAKE_X, Isa::Avx512).is_empty());
        assert_eq!(missing_features(SKYLAKE_X, Isa::Avx512Vnni), vec!["avx512vnni"]);
        // VNNI without the AVX-512 base is not enough.
        assert!(!missing_features(&["avx512vnni"], Isa::Avx512Vnni).is_empty());
        // AVX-512 without the AVX2 tier is not enough either.
        assert!(missing_features(AVX512_FEATURES, Isa::Avx512).contains(&"fma"));
    }

    #[test]
    fn best_under_caps() {
        assert_eq!(best_of(SPR, None), Isa::Avx512Vnni);
        assert_eq!(best_of(SPR, Some(Isa::Avx512)), Isa::Avx512Vnni);
        assert_eq!(best_of(SPR, Some(Isa::Avx2)), Isa::Avx2);
        assert_eq!(best_of(SPR, Some(Isa::Scalar)), Isa::Scalar);
        assert_eq!(best_of(SKYLAKE_X, None), Isa::Avx512);
        assert_eq!(best_of(HASWELL, None), Isa::Avx2);
        assert_eq!(best_of(HASWELL, Some(Isa::Avx512)), Isa::Avx2);
        assert_eq!(best_of::<&str>(&[], None), Isa::Scalar);
    }

    #[test]
    fn reasons_say_why() {
        let hw = availability(HASWELL, None, Isa::Avx512Vnni).unwrap_err();
        assert!(hw.contains("does not support") && hw.contains("avx512f") && hw.contains("avx512vnni"), "{hw}");
        let forced = availability(SPR, Some(Isa::Avx2), Isa::Avx512).unwrap_err();
        assert!(forced.contains("ASDSL_FORCE_ISA=avx2"), "{forced}");
        // Missing hardware is the reason even when the cap would also refuse.
        let both = availability(HASWELL, Some(Isa::Scalar), Isa::Avx512).unwrap_err();
        assert!(both.contains("does not support"), "{both}");
        assert!(availability(SPR, Some(Isa::Avx512), Isa::Avx512Vnni).is_ok());
        assert!(availability::<&str>(&[], Some(Isa::Scalar), Isa::Scalar).is_ok());
    }

    #[test]
    fn sizes_and_lists() {
        assert_eq!(parse_size("48K"), Some(48 << 10));
        assert_eq!(parse_size("266240K"), Some(266240 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("xK"), None);
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len("0-1"), 2);
        assert_eq!(cpu_list_len("0-3,8,10-11\n"), 7);
        assert_eq!(cpu_list_len(""), 0);
    }

    #[test]
    fn detected_machine_is_consistent() {
        let info = detect();
        assert!(std::ptr::eq(info, detect()), "detected once");
        assert!(info.logical_cores >= 1);
        assert!(info.physical_cores >= 1 && info.physical_cores <= info.logical_cores);
        for f in &info.features {
            assert!(REPORTED_FEATURES.contains(&f.as_str()), "{f}");
        }
        for c in &info.caches {
            assert!(c.level >= 1 && c.size_bytes > 0 && c.shared_by_logical >= 1, "{c:?}");
            assert!(c.shared_by_logical as usize <= info.logical_cores);
        }
        assert!(supported(Isa::Scalar));
        // The hardware answer and the pure function agree.
        for isa in Isa::ALL.iter().copied() {
            assert_eq!(supported(isa), missing_features(&info.features, isa).is_empty());
        }
        #[cfg(target_arch = "x86_64")]
        {
            if supported(Isa::Avx2) {
                assert!(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"));
            }
            assert!(!info.vendor.is_empty());
        }
        // Round trip through JSON (the plan fingerprint stores it).
        let json = serde_json::to_string(info).unwrap();
        let back: CpuInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, info);
    }

    #[test]
    fn env_cap_is_consistent() {
        // Whatever the environment says, the answers agree with each other.
        match isa_cap() {
            Ok(cap) => {
                let best = best_isa();
                assert!(cap_allows(cap, best) && supported(best));
                for isa in Isa::ALL.iter().copied() {
                    let ok = available(isa).unwrap();
                    assert_eq!(ok, check(isa).is_ok());
                    assert_eq!(ok, supported(isa) && cap_allows(cap, isa));
                    if ok {
                        assert!(isa <= best);
                    }
                }
            }
            Err(e) => {
                assert!(matches!(e, KernelError::Invalid(_)));
                assert_eq!(best_isa(), Isa::Scalar);
                assert!(available(Isa::Scalar).is_err());
            }
        }
    }
}
