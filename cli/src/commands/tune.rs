//! `asdsl tune`: measure the kernel variants on this machine for a model's
//! matrices and write the plan.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use asdsl_kernels::Format;
use asdsl_kernels::pack::Layout;
use asdsl_kernels::roofline::{self, DramOptions};
use asdsl_kernels::run::{Partition, Schedule};
use asdsl_kernels::tune::plan::{self, Plan};
use asdsl_kernels::tune::{self, Measured, RooflinePoint, SweepResult, TuneOptions, TuneProgress};
use asdsl_kernels::{cpu, registry};
use asdsl_model::geometry::KeyUse;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::roofline::{ThreadList, parse_format, parse_threads};
use super::subject::Subject;

/// The long help of `asdsl tune` (the finals' size and statistic from [`tune::FINALISTS`] and
/// [`tune::FINAL_KEPT`]).
pub fn long_about() -> String {
    format!(
        "Measure every kernel variant that can compute each distinct matrix of a model \
    (or of a named geometry) on this machine, at each thread count, and write the fastest into the \
    plan that asdsl uses at load time.\n\n\
    Measurement follows decode: the weights rotate over copies as large as the roofline's DRAM \
    buffer (at least 1 GiB, more than 4x the last-level cache), so they come from DRAM; one warm-up, then the median of repeated samples; \
    candidates are interleaved, clear losers dropped after one sample, the rest refined, and in the \
    finals the fastest {finalists} and the heuristic default re-measured side by side (their samples in \
    the same rounds), the fastest there (by the mean of its fastest {kept:.0} % of samples) chosen; all \
    within --budget seconds. Candidates are the \
    registry variants of the matrix's format (the format is never changed: that would change the \
    results) whose ISA this CPU allows, with static and dynamic row partitions above one thread.\n\n\
    The plan is written to -o FILE, or else to the default plan of this machine in the user cache \
    directory (entries for other matrices already in it are kept). The table at the end gives, per \
    matrix and thread count, the chosen variant, its weight throughput, its share of the DRAM read \
    bandwidth (measured briefly first), and its speedup over the heuristic default and over the \
    slowest candidate.\n\n\
    --verify then measures every candidate exhaustively (no pruning, no budget), re-measures the \
    plan's choice, the sweep's best of every layout and the heuristic default side by side, and \
    reports how close each choice is to the exhaustive best, both ways (the fastest of many noisy \
    medians is biased low, and the sweep measures layouts seconds apart; the side-by-side figure \
    is neither).",
        finalists = tune::FINALISTS,
        kept = 100.0 * tune::FINAL_KEPT
    )
}

/// Examples shown after the help.
pub const AFTER_HELP: &str = "Examples:\n  asdsl tune --geometry phi4-mini --threads 1,2\n  \
    asdsl tune --geometry llama-8b --quant q4_k --budget 120 -o plan.json\n  \
    asdsl tune --geometry smollm2-135m --threads 1 --budget 10 --verify --report tuning.md";

/// Arguments of `asdsl tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// A named geometry: smollm2-135m, llama-1b, phi4-mini, llama-8b.
    #[arg(long, value_name = "NAME", required_unless_present = "model", conflicts_with = "model")]
    pub geometry: Option<String>,

    /// A model (GGUF file or Hugging Face folder): tune the keys of its matrices as loaded (a float
    /// model quantized to --quant).
    #[arg(long, value_name = "FILE|DIR")]
    pub model: Option<PathBuf>,

    /// Weight format of the geometry's matrices (a float model would be quantized to it):
    /// q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k or native q{2,3,4,8}g{16,32,64,128}.
    /// Default q4_0, the most common llama.cpp format.
    #[arg(long, value_name = "FMT", default_value = "q4_0", value_parser = parse_format)]
    pub quant: Format,

    /// Thread counts: N tunes 1 to N; a list (1,2,4) or ranges (2-4) exactly those. Default: 1 to
    /// the number of physical cores.
    #[arg(long, value_name = "N|LIST", value_parser = parse_threads)]
    pub threads: Option<ThreadList>,

    /// Time budget of the measurements, seconds (the DRAM bandwidth measurement and --verify come on top).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub budget: f64,

    /// Write the plan here instead of the default plan of this machine.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Skip the DRAM bandwidth measurement (no % of roofline in the table).
    #[arg(long)]
    pub no_roofline: bool,

    /// After tuning, measure every candidate exhaustively and compare the choices with the best.
    #[arg(long)]
    pub verify: bool,

    /// With --verify: also write the comparison as markdown to this file.
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub report: Option<PathBuf>,

    /// Total MiB of the rotated weight copies (default: the roofline's DRAM buffer, at least 1 GiB).
    #[arg(long, value_name = "MIB", hide = true)]
    pub rotation_mib: Option<u64>,
}

