//! The autotuner: measures every applicable registry variant and row
//! partition for each matrix key under decode conditions, and writes the
//! winners into a [`Plan`].
//!
//! # How it measures
//!
//! - **Weights from DRAM.** For each key and each packed layout, the tuner
//!   makes copies of the (random, seeded) weight matrix that together exceed
//!   the rotation size ([`TuneOptions::rotation_bytes`], by default the
//!   roofline's DRAM buffer: at least 1 GiB) and rotates over them, call
//!   after call, so every call reads its weights from DRAM as decode does.
//!   Four times the last-level cache is not enough: an AMD L3 does not
//!   evict a cyclic stream in order, and keeps part of it (on a Zen 4 with
//!   32 MiB of L3, a 14 MB matrix rotated over 136 MiB ran 12 % faster than
//!   over 272 MiB or more, above the DRAM roofline). Every variant reading
//!   one layout (all SIMD variants with the same tile rows) shares the
//!   copies. One read of the copies warms up each layout.
//! - **Untouched memory is slow once.** On a shared host (a KVM guest on a
//!   Zen 4) memory left untouched for a second or two reads at about half
//!   speed on its next pass, and at full speed after a pass or two. The
//!   finals build their layouts one after another (seconds each, at 1 GiB),
//!   so before timing they pass over all of them again ([`WARM_PASSES`]);
//!   without that, the layout built first was timed in the host's slow
//!   state and lost to the others by up to 2.4x.
//! - **Samples.** A sample is a batch of consecutive calls lasting about
//!   [`SAMPLE_SECS`] (at least one call); its time per call is one
//!   observation. Each candidate gets one warm-up batch first. The statistic
//!   is the median, except in the finals (below); candidates are sampled in
//!   interleaved rounds so that slow drifts of a shared machine hit all of
//!   them alike.
//! - **Pruning.** Layouts are visited starting with the heuristic default's;
//!   a candidate whose first sample is more than [`CLEAR_LOSER`] x the best
//!   median so far is dropped at once, and after [`SCREEN_SAMPLES`] samples
//!   those more than [`PRUNE`] slower than the best are dropped. Survivors
//!   at more than one thread are then tried with dynamic partitions. The
//!   survivors are refined to [`REFINE_SAMPLES`] samples.
//! - **Ties.** When the two fastest of a layout are within noise (the
//!   larger of [`TIE`] and their interquartile spread), both get
//!   [`TIE_SAMPLES`] more samples, interleaved.
//! - **Finals.** The [`FINALISTS`] fastest of all layouts (within [`PRUNE`]
//!   of the best) and the heuristic default are measured again side by
//!   side: their layouts built together, a warm-up batch each, then
//!   [`FINAL_SAMPLES`] fresh samples each in interleaved rounds. The choice
//!   is the fastest in the finals, by the mean of the fastest
//!   [`FINAL_KEPT`] of its samples. Medians taken minutes apart on a shared
//!   machine differ by more than the finalists do; samples taken in the
//!   same rounds do not, and the speedup over the heuristic default is then
//!   a paired figure too.
//! - **Budget.** Each key gets a share of [`TuneOptions::budget`] (half
//!   shared equally, half by weight bytes); its layouts share the first
//!   [`LAYOUTS_SHARE`] of that equally, the finals the rest. Refinement,
//!   tie-breaks and finals stop at their deadlines, and a layout reached
//!   late is screened with one sample per candidate and no partition
//!   search. Every candidate is still measured once, so a budget too small
//!   for the keys (or a busy machine) is exceeded rather than producing no
//!   plan.
//!
//! [`sweep`] measures every candidate with the same number of samples and no
//! pruning: the exhaustive reference the tuner's choices are checked against.
//! [`head_to_head`] re-measures a few named candidates side by side, as the
//! finals do: the fair comparison of a plan's choice with a sweep's fastest
//! (the fastest of many noisy medians is biased low, being their minimum).

pub mod error;
pub mod heuristic;
pub mod plan;

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use error::PlanError;
pub use heuristic::heuristic;
pub use plan::{Choice, ChoiceSource, Entry, Fingerprint, LoadedPlan, Measured, Plan, PlanStatus, RooflinePoint};

use crate::cpu;
use crate::formats::Format;
use crate::input::Input;
use crate::pack::{Layout, PackedMatrix, quantize_matrix};
use crate::registry::VARIANTS;
use crate::run::{GemvRef, Partition, Schedule, Threads};
use crate::variant::{Sparsity, Variant};

