//! The per-machine plan: which variant and row partition runs each matrix
//! key at each thread count, as measured by [`super::tune`].
//!
//! A plan is a versioned JSON file. It records the machine it was tuned on
//! (a [`Fingerprint`]), the asdsl version, and a hash of the kernel registry
//! (the set of variant names). [`Plan::load`] checks all three against this
//! process and refuses a plan that does not match, with a [`PlanError`] that
//! says exactly what differs; the runtime then uses the
//! [heuristic default](super::heuristic) and prints the one-line
//! [`PlanStatus`].
//!
//! Even a plan that loads is never trusted to run an instruction the CPU
//! lacks: [`Plan::choose`] checks every entry's variant against the registry,
//! the key and [`crate::cpu::available`], and falls back to the heuristic
//! for an entry that fails (a variant that no longer exists, a hand-edited
//! entry, an ISA forced off by `ASDSL_FORCE_ISA`).
//!
//! Location: [`PLAN_ENV`] (`ASDSL_PLAN=FILE`) or an explicit path (`--plan
//! FILE`) override the default, one file per fingerprint in the user cache
//! directory: `$XDG_CACHE_HOME/asdsl/plan-<fingerprint id>.json`, else
//! `~/.cache/asdsl/...` (`%LOCALAPPDATA%\asdsl\...` on Windows). Files are
//! written atomically (a temporary file in the same directory, then a rename).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MatrixKey;
use super::error::PlanError;
use super::heuristic;
use crate::cpu::{self, CacheInfo, CpuInfo};
use crate::registry::{self, VARIANTS};
use crate::run::Partition;
use crate::variant::Variant;

/// The plan format version this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// The largest plan file read (64 MiB; a plan of every key of several
/// models at several thread counts is well under 1 MiB). A larger file is
/// refused as corrupt rather than read into memory.
pub const MAX_PLAN_BYTES: u64 = 64 << 20;

/// The environment variable naming a plan file to use instead of the default.
pub const PLAN_ENV: &str = "ASDSL_PLAN";

/// This build's version (written into plans; a plan of another version is refused).
pub const ASDSL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What identifies a machine for a plan: the CPU's identity, the ISA
/// features the kernels care about, core counts and caches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CPUID vendor string.
    pub vendor: String,
    /// Brand string.
    pub brand: String,
    /// Display family.
    pub family: u32,
    /// Display model.
    pub model: u32,
    /// Stepping.
    pub stepping: u32,
    /// ISA features (names as in [`cpu::REPORTED_FEATURES`]).
    pub features: Vec<String>,
    /// Logical CPUs available to the process.
    pub logical_cores: usize,
    /// Physical cores.
    pub physical_cores: usize,
    /// Data and unified caches.
    pub caches: Vec<CacheInfo>,
}

impl Fingerprint {
    /// The fingerprint of a detected CPU.
    pub fn of(cpu: &CpuInfo) -> Fingerprint {
        Fingerprint {
            vendor: cpu.vendor.clone(),
            brand: cpu.brand.clone(),
            family: cpu.family,
            model: cpu.model,
            stepping: cpu.stepping,
            features: cpu.features.clone(),
            logical_cores: cpu.logical_cores,
            physical_cores: cpu.physical_cores,
            caches: cpu.caches.clone(),
        }
    }

    /// The fingerprint of this machine.
    pub fn current() -> Fingerprint {
        Fingerprint::of(cpu::detect())
    }