/// Runs `asdsl tune`.
pub fn run(args: &TuneArgs) -> Result<()> {
    crate::interrupt::exit_on_ctrl_c("interrupted: a plan is written only when tuning finishes")?;
    let subject = Subject::of(args.model.as_deref(), args.geometry.as_deref(), args.quant)?;
    let uses = &subject.uses;
    if !(args.budget.is_finite() && args.budget > 0.0) {
        bail!("--budget must be a positive number of seconds");
    }
    let cpu = cpu::detect();
    cpu::try_best_isa().with_context(|| format!("{} is invalid", cpu::FORCE_ISA_ENV))?;
    let threads = match &args.threads {
        Some(list) => list.0.clone(),
        None => (1..=cpu.physical_cores.max(1)).collect(),
    };
    let cores = cpu.logical_cores.max(1);
    if let Some(&bad) = threads.iter().find(|&&t| t > cores) {
        return Err(crate::exit::fail(
            crate::exit::Exit::Resource,
            format!("--threads {bad}: this machine has {cores} logical cores; tune at most {cores} threads"),
        ));
    }
    let output = match &args.output {
        Some(p) => p.clone(),
        None => plan::default_path_for(&plan::Fingerprint::current())
            .context("no cache directory for the default plan (set HOME or XDG_CACHE_HOME, or give -o FILE)")?,
    };
    println!("{}", subject.description);
    println!(
        "{} matrices, {} distinct ({}); {:.1} MB of weights per token; threads {:?}; budget {} s",
        subject.matrices(),
        uses.len(),
        subject.formats,
        subject.bytes_per_token()? as f64 / 1e6,
        threads,
        args.budget
    );

    let roofline = if args.no_roofline { Vec::new() } else { measure_roofline(&threads)? };
    let opts = TuneOptions {
        threads: threads.clone(),
        budget: Duration::from_secs_f64(args.budget),
        rotation_bytes: args.rotation_mib.map(|m| m << 20),
        roofline,
    };
    let keys: Vec<_> = uses.iter().map(|u| u.key).collect();
    let bar = progress_bar();
    let started = Instant::now();
    let plan = tune::tune(&keys, &opts, &mut |p| show_progress(&bar, p, uses));
    bar.finish_and_clear();
    let mut plan = plan.context("tuning")?;
    let wall = started.elapsed().as_secs_f64();

    print_table(&plan, uses, &threads);
    println!();
    println!(
        "tuned {} keys x {} thread counts in {wall:.1} s (measurement {:.1} s, budget {} s)",
        uses.len(),
        threads.len(),
        plan.tune_secs,
        args.budget
    );

    if output.exists()
        && let Ok(old) = Plan::load(&output)
    {
        plan.keep_entries_of(old);
    }
    {
        let _whole = crate::interrupt::hold();
        plan.save(&output).with_context(|| format!("writing the plan to {}", output.display()))?;
        println!("plan written to {}", output.display());
    }

    if args.verify {
        verify(args, &plan, &subject, &opts, wall)?;
    }
    Ok(())
}

