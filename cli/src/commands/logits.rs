//! `asdsl logits`: the logits at every position of a prompt, written as a
//! safetensors file, for checking against reference implementations.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use asdsl_model::Exec;
use clap::Args;
use safetensors::tensor::{Dtype, TensorView};

use super::generate::{ModelArgs, encode_prompt};

/// The long help of `asdsl logits`.
pub const LONG_ABOUT: &str = "Run a prompt through a model and write the logits at every position \
    (f32, [tokens, vocab]) and the prompt ids (i64, [tokens]) to a safetensors file, under the names \
    `logits` and `input_ids`, for comparison with a reference implementation.";

/// Arguments of `asdsl logits`.
#[derive(Debug, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text (encoded with the model's tokenizer).
    #[arg(short = 'p', long, value_name = "TEXT", required_unless_present = "ids", conflicts_with = "ids")]
    pub prompt: Option<String>,
    /// Token ids instead of text (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ids: Option<Vec<u32>>,
    /// Output safetensors file.
    #[arg(short = 'o', long, value_name = "OUT.safetensors")]
    pub output: PathBuf,
    /// Prompt tokens per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 32)]
    pub batch_size: usize,
}

/// Runs `asdsl logits`.
pub fn run(args: &LogitsArgs) -> Result<()> {
    let loaded = args.model.load(true)?;
    let ids = match (&args.ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => encode_prompt(&loaded, text, false, None)?,
        (None, None) => bail!("pass --prompt TEXT or --ids LIST"),
    };
    if ids.is_empty() {
        bail!("no tokens");
    }
    let model = &loaded.model;
    let exec = Exec::new(loaded.threads)?;
    let mut state = model.new_state(ids.len(), args.batch_size.max(1))?;
    let logits = model.forward_all(&mut state, &ids, &exec)?;
    let vocab = model.config.vocab_size;
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let id_bytes: Vec<u8> = ids.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
    let tensors = vec![
        ("input_ids".to_string(), TensorView::new(Dtype::I64, vec![ids.len()], &id_bytes)?),
        ("logits".to_string(), TensorView::new(Dtype::F32, vec![ids.len(), vocab], &logit_bytes)?),
    ];
    safetensors::serialize_to_file(tensors, None, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote logits [{}, {vocab}] to {} ({})", ids.len(), args.output.display(), loaded.plan_status);
    Ok(())
}
