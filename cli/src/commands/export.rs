//! `asdsl export`: a seeded random-weight model of a named geometry, written
//! as a GGUF file that llama.cpp loads, so both tools run identical bytes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use asdsl_model::QuantSpec;
use clap::Args;

use super::generate::random_model_bytes;
use super::human_bytes;

/// The long help of `asdsl export`.
pub const LONG_ABOUT: &str = "Write a random-weight model of a named geometry as a GGUF file of the llama \
    architecture (SentencePiece-style vocabulary of the geometry's size, seeded uniform weights, norms of \
    ones) in any GGUF type the kernels quantize: q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k, or \
    q4_k_m (llama.cpp's mix). llama.cpp and asdsl then read the same file, so their speeds compare on \
    identical bytes. The same seed gives the same file on any machine.";

/// Examples for `asdsl export --help`.
pub const AFTER_HELP: &str = "Examples:\n  asdsl export --geometry phi4-mini --quant q4_0 -o phi4-mini-q4_0.gguf\n  \
    asdsl export --geometry llama-1b --quant q4_k_m --seed 1 -o llama-1b-q4_k_m.gguf";

/// Arguments of `asdsl export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The geometry: smollm2-135m, llama-1b, phi4-mini, llama-8b.
    #[arg(long, value_name = "NAME")]
    pub geometry: String,
    /// Weight format: a GGUF type or q4_k_m.
    #[arg(long, default_value = "q4_k_m", value_name = "TYPE")]
    pub quant: String,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output GGUF file.
    #[arg(short = 'o', long, value_name = "FILE.gguf")]
    pub output: PathBuf,
}

/// Runs `asdsl export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let quant: QuantSpec = args.quant.parse()?;
    let start = std::time::Instant::now();
    let bytes = random_model_bytes(&args.geometry, quant, args.seed, false)?;
    // Write beside the target and rename, so no partial file is left behind.
    let tmp = args.output.with_extension("gguf.partial");
    if let Err(e) = std::fs::write(&tmp, &bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.output.display()))?;
    eprintln!(
        "wrote {} ({}, {} {} seed {}) in {:.1} s",
        args.output.display(),
        human_bytes(bytes.len() as u64),
        args.geometry,
        quant,
        args.seed,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
