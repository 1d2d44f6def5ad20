//! `asdsl quantize`: a Hugging Face folder quantized once into one
//! safetensors file (blocks, config, tokenizer, chat template) that later
//! loads by mmap without quantizing again.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use asdsl_model::QuantSpec;
use asdsl_model::quantized::QuantizedCheckpoint;
use clap::Args;

use super::generate::progress_bar;
use super::human_bytes;

/// The long help of `asdsl quantize`.
pub const LONG_ABOUT: &str = "Quantize a Hugging Face model folder (config.json, safetensors in bf16, f16 or f32, \
    tokenizer.json) once and write one safetensors file holding the quantized blocks, the config, the \
    tokenizer and the chat template. `asdsl generate -m FILE` (and logits, perplexity, bench, tune --model) \
    loads it by mmap and only packs the blocks for this machine's kernel variants, so the load takes \
    seconds instead of the minutes quantizing takes. The file is portable: no kernel plan or CPU feature \
    is baked in. --quant takes the same choices as generate's: q4_k_m (llama.cpp's mix, the default), \
    f32, or one format for every matrix (q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, or a native \
    format such as q4g32).";

/// Examples for `asdsl quantize --help`.
pub const AFTER_HELP: &str = "Examples:\n  asdsl quantize ./SmolLM2-135M-Instruct -o smollm2-q4_k_m.safetensors\n  \
    asdsl quantize ./Phi-4-mini-instruct --quant q4g32 -o phi4-mini-q4g32.safetensors\n  \
    asdsl generate -m smollm2-q4_k_m.safetensors -p \"Once upon a time\"";

/// Arguments of `asdsl quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The Hugging Face model folder.
    #[arg(value_name = "FOLDER")]
    pub input: PathBuf,
    /// The file to write.
    #[arg(short = 'o', long, value_name = "FILE.safetensors")]
    pub output: PathBuf,
    /// Weight format: q4_k_m (the default), f32, or one format for every matrix.
    #[arg(long, default_value = "q4_k_m", value_name = "TYPE")]
    pub quant: String,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `asdsl quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    let quant: QuantSpec = args.quant.parse()?;
    if !args.input.is_dir() {
        bail!(
            "{} is not a Hugging Face model folder: quantize reads a folder with config.json and safetensors \
             (GGUF files are quantized already; run them as they are)",
            args.input.display()
        );
    }
    let start = std::time::Instant::now();
    let bar = progress_bar(args.quiet, "quantizing {bar:30} {pos}/{len} layers");
    let progress = |done: usize, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let checkpoint = QuantizedCheckpoint::from_hf(&args.input, quant, Some(&progress))
        .with_context(|| format!("quantizing {}", args.input.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    checkpoint.write(&args.output).with_context(|| format!("writing {}", args.output.display()))?;
    let size = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({}, {quant}{}) in {:.1} s",
        args.output.display(),
        human_bytes(size),
        if checkpoint.tokenizer.is_some() { ", with its tokenizer" } else { ", no tokenizer in the folder" },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