    /// Every difference from `this` (the running machine), phrased
    /// `field: plan X, this machine Y`. Empty when they match.
    pub fn differences(&self, this: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, plan: String, here: String| {
            if plan != here {
                out.push(format!("{name}: plan `{plan}`, this machine `{here}`"));
            }
        };
        field("vendor", self.vendor.clone(), this.vendor.clone());
        field("brand", self.brand.clone(), this.brand.clone());
        field(
            "family/model/stepping",
            format!("{}/{}/{}", self.family, self.model, self.stepping),
            format!("{}/{}/{}", this.family, this.model, this.stepping),
        );
        let missing: Vec<&str> =
            self.features.iter().filter(|f| !this.features.contains(f)).map(String::as_str).collect();
        let extra: Vec<&str> =
            this.features.iter().filter(|f| !self.features.contains(f)).map(String::as_str).collect();
        if !missing.is_empty() {
            out.push(format!("features: the plan's CPU has {} which this machine lacks", missing.join(", ")));
        }
        if !extra.is_empty() {
            out.push(format!("features: this machine has {} which the plan's CPU lacked", extra.join(", ")));
        }
        let mut field = |name: &str, plan: String, here: String| {
            if plan != here {
                out.push(format!("{name}: plan {plan}, this machine {here}"));
            }
        };
        field("logical cores", self.logical_cores.to_string(), this.logical_cores.to_string());
        field("physical cores", self.physical_cores.to_string(), this.physical_cores.to_string());
        field("caches", caches_text(&self.caches), caches_text(&this.caches));
        out
    }

    /// A short stable id (16 hex digits of a hash of the fingerprint), used
    /// in the default plan file name.
    pub fn id(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        format!("{:016x}", fnv1a64(text.as_bytes()))
    }

    /// One line for people: brand, cores, last-level cache.
    pub fn summary(&self) -> String {
        let llc = self
            .caches
            .iter()
            .max_by_key(|c| c.level)
            .map_or("unknown".to_string(), |c| format!("L{} {} KiB", c.level, c.size_bytes >> 10));
        format!(
            "{} ({} family {} model {} stepping {}), {} logical / {} physical cores, {llc}",
            self.brand, self.vendor, self.family, self.model, self.stepping, self.logical_cores, self.physical_cores
        )
    }
}

fn caches_text(caches: &[CacheInfo]) -> String {
    let parts: Vec<String> =
        caches.iter().map(|c| format!("L{} {} {} KiB", c.level, c.kind.name(), c.size_bytes >> 10)).collect();
    format!("[{}]", parts.join(", "))
}

/// 64-bit FNV-1a: a small stable hash (the same on every platform and
/// release, unlike `std`'s hashers).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of a set of variant names (sorted, joined by newlines):
/// `fnv1a64:<16 hex digits>`.
pub fn registry_hash_of<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    format!("fnv1a64:{:016x}", fnv1a64(names.join("\n").as_bytes()))
}

/// The hash of this build's registry.
pub fn registry_hash() -> String {
    registry_hash_of(VARIANTS.iter().map(|v| v.name))
}

/// One measured candidate: a variant with a partition, and its speed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Variant name.
    pub variant: String,
    /// Row partition.
    pub partition: Partition,
    /// Median seconds per call.
    pub secs: f64,
    /// Weight bytes per second (10^9).
    pub gbs: f64,
    /// Percentage of the measured DRAM read bandwidth at this thread count, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline_pct: Option<f64>,
    /// Timed samples behind the median.
    pub samples: usize,
}

/// The plan for one key at one thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The matrix key.
    pub key: MatrixKey,
    /// Thread count.
    pub threads: usize,
    /// The fastest candidate.
    pub choice: Measured,
    /// The next fastest candidates (up to three), fastest first.
    #[serde(default)]
    pub runners_up: Vec<Measured>,
    /// The heuristic default's measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heuristic: Option<Measured>,
    /// The slowest candidate measured (possibly from fewer samples: losers are pruned early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest: Option<Measured>,
    /// Candidates measured (variant x partition).
    #[serde(default)]
    pub candidates: usize,
}

/// DRAM read bandwidth at one thread count, as measured when tuning.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RooflinePoint {
    /// Thread count.
    pub threads: usize,
    /// GB/s (10^9 bytes/s), median.
    pub gbs: f64,
}