/// Target duration of one sample (a batch of calls), seconds.
pub const SAMPLE_SECS: f64 = 0.004;
/// A first sample slower than this factor times the best so far is dropped at once.
pub const CLEAR_LOSER: f64 = 1.5;
/// Untimed passes over every finalist layout's copies before the finals
/// (see the module docs: on some hosts memory left untouched for a second
/// reads slowly on its next pass).
pub const WARM_PASSES: usize = 2;
/// Samples every surviving candidate gets before pruning.
pub const SCREEN_SAMPLES: usize = 3;
/// After screening, candidates more than this fraction slower than the best are dropped.
pub const PRUNE: f64 = 0.08;
/// Samples a surviving candidate is refined to (time permitting).
pub const REFINE_SAMPLES: usize = 7;
/// Two candidates closer than this fraction (or than their spread) are a tie.
pub const TIE: f64 = 0.02;
/// Extra samples for each of two tied candidates.
pub const TIE_SAMPLES: usize = 6;
/// Candidates (besides the heuristic default) in the finals of each key and thread count.
pub const FINALISTS: usize = 3;
/// Fresh samples per finalist, in interleaved rounds. Thirty chose better
/// in a replay of recorded rounds (`scripts/tuner-states.py --window`) but
/// no better end to end, so the cheaper finals stay (the figures:
/// kernels/TUNING.md, sixth session).
pub const FINAL_SAMPLES: usize = 9;
/// The fraction of a finalist's samples (the fastest) whose mean ranks it.
/// A mean, not a median: on a host whose DRAM bandwidth flips between two
/// states for a tenth of a second to seconds, a median follows whichever
/// state held most of the rounds, while the kernels differ most in the
/// fast state; a mean counts its rounds in proportion. The slowest 40 %
/// are left out: batches hit by another process, and slow-state rounds
/// first. Evidence: `examples/tuner_states.rs` and
/// `scripts/tuner-states.py` (kernels/TUNING.md gives the figures).
pub const FINAL_KEPT: f64 = 0.6;
/// Fraction of a key's time share for screening and refining its layouts;
/// the finals get the rest.
pub const LAYOUTS_SHARE: f64 = 0.8;
/// Samples per candidate in [`sweep`].
pub const SWEEP_SAMPLES: usize = 7;
/// Samples per candidate in [`head_to_head`]: more than the finals take,
/// since it judges them, and the fastest of several noisy estimates is
/// biased low (15 were too few: kernels/TUNING.md, sixth session).
pub const HEAD_TO_HEAD_SAMPLES: usize = 45;
/// Rows per chunk of the dynamic partitions tried (where they make at least
/// two chunks per thread).
pub const DYNAMIC_ROWS: [usize; 3] = [32, 128, 512];

/// One distinct GEMV of a model: what the tuner measures and the plan is keyed by.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MatrixKey {
    /// Weight format.
    #[serde(with = "as_string")]
    pub format: Format,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// Dense or column-sparse.
    #[serde(with = "as_string")]
    pub sparsity: Sparsity,
    /// Input columns per call (1 for decode).
    pub columns: usize,
}

impl MatrixKey {
    /// A dense one-column (decode) key.
    pub fn dense(format: Format, rows: usize, cols: usize) -> MatrixKey {
        MatrixKey { format, rows, cols, sparsity: Sparsity::Dense, columns: 1 }
    }

    /// Whether `variant` computes this key: same format and sparsity,
    /// one-column variants for one column, multi-column ones otherwise.
    pub fn admits(&self, variant: &Variant) -> bool {
        variant.format == self.format
            && variant.sparsity == self.sparsity
            && if self.columns == 1 { variant.columns == 1 } else { variant.columns > 1 }
    }

    /// Checks the sizes: non-zero, and whole blocks for GGUF formats.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.rows == 0 || self.cols == 0 || self.columns == 0 {
            return Err(PlanError::Invalid(format!("{self}: rows, columns and input columns must be at least 1")));
        }
        self.weight_bytes().map(|_| ())
    }

    /// Weight bytes one call reads (`rows * format.row_bytes(cols)`).
    pub fn weight_bytes(&self) -> Result<u64, PlanError> {
        Ok(crate::roofline::gemv_bytes(self.format, self.rows, self.cols)?)
    }
}

impl fmt::Display for MatrixKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.format, self.rows, self.cols)?;
        if self.sparsity != Sparsity::Dense {
            write!(f, " {}", self.sparsity)?;
        }
        if self.columns != 1 {
            write!(f, " x{} columns", self.columns)?;
        }
        Ok(())
    }
}

/// Serde through `Display` and `FromStr` (formats and sparsities as their names).
mod as_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Options of [`tune`] and [`sweep`].
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// Thread counts to tune for.
    pub threads: Vec<usize>,
    /// Time budget of the measurements ([`tune`] only).
    pub budget: Duration,
    /// Total bytes of the weight copies rotated over; `None`: 4.25 x the
    /// last-level cache (1 GiB if unknown). Tests use small values.
    pub rotation_bytes: Option<u64>,
    /// DRAM read bandwidth per thread count, for the plan's % of roofline.
    pub roofline: Vec<RooflinePoint>,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions { threads: vec![1], budget: Duration::from_secs(60), rotation_bytes: None, roofline: Vec::new() }
    }
}