/// A brief DRAM read bandwidth measurement at each thread count.
fn measure_roofline(threads: &[usize]) -> Result<Vec<RooflinePoint>> {
    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let mut out = Vec::new();
    for &t in threads {
        bar.set_message(format!("measuring DRAM read bandwidth with {t} thread(s)"));
        bar.tick();
        // Every stream count of the roofline's default: the best one differs
        // by machine (on a Zen 4, 1 stream reads 28 GB/s and 4 staggered streams 25-28).
        let opts = DramOptions { reps: 3, ..DramOptions::default() };
        let bw = roofline::dram_read_bandwidth(t, &opts).context("measuring DRAM bandwidth")?;
        out.push(RooflinePoint { threads: t, gbs: bw.median_gbs });
    }
    bar.finish_and_clear();
    let text: Vec<String> = out.iter().map(|r| format!("{} thread(s) {:.1} GB/s", r.threads, r.gbs)).collect();
    println!("DRAM read bandwidth: {}", text.join(", "));
    Ok(out)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn show_progress(bar: &ProgressBar, p: &TuneProgress, uses: &[KeyUse]) {
    bar.set_position((p.fraction * 1000.0) as u64);
    let name = uses.iter().find(|u| u.key == p.key).map_or("", |u| u.names.as_str());
    let threads = p.threads.map_or(String::new(), |t| format!(", {t} thread(s)"));
    bar.set_message(format!(
        "key {}/{} {name} ({}), layout {}{threads}: {}",
        p.key_index + 1,
        p.keys,
        p.key,
        p.layout,
        p.stage.name()
    ));
}

/// `static` or `dyn/128`.
pub fn partition_text(p: &Partition) -> String {
    match p.schedule {
        Schedule::Static => "static".into(),
        Schedule::Dynamic => format!("dyn/{}", p.rows_per_chunk),
    }
}

fn pct(m: &Measured) -> String {
    m.roofline_pct.map_or("-".into(), |p| format!("{p:.0} %"))
}

fn print_table(plan: &Plan, uses: &[KeyUse], threads: &[usize]) {
    println!();
    println!(
        "{:<10} {:<16} {:>3} | {:<32} {:<8} {:>9} {:>6} {:>6} | {:>7} {:>7}",
        "matrix", "shape", "thr", "chosen variant", "split", "us/call", "GB/s", "roof", "x heur", "x slow"
    );
    println!("{}", "-".repeat(120));
    for u in uses {
        for &t in threads {
            let Some(e) = plan.entry(&u.key, t) else { continue };
            let c = &e.choice;
            let vs = |m: &Option<Measured>| m.as_ref().map_or("-".into(), |m| format!("{:.2}", m.secs / c.secs));
            println!(
                "{:<10} {:<16} {:>3} | {:<32} {:<8} {:>9.1} {:>6.2} {:>6} | {:>7} {:>7}",
                u.names,
                format!("{}x{}", u.key.rows, u.key.cols),
                t,
                c.variant,
                partition_text(&c.partition),
                c.secs * 1e6,
                c.gbs,
                pct(c),
                vs(&e.heuristic),
                vs(&e.slowest),
            );
        }
    }
    println!();
    for &t in threads {
        let (mut ours, mut heur) = (0.0, 0.0);
        let mut complete = true;
        for u in uses {
            match plan.entry(&u.key, t) {
                Some(e) => {
                    ours += u.count as f64 * e.choice.secs;
                    heur += u.count as f64 * e.heuristic.as_ref().map_or(e.choice.secs, |h| h.secs);
                }
                None => complete = false,
            }
        }
        if complete {
            println!(
                "decode step GEMV time at {t} thread(s): plan {:.2} ms, heuristic default {:.2} ms ({:.2}x)",
                ours * 1e3,
                heur * 1e3,
                heur / ours
            );
        }
    }
}

/// One key at one thread count: the plan's choice against the exhaustive sweep.
struct Check<'a> {
    names: &'a str,
    count: usize,
    sweep: &'a SweepResult,
    choice: &'a Measured,
    best: &'a Measured,
    heuristic: Option<&'a Measured>,
    slowest: &'a Measured,
    /// The plan's choice as re-measured in the sweep.
    chosen: Option<&'a Measured>,
    /// The plan's choice, the sweep's best and the heuristic default
    /// re-measured side by side ([`tune::head_to_head`]).
    paired: Paired,
}