/// A tuned plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Plan format version ([`PLAN_VERSION`]).
    pub version: u32,
    /// asdsl version that tuned it.
    pub asdsl_version: String,
    /// Registry hash ([`registry_hash`]).
    pub registry_hash: String,
    /// Number of variants in that registry.
    pub registry_variants: usize,
    /// The machine.
    pub fingerprint: Fingerprint,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: u64,
    /// Seconds the tuning took (measurement only).
    pub tune_secs: f64,
    /// The budget it was given, seconds.
    pub budget_secs: f64,
    /// DRAM bandwidth per thread count, if measured.
    #[serde(default)]
    pub roofline: Vec<RooflinePoint>,
    /// One entry per (key, threads).
    pub entries: Vec<Entry>,
}

/// Where a choice came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChoiceSource {
    /// The plan's entry.
    Plan,
    /// The heuristic default, and why the plan was not used for this key.
    Heuristic(String),
}

/// A variant and partition to run a key with.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The variant (always one the CPU allows).
    pub variant: &'static Variant,
    /// The row partition.
    pub partition: Partition,
    /// Plan or heuristic.
    pub source: ChoiceSource,
}

impl Plan {
    /// An empty plan for this machine and build.
    pub fn new_for_this_machine() -> Plan {
        Plan {
            version: PLAN_VERSION,
            asdsl_version: ASDSL_VERSION.to_string(),
            registry_hash: registry_hash(),
            registry_variants: VARIANTS.len(),
            fingerprint: Fingerprint::current(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            tune_secs: 0.0,
            budget_secs: 0.0,
            roofline: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Parses a plan (`path` only names it in errors). Checks the format
    /// version first, then the structure and every field's range; does not
    /// check the machine (see [`Plan::check`]).
    pub fn from_json(text: &str, path: &Path) -> Result<Plan, PlanError> {
        let corrupt = |reason: String| PlanError::Corrupt { path: path.to_path_buf(), reason };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        let Some(obj) = value.as_object() else {
            return Err(corrupt("the top level is not a JSON object".into()));
        };
        let Some(version) = obj.get("version").and_then(|v| v.as_u64()) else {
            return Err(corrupt("no numeric `version` field".into()));
        };
        if version != PLAN_VERSION as u64 {
            return Err(PlanError::Version { path: path.to_path_buf(), found: version, expected: PLAN_VERSION });
        }
        let plan: Plan = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        plan.check_fields().map_err(corrupt)?;
        Ok(plan)
    }

    /// Ranges of the fields that serde cannot check.
    fn check_fields(&self) -> Result<(), String> {
        for (i, e) in self.entries.iter().enumerate() {
            let at = |what: &str| format!("entry {i} ({} at {} threads): {what}", e.key, e.threads);
            if e.threads == 0 {
                return Err(at("thread count 0"));
            }
            e.key.check().map_err(|err| at(&err.to_string()))?;
            for m in std::iter::once(&e.choice).chain(&e.runners_up).chain(&e.heuristic).chain(&e.slowest) {
                if !(m.secs.is_finite() && m.secs > 0.0 && m.gbs.is_finite() && m.gbs >= 0.0) {
                    return Err(at(&format!("`{}` has an invalid time or speed", m.variant)));
                }
                if m.partition.rows_per_chunk == 0 {
                    return Err(at(&format!("`{}` has 0 rows per chunk", m.variant)));
                }
            }
        }
        Ok(())
    }

    /// Checks the plan against this build and machine (see [`Plan::check_against`]).
    pub fn check(&self, path: &Path) -> Result<(), PlanError> {
        self.check_against(path, ASDSL_VERSION, &registry_hash(), VARIANTS.len(), &Fingerprint::current())
    }

    /// Checks the plan against a build (asdsl version, registry hash and
    /// size) and a machine: the first mismatch, in that order, is the error.
    pub fn check_against(
        &self,
        path: &Path,
        asdsl_version: &str,
        registry_hash: &str,
        registry_variants: usize,
        machine: &Fingerprint,
    ) -> Result<(), PlanError> {
        if self.asdsl_version != asdsl_version {
            return Err(PlanError::AsdslVersion {
                path: path.to_path_buf(),
                found: self.asdsl_version.clone(),
                expected: asdsl_version.to_string(),
            });
        }
        if self.registry_hash != registry_hash || self.registry_variants != registry_variants {
            return Err(PlanError::Registry {
                path: path.to_path_buf(),
                found: self.registry_hash.clone(),
                found_count: self.registry_variants,
                expected: registry_hash.to_string(),
                expected_count: registry_variants,
            });
        }
        let differences = self.fingerprint.differences(machine);
        if !differences.is_empty() {
            return Err(PlanError::Fingerprint { path: path.to_path_buf(), differences });
        }
        Ok(())
    }

    /// Reads, parses and checks a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let plan = Plan::read(path)?;
        plan.check(path)?;
        Ok(plan)
    }

    /// Reads and parses a plan file without checking it against this
    /// machine (for `asdsl plan show`).
    pub fn read(path: &Path) -> Result<Plan, PlanError> {
        let io = |source| PlanError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_PLAN_BYTES {
            return Err(PlanError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("{len} bytes, more than a plan can be ({MAX_PLAN_BYTES} bytes at most)"),
            });
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PLAN_BYTES + 1), &mut bytes).map_err(io)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| PlanError::Corrupt { path: path.to_path_buf(), reason: format!("not UTF-8: {e}") })?;
        Plan::from_json(&text, path)
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the plan atomically: a temporary file in the same directory,
    /// synced, then renamed over `path`. Creates the directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        let io = |source| PlanError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// The entry for `key` at `threads`, if tuned.
    pub fn entry(&self, key: &MatrixKey, threads: usize) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == *key && e.threads == threads)
    }

    /// Adds `older`'s entries for (key, threads) pairs this plan lacks (so
    /// that tuning one model keeps the plan of another).
    pub fn keep_entries_of(&mut self, older: Plan) {
        for e in older.entries {
            if self.entry(&e.key, e.threads).is_none() {
                self.entries.push(e);
            }
        }
        for r in older.roofline {
            if !self.roofline.iter().any(|p| p.threads == r.threads) {
                self.roofline.push(r);
            }
        }
    }

    /// The variant and partition for `key` at `threads`: the plan's entry if
    /// it has one whose variant exists, computes this key and may run on
    /// this CPU; otherwise the [heuristic default](heuristic::heuristic),
    /// with the reason in [`Choice::source`]. Errors only if no variant at
    /// all computes the key here.
    pub fn choose(&self, key: &MatrixKey, threads: usize) -> Result<Choice, PlanError> {
        let reason = match self.entry(key, threads) {
            None => format!("the plan has no entry for {key} at {threads} threads"),
            Some(e) => match entry_choice(e, key) {
                Ok(choice) => return Ok(choice),
                Err(reason) => reason,
            },
        };
        let mut choice = heuristic::heuristic(key, threads)?;
        choice.source = ChoiceSource::Heuristic(reason);
        Ok(choice)
    }
}