impl TuneOptions {
    fn rotation(&self) -> u64 {
        self.rotation_bytes.unwrap_or_else(|| {
            let cpu = cpu::detect();
            let dram = crate::roofline::default_dram_bytes(cpu);
            // The finals hold the copies of several layouts at once (the
            // finalists' of every thread count): an eighth of the available
            // memory each at most, but never less than 4.25 x the
            // last-level cache.
            let floor = cpu.last_level_cache_bytes().map_or(256 << 20, |llc| llc * 4 + llc / 4);
            match crate::roofline::available_memory_bytes() {
                Some(available) => dram.min(available / 8).max(floor),
                None => dram,
            }
        })
    }
}

/// What the tuner is doing, for a progress bar.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Packing a layout and making the rotated copies.
    Packing,
    /// First samples of every candidate.
    Screening,
    /// Dynamic partitions of the survivors.
    Partitions,
    /// More samples of the survivors.
    Refining,
    /// Re-measuring two candidates within noise.
    TieBreak,
    /// Re-measuring the fastest few side by side.
    Finals,
    /// Exhaustive measurement ([`sweep`]).
    Sweeping,
}

impl Stage {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Packing => "packing",
            Stage::Screening => "screening",
            Stage::Partitions => "partitions",
            Stage::Refining => "refining",
            Stage::TieBreak => "tie-break",
            Stage::Finals => "finals",
            Stage::Sweeping => "sweeping",
        }
    }
}

/// Progress of [`tune`] or [`sweep`].
#[derive(Clone, Debug)]
pub struct TuneProgress {
    /// Fraction done, 0 to 1 (by time against the budget for [`tune`]).
    pub fraction: f64,
    /// Index of the key being measured.
    pub key_index: usize,
    /// Number of keys.
    pub keys: usize,
    /// The key.
    pub key: MatrixKey,
    /// The layout being measured (e.g. `r4`), if any.
    pub layout: String,
    /// Thread count being measured, if any.
    pub threads: Option<usize>,
    /// The stage.
    pub stage: Stage,
}

/// Every candidate of one key at one thread count, measured by [`sweep`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// The key.
    pub key: MatrixKey,
    /// Thread count.
    pub threads: usize,
    /// Every candidate, fastest first.
    pub results: Vec<Measured>,
}

/// Tunes `keys` (duplicates are measured once) at every thread count of
/// `opts`, within `opts.budget`, and returns a plan for this machine.
/// `progress` is called often (for a progress bar).
pub fn tune(
    keys: &[MatrixKey],
    opts: &TuneOptions,
    progress: &mut dyn FnMut(&TuneProgress),
) -> Result<Plan, PlanError> {
    let keys = distinct(keys)?;
    let pools = pools(&opts.threads)?;
    let start = Instant::now();
    let budget = opts.budget.as_secs_f64();
    let sizes: Vec<f64> = keys.iter().map(|k| k.weight_bytes().map(|b| b as f64)).collect::<Result<_, _>>()?;
    let total: f64 = sizes.iter().sum::<f64>().max(1.0);
    let mut plan = Plan::new_for_this_machine();
    let mut share_end = 0.0;
    for (i, key) in keys.iter().enumerate() {
        share_end += 0.5 / keys.len() as f64 + 0.5 * sizes[i] / total;
        let deadline = start + Duration::from_secs_f64(budget * share_end.min(1.0));
        let mut report = |layout: &str, threads: Option<usize>, stage: Stage| {
            progress(&TuneProgress {
                fraction: (start.elapsed().as_secs_f64() / budget.max(1e-9)).min(0.999),
                key_index: i,
                keys: keys.len(),
                key: *key,
                layout: layout.to_string(),
                threads,
                stage,
            })
        };
        let mut bench = KeyBench::new(key, opts, &pools)?;
        let per_threads = bench.tune(deadline, &mut report)?;
        for (ti, cands) in per_threads.iter().enumerate() {
            if let Some(entry) = bench.entry(opts.threads[ti], cands) {
                plan.entries.push(entry);
            }
        }
    }
    plan.tune_secs = start.elapsed().as_secs_f64();
    plan.budget_secs = budget;
    plan.roofline = opts.roofline.clone();
    Ok(plan)
}

/// Measures every candidate (variant x partition) of every key at every
/// thread count with [`SWEEP_SAMPLES`] samples each, without pruning or
/// budget: the exhaustive reference for checking [`tune`].
pub fn sweep(
    keys: &[MatrixKey],
    opts: &TuneOptions,
    progress: &mut dyn FnMut(&TuneProgress),
) -> Result<Vec<SweepResult>, PlanError> {
    let keys = distinct(keys)?;
    let pools = pools(&opts.threads)?;
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut bench = KeyBench::new(key, opts, &pools)?;
        let n_layouts = bench.layouts.len().max(1);
        let mut report = |gi: usize, layout: &str, threads: Option<usize>, stage: Stage| {
            progress(&TuneProgress {
                fraction: (i as f64 + gi as f64 / n_layouts as f64) / keys.len() as f64,
                key_index: i,
                keys: keys.len(),
                key: *key,
                layout: layout.to_string(),
                threads,
                stage,
            })
        };
        let per_threads = bench.sweep(&mut report)?;
        for (ti, cands) in per_threads.iter().enumerate() {
            let t = opts.threads[ti];
            let mut results: Vec<Measured> = cands.iter().map(|c| bench.measured(c, t)).collect();
            results.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            out.push(SweepResult { key: *key, threads: t, results });
        }
    }
    Ok(out)
}