/// Seconds per call of the plan's choice, the fastest of the sweep's best
/// candidates side by side, and the heuristic default.
struct Paired {
    choice: f64,
    /// The fastest side by side of the sweep's best of every layout.
    best: Measured,
    heuristic: Option<f64>,
}

impl Paired {
    /// Measures the plan's choice, the sweep's best of every layout (its
    /// fastest among them) and the heuristic default (each once) side by
    /// side. The sweep measures the layouts one after another, seconds
    /// apart; a shared host's bandwidth can move by 2x in between, so its
    /// fastest median alone may be a layout that was measured in a good
    /// moment.
    fn measure<'n>(
        key: &tune::MatrixKey,
        threads: usize,
        choice: (&'n str, Partition),
        sweep: &'n SweepResult,
        heuristic: Option<&'n Measured>,
        opts: &TuneOptions,
    ) -> Result<Paired> {
        fn index_of<'n>(cands: &mut Vec<(&'n str, Partition)>, cand: (&'n str, Partition)) -> usize {
            cands.iter().position(|&c| c == cand).unwrap_or_else(|| {
                cands.push(cand);
                cands.len() - 1
            })
        }
        let mut cands = vec![choice];
        let mut bests = Vec::new();
        // `sweep.results` is fastest first: the first of each layout is its best.
        let mut seen = Vec::new();
        for m in &sweep.results {
            let layout = registry::find(&m.variant).map(Layout::for_variant);
            if !seen.contains(&layout) {
                seen.push(layout);
                bests.push(index_of(&mut cands, (&m.variant, m.partition)));
            }
        }
        let heuristic = heuristic.map(|h| index_of(&mut cands, (&h.variant, h.partition)));
        let measured = tune::head_to_head(key, threads, &cands, opts)?;
        let best = bests
            .iter()
            .map(|&i| &measured[i])
            .min_by(|a, b| a.secs.total_cmp(&b.secs))
            .context("a sweep without candidates")?
            .clone();
        Ok(Paired { choice: measured[0].secs, best, heuristic: heuristic.map(|i| measured[i].secs) })
    }
}