fn entry_choice(e: &Entry, key: &MatrixKey) -> Result<Choice, String> {
    let name = &e.choice.variant;
    let Some(variant) = registry::find(name) else {
        return Err(format!("the plan's variant `{name}` no longer exists"));
    };
    if !key.admits(variant) {
        return Err(format!("the plan's variant `{name}` does not compute {key}"));
    }
    if let Err(err) = cpu::check_variant(variant.name, variant.isa) {
        return Err(err.to_string());
    }
    if e.choice.partition.rows_per_chunk == 0 {
        return Err(format!("the plan's partition for `{name}` has 0 rows per chunk"));
    }
    Ok(Choice { variant, partition: e.choice.partition, source: ChoiceSource::Plan })
}

/// The user cache directory of asdsl: `$XDG_CACHE_HOME/asdsl`, else
/// `$HOME/.cache/asdsl` (`%LOCALAPPDATA%\asdsl` on Windows). `None` if none of
/// those variables is set.
pub fn cache_dir() -> Option<PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        return nonempty("LOCALAPPDATA").map(|d| d.join("asdsl"));
    }
    nonempty("XDG_CACHE_HOME")
        .map(|d| d.join("asdsl"))
        .or_else(|| nonempty("HOME").map(|h| h.join(".cache").join("asdsl")))
}