/// Re-measures `candidates` (variant names and partitions) of `key` at
/// `threads` threads side by side, as the tuner's finals do: their layouts
/// built together, a warm-up batch each, then [`HEAD_TO_HEAD_SAMPLES`]
/// samples each in interleaved rounds, so that a drift of a shared machine
/// hits all of them alike. Returns their measurements in the given order.
///
/// # Errors
/// [`PlanError::Invalid`] for a name that is no registry variant of this
/// key or whose ISA this CPU lacks; the key's own errors.
pub fn head_to_head(
    key: &MatrixKey,
    threads: usize,
    candidates: &[(&str, Partition)],
    opts: &TuneOptions,
) -> Result<Vec<Measured>, PlanError> {
    let opts = TuneOptions { threads: vec![threads], ..opts.clone() };
    let pools = pools(&opts.threads)?;
    let mut bench = KeyBench::new(key, &opts, &pools)?;
    let mut list = Vec::with_capacity(candidates.len());
    for &(name, partition) in candidates {
        let variant = bench
            .variants
            .iter()
            .copied()
            .find(|v| v.name == name)
            .ok_or_else(|| PlanError::Invalid(format!("{name} is not a variant of {key} that this CPU can run")))?;
        let group = bench.group_of(variant);
        list.push(bench.cand(variant, partition, group));
    }
    let finalists = vec![(0..list.len()).collect::<Vec<_>>()];
    let mut cands = vec![list];
    bench.finals(&mut cands, &finalists, HEAD_TO_HEAD_SAMPLES)?;
    Ok(cands[0].iter().map(|c| bench.measured(c, threads)).collect())
}

fn distinct(keys: &[MatrixKey]) -> Result<Vec<MatrixKey>, PlanError> {
    let mut out: Vec<MatrixKey> = Vec::new();
    for k in keys {
        k.check()?;
        if !out.contains(k) {
            out.push(*k);
        }
    }
    Ok(out)
}

fn pools(threads: &[usize]) -> Result<Vec<Threads>, PlanError> {
    if threads.is_empty() {
        return Err(PlanError::Invalid("no thread count given".into()));
    }
    let mut sorted = threads.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != threads.len() {
        return Err(PlanError::Invalid("thread counts repeat".into()));
    }
    threads.iter().map(|&t| Threads::new(t).map_err(PlanError::from)).collect()
}

/// The partitions tried at `threads` threads for `rows` rows: the static
/// split, plus (at more than one thread) dynamic chunks of [`DYNAMIC_ROWS`]
/// rows where they make at least two chunks per thread.
pub fn partitions(rows: usize, threads: usize) -> Vec<Partition> {
    let mut out = vec![Partition::default()];
    if threads > 1 {
        for rpc in DYNAMIC_ROWS {
            if rows.div_ceil(rpc) >= 2 * threads {
                out.push(Partition { rows_per_chunk: rpc, schedule: Schedule::Dynamic });
            }
        }
    }
    out
}

/// The progress callback of [`KeyBench::sweep`]: layout index, layout name, threads, stage.
type SweepReport<'r> = dyn FnMut(usize, &str, Option<usize>, Stage) + 'r;

/// A candidate at one thread count.
#[derive(Clone, Debug)]
struct Cand {
    variant: &'static Variant,
    partition: Partition,
    /// Index into the key's layouts.
    group: usize,
    samples: Vec<f64>,
    /// Fresh samples from the finals, taken side by side with the other finalists.
    finals: Vec<f64>,
    pruned: bool,
    /// The heuristic default: never pruned, so its time is comparable.
    keep: bool,
}

impl Cand {
    fn median(&self) -> f64 {
        quantile(&self.samples, 0.5)
    }

    /// The time it is ranked and reported by: the mean of the fastest
    /// [`FINAL_KEPT`] of its finals if it had any, else the median of its
    /// samples.
    fn score(&self) -> f64 {
        if self.finals.is_empty() { self.median() } else { fastest_mean(&self.finals, FINAL_KEPT) }
    }

    /// Interquartile range relative to the median.
    fn spread(&self) -> f64 {
        if self.samples.len() < 3 {
            return 0.0;
        }
        (quantile(&self.samples, 0.75) - quantile(&self.samples, 0.25)) / self.median()
    }
}

