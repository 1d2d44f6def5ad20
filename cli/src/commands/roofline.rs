//! `asdsl roofline`: this machine's memory bandwidth and the GEMV ceiling it allows.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use asdsl_kernels::Format;
use asdsl_kernels::cpu;
use asdsl_kernels::roofline::{
    self, CacheOptions, DramOptions, GemvCeiling, MIB, RooflineOptions, RooflineProgress, RooflineReport, STREAM_COUNTS,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::human_bytes;
use super::subject::Subject;

/// The long help of `asdsl roofline`.
pub const LONG_ABOUT: &str = "Measure this machine's memory read bandwidth and the speed ceiling it sets for \
    quantized GEMV (decode reads every weight once per token, so a call can be no faster than its \
    weight bytes divided by the bandwidth).\n\n\
    DRAM: a buffer of more than 4x the last-level cache (at least 1 GiB), split among the \
    threads, first touched by the thread that reads it, on transparent huge pages, read with \
    several independent streams per thread and the widest vector loads available; one warm-up, \
    then the median (and min-max) of --reps repetitions. L3 and L2: cache-resident buffers \
    (min(L3/2, 64 MiB) in all; half an L2 per thread) read many times per repetition. \
    Bandwidths are aggregate over all threads, GB/s = 10^9 bytes/s.\n\n\
    With --shape and --format it also prints the bytes per GEMV call and the ceiling (calls/s, \
    microseconds per call) at each thread count's DRAM and L3 bandwidth; with --model or \
    --geometry, the same for every distinct matrix of one decode step, and the decode ceiling: \
    tokens per second if every weight byte of a token is read once at that bandwidth.";

/// Examples shown after the help of `asdsl roofline`.
pub const AFTER_HELP: &str = "Examples:\n  asdsl roofline\n  asdsl roofline --threads 1,2 --shape 4096x4096 --shape 11008x4096 --format q4_0\n  \
    asdsl roofline --dram-only --model model.gguf\n  asdsl roofline --dram-only --geometry llama-8b --quant q4_k\n  \
    asdsl roofline --threads 2 --size-mib 4096 --reps 11 --json";

/// Arguments of `asdsl roofline`.
#[derive(Debug, Args)]
pub struct RooflineArgs {
    /// Thread counts: N measures every count from 1 to N; a list (1,2,4) or ranges (2-4) measure
    /// exactly those. Default: 1 to the number of physical cores.
    #[arg(long, value_name = "N|LIST", value_parser = parse_threads)]
    pub threads: Option<ThreadList>,

    /// DRAM buffer size in MiB; must exceed 4x the last-level cache. Default: the larger of
    /// 1 GiB and 4x the last-level cache (rounded up to 256 MiB).
    #[arg(long, value_name = "N")]
    pub size_mib: Option<u64>,

    /// Timed repetitions per measurement (and per stream count), after one warm-up.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..))]
    pub reps: u32,

    /// Independent read streams per thread to try for DRAM (each of 1, 2, 4, 8, 16); the best is reported.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,2,4,8")]
    pub streams: Vec<usize>,

    /// Measure DRAM only (skip the L3 and L2 measurements).
    #[arg(long)]
    pub dram_only: bool,

    /// Matrix shape ROWSxCOLS (output rows x input columns) for the GEMV ceiling; repeatable.
    /// Needs --format.
    #[arg(long, value_name = "ROWSxCOLS", requires = "format", value_parser = parse_shape)]
    pub shape: Vec<(usize, usize)>,

    /// Weight format of --shape: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, or native
    /// q{2,3,4,8}g{16,32,64,128} (e.g. q4g32).
    #[arg(long, value_name = "FMT", requires = "shape", value_parser = parse_format)]
    pub format: Option<Format>,

    /// A model (GGUF file, Hugging Face folder or `asdsl quantize` file): the ceiling of every
    /// distinct matrix of one decode step, as loaded (a float model quantized to --quant), and
    /// of the whole step.
    #[arg(long, value_name = "FILE|DIR", conflicts_with_all = ["shape", "format", "geometry"])]
    pub model: Option<PathBuf>,

    /// A named geometry (smollm2-135m, llama-1b, phi4-mini, llama-8b) in --quant: as --model.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["shape", "format"])]
    pub geometry: Option<String>,

    /// Weight format of --geometry, and of a float --model's matrices: q4_0, q4_1, q5_0, q5_1,
    /// q8_0, q4_k, q5_k, q6_k or native q{2,3,4,8}g{16,32,64,128}.
    #[arg(long, value_name = "FMT", default_value = "q4_0", value_parser = parse_format)]
    pub quant: Format,

    /// Print the report as JSON (the progress bar still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Thread counts to measure, ascending, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadList(pub Vec<usize>);

/// Parses `N` (1..=N), or a comma list of counts and ranges `A-B`.
pub(crate) fn parse_threads(s: &str) -> Result<ThreadList, String> {
    let s = s.trim();
    let count = |p: &str| -> Result<usize, String> {
        match p.trim().parse::<usize>() {
            Ok(0) => Err("thread counts start at 1".to_string()),
            Ok(n) if n > 4096 => Err(format!("{n} threads is too many")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{p}` is not a thread count (N, a list like 1,2,4, or a range like 2-4)")),
        }
    };
    let mut out = Vec::new();
    if !s.contains([',', '-']) {
        out.extend(1..=count(s)?);
    } else {
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (count(a)?, count(b)?);
                    if a > b {
                        return Err(format!("empty range `{part}`"));
                    }
                    out.extend(a..=b);
                }
                None => out.push(count(part)?),
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err("no thread count given".to_string());
    }
    Ok(ThreadList(out))
}

fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    roofline::parse_shape(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

/// What the ceiling is computed for.
#[derive(Debug)]
enum Workload {
    /// Bandwidth only.
    None,
    /// Named shapes in one format.
    Shapes { format: Format, shapes: Vec<(usize, usize)> },
    /// The matrices of one decode step of a model file or named geometry.
    Decode { model: Option<PathBuf>, geometry: Option<String>, quant: Format },
}

/// One matrix whose GEMV ceiling is printed.
#[derive(Debug, Clone, Serialize)]
struct Matrix {
    label: String,
    #[serde(serialize_with = "serialize_display")]
    format: Format,
    rows: usize,
    cols: usize,
    /// How many such matrices one token reads.
    count: usize,
}

impl Workload {
    fn from_args(args: &RooflineArgs) -> Self {
        match (&args.model, &args.geometry, args.format) {
            (None, None, Some(format)) if !args.shape.is_empty() => {
                Workload::Shapes { format, shapes: args.shape.clone() }
            }
            (None, None, _) => Workload::None,
            (model, geometry, _) => {
                Workload::Decode { model: model.clone(), geometry: geometry.clone(), quant: args.quant }
            }
        }
    }

    fn matrices(&self) -> Result<Vec<Matrix>> {
        match self {
            Workload::None => Ok(Vec::new()),
            Workload::Shapes { format, shapes } => shapes
                .iter()
                .map(|&(rows, cols)| {
                    format.row_bytes(cols).with_context(|| format!("shape {rows}x{cols} in {format}"))?;
                    Ok(Matrix { label: format!("{rows}x{cols} {format}"), format: *format, rows, cols, count: 1 })
                })
                .collect(),
            Workload::Decode { model, geometry, quant } => {
                let subject = Subject::of(model.as_deref(), geometry.as_deref(), *quant)?;
                Ok(subject
                    .uses
                    .iter()
                    .map(|u| Matrix {
                        label: format!("{} {}x{} {}", u.names, u.key.rows, u.key.cols, u.key.format),
                        format: u.key.format,
                        rows: u.key.rows,
                        cols: u.key.cols,
                        count: u.count,
                    })
                    .collect())
            }
        }
    }

    /// Whether the matrices are one decode step (their sum is a token).
    fn is_decode(&self) -> bool {
        matches!(self, Workload::Decode { .. })
    }
}

fn serialize_display<S: serde::Serializer>(value: &Format, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// The ceilings of one matrix (or the whole workload) at one thread count.
#[derive(Debug, Serialize)]
struct CeilingRow {
    threads: usize,
    dram: GemvCeiling,
    l3: Option<GemvCeiling>,
}

#[derive(Debug, Serialize)]
struct MatrixCeilings {
    #[serde(flatten)]
    matrix: Matrix,
    bytes_per_call: u64,
    per_threads: Vec<CeilingRow>,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a RooflineReport,
    ceilings: Vec<MatrixCeilings>,
    /// With --model or --geometry: the weight bytes of one decode step.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_token: Option<u64>,
}

/// Runs `asdsl roofline`.
pub fn run(args: &RooflineArgs) -> Result<()> {
    let workload = Workload::from_args(args);
    let matrices = workload.matrices()?;
    if let Some(s) = args.streams.iter().find(|s| !STREAM_COUNTS.contains(s)) {
        bail!("--streams {s}: each stream count must be one of {STREAM_COUNTS:?}");
    }
    let cpu = cpu::detect();
    let isa = cpu::try_best_isa().with_context(|| format!("{} is invalid", cpu::FORCE_ISA_ENV))?;
    let threads = match &args.threads {
        Some(list) => list.0.clone(),
        None => (1..=cpu.physical_cores.max(1)).collect(),
    };
    if let Some(&max) = threads.last()
        && max > cpu.logical_cores
    {
        eprintln!(
            "warning: {max} threads on {} logical CPUs: threads will share cores and the numbers will suffer",
            cpu.logical_cores
        );
    }
    let opts = RooflineOptions {
        dram: DramOptions {
            buffer_bytes: args.size_mib.map(|m| m * MIB),
            reps: args.reps as usize,
            streams: args.streams.clone(),
            isa: None,
        },
        cache: CacheOptions { reps: (2 * args.reps as usize).max(5), ..CacheOptions::default() },
        skip_cache: args.dram_only,
    };
    let dram_bytes = opts.dram.read_options(cpu).context("choosing the DRAM buffer")?.buffer_bytes;
    if !args.json {
        println!(
            "{} | {} logical / {} physical cores | L3 {} | read kernel {isa}",
            cpu.brand,
            cpu.logical_cores,
            cpu.physical_cores,
            cpu.l3_bytes().map_or("unknown".to_string(), human_bytes),
        );
        println!(
            "DRAM buffer {}, {} timed repetitions per stream count, streams tried {:?}",
            human_bytes(dram_bytes),
            args.reps,
            args.streams
        );
    }

    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut on_progress = |p: RooflineProgress| {
        let within = if p.progress.total == 0 { 0.0 } else { p.progress.done as f64 / p.progress.total as f64 };
        bar.set_position((((p.step as f64 + within) / p.steps as f64) * 1000.0) as u64);
        let what = if p.progress.done == 0 {
            "allocating, first touch, warm-up".to_string()
        } else {
            format!("repetition {}/{}", p.progress.done, p.progress.total)
        };
        bar.set_message(format!("{} with {} thread(s): {what}", p.level.name(), p.threads));
    };
    let report = roofline::measure_roofline(&threads, &opts, &mut on_progress);
    bar.finish_and_clear();
    let report = report.context("measuring bandwidth")?;

    let ceilings = matrices.iter().map(|m| ceilings_of(m, &report)).collect::<Result<Vec<_>>>()?;
    if args.json {
        let bytes_per_token =
            workload.is_decode().then(|| ceilings.iter().map(|c| c.bytes_per_call * c.matrix.count as u64).sum());
        let out = Output { report: &report, ceilings, bytes_per_token };
        println!("{}", serde_json::to_string_pretty(&out).context("serializing the report")?);
    } else {
        print_bandwidth(&report);
        print_ceilings(&ceilings, &report, workload.is_decode());
    }
    Ok(())
}

fn ceilings_of(m: &Matrix, report: &RooflineReport) -> Result<MatrixCeilings> {
    let mut per_threads = Vec::new();
    let mut bytes = 0;
    for row in &report.rows {
        let dram = roofline::gemv_ceiling(m.format, m.rows, m.cols, row.dram.median_gbs)?;
        let l3 =
            row.l3.as_ref().map(|l3| roofline::gemv_ceiling(m.format, m.rows, m.cols, l3.median_gbs)).transpose()?;
        bytes = dram.bytes_per_call;
        per_threads.push(CeilingRow { threads: row.threads, dram, l3 });
    }
    Ok(MatrixCeilings { matrix: m.clone(), bytes_per_call: bytes, per_threads })
}

fn gbs_range(median: f64, min: f64, max: f64) -> String {
    format!("{median:7.2} [{min:.2}-{max:.2}]")
}

fn print_bandwidth(report: &RooflineReport) {
    println!();
    println!("threads | DRAM read GB/s (median [min-max]) | streams |  L3 GB/s |  L2 GB/s");
    println!("--------+-----------------------------------+---------+----------+---------");
    for row in &report.rows {
        let d = &row.dram;
        let cache = |b: &Option<roofline::Bandwidth>| {
            b.as_ref().map_or("       -".to_string(), |b| format!("{:8.2}", b.median_gbs))
        };
        println!(
            "{:>7} | {:<33} | {:>7} | {} | {}",
            row.threads,
            gbs_range(d.median_gbs, d.min_gbs, d.max_gbs),
            format!("{}{}", d.streams, if d.prefetch { "+pf" } else { "" }),
            cache(&row.l3),
            cache(&row.l2)
        );
    }
    println!();
    println!(
        "DRAM GB/s (median) by streams per thread (+pf: software prefetch 4 KiB ahead, as the kernels do where it is on; see `asdsl info`):"
    );
    for row in &report.rows {
        let sweep: Vec<String> = row
            .dram
            .sweep
            .iter()
            .map(|s| format!("{}{}: {:.2}", s.streams, if s.prefetch { "+pf" } else { "" }, s.median_gbs))
            .collect();
        println!("  {} thread(s): {}", row.threads, sweep.join(", "));
    }
    if let Some(first) = report.rows.first() {
        let d = &first.dram;
        let thp = match d.huge_page_bytes {
            Some(h) => format!("{:.0}% on transparent huge pages", 100.0 * h as f64 / d.buffer_bytes.max(1) as f64),
            None => "huge pages unknown".to_string(),
        };
        println!("DRAM buffer {} ({thp}), {} loads", human_bytes(d.buffer_bytes), d.read_isa);
        if let (Some(l3), Some(l2)) = (&first.l3, &first.l2) {
            println!(
                "L3 buffer {} in all, L2 buffer {} per thread ({} and {} reads per repetition)",
                human_bytes(l3.buffer_bytes),
                human_bytes(l2.buffer_bytes / l2.threads as u64),
                human_bytes(l3.bytes_per_rep),
                human_bytes(l2.bytes_per_rep)
            );
        }
    }
}

fn print_ceilings(ceilings: &[MatrixCeilings], report: &RooflineReport, decode: bool) {
    if ceilings.is_empty() {
        return;
    }
    println!();
    println!("GEMV ceilings (weight bytes / bandwidth; activations are cache-resident and not counted):");
    for c in ceilings {
        println!();
        let per_token =
            if c.matrix.count > 1 { format!(", {} calls per token", c.matrix.count) } else { String::new() };
        println!(
            "{}: {} bytes per call ({}){per_token}",
            c.matrix.label,
            c.bytes_per_call,
            human_bytes(c.bytes_per_call)
        );
        println!("threads | DRAM calls/s | DRAM us/call | L3 calls/s | L3 us/call");
        for row in &c.per_threads {
            let (l3_calls, l3_us) = row.l3.as_ref().map_or(("-".to_string(), "-".to_string()), |l3| {
                (format!("{:.0}", l3.calls_per_s), format!("{:.2}", l3.us_per_call))
            });
            println!(
                "{:>7} | {:>12.0} | {:>12.2} | {:>10} | {:>10}",
                row.threads, row.dram.calls_per_s, row.dram.us_per_call, l3_calls, l3_us
            );
        }
    }
    let total: u64 = ceilings.iter().map(|c| c.bytes_per_call * c.matrix.count as u64).sum();
    // One decode step reads every matrix `count` times: a token; shapes are
    // passes over the list.
    // (heading, the unit, its plural, the time unit and its microseconds)
    let (heading, unit, units, time, us) = if decode {
        let calls: usize = ceilings.iter().map(|c| c.matrix.count).sum();
        (format!("one decode step: {calls} GEMV calls, {total} weight bytes"), "token", "tokens", "ms", 1e3)
    } else if ceilings.len() > 1 {
        (format!("all {} matrices once: {total} bytes", ceilings.len()), "pass", "passes", "us", 1.0)
    } else {
        return;
    };
    println!();
    println!("{heading} ({})", human_bytes(total));
    for row in &report.rows {
        let bw = row.dram.median_gbs;
        println!(
            "{:>7} thread(s): at most {:.1} {units}/s ({:.2} {time} per {unit}) at DRAM bandwidth",
            row.threads,
            roofline::ceiling(total, bw),
            roofline::us_per_call(total, bw) / us
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_lists() {
        assert_eq!(parse_threads("1").unwrap().0, [1]);
        assert_eq!(parse_threads("4").unwrap().0, [1, 2, 3, 4]);
        assert_eq!(parse_threads("1,2").unwrap().0, [1, 2]);
        assert_eq!(parse_threads("4,2,2").unwrap().0, [2, 4]);
        assert_eq!(parse_threads("2-4,8").unwrap().0, [2, 3, 4, 8]);
        assert_eq!(parse_threads("2-2").unwrap().0, [2]);
        assert_eq!(parse_threads("3,").unwrap().0, [3]);
        for bad in ["0", "", "a", "4-2", "1,,x", "0-3", ","] {
            assert!(parse_threads(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workload_from_shapes() {
        let w = Workload::Shapes { format: Format::Q4_0, shapes: vec![(4096, 4096), (11008, 4096)] };
        let m = w.matrices().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].label, "11008x4096 q4_0");
        let bad = Workload::Shapes { format: Format::Q4K, shapes: vec![(10, 100)] };
        assert!(bad.matrices().is_err());
        let missing =
            Workload::Decode { model: Some(PathBuf::from("no-such.gguf")), geometry: None, quant: Format::Q4_0 };
        assert!(missing.matrices().is_err());
        let unknown = Workload::Decode { model: None, geometry: Some("gpt-9".into()), quant: Format::Q4_0 };
        assert!(format!("{:#}", unknown.matrices().unwrap_err()).contains("unknown geometry"));
        assert!(Workload::None.matrices().unwrap().is_empty());
    }

    #[test]
    fn workload_from_a_geometry() {
        let w = Workload::Decode { model: None, geometry: Some("phi4-mini".into()), quant: Format::Q4_0 };
        let m = w.matrices().unwrap();
        let calls: usize = m.iter().map(|m| m.count).sum();
        assert_eq!(calls, 32 * 4 + 1, "qkv, o, gate_up and down per layer, and the output head");
        let qkv = m.iter().find(|m| m.label.starts_with("qkv ")).unwrap();
        assert_eq!((qkv.rows, qkv.cols, qkv.count), (5120, 3072, 32));
        assert!(w.is_decode());
    }
}
