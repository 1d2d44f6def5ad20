//! Weight bandwidth of the registry's GEMV variants, weights streamed from
//! DRAM.
//!
//! For each format, shape (rows x cols) and thread count, every selected
//! variant multiplies one input column; weights rotate over packed copies
//! as large as the roofline's DRAM buffer (`roofline::default_dram_bytes`:
//! at least 1 GiB, more than four times the last-level cache, which an AMD
//! L3 partly keeps: `kernels/TUNING.md`), so every call reads them from
//! DRAM, as decode does. Criterion reports the time per call and
//! the weight throughput (criterion prints GiB/s).
//!
//! Selection, by environment variable:
//! - `ASDSL_BENCH_FORMATS=q4_0,q4_k` (default: every format);
//! - `ASDSL_BENCH_SHAPES=14336x4096,576x1536` (default: the six shapes below);
//! - `ASDSL_BENCH_THREADS=1,2` (default 1 and 2);
//! - `ASDSL_BENCH_VARIANTS=best|all` (default `best`: the dense one-column
//!   variants of the best ISA at every tile-row count on the int8 path, plus
//!   its f32 path and the AVX2 int8 path at four tile rows; `all`: every
//!   allowed variant);
//! - `ASDSL_BENCH_CACHED=1`: one copy of the weights, so that small shapes
//!   stay cache-resident (the kernels' compute speed, for diagnosis);
//! - `ASDSL_BENCH_REPORT=FILE`: also write a markdown table of the best
//!   variant per format, shape and thread count, in GB/s (10^9) and as a
//!   percentage of the DRAM read bandwidth of the same minutes: the
//!   roofline's full measurement is made once per thread count at the
//!   start, and its two best read patterns repeated (a [`DramProbe`], about
//!   0.4 s) right before and right after every benchmark; the higher of
//!   those two is that benchmark's ceiling; rows where the two probes differ
//!   by more than 15 % are marked. Then, in *lock step*, 24 rounds (by
//!   default) of a probe read and a batch of calls (at least 512 MiB of
//!   weights), each batch against the mean of the probes beside it, rounds
//!   whose probes differ by more than 15 % left out: this host's 2-thread DRAM
//!   bandwidth flips between about 35 and 60 GB/s, staying in one state
//!   for a tenth of a second to a few seconds, less than one criterion
//!   benchmark lasts, so only a ratio taken within a round is readable (against the probes around 3 seconds of
//!   criterion, 2-thread rows read 65-146 %). The best variant is the one
//!   with the highest lock-step median over rounds 2, 4, ...; the table
//!   gives its median over rounds 1, 3, ... (choosing and reporting on the
//!   same rounds would favour the variant whose rounds were lucky). Where
//!   the host spends most rounds in its low state, every variant that keeps
//!   up with it reads about 100 %, and the choice among those is noise
//!   (`kernels/BENCHMARKS.md`, 13:23 run). Only the benches that ran in this
//!   run count (not those a filter skipped).
//! - `ASDSL_BENCH_LOCK_STEP_ROUNDS=N`: lock-step rounds per benchmark (an
//!   even number, default 24);
//! - `ASDSL_BENCH_ROUNDS_CSV=FILE`: with the report, also write every
//!   lock-step round as CSV (format, shape, threads, variant, round, batch
//!   GB/s, probe GB/s before and after), for a closer look
//!   (`scripts/lock-step-states.py` splits them by the machine's state).
//!
//! Criterion's own filter works too: `cargo bench --bench gemv -- q4_0/14336x4096`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use asdsl_kernels::cpu;
use asdsl_kernels::formats::Format;
use asdsl_kernels::input::Input;
use asdsl_kernels::pack::{Layout, PackedMatrix, quantize_matrix};
use asdsl_kernels::registry::VARIANTS;
use asdsl_kernels::roofline::{self, DramOptions, DramProbe};
use asdsl_kernels::run::{Gemv, Partition, Threads};
use asdsl_kernels::variant::{Activation, Isa, Sparsity, Variant};
use criterion::{BenchmarkId, Criterion, Throughput};

const SHAPES: [(usize, usize); 6] =
    [(4096, 4096), (14336, 4096), (4096, 14336), (3072, 8192), (16384, 3072), (576, 1536)];

