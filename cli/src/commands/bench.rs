//! `asdsl bench`: prompt-processing and decode speed, as llama-bench
//! measures it, with the bytes each decoded token reads and the share of the
//! DRAM roofline that makes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use asdsl_kernels::roofline::{self, DramOptions};
use asdsl_model::{Exec, Model};
use clap::Args;
use serde::Serialize;

use super::generate::{ActivationsArg, Loaded, ModelArgs, random_model_bytes};
use super::human_bytes;

/// The long help of `asdsl bench`.
pub const LONG_ABOUT: &str = "Measure prompt processing (ppN: N prompt tokens in batches, from an empty \
    context) and decoding (tgN: N tokens one at a time, from an empty context) as llama-bench does: a \
    warm-up run, then -r repetitions; tokens per second as mean ± standard deviation over the \
    repetitions. Prompt tokens are seeded random ids. Each decode row also gives the weight bytes one token \
    reads, the effective GB/s and its share of the DRAM read bandwidth measured at the same thread count \
    (asdsl roofline). The model is a GGUF file or Hugging Face folder (-m), or random weights of a named \
    geometry (--geometry NAME --quant TYPE).";

/// Examples for `asdsl bench --help`.
pub const AFTER_HELP: &str = "Examples:\n  asdsl bench -m model.gguf -p 512 -n 128 -t 1,2 -r 5\n  \
    asdsl bench --geometry phi4-mini --quant q4_0 -p 0 -n 128\n  \
    asdsl bench --geometry llama-1b --quant q4_k_m --json";

/// Arguments of `asdsl bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: a GGUF file or a Hugging Face folder (default: the default model of `generate`).
    #[arg(short = 'm', long = "model", value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Instead of a model file: random weights of a named geometry (smollm2-135m, llama-1b, phi4-mini,
    /// llama-8b), built in memory in the --quant format.
    #[arg(long, value_name = "NAME", conflicts_with = "model")]
    pub geometry: Option<String>,
    /// Weight format: of --geometry (a GGUF type or q4_k_m), or for float checkpoints.
    #[arg(long, default_value = "q4_k_m", value_name = "TYPE")]
    pub quant: String,
    /// Seed of the --geometry weights.
    #[arg(long = "weights-seed", default_value_t = 0, value_name = "N")]
    pub weights_seed: u64,
    /// Prompt lengths to measure (comma-separated; 0 skips prompt processing).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512", value_name = "LIST")]
    pub n_prompt: Vec<usize>,
    /// Decode lengths to measure (comma-separated; 0 skips decoding).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128", value_name = "LIST")]
    pub n_gen: Vec<usize>,
    /// Thread counts (comma-separated; default: 1 up to the physical cores).
    #[arg(short = 't', long, value_delimiter = ',', value_name = "LIST")]
    pub threads: Option<Vec<usize>>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: usize,
    /// Prompt tokens per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Kernel plan file (default: ASDSL_PLAN, else this machine's plan, else the heuristic default).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Activation path of the matrix products: auto, q8 or f32.
    #[arg(long, value_enum, default_value_t = ActivationsArg::Auto)]
    pub activations: ActivationsArg,
    /// Skip the warm-up run.
    #[arg(long)]
    pub no_warmup: bool,
    /// Skip the DRAM bandwidth measurement (no GB/s share in the table).
    #[arg(long)]
    pub no_roofline: bool,
    /// Print one JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The model arguments for a run on `threads` threads.
    fn model_args(&self, threads: usize) -> ModelArgs {
        ModelArgs {
            model: self.model.clone(),
            geometry: self.geometry.clone(),
            weights_seed: self.weights_seed,
            quant: self.quant.clone(),
            threads: Some(threads),
            plan: self.plan.clone(),
            activations: self.activations,
        }
    }
}

/// One row of the results.
#[derive(Debug, Serialize)]
struct Row {
    model: String,
    size_bytes: u64,
    params: u64,
    isa: String,
    threads: usize,
    test: String,
    repetitions: usize,
    tok_per_s_mean: f64,
    tok_per_s_sd: f64,
    samples_tok_per_s: Vec<f64>,
    /// Decode rows: weight bytes one token reads.
    bytes_per_token: Option<u64>,
    /// Decode rows: bytes_per_token x tok/s.
    gb_per_s: Option<f64>,
    /// Decode rows: DRAM read bandwidth at this thread count (GB/s).
    dram_gb_per_s: Option<f64>,
    /// Decode rows: gb_per_s / dram_gb_per_s, in %.
    roofline_pct: Option<f64>,
    plan: String,
}