/// The mean of the fastest `kept` fraction of `samples` (at least one).
fn fastest_mean(samples: &[f64], kept: f64) -> f64 {
    if samples.is_empty() {
        return f64::INFINITY;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = ((kept * s.len() as f64).round() as usize).clamp(1, s.len());
    s[..n].iter().sum::<f64>() / n as f64
}

fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::INFINITY;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The rotated copies of one packed layout.
struct Group {
    copies: Vec<PackedMatrix>,
    next: usize,
}

impl Group {
    /// Reads a byte of every cache line of every copy (untimed).
    fn touch(&self) {
        for copy in &self.copies {
            let sum = copy.data().chunks(64).fold(0u64, |acc, line| acc.wrapping_add(u64::from(line[0])));
            std::hint::black_box(sum);
        }
    }
}

/// Everything needed to measure one key.
struct KeyBench<'a> {
    key: MatrixKey,
    bytes: u64,
    rotation: u64,
    roofline: &'a [RooflinePoint],
    threads: &'a [usize],
    pools: &'a [Threads],
    /// Rows of the base matrix that is stacked to `key.rows`.
    base_rows: usize,
    base_blocks: Vec<u8>,
    input: Input,
    out: Vec<f32>,
    /// Distinct layouts of the candidate variants, the heuristic's first.
    layouts: Vec<Layout>,
    variants: Vec<&'static Variant>,
    heuristic: &'static Variant,
}

fn layout_name(layout: Layout) -> String {
    match layout {
        Layout::Blocks => "blocks".into(),
        Layout::RowSlots { tile_rows } => format!("r{tile_rows}"),
        Layout::ColumnMajor => "column-major".into(),
        Layout::Interleaved => "interleaved".into(),
    }
}

/// Seeded xorshift values in [-0.5, 0.5).
fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