/// One benchmark that ran.
struct Run {
    variant: String,
    /// Packed weight bytes per call.
    bytes: usize,
    /// The DRAM probe's GB/s right before and right after the benchmark.
    dram: Option<(f64, f64)>,
    /// The lock-step rounds that followed it (empty without probes).
    rounds: Vec<Round>,
}

/// One lock-step round: a batch of calls between two probe reads.
struct Round {
    /// The batch's weight GB/s.
    gbs: f64,
    /// The probe right before and right after the batch, GB/s.
    before: f64,
    after: f64,
}

impl Round {
    /// Whether the machine's state held during the round: its two probes
    /// within [`PROBE_SPREAD`] of each other.
    fn steady(&self) -> bool {
        within_spread(self.before, self.after)
    }

    /// The batch as a percentage of the mean of its two probes (the
    /// bandwidth of the round's middle, where the batch ran; a steady
    /// round's probes are within [`PROBE_SPREAD`], so the higher of them
    /// would be at most that much more, and more often a lucky read).
    fn percent(&self) -> f64 {
        200.0 * self.gbs / (self.before + self.after)
    }
}

/// Whether two probe measurements are within [`PROBE_SPREAD`] of each other.
fn within_spread(a: f64, b: f64) -> bool {
    a.max(b) <= PROBE_SPREAD * a.min(b)
}

/// Every benchmark run, by (format, shape, threads).
type Results = BTreeMap<(String, String, usize), Vec<Run>>;

/// The probes' repetitions per measurement and pattern (one read of the
/// whole DRAM buffer each; the median counts).
const PROBE_REPS: usize = 3;

/// Two probe measurements further apart than this mark the row (and
/// leave a lock-step round out).
const PROBE_SPREAD: f64 = 1.15;

/// Lock-step rounds per benchmark unless `ASDSL_BENCH_LOCK_STEP_ROUNDS`
/// says otherwise: rounds 2, 4, ... choose the best variant, rounds 1, 3,
/// ... give its figure.
const ROUNDS: usize = 24;

/// The lock-step rounds per benchmark.
fn lock_step_rounds() -> usize {
    match std::env::var("ASDSL_BENCH_LOCK_STEP_ROUNDS") {
        Ok(n) => n.parse().ok().filter(|n| n % 2 == 0 && *n > 0).expect("an even number of lock-step rounds"),
        Err(_) => ROUNDS,
    }
}

/// The weight bytes a lock-step batch reads at least (half the probe's
/// 1 GiB read: the batch and the probes beside it take tens of
/// milliseconds each at these bandwidths).
const BATCH_BYTES: usize = 512 << 20;

static RESULTS: Mutex<Results> = Mutex::new(BTreeMap::new());

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name).ok().map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

fn selected(variant: &Variant, all: bool) -> bool {
    if !cpu::available(variant.isa).unwrap_or(false) {
        return false;
    }
    if all {
        return true;
    }
    let best = cpu::best_isa();
    let best_f32 = if best == Isa::Avx512Vnni { Isa::Avx512 } else { best };
    variant.sparsity == Sparsity::Dense
        && variant.columns == 1
        && ((variant.activation == Activation::Q8 && variant.isa == best)
            || (variant.activation == Activation::F32 && variant.isa == best_f32 && variant.tile_rows == 4)
            || (variant.activation == Activation::Q8 && variant.isa == Isa::Avx2 && variant.tile_rows == 4))
}

fn weights(rows: usize, cols: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..rows * cols)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