/// Runs `asdsl bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.repetitions == 0 {
        bail!("-r must be at least 1");
    }
    let cores = asdsl_kernels::cpu::detect().logical_cores.max(1);
    let threads: Vec<usize> = match &args.threads {
        Some(list) => list.clone(),
        None => (1..=asdsl_kernels::cpu::detect().physical_cores.max(1)).collect(),
    };
    if let Some(&bad) = threads.iter().find(|&&t| t == 0 || t > cores) {
        return Err(crate::exit::fail(
            crate::exit::Exit::Resource,
            format!("thread count {bad} is outside 1..={cores} (the logical cores of this machine)"),
        ));
    }
    let quiet = args.json;
    // A geometry's random GGUF bytes are built once and packed per thread count.
    let random = match &args.geometry {
        Some(name) => Some(random_model_bytes(name, args.quant.parse()?, args.weights_seed, quiet)?),
        None => None,
    };
    let mut rows = Vec::new();
    if !args.json {
        println!(
            "| model | size | params | backend | threads | test | t/s | B/token | GB/s | % DRAM |\n\
             | --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |"
        );
    }
    for &t in &threads {
        let model_args = args.model_args(t);
        let loaded = match (&random, &args.geometry) {
            (Some(bytes), Some(name)) => model_args.load_gguf_bytes(bytes, &PathBuf::from(name), t, quiet)?,
            _ => model_args.load(quiet)?,
        };
        let dram = if args.no_roofline {
            None
        } else {
            if !quiet {
                eprintln!("measuring DRAM read bandwidth at {t} thread(s)");
            }
            Some(
                roofline::dram_read_bandwidth(t, &DramOptions::default())
                    .context("measuring DRAM bandwidth")?
                    .median_gbs,
            )
        };
        let exec = Exec::new(t)?;
        for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
            let samples = repeat(args, || time_prompt(&loaded.model, &exec, p, args.batch_size))?;
            let row = row(&loaded, t, format!("pp{p}"), samples, None, None);
            print_row(args, &row);
            rows.push(row);
        }
        for &n in args.n_gen.iter().filter(|&&n| n > 0) {
            let samples = repeat(args, || time_decode(&loaded.model, &exec, n))?;
            let row = row(&loaded, t, format!("tg{n}"), samples, Some(loaded.model.info.weight_bytes as u64), dram);
            print_row(args, &row);
            rows.push(row);
        }
        if !args.json {
            eprintln!("{t} thread(s): {}", loaded.plan_status);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

/// A warm-up run (unless `--no-warmup`), then `-r` timed runs: tokens per second each.
fn repeat(args: &BenchArgs, mut run: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
    if !args.no_warmup {
        run()?;
    }
    (0..args.repetitions).map(|_| run()).collect()
}

/// Seeded random prompt ids (ids from 3 up, past `<unk>`, `<s>`, `</s>`).
fn prompt_ids(vocab: usize, n: usize) -> Vec<u32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (3 + state % (vocab.max(4) as u64 - 3)) as u32
        })
        .collect()
}

/// Tokens per second of processing an `n`-token prompt from an empty context.
fn time_prompt(model: &Model, exec: &Exec, n: usize, batch: usize) -> Result<f64> {
    let ids = prompt_ids(model.config.vocab_size, n);
    let mut state = model.new_state(n, batch.max(1))?;
    if state.context() < n {
        bail!("pp{n} does not fit the model's context of {} tokens", state.context());
    }
    let start = Instant::now();
    model.forward_last(&mut state, &ids, exec)?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Tokens per second of decoding `n` tokens one at a time from an empty
/// context (each step feeds the argmax of the last, as generation does).
fn time_decode(model: &Model, exec: &Exec, n: usize) -> Result<f64> {
    let mut state = model.new_state(n, 1)?;
    if state.context() < n {
        bail!("tg{n} does not fit the model's context of {} tokens", state.context());
    }
    let mut token = 1u32.min(model.config.vocab_size as u32 - 1);
    let start = Instant::now();
    for _ in 0..n {
        let logits = model.forward_last(&mut state, &[token], exec)?;
        token = argmax(logits);
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32
}

fn mean_sd(samples: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    if samples.len() < 2 {
        return (mean, 0.0);
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn row(
    loaded: &Loaded,
    threads: usize,
    test: String,
    samples: Vec<f64>,
    bytes_per_token: Option<u64>,
    dram: Option<f64>,
) -> Row {
    let (mean, sd) = mean_sd(&samples);
    let model = &loaded.model;
    let gb_per_s = bytes_per_token.map(|b| b as f64 * mean / 1e9);
    let name =
        loaded.path.file_name().map_or_else(|| loaded.path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Row {
        model: name,
        size_bytes: model.info.weight_bytes as u64,
        params: model.parameters(),
        isa: asdsl_kernels::cpu::try_best_isa().map_or_else(|e| e.to_string(), |i| i.to_string()),
        threads,
        test,
        repetitions: samples.len(),
        tok_per_s_mean: mean,
        tok_per_s_sd: sd,
        samples_tok_per_s: samples,
        bytes_per_token,
        gb_per_s,
        dram_gb_per_s: dram.filter(|_| bytes_per_token.is_some()),
        roofline_pct: gb_per_s.zip(dram).map(|(g, d)| 100.0 * g / d),
        plan: loaded.plan_status.clone(),
    }
}

fn print_row(args: &BenchArgs, r: &Row) {
    if args.json {
        return;
    }
    let opt = |v: Option<String>| v.unwrap_or_default();
    println!(
        "| {} | {} | {:.2} M | CPU asdsl {} | {} | {} | {:.2} ± {:.2} | {} | {} | {} |",
        r.model,
        human_bytes(r.size_bytes),
        r.params as f64 / 1e6,
        r.isa,
        r.threads,
        r.test,
        r.tok_per_s_mean,
        r.tok_per_s_sd,
        opt(r.bytes_per_token.map(human_bytes)),
        opt(r.gb_per_s.map(|g| format!("{g:.2}"))),
        opt(r.roofline_pct.map(|p| format!("{p:.1}"))),
    );
}