/// The default plan file of a machine: `plan-<fingerprint id>.json` in [`cache_dir`].
pub fn default_path_for(fingerprint: &Fingerprint) -> Option<PathBuf> {
    cache_dir().map(|d| d.join(format!("plan-{}.json", fingerprint.id())))
}

/// Which plan file to use and why: `explicit` (`--plan FILE`), else
/// [`PLAN_ENV`], else the default for this machine.
pub fn resolve_path(explicit: Option<&Path>) -> Option<(PathBuf, PathOrigin)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), PathOrigin::Explicit));
    }
    if let Some(p) = std::env::var_os(PLAN_ENV).filter(|v| !v.is_empty()) {
        return Some((PathBuf::from(p), PathOrigin::Env));
    }
    default_path_for(&Fingerprint::current()).map(|p| (p, PathOrigin::Default))
}

/// How a plan path was chosen.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PathOrigin {
    /// Given on the command line.
    Explicit,
    /// From [`PLAN_ENV`].
    Env,
    /// The default for this machine.
    Default,
}

/// What became of the plan, for the one line the runtime prints.
#[derive(Debug)]
pub enum PlanStatus {
    /// A plan was loaded and is used.
    Used {
        /// The file.
        path: PathBuf,
        /// Its entries.
        entries: usize,
    },
    /// No plan file exists at the default location.
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// No cache directory is known (no `HOME` or `XDG_CACHE_HOME`).
    NoLocation,
    /// A plan was found but refused (or could not be read).
    Refused(PlanError),
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanStatus::Used { path, entries } => write!(f, "plan {} used ({entries} entries)", path.display()),
            PlanStatus::Missing { path } => {
                write!(f, "no plan: {} does not exist (run `asdsl tune`), using heuristic default", path.display())
            }
            PlanStatus::NoLocation => {
                write!(f, "no plan: no cache directory (set HOME or {PLAN_ENV}), using heuristic default")
            }
            PlanStatus::Refused(err) => write!(f, "no plan: {err}, using heuristic default"),
        }
    }
}

/// The plan the runtime uses (if any) and its status line. Choosing never
/// fails for lack of a plan: it falls back to the heuristic default.
#[derive(Debug)]
pub struct LoadedPlan {
    /// The plan, if one was found and matches this machine and build.
    pub plan: Option<Plan>,
    /// What happened, for one line of output.
    pub status: PlanStatus,
}

impl LoadedPlan {
    /// Loads the plan `explicit` (`--plan FILE`), else [`PLAN_ENV`], else
    /// the default for this machine. An explicitly named file that does not
    /// exist is refused (an error in the status), a missing default is not.
    pub fn load(explicit: Option<&Path>) -> LoadedPlan {
        let Some((path, origin)) = resolve_path(explicit) else {
            return LoadedPlan { plan: None, status: PlanStatus::NoLocation };
        };
        if origin == PathOrigin::Default && !path.exists() {
            return LoadedPlan { plan: None, status: PlanStatus::Missing { path } };
        }
        match Plan::load(&path) {
            Ok(plan) => {
                let entries = plan.entries.len();
                LoadedPlan { plan: Some(plan), status: PlanStatus::Used { path, entries } }
            }
            Err(err) => LoadedPlan { plan: None, status: PlanStatus::Refused(err) },
        }
    }

    /// No plan: every choice is the heuristic default.
    pub fn heuristic_only(status: PlanStatus) -> LoadedPlan {
        LoadedPlan { plan: None, status }
    }

    /// The choice for `key` at `threads` (see [`Plan::choose`]).
    pub fn choose(&self, key: &MatrixKey, threads: usize) -> Result<Choice, PlanError> {
        match &self.plan {
            Some(plan) => plan.choose(key, threads),
            None => {
                let mut choice = heuristic::heuristic(key, threads)?;
                choice.source = ChoiceSource::Heuristic("no plan".into());
                Ok(choice)
            }
        }
    }
}
