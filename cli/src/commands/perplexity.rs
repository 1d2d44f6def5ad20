//! `asdsl perplexity`: perplexity of a model on a text, and KL divergence
//! against a saved base, by llama.cpp's `llama-perplexity` method (see
//! `asdsl_model::perplexity`), so the numbers of the two tools compare.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use asdsl_model::Exec;
use asdsl_model::perplexity::{
    self, ChunkDone, KlBase, KlBaseWriter, KlReport, KlRunning, Mode, Outcome, Percentiles, Setup,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::generate::ModelArgs;

/// The long help of `asdsl perplexity`.
pub const LONG_ABOUT: &str = "Perplexity of a model on a text, computed as llama.cpp's llama-perplexity \
    computes it, so the numbers compare: the whole text is tokenized (BOS first only if the model's \
    add_bos_token says so, and then BOS also replaces the first token of every chunk), cut into chunks of \
    -c tokens (at most --chunks of them), each evaluated from an empty cache; only the second half of a \
    chunk is scored. PPL = exp(mean negative log-likelihood), its error is PPL x the standard error of that \
    mean. The running estimate after every chunk goes to standard output ([1]28.1,[2]30.2,...), then \
    `Final estimate: PPL = x +/- y`.\n\n\
    KL divergence: --kl-base FILE saves the log-probabilities of every scored position (16-bit, \
    llama.cpp's quantization, in a safetensors file with the evaluated tokens; about 2 x vocab bytes per \
    scored position); a later run with --kl FILE (of another quantization, activation path, ...) \
    compares against them: mean KL divergence and its percentiles, the change of the probability of \
    the actual token, and how often both put the same token first, as llama-perplexity \
    --kl-divergence reports. --kl also reads llama.cpp's --kl-divergence-base files. With --kl the text \
    and context come from the base file; -f, if given, is checked against it.";

/// Arguments of `asdsl perplexity`.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text (a UTF-8 file). Optional with --kl (the base holds its tokens).
    #[arg(short = 'f', long, value_name = "FILE", required_unless_present = "kl")]
    pub file: Option<PathBuf>,
    /// Tokens per chunk [default: 512, or the --kl base's].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Evaluate at most this many chunks (default: all the text holds).
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// Tokens per forward call.
    #[arg(short = 'b', long = "batch-size", default_value_t = 32, value_name = "N")]
    pub batch_size: usize,
    /// Save the scored log-probabilities to FILE, for a later --kl.
    #[arg(long, value_name = "FILE", conflicts_with = "kl")]
    pub kl_base: Option<PathBuf>,
    /// Compare against the log-probabilities saved in FILE by --kl-base (or by llama.cpp's
    /// --kl-divergence-base).
    #[arg(long, value_name = "FILE")]
    pub kl: Option<PathBuf>,
    /// Print one JSON object with the results instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// The default context.
const DEFAULT_CTX: usize = 512;

/// The JSON output of `perplexity --json`.
#[derive(Debug, Serialize)]
struct JsonOutput {
    model: String,
    file: Option<String>,
    n_ctx: usize,
    n_chunks: usize,
    tokens: usize,
    scored: usize,
    add_bos: bool,
    batch: usize,
    threads: usize,
    quant: String,
    plan: String,
    ppl: f64,
    ppl_error: Option<f64>,
    nll_mean: f64,
    nll_error: Option<f64>,
    chunk_ppl: Vec<f64>,
    seconds: f64,
    tokens_per_second: f64,
    kl_base: Option<String>,
    kl: Option<KlReport>,
}

/// Runs `asdsl perplexity`.
pub fn run(args: &PerplexityArgs) -> Result<()> {
    let loaded = args.model.load(args.json)?;
    let model = &loaded.model;
    let vocab = model.config.vocab_size;
    let base = match &args.kl {
        Some(path) => Some(KlBase::open(path).with_context(|| format!("reading the KL base {}", path.display()))?),
        None => None,
    };
    let n_ctx = match (&base, args.ctx_size) {
        (Some(b), Some(c)) if b.n_ctx != c => {
            bail!("the KL base {} was computed with -c {}, not {c}", b.path().display(), b.n_ctx)
        }
        (Some(b), _) => b.n_ctx,
        (None, c) => c.unwrap_or(DEFAULT_CTX),
    };
    if n_ctx > model.config.max_position_embeddings {
        return Err(crate::exit::fail(
            crate::exit::Exit::Resource,
            format!("-c {n_ctx} is longer than the model's context of {} tokens", model.config.max_position_embeddings),
        ));
    }
    let tokenizer = loaded.tokenizer.as_ref();
    let bos = tokenizer.and_then(|t| if t.add_bos() { t.bos() } else { None });
    let text_tokens = match &args.file {
        Some(file) => {
            let Some(tok) = tokenizer else {
                bail!("{} has no tokenizer to read the text with", loaded.path.display());
            };
            let text = std::fs::read_to_string(file).with_context(|| format!("reading the text {}", file.display()))?;
            let ids = tok.encode_with(&text, false, false).context("tokenizing the text")?;
            Some(perplexity::prepare_tokens(ids, bos))
        }
        None => None,
    };
    let (tokens, n_chunks) = match (&base, text_tokens) {
        (Some(b), text) => {
            let n = args.chunks.map_or(b.n_chunks, |c| c.min(b.n_chunks));
            if n == 0 {
                bail!("--chunks 0 leaves nothing to evaluate");
            }
            let used = &b.tokens[..n * n_ctx];
            if let Some(text) = text
                && let Some(i) = (0..used.len()).find(|&i| text.get(i) != Some(&used[i]))
            {
                bail!(
                    "the text is not the one the KL base {} was computed on (first difference at token {i}; \
                     a different file, tokenizer or BOS setting)",
                    b.path().display()
                );
            }
            (used.to_vec(), n)
        }
        (None, Some(text)) => {
            let n = perplexity::count_chunks(text.len(), n_ctx, args.chunks)?;
            (text, n)
        }
        (None, None) => bail!("pass the text with -f FILE"),
    };

    let exec = Exec::new(loaded.threads)?;
    let batch = args.batch_size.max(1);
    asdsl_model::memory::check(
        &format!("the KV cache of {n_ctx} positions"),
        asdsl_model::memory::state_bytes(&model.config, n_ctx, batch),
    )?;
    let mut state = model.new_state(n_ctx, batch)?;
    let scored = n_chunks * perplexity::scored_per_chunk(n_ctx);
    if !args.json {
        eprintln!(
            "perplexity: {} tokens, {n_chunks} chunks of {n_ctx} ({} scored positions), batch {batch}, {} threads, \
             BOS {}",
            tokens.len(),
            scored,
            loaded.threads,
            if bos.is_some() { "added" } else { "not added" }
        );
        eprintln!(
            "weights: {} ({}); {}",
            model.info.quant,
            model.info.formats.iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "),
            loaded.plan_status
        );
    }

    let mut writer = match &args.kl_base {
        Some(path) => {
            if !args.json {
                eprintln!(
                    "saving the log-probabilities to {} ({})",
                    path.display(),
                    super::human_bytes((2 * scored * vocab + 4 * tokens.len()) as u64)
                );
            }
            Some(
                KlBaseWriter::create(path, &tokens, n_ctx, n_chunks, vocab, &loaded.path.display().to_string())
                    .with_context(|| format!("creating {}", path.display()))?,
            )
        }
        None => None,
    };
    let mode = match (&mut writer, &base) {
        (Some(w), _) => Mode::SaveBase(w),
        (None, Some(b)) => Mode::Compare(b),
        (None, None) => Mode::Perplexity,
    };

    let bar = ProgressBar::with_draw_target(Some(n_chunks as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("perplexity {bar:30} {pos}/{len} chunks [{elapsed_precise}<{eta_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Stream the running estimates to standard output as llama.cpp does,
    // unless they would be drawn over by the bar on the same terminal.
    let stream = !args.json && (!std::io::stdout().is_terminal() || bar.is_hidden());
    let mut estimates = String::new();
    let mut write_error = None;
    if !args.json && base.is_some() {
        let header = "chunk        PPL                ln(PPL(Q)/PPL(base))       KL divergence              Δp RMS              Same top p";
        bar.suspend(|| println!("{header}"));
    }
    let on_chunk = |done: &ChunkDone| {
        bar.set_position(done.chunk as u64);
        bar.set_message(format!("PPL {:.4}", done.ppl));
        if done.chunk == 1 && !args.json {
            let eta = done.seconds * done.n_chunks as f64;
            bar.suspend(|| eprintln!("{:.2} seconds per pass - ETA {:.2} minutes", done.seconds, eta / 60.0));
        }
        if args.json {
            return;
        }
        if let Some(kl) = &done.kl {
            bar.suspend(|| println!("{}", kl_row(done.chunk, kl)));
            return;
        }
        let item = format!("[{}]{:.4},", done.chunk, done.ppl);
        if stream {
            let mut out = std::io::stdout().lock();
            if let Err(e) = write!(out, "{item}").and_then(|_| out.flush()) {
                write_error.get_or_insert(e);
            }
        } else {
            estimates.push_str(&item);
        }
    };
    let outcome =
        perplexity::evaluate(model, &mut state, &exec, &tokens, &Setup { n_ctx, n_chunks, bos }, mode, on_chunk)?;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        return Err(e).context("writing to standard output");
    }
    if let Some(w) = writer {
        w.finish().context("writing the KL base")?;
    }
    let kl_report = outcome.kl.as_ref().map(|k| k.report());
    let evaluated = n_chunks * n_ctx;
    let tok_per_s = if outcome.seconds > 0.0 { evaluated as f64 / outcome.seconds } else { 0.0 };

    if args.json {
        let s = &outcome.stats;
        let out = JsonOutput {
            model: loaded.path.display().to_string(),
            file: args.file.as_ref().map(|f| f.display().to_string()),
            n_ctx,
            n_chunks,
            tokens: tokens.len(),
            scored: s.count,
            add_bos: bos.is_some(),
            batch,
            threads: loaded.threads,
            quant: model.info.quant.clone(),
            plan: loaded.plan_status.clone(),
            ppl: s.ppl(),
            ppl_error: s.ppl_error(),
            nll_mean: s.mean(),
            nll_error: s.nll_error(),
            chunk_ppl: outcome.chunk_ppl.clone(),
            seconds: outcome.seconds,
            tokens_per_second: tok_per_s,
            kl_base: args.kl.as_ref().map(|p| p.display().to_string()),
            kl: kl_report,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    print_report(&outcome, &estimates, stream, kl_report.as_ref())?;
    if let Some(path) = &args.kl_base {
        eprintln!("saved the log-probabilities of {scored} positions to {}", display(path));
    }
    eprintln!(
        "evaluated {n_chunks} x {n_ctx} tokens in {:.2} s ({:.2} tokens per second, {} threads)",
        outcome.seconds, tok_per_s, loaded.threads
    );
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// One row of the per-chunk table of a KL comparison (as llama.cpp's).
fn kl_row(chunk: usize, kl: &KlRunning) -> String {
    format!(
        "{chunk:4}    {:9.4} ± {:9.4}    {:10.5} ± {:10.5}    {:10.5} ± {:10.5}    {:6.3} ± {:6.3} %    {:6.3} ± {:6.3} %",
        kl.ppl.value,
        kl.ppl.error,
        kl.log_ppl_ratio.value,
        kl.log_ppl_ratio.error,
        kl.kld.value,
        kl.kld.error,
        100.0 * kl.p_diff_rms.value,
        100.0 * kl.p_diff_rms.error,
        100.0 * kl.same_top.value,
        100.0 * kl.same_top.error
    )
}

fn print_report(outcome: &Outcome, estimates: &str, streamed: bool, kl: Option<&KlReport>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if kl.is_none() {
        if !streamed {
            write!(out, "{estimates}")?;
        }
        writeln!(out)?;
    }
    let s = &outcome.stats;
    match s.ppl_error() {
        Some(err) => writeln!(out, "Final estimate: PPL = {:.4} +/- {:.5}", s.ppl(), err)?,
        None => {
            writeln!(out, "Final estimate: PPL = {:.4}", s.ppl())?;
            eprintln!("Unexpected negative standard deviation of log(prob)");
        }
    }
    if let Some(r) = kl {
        let pct = |out: &mut dyn Write, name: &str, p: &Percentiles, scale: f64, unit: &str| -> std::io::Result<()> {
            let rows = [
                ("Maximum", p.max),
                ("99.9%  ", p.p99_9),
                ("99.0%  ", p.p99),
                ("95.0%  ", p.p95),
                ("90.0%  ", p.p90),
                ("Median ", p.median),
                ("10.0%  ", p.p10),
                (" 5.0%  ", p.p5),
                (" 1.0%  ", p.p1),
                (" 0.1%  ", p.p0_1),
                ("Minimum", p.min),
            ];
            for (label, v) in rows {
                writeln!(out, "{label} {name}: {:10.6}{unit}", scale * f64::from(v))?;
            }
            Ok(())
        };
        writeln!(out)?;
        writeln!(out, "====== Perplexity statistics ======")?;
        writeln!(out, "Mean PPL(Q)                   : {:10.6} ± {:10.6}", r.ppl.value, r.ppl.error)?;
        writeln!(out, "Mean PPL(base)                : {:10.6} ± {:10.6}", r.ppl_base.value, r.ppl_base.error)?;
        writeln!(out, "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%", 100.0 * r.log_ppl_correlation)?;
        writeln!(
            out,
            "Mean ln(PPL(Q)/PPL(base))     : {:10.6} ± {:10.6}",
            r.log_ppl_ratio.value, r.log_ppl_ratio.error
        )?;
        writeln!(out, "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}", r.ppl_ratio.value, r.ppl_ratio.error)?;
        writeln!(out, "Mean PPL(Q)-PPL(base)         : {:10.6} ± {:10.6}", r.ppl_diff.value, r.ppl_diff.error)?;
        writeln!(out)?;
        writeln!(out, "====== KL divergence statistics ======")?;
        writeln!(out, "Mean    KLD: {:10.6} ± {:10.6}", r.kld.value, r.kld.error)?;
        pct(&mut out, "KLD", &r.kld_percentiles, 1.0, "")?;
        writeln!(out)?;
        writeln!(out, "====== Token probability statistics ======")?;
        writeln!(out, "Mean    Δp: {:6.3} ± {:5.3} %", 100.0 * r.p_diff.value, 100.0 * r.p_diff.error)?;
        pct(&mut out, "Δp", &r.p_diff_percentiles, 100.0, " %")?;
        writeln!(out, "RMS Δp    : {:6.3} ± {:5.3} %", 100.0 * r.p_diff_rms.value, 100.0 * r.p_diff_rms.error)?;
        writeln!(out, "Same top p: {:6.3} ± {:5.3} %", 100.0 * r.same_top.value, 100.0 * r.same_top.error)?;
    }
    out.flush()?;
    Ok(())
}