impl<'a> KeyBench<'a> {
    fn new(key: &MatrixKey, opts: &'a TuneOptions, pools: &'a [Threads]) -> Result<KeyBench<'a>, PlanError> {
        key.check()?;
        let allowed = |v: &Variant| cpu::available(v.isa).unwrap_or(false);
        let variants: Vec<&'static Variant> = VARIANTS.iter().filter(|v| key.admits(v) && allowed(v)).collect();
        let heuristic = heuristic::heuristic_variant(key, |isa| cpu::available(isa).unwrap_or(false))?;
        let first = Layout::for_variant(heuristic);
        let mut layouts = vec![first];
        for v in &variants {
            let l = Layout::for_variant(v);
            if !layouts.contains(&l) {
                layouts.push(l);
            }
        }
        // Scalar (block layout) last: it is the slowest, and pruned at once
        // against the others.
        layouts.sort_by_key(|l| (*l != first, *l == Layout::Blocks));
        let base_rows = if key.rows > 64 && key.rows.is_multiple_of(64) { 64 } else { key.rows };
        let weights = random_values(base_rows * key.cols, 0x9E37_79B9_7F4A_7C15 ^ key.rows as u64);
        let base_blocks = quantize_matrix(key.format, base_rows, key.cols, &weights)?;
        let mut x = random_values(key.cols * key.columns, 0xD1B5_4A32_D192_ED03);
        if key.sparsity == Sparsity::ColumnSparse {
            // Half the activations zero, as after a ReLU-like activation.
            for (i, v) in x.iter_mut().enumerate() {
                if (i * 0x9E37_79B9) >> 7 & 1 == 0 {
                    *v = 0.0;
                }
            }
        }
        let mut input = Input::new();
        input.prepare(&x, key.cols, key.columns, true)?;
        Ok(KeyBench {
            key: *key,
            bytes: key.weight_bytes()?,
            rotation: opts.rotation(),
            roofline: &opts.roofline,
            threads: &opts.threads,
            pools,
            base_rows,
            base_blocks,
            input,
            out: vec![0.0; key.rows * key.columns],
            layouts,
            variants,
            heuristic,
        })
    }

    /// Packs layout `gi` and makes the rotated copies, then reads them once.
    fn build(&mut self, gi: usize) -> Result<Group, PlanError> {
        let layout = self.layouts[gi];
        let key = &self.key;
        let base = PackedMatrix::from_blocks(key.format, self.base_rows, key.cols, &self.base_blocks, layout)?;
        let times = key.rows / self.base_rows;
        let full = match base.stacked(times) {
            Some(m) => m,
            None => {
                let blocks = self.base_blocks.repeat(times);
                PackedMatrix::from_blocks(key.format, key.rows, key.cols, &blocks, layout)?
            }
        };
        let n = (self.rotation.div_ceil(full.weight_bytes().max(1) as u64) as usize).max(2);
        let mut copies = Vec::with_capacity(n);
        for _ in 1..n {
            copies.push(full.clone());
        }
        copies.push(full);
        let group = Group { copies, next: 0 };
        // A read, not a kernel pass: a scalar pass over a whole rotation
        // takes seconds.
        group.touch();
        Ok(group)
    }

    /// Seconds per call of `calls` consecutive calls over the rotated copies.
    fn sample(
        &mut self,
        group: &mut Group,
        variant: &'static Variant,
        partition: Partition,
        ti: usize,
        calls: usize,
    ) -> Result<f64, PlanError> {
        let n = group.copies.len();
        // Checks the variant against the CPU and the layout once per batch.
        GemvRef::new(variant, &group.copies[0])?;
        let pool = &self.pools[ti];
        let start = Instant::now();
        for _ in 0..calls.max(1) {
            // SAFETY: every copy has the format and layout of copy 0, which
            // `GemvRef::new` just accepted for this variant.
            let g = unsafe { GemvRef::trusted(variant, &group.copies[group.next]) };
            g.run(&self.input, &mut self.out, pool, partition)?;
            group.next = (group.next + 1) % n;
        }
        Ok(start.elapsed().as_secs_f64() / calls.max(1) as f64)
    }

    /// Calls per sample for a call of about `secs`.
    fn calls_for(secs: f64) -> usize {
        if secs.is_finite() && secs > 0.0 { ((SAMPLE_SECS / secs).ceil() as usize).clamp(1, 100_000) } else { 1 }
    }

    /// A warm-up batch, then one timed sample.
    fn first_sample(&mut self, group: &mut Group, c: &mut Cand, ti: usize) -> Result<(), PlanError> {
        let probe = self.sample(group, c.variant, c.partition, ti, 1)?;
        let calls = Self::calls_for(probe);
        if calls > 1 {
            self.sample(group, c.variant, c.partition, ti, calls)?;
        }
        let s = self.sample(group, c.variant, c.partition, ti, calls)?;
        c.samples.push(s);
        Ok(())
    }

    fn more_samples(&mut self, group: &mut Group, c: &mut Cand, ti: usize) -> Result<(), PlanError> {
        let calls = Self::calls_for(c.median());
        let s = self.sample(group, c.variant, c.partition, ti, calls)?;
        c.samples.push(s);
        Ok(())
    }

    /// Index of `variant`'s layout in [`KeyBench::layouts`].
    fn group_of(&self, variant: &Variant) -> usize {
        let layout = Layout::for_variant(variant);
        self.layouts.iter().position(|&l| l == layout).unwrap_or(0)
    }

    fn variants_of(&self, gi: usize) -> Vec<&'static Variant> {
        self.variants.iter().copied().filter(|v| Layout::for_variant(v) == self.layouts[gi]).collect()
    }

    fn cand(&self, variant: &'static Variant, partition: Partition, group: usize) -> Cand {
        let keep = std::ptr::eq(variant, self.heuristic) && partition == Partition::default();
        Cand { variant, partition, group, samples: Vec::new(), finals: Vec::new(), pruned: false, keep }
    }

    /// The pruned tuning of one key: candidates per thread count.
    fn tune(
        &mut self,
        deadline: Instant,
        report: &mut dyn FnMut(&str, Option<usize>, Stage),
    ) -> Result<Vec<Vec<Cand>>, PlanError> {
        let key_start = Instant::now();
        let span = deadline.saturating_duration_since(key_start).mul_f64(LAYOUTS_SHARE);
        let nt = self.threads.len();
        let mut cands: Vec<Vec<Cand>> = vec![Vec::new(); nt];
        let mut best = vec![f64::INFINITY; nt];
        let n_groups = self.layouts.len();
        for gi in 0..n_groups {
            let name = layout_name(self.layouts[gi]);
            let group_deadline = key_start + span.mul_f64((gi + 1) as f64 / n_groups as f64);
            report(&name, None, Stage::Packing);
            let mut group = self.build(gi)?;
            for ti in 0..nt {
                let t = self.threads[ti];
                report(&name, Some(t), Stage::Screening);
                let mut mine: Vec<Cand> =
                    self.variants_of(gi).into_iter().map(|v| self.cand(v, Partition::default(), gi)).collect();
                // Behind schedule (a slow or busy machine): one sample per
                // candidate and no partition search, to stay near the budget.
                let late = Instant::now() >= group_deadline;
                let samples = if late { 1 } else { SCREEN_SAMPLES };
                self.screen(&mut group, &mut mine, ti, best[ti], samples)?;
                best[ti] = best[ti].min(best_alive(&mine));
                if t > 1 && !late {
                    report(&name, Some(t), Stage::Partitions);
                    let mut extra = Vec::new();
                    for c in mine.iter().filter(|c| !c.pruned && c.median() <= best[ti] * (1.0 + PRUNE)) {
                        for p in partitions(self.key.rows, t).into_iter().skip(1) {
                            extra.push(self.cand(c.variant, p, gi));
                        }
                    }
                    self.screen(&mut group, &mut extra, ti, best[ti], SCREEN_SAMPLES)?;
                    mine.extend(extra);
                    best[ti] = best[ti].min(best_alive(&mine));
                }
                report(&name, Some(t), Stage::Refining);
                loop {
                    let todo: Vec<usize> = (0..mine.len())
                        .filter(|&i| !mine[i].pruned && mine[i].samples.len() < REFINE_SAMPLES)
                        .collect();
                    if todo.is_empty() || Instant::now() >= group_deadline {
                        break;
                    }
                    for i in todo {
                        self.more_samples(&mut group, &mut mine[i], ti)?;
                    }
                }
                best[ti] = best[ti].min(best_alive(&mine));
                prune(&mut mine, best[ti], PRUNE);
                // Two of this layout within noise: more samples, interleaved.
                let order = ranking(&mine);
                if order.len() >= 2 && tied(&mine[order[0]], &mine[order[1]]) && Instant::now() < group_deadline {
                    report(&name, Some(t), Stage::TieBreak);
                    for _ in 0..TIE_SAMPLES {
                        for &i in &order[..2] {
                            self.more_samples(&mut group, &mut mine[i], ti)?;
                        }
                    }
                    best[ti] = best[ti].min(best_alive(&mine));
                }
                cands[ti].extend(mine);
            }
            drop(group);
        }
        // Finals: the fastest few of every layout and the heuristic default,
        // side by side (time permitting).
        if Instant::now() < deadline {
            // One finalist alone has nothing to be compared with.
            let finalists: Vec<Vec<usize>> =
                cands.iter().map(|list| finalists(list)).map(|f| if f.len() >= 2 { f } else { Vec::new() }).collect();
            if finalists.iter().any(|f| !f.is_empty()) {
                report("all", None, Stage::Finals);
                self.finals(&mut cands, &finalists, FINAL_SAMPLES)?;
            }
        }
        Ok(cands)
    }

    /// Measures `finalists[ti]` of `cands[ti]` for every thread count side
    /// by side: their layouts built together, one warm-up batch each, then
    /// `samples` fresh samples each (into [`Cand::finals`]) in interleaved
    /// rounds.
    fn finals(&mut self, cands: &mut [Vec<Cand>], finalists: &[Vec<usize>], samples: usize) -> Result<(), PlanError> {
        let mut groups: Vec<(usize, Group)> = Vec::new();
        for (list, chosen) in cands.iter().zip(finalists) {
            for &i in chosen {
                let gi = list[i].group;
                if !groups.iter().any(|(g, _)| *g == gi) {
                    groups.push((gi, self.build(gi)?));
                }
            }
        }
        // The layouts built first sat untouched while the others were
        // allocated and filled: pass over them all again before timing.
        for (_, group) in &groups {
            for _ in 0..WARM_PASSES {
                group.touch();
            }
        }
        for (ti, (list, chosen)) in cands.iter_mut().zip(finalists).enumerate() {
            if chosen.is_empty() {
                continue;
            }
            // (candidate, its layout's index in `groups`, calls per sample)
            let mut runs = Vec::with_capacity(chosen.len());
            for &i in chosen {
                let c = &mut list[i];
                let Some(g) = groups.iter().position(|(g, _)| *g == c.group) else { continue };
                let probe = self.sample(&mut groups[g].1, c.variant, c.partition, ti, 1)?;
                let n = Self::calls_for(probe);
                self.sample(&mut groups[g].1, c.variant, c.partition, ti, n)?;
                c.finals.clear();
                runs.push((i, g, n));
            }
            for _ in 0..samples {
                for &(i, g, n) in &runs {
                    let c = &mut list[i];
                    let s = self.sample(&mut groups[g].1, c.variant, c.partition, ti, n)?;
                    c.finals.push(s);
                }
            }
        }
        Ok(())
    }

    /// Warm-up and `samples` samples of each candidate, interleaved; clear
    /// losers dropped after their first sample, the rest pruned against
    /// `best` (the best median so far) at the end.
    fn screen(
        &mut self,
        group: &mut Group,
        cands: &mut [Cand],
        ti: usize,
        best: f64,
        samples: usize,
    ) -> Result<(), PlanError> {
        let mut best = best;
        for c in cands.iter_mut() {
            self.first_sample(group, c, ti)?;
            if !c.keep && c.median() > CLEAR_LOSER * best {
                c.pruned = true;
            }
            best = best.min(c.median());
        }
        for _ in 1..samples {
            for c in cands.iter_mut().filter(|c| !c.pruned) {
                self.more_samples(group, c, ti)?;
            }
        }
        let best = best.min(best_alive(cands));
        prune(cands, best, PRUNE);
        Ok(())
    }

    /// Every candidate, [`SWEEP_SAMPLES`] samples each, no pruning.
    fn sweep(&mut self, report: &mut SweepReport<'_>) -> Result<Vec<Vec<Cand>>, PlanError> {
        let nt = self.threads.len();
        let mut cands: Vec<Vec<Cand>> = vec![Vec::new(); nt];
        for gi in 0..self.layouts.len() {
            let name = layout_name(self.layouts[gi]);
            report(gi, &name, None, Stage::Packing);
            let mut group = self.build(gi)?;
            for (ti, list) in cands.iter_mut().enumerate() {
                let t = self.threads[ti];
                report(gi, &name, Some(t), Stage::Sweeping);
                let mut mine = Vec::new();
                for v in self.variants_of(gi) {
                    for p in partitions(self.key.rows, t) {
                        mine.push(self.cand(v, p, gi));
                    }
                }
                for c in mine.iter_mut() {
                    self.first_sample(&mut group, c, ti)?;
                }
                for _ in 1..SWEEP_SAMPLES {
                    for c in mine.iter_mut() {
                        self.more_samples(&mut group, c, ti)?;
                    }
                }
                list.extend(mine);
            }
        }
        Ok(cands)
    }

    fn measured(&self, c: &Cand, threads: usize) -> Measured {
        let secs = c.score();
        let gbs = self.bytes as f64 / secs / 1e9;
        let roofline_pct =
            self.roofline.iter().find(|r| r.threads == threads && r.gbs > 0.0).map(|r| 100.0 * gbs / r.gbs);
        Measured {
            variant: c.variant.name.to_string(),
            partition: c.partition,
            secs,
            gbs,
            roofline_pct,
            samples: c.samples.len() + c.finals.len(),
        }
    }

    fn entry(&self, threads: usize, cands: &[Cand]) -> Option<Entry> {
        let order = ranking(cands);
        let choice = self.measured(&cands[*order.first()?], threads);
        let runners_up = order.iter().skip(1).take(3).map(|&i| self.measured(&cands[i], threads)).collect();
        let heuristic = cands.iter().find(|c| c.keep).map(|c| self.measured(c, threads));
        let slowest = cands
            .iter()
            .filter(|c| !c.samples.is_empty())
            .max_by(|a, b| a.score().total_cmp(&b.score()))
            .map(|c| self.measured(c, threads));
        let measured = cands.iter().filter(|c| !c.samples.is_empty()).count();
        Some(Entry { key: self.key, threads, choice, runners_up, heuristic, slowest, candidates: measured })
    }
}