fn verify(args: &TuneArgs, plan: &Plan, subject: &Subject, opts: &TuneOptions, wall: f64) -> Result<()> {
    let uses = &subject.uses[..];
    let keys: Vec<_> = uses.iter().map(|u| u.key).collect();
    let bar = progress_bar();
    let started = Instant::now();
    let sweeps = tune::sweep(&keys, opts, &mut |p| show_progress(&bar, p, uses));
    bar.finish_and_clear();
    let sweeps = sweeps.context("exhaustive sweep")?;
    let sweep_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let heuristic_name = |key, t| tune::heuristic(key, t).ok().map(|c| (c.variant.name, c.partition));
    let mut checks = Vec::new();
    let bar = progress_bar();
    for (i, s) in sweeps.iter().enumerate() {
        bar.set_position((1000 * i / sweeps.len().max(1)) as u64);
        let Some(u) = uses.iter().find(|u| u.key == s.key) else { continue };
        let Some(e) = plan.entry(&s.key, s.threads) else { continue };
        let (Some(best), Some(slowest)) = (s.results.first(), s.results.last()) else { continue };
        bar.set_message(format!("{} ({}), {} thread(s): side by side", u.names, s.key, s.threads));
        let find = |name: &str, p: &Partition| s.results.iter().find(|m| m.variant == name && m.partition == *p);
        let heuristic = heuristic_name(&s.key, s.threads).and_then(|(n, p)| find(n, &p));
        let chosen = find(&e.choice.variant, &e.choice.partition);
        let paired = Paired::measure(&s.key, s.threads, (&e.choice.variant, e.choice.partition), s, heuristic, opts)
            .with_context(|| format!("re-measuring {} side by side", u.names))?;
        checks.push(Check {
            names: &u.names,
            count: u.count,
            sweep: s,
            choice: &e.choice,
            best,
            heuristic,
            slowest,
            chosen,
            paired,
        });
    }
    bar.finish_and_clear();
    let paired_secs = started.elapsed().as_secs_f64();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| matrix | shape | threads | plan's choice | exhaustive best | choice vs best in the sweep | choice vs best side by side (the best there) | heuristic (sweep) | slowest | plan speedup over heuristic (side by side) | candidates |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let (mut worst_sweep_gap, mut worst_gap): (f64, f64) = (0.0, 0.0);
    for c in &checks {
        let chosen_secs = c.chosen.map_or(f64::NAN, |m| m.secs);
        let sweep_gap = 100.0 * (chosen_secs / c.best.secs - 1.0);
        let gap = 100.0 * (c.paired.choice / c.paired.best.secs - 1.0);
        worst_sweep_gap = worst_sweep_gap.max(sweep_gap);
        worst_gap = worst_gap.max(gap);
        let us = |m: &Measured| format!("{:.1} us", m.secs * 1e6);
        let _ = writeln!(
            md,
            "| {} | {}x{} | {} | `{}` {} {:.1} us | `{}` {} {} ({:.1} GB/s) | {:+.1} % | {:+.1} % ({:.1} / {:.1} us, `{}` {}) | {} | `{}` {} | {} | {} |",
            c.names,
            c.sweep.key.rows,
            c.sweep.key.cols,
            c.sweep.threads,
            c.choice.variant,
            partition_text(&c.choice.partition),
            chosen_secs * 1e6,
            c.best.variant,
            partition_text(&c.best.partition),
            us(c.best),
            c.best.gbs,
            sweep_gap,
            gap,
            c.paired.choice * 1e6,
            c.paired.best.secs * 1e6,
            c.paired.best.variant,
            partition_text(&c.paired.best.partition),
            c.heuristic.map_or("-".into(), us),
            c.slowest.variant,
            us(c.slowest),
            c.paired.heuristic.map_or("-".into(), |h| format!("{:.2}x", h / c.paired.choice)),
            c.sweep.results.len(),
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Whole decode step ({} matrices per token, {} in {}), GEMV time per token, each matrix's time from the side-by-side re-measurement:",
        subject.matrices(),
        subject.title,
        subject.formats
    );
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "| threads | plan | heuristic default | exhaustive best | plan speedup over heuristic | plan vs best |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    for &t in &opts.threads {
        let of_t: Vec<&Check> = checks.iter().filter(|c| c.sweep.threads == t).collect();
        let sum = |f: &dyn Fn(&Check) -> Option<f64>| -> Option<f64> {
            of_t.iter().map(|c| f(c).map(|s| s * c.count as f64)).sum()
        };
        let plan_t = sum(&|c| Some(c.paired.choice));
        let heur_t = sum(&|c| c.paired.heuristic);
        let best_t = sum(&|c| Some(c.paired.best.secs));
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2} ms", v * 1e3));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.3}x", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {} | {} |",
            ms(plan_t),
            ms(heur_t),
            ms(best_t),
            ratio(heur_t, plan_t),
            ratio(plan_t, best_t)
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Tune time: {wall:.1} s wall for {} keys x {} thread counts (measurement {:.1} s, budget {} s); exhaustive sweep {sweep_secs:.1} s, side-by-side re-measurement {paired_secs:.1} s ({} samples per candidate, ranked by the mean of the fastest {:.0} %). Worst choice vs exhaustive best: {worst_gap:+.1} % side by side, {worst_sweep_gap:+.1} % in the sweep.",
        uses.len(),
        opts.threads.len(),
        plan.tune_secs,
        args.budget,
        tune::HEAD_TO_HEAD_SAMPLES,
        100.0 * tune::FINAL_KEPT
    );
    println!();
    println!("Verification against an exhaustive sweep:");
    println!();
    print!("{md}");
    if let Some(path) = &args.report {
        let _whole = crate::interrupt::hold();
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_read_well() {
        assert_eq!(partition_text(&Partition::default()), "static");
        assert_eq!(partition_text(&Partition { rows_per_chunk: 128, schedule: Schedule::Dynamic }), "dyn/128");
    }
}