/// Runs the benches; with `probes` (by thread count), measures the DRAM
/// bandwidth right before and after each.
fn bench(c: &mut Criterion, probes: &BTreeMap<usize, DramProbe>) {
    let formats: Vec<Format> = match env_list("ASDSL_BENCH_FORMATS") {
        Some(names) => names.iter().map(|n| n.parse().expect("a format name")).collect(),
        None => Format::all(),
    };
    let shapes: Vec<(usize, usize)> = match env_list("ASDSL_BENCH_SHAPES") {
        Some(list) => list.iter().map(|s| roofline::parse_shape(s).expect("ROWSxCOLS")).collect(),
        None => SHAPES.to_vec(),
    };
    let threads = bench_threads();
    let all = std::env::var("ASDSL_BENCH_VARIANTS").as_deref() == Ok("all");
    let cached = std::env::var("ASDSL_BENCH_CACHED").as_deref() == Ok("1");
    let dram_bytes = roofline::default_dram_bytes(cpu::detect()) as usize;
    let pools: Vec<Threads> = threads.iter().map(|&t| Threads::new(t).expect("threads")).collect();

    for &format in &formats {
        for &(rows, cols) in &shapes {
            let block = format.info().block_len;
            if cols % block != 0 {
                continue;
            }
            let shape = format!("{rows}x{cols}");
            let w = weights(rows, cols);
            let blocks = quantize_matrix(format, rows, cols, &w).expect("quantize");
            drop(w);
            let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
            let mut group = c.benchmark_group(format!("{format}/{shape}"));
            group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
            for variant in VARIANTS.iter().filter(|v| v.format == format && selected(v, all)) {
                let packed =
                    PackedMatrix::from_blocks(format, rows, cols, &blocks, Layout::for_variant(variant)).expect("pack");
                let bytes = packed.weight_bytes();
                let copies = if cached { 1 } else { dram_bytes.div_ceil(bytes).max(2) };
                let gemvs: Vec<Gemv> =
                    (0..copies).map(|_| Gemv::new(variant, packed.clone()).expect("variant runs here")).collect();
                drop(packed);
                let mut input = Input::new();
                input.prepare(&x, cols, 1, variant.activation == Activation::Q8).expect("input");
                let mut out = vec![0.0f32; rows];
                group.throughput(Throughput::Bytes(bytes as u64));
                for (pool, &t) in pools.iter().zip(&threads) {
                    let id = BenchmarkId::new(variant.name, format!("{t}t"));
                    let mut next = 0usize;
                    let mut ran = false;
                    let probe = probes.get(&t);
                    let mut before = None;
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            if !ran {
                                // The first call (criterion's warm-up): not for a
                                // benchmark that the filter skips.
                                ran = true;
                                before = probe.map(|p| p.measure(PROBE_REPS));
                            }
                            let start = Instant::now();
                            for _ in 0..iters {
                                gemvs[next % copies].run(&input, &mut out, pool, Partition::default()).expect("run");
                                next += 1;
                            }
                            start.elapsed()
                        })
                    });
                    if !ran {
                        continue; // skipped by criterion's filter
                    }
                    let dram = before.zip(probe.map(|p| p.measure(PROBE_REPS)));
                    let rounds = match probe {
                        Some(probe) => lock_step(probe, bytes, &mut || {
                            gemvs[next % copies].run(&input, &mut out, pool, Partition::default()).expect("run");
                            next += 1;
                        }),
                        None => Vec::new(),
                    };
                    RESULTS
                        .lock()
                        .expect("results")
                        .entry((format.to_string(), shape.clone(), t))
                        .or_default()
                        .push(Run { variant: variant.name.to_string(), bytes, dram, rounds });
                }
            }
            group.finish();
        }
    }
}

/// [`lock_step_rounds`] rounds of the benchmark's call in lock step with the probe:
/// probe, batch, probe, batch, ..., probe, each batch one untimed call
/// (which wakes the threads) and then at least [`BATCH_BYTES`] of weights
/// timed as a whole. This host's DRAM bandwidth at 2 threads flips between
/// about 35 and 60 GB/s, staying in one state for a tenth of a second to a
/// few seconds (less than one criterion benchmark lasts); a batch set
/// against the probes beside it mostly sees the same state.
fn lock_step(probe: &DramProbe, bytes: usize, call: &mut dyn FnMut()) -> Vec<Round> {
    let calls = BATCH_BYTES.div_ceil(bytes);
    let mut before = probe.measure(1);
    (0..lock_step_rounds())
        .map(|_| {
            call();
            let start = Instant::now();
            for _ in 0..calls {
                call();
            }
            let gbs = (calls * bytes) as f64 / start.elapsed().as_secs_f64() / 1e9;
            let after = probe.measure(1);
            let round = Round { gbs, before, after };
            before = after;
            round
        })
        .collect()
}