fn best_alive(cands: &[Cand]) -> f64 {
    cands.iter().filter(|c| !c.pruned).map(Cand::median).fold(f64::INFINITY, f64::min)
}

fn prune(cands: &mut [Cand], best: f64, margin: f64) {
    for c in cands.iter_mut() {
        if !c.keep && c.median() > best * (1.0 + margin) {
            c.pruned = true;
        }
    }
}

/// Indices of the unpruned candidates, fastest first: the finalists by
/// their finals, then the others by their samples.
fn ranking(cands: &[Cand]) -> Vec<usize> {
    let mut order: Vec<usize> =
        (0..cands.len()).filter(|&i| !cands[i].pruned && !cands[i].samples.is_empty()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&cands[a], &cands[b]);
        a.finals.is_empty().cmp(&b.finals.is_empty()).then(a.score().total_cmp(&b.score()))
    });
    order
}

/// The finalists of one thread count's candidates: the [`FINALISTS`]
/// fastest within [`PRUNE`] of the fastest, and the heuristic default.
fn finalists(cands: &[Cand]) -> Vec<usize> {
    let order = ranking(cands);
    let Some(&first) = order.first() else { return Vec::new() };
    let limit = cands[first].median() * (1.0 + PRUNE);
    let mut out: Vec<usize> = order.into_iter().take(FINALISTS).filter(|&i| cands[i].median() <= limit).collect();
    if let Some(h) = cands.iter().position(|c| c.keep && !c.samples.is_empty())
        && !out.contains(&h)
    {
        out.push(h);
    }
    out
}

fn tied(a: &Cand, b: &Cand) -> bool {
    let (ma, mb) = (a.median(), b.median());
    let noise = TIE.max(0.5 * (a.spread() + b.spread()));
    (mb - ma).abs() / ma.min(mb) < noise
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_mean_leaves_out_the_slowest_samples() {
        // Ten samples: the four slowest (one a batch hit by another process) go.
        let samples = [5.0, 1.0, 2.0, 9.0, 3.0, 4.0, 100.0, 6.0, 7.0, 8.0];
        assert_eq!(fastest_mean(&samples, FINAL_KEPT), 3.5);
        assert_eq!(fastest_mean(&[3.0], FINAL_KEPT), 3.0);
        assert_eq!(fastest_mean(&[], FINAL_KEPT), f64::INFINITY);
        // Two states: all tie in the slow one, which held two thirds of the
        // rounds; the fast one tells them apart. A median does not.
        let slow = 10.0;
        let a = [slow, slow, 6.0, slow, slow, 6.0, slow, slow, 6.0];
        let b = [slow, slow, 6.6, slow, slow, 6.6, slow, slow, 6.6];
        assert!(fastest_mean(&a, FINAL_KEPT) < fastest_mean(&b, FINAL_KEPT));
        assert_eq!(quantile(&a, 0.5), quantile(&b, 0.5));
    }
}