/// The median percentage of the steady rounds among every second round
/// from index `first` (0: rounds 1, 3, ...; 1: rounds 2, 4, ...), and how
/// many there were (`None` if none).
fn lock_step_median(rounds: &[Round], first: usize) -> Option<(f64, usize)> {
    let mut pcts: Vec<f64> = rounds.iter().skip(first).step_by(2).filter(|r| r.steady()).map(Round::percent).collect();
    if pcts.is_empty() {
        return None;
    }
    pcts.sort_by(f64::total_cmp);
    let n = pcts.len();
    let median = if n % 2 == 1 { pcts[n / 2] } else { (pcts[n / 2 - 1] + pcts[n / 2]) / 2.0 };
    Some((median, n))
}

/// Criterion's median time per call (seconds) of one benchmark, from its estimates file.
fn median_secs(dir: &Path, group: &str, variant: &str, threads: usize) -> Option<f64> {
    let safe = |s: &str| s.replace(['?', '"', '/', '\\', '*', '<', '>', ':', '|', '^'], "_");
    let path = dir.join(safe(group)).join(safe(variant)).join(format!("{threads}t")).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(json["median"]["point_estimate"].as_f64()? * 1e-9)
}

/// The thread counts of `ASDSL_BENCH_THREADS` (default 1 and 2).
fn bench_threads() -> Vec<usize> {
    env_list("ASDSL_BENCH_THREADS")
        .map(|l| l.iter().map(|t| t.parse().expect("a thread count")).collect())
        .unwrap_or(vec![1, 2])
}

/// A DRAM probe per thread count (each makes the roofline's full measurement).
fn dram_probes(threads: &[usize]) -> Result<BTreeMap<usize, DramProbe>, asdsl_kernels::KernelError> {
    let mut probes = BTreeMap::new();
    for &t in threads {
        eprintln!("measuring the DRAM read bandwidth with {t} thread(s)");
        probes.insert(t, DramProbe::dram(t, &DramOptions::default())?);
    }
    Ok(probes)
}

fn report(path: &str, dir: &Path, probes: &BTreeMap<usize, DramProbe>) -> std::io::Result<()> {
    let results = RESULTS.lock().expect("results");
    let mut f = std::fs::File::create(path)?;
    writeln!(
        f,
        "| format | shape | threads | best variant | MB | GB/s | DRAM GB/s, same minutes | % of DRAM read | \
         lock step: % of DRAM read (rounds) |"
    )?;
    writeln!(f, "|---|---|---|---|---|---|---|---|---|")?;
    let mut marked = false;
    for ((format, shape, t), runs) in results.iter() {
        let group = format!("{format}/{shape}");
        // The best: the highest lock-step median over rounds 2, 4, ...
        // (rounds 1, 3, ..., not used to choose, give its figure); without
        // steady rounds, the fastest by criterion.
        let best_by = |score: &dyn Fn(&Run) -> Option<f64>| {
            runs.iter().filter_map(|run| Some((run, score(run)?))).max_by(|a, b| a.1.total_cmp(&b.1)).map(|b| b.0)
        };
        let best = best_by(&|run| lock_step_median(&run.rounds, 1).map(|(pct, _)| pct))
            .or_else(|| best_by(&|run| median_secs(dir, &group, &run.variant, *t).map(|secs| run.bytes as f64 / secs)));
        let Some(run) = best else { continue };
        let Some(secs) = median_secs(dir, &group, &run.variant, *t) else { continue };
        let gbs = run.bytes as f64 / secs / 1e9;
        let (before, after) = run.dram.unwrap_or_default();
        let ceiling = before.max(after);
        let moved = !within_spread(before, after);
        marked |= moved;
        let lock_step = match lock_step_median(&run.rounds, 0) {
            Some((pct, n)) => format!("{pct:.0} % ({n} of {})", lock_step_rounds() / 2),
            None => "-".to_string(),
        };
        writeln!(
            f,
            "| {format} | {shape} | {t} | `{}` | {:.1} | {gbs:.2} | {ceiling:.2}{} | {:.0} % | {lock_step} |",
            run.variant,
            run.bytes as f64 / 1e6,
            if moved { " *" } else { "" },
            100.0 * gbs / ceiling,
        )?;
    }
    writeln!(f)?;
    for (t, probe) in probes {
        let bw = probe.full();
        writeln!(
            f,
            "DRAM read bandwidth at the start, {t} thread(s): {:.2} GB/s median ({:.2}-{:.2}), {} streams per thread{}, {} MiB buffer.",
            bw.median_gbs,
            bw.min_gbs,
            bw.max_gbs,
            bw.streams,
            if bw.prefetch { " with software prefetch" } else { "" },
            bw.buffer_bytes >> 20
        )?;
        let probed: Vec<f64> = results
            .iter()
            .filter(|(k, _)| k.2 == *t)
            .flat_map(|(_, runs)| runs)
            .filter_map(|r| r.dram)
            .flat_map(|(a, b)| [a, b])
            .collect();
        let rounds: Vec<&Round> =
            results.iter().filter(|(k, _)| k.2 == *t).flat_map(|(_, runs)| runs).flat_map(|r| &r.rounds).collect();
        if let (Some(low), Some(high)) =
            (rounds.iter().map(|r| r.after).reduce(f64::min), rounds.iter().map(|r| r.after).reduce(f64::max))
        {
            let steady = rounds.iter().filter(|r| r.steady()).count();
            writeln!(
                f,
                "Lock-step probes, {t} thread(s): {low:.2}-{high:.2} GB/s; {steady} of {} rounds steady.",
                rounds.len()
            )?;
        }
        if let (Some(low), Some(high)) =
            (probed.iter().copied().reduce(f64::min), probed.iter().copied().reduce(f64::max))
        {
            writeln!(
                f,
                "Probed around the benches, {t} thread(s): {low:.2}-{high:.2} GB/s ({} measurements of {PROBE_REPS} reads \
                 with each of {}).",
                probed.len(),
                probe
                    .patterns()
                    .iter()
                    .map(|&(s, pf)| format!("{s} stream(s){}", if pf { " with prefetch" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )?;
        }
    }
    writeln!(
        f,
        "\nLock step: after each benchmark, {} rounds of a probe (one read with each pattern) and a batch of \
         calls (at least {} MiB of weights, timed as a whole after one untimed call), then a last probe; each batch \
         as a percentage of the mean of the two probes beside it, rounds whose two probes differ by more than {:.0} % \
         left out (the state changed within the round). The best variant is the one with the highest median over \
         rounds 2, 4, ...; its lock-step figure is the median over rounds 1, 3, ... (the steady ones of {}), so \
         that the choice's luck does not raise it. The other columns are that variant's criterion figures.",
        lock_step_rounds(),
        BATCH_BYTES >> 20,
        100.0 * (PROBE_SPREAD - 1.0),
        lock_step_rounds() / 2
    )?;
    if marked {
        writeln!(
            f,
            "\n`*`: the probes right before and right after that benchmark differ by more than {:.0} % \
             (the machine's memory traffic changed during it); its percentage is against the higher.",
            100.0 * (PROBE_SPREAD - 1.0)
        )?;
    }
    Ok(())
}

/// Every lock-step round of every benchmark, as CSV.
fn write_rounds(path: &str) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "format,shape,threads,variant,round,batch_gbs,probe_before_gbs,probe_after_gbs")?;
    for ((format, shape, t), runs) in RESULTS.lock().expect("results").iter() {
        for run in runs {
            for (i, r) in run.rounds.iter().enumerate() {
                writeln!(
                    f,
                    "{format},{shape},{t},{},{},{:.3},{:.3},{:.3}",
                    run.variant,
                    i + 1,
                    r.gbs,
                    r.before,
                    r.after
                )?;
            }
        }
    }
    f.flush()
}

fn main() {
    let dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let mut c = Criterion::default().output_directory(&dir).configure_from_args();
    let report_path = std::env::var("ASDSL_BENCH_REPORT").ok();
    let probes = match report_path {
        Some(_) => dram_probes(&bench_threads()).expect("measure the DRAM bandwidth"),
        None => BTreeMap::new(),
    };
    bench(&mut c, &probes);
    c.final_summary();
    if let Some(path) = report_path {
        report(&path, &dir, &probes).expect("write the report");
        if let Ok(rounds_path) = std::env::var("ASDSL_BENCH_ROUNDS_CSV") {
            write_rounds(&rounds_path).expect("write the rounds");
        }
        eprintln!("report written to {path}");
    }
}
