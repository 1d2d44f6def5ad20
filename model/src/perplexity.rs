//! Perplexity and KL divergence, computed as llama.cpp's `llama-perplexity`
//! computes them, so that the numbers of the two tools compare.
//!
//! The method (llama.cpp `tools/perplexity/perplexity.cpp`, `perplexity()`
//! and `kl_divergence()`):
//!
//! - The whole text is tokenized once; BOS is put first only when the model's
//!   `add_bos_token` asks for it ([`prepare_tokens`]).
//! - The tokens are cut into `n_chunks = min(--chunks, tokens / n_ctx)`
//!   chunks of `n_ctx` tokens ([`count_chunks`]); a text shorter than
//!   `2 * n_ctx` tokens is an error, as in llama.cpp.
//! - Each chunk runs from an empty KV cache. With BOS, the chunk's first
//!   token is replaced by BOS in the model's input ([`chunk_input`]).
//! - Only the second half of a chunk is scored: with `first = n_ctx / 2`, the
//!   logits at positions `first ..= n_ctx - 2` predict the tokens at
//!   `first + 1 ..= n_ctx - 1` ([`scored_per_chunk`] = `n_ctx - 1 - first`
//!   per chunk).
//! - The negative log-likelihood of a token is `log(sum exp(l - max)) -
//!   (l[tok] - max)`, the sum in f64 of f32 exponentials ([`nll`]).
//!   PPL = exp(mean NLL); its error is `PPL * sqrt((E[nll^2] - E[nll]^2) /
//!   (count - 1))` ([`NllStats`]).
//!
//! For KL divergence a first run (`--kl-base`) saves the log-probabilities
//! of every scored position, quantized to 16 bits the way llama.cpp saves
//! them ([`quantize_log_probs`]: per position a `scale` and `min_log_prob`,
//! `log p = scale * q + min_log_prob`, the range capped to 16 nats below the
//! best token, `q = 0` for everything at or below that). A later run
//! ([`KlBase`], [`KlStats`]) computes, per position, `KL(base || current) =
//! sum_i p_base(i) * (log p_base(i) - log p(i))` over the tokens with
//! `log p_base > -16`, whether both put the same token first, and the change
//! `Δp` of the probability of the actual next token; [`KlReport`] has the
//! means with their errors and the percentiles llama.cpp prints.
//!
//! # The `--kl-base` file
//!
//! A safetensors file ([`KlBaseWriter`]) with
//!
//! - `tokens` (U32, `[n_chunks * n_ctx]`): the evaluated tokens, as
//!   tokenized (not BOS-substituted), so that a later run uses (or checks) the
//!   same text, context and chunking;
//! - `log_probs` (U16, `[n_chunks * scored, vocab]`): the quantized
//!   log-probabilities, chunk after chunk, position after position;
//! - `scale` and `min_log_prob` (F32, `[n_chunks * scored]`);
//! - metadata `format = asdsl-kl-base`, `version = 1`, `n_ctx`, `n_vocab`,
//!   `n_chunks`, `first`, and the `model` it came from.
//!
//! [`KlBase::open`] also reads the files of llama.cpp's
//! `--kl-divergence-base` (magic `_logits_`), which use the same
//! quantization, so asdsl can be compared against llama.cpp's logits.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::exec::Exec;
use crate::forward::State;
use crate::model::Model;

/// The value of the `format` metadata of a `--kl-base` file.
pub const KL_BASE_FORMAT: &str = "asdsl-kl-base";
/// The version of the `--kl-base` format.
pub const KL_BASE_VERSION: &str = "1";
/// log-probabilities more than this many nats below the best token are not
/// distinguished (llama.cpp's cut-off), and do not count in the KL sum.
pub const LOG_PROB_RANGE: f32 = 16.0;

/// The position of the first scored logit row in a chunk (`n_ctx / 2`).
pub fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

/// The number of scored positions per chunk (`n_ctx - 1 - n_ctx / 2`).
pub fn scored_per_chunk(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}

/// The tokens of the text with BOS put first when the model asks for it
/// (`bos` is `Some` only when `add_bos_token` is true).
pub fn prepare_tokens(mut text_ids: Vec<u32>, bos: Option<u32>) -> Vec<u32> {
    if let Some(bos) = bos {
        text_ids.insert(0, bos);
    }
    text_ids
}

/// The number of chunks of `n_ctx` tokens to evaluate:
/// `min(max_chunks, n_tokens / n_ctx)`; an error when the text has fewer
/// than `2 * n_ctx` tokens (as llama.cpp) or `n_ctx` leaves nothing to score.
pub fn count_chunks(n_tokens: usize, n_ctx: usize, max_chunks: Option<usize>) -> Result<usize> {
    if scored_per_chunk(n_ctx) == 0 {
        return Err(ModelError::Invalid(format!(
            "a context of {n_ctx} tokens leaves nothing to score; use at least 3"
        )));
    }
    if n_tokens < 2 * n_ctx {
        return Err(ModelError::Invalid(format!(
            "the text tokenizes to only {n_tokens} tokens; perplexity with a context of {n_ctx} needs at least {} \
             (2 x the context): use a longer text or a smaller -c",
            2 * n_ctx
        )));
    }
    let max = n_tokens / n_ctx;
    let n = max_chunks.map_or(max, |c| c.min(max));
    if n == 0 {
        return Err(ModelError::Invalid("--chunks 0 leaves nothing to evaluate".into()));
    }
    Ok(n)
}

/// The model input of chunk `chunk`: its `n_ctx` tokens, the first replaced
/// by `bos` when given.
pub fn chunk_input(tokens: &[u32], n_ctx: usize, chunk: usize, bos: Option<u32>) -> Vec<u32> {
    let mut input = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
    if let Some(bos) = bos {
        input[0] = bos;
    }
    input
}

/// Runs one chunk from an empty cache and returns the logits at the scored
/// positions `first ..= n_ctx - 2` (`scored x vocab`, row-major). The first
/// half runs without the output head; the last token is not run (its
/// logits predict nothing in the chunk).
pub fn chunk_logits(model: &Model, state: &mut State, exec: &Exec, input: &[u32]) -> Result<Vec<f32>> {
    let n_ctx = input.len();
    if scored_per_chunk(n_ctx) == 0 {
        return Err(ModelError::Invalid(format!("a chunk of {n_ctx} tokens leaves nothing to score")));
    }
    if state.context() < n_ctx - 1 {
        return Err(ModelError::ContextOverflow { needed: n_ctx, context: state.context() });
    }
    let first = first_scored(n_ctx);
    state.reset();
    if first > 0 {
        model.forward_last(state, &input[..first], exec)?;
    }
    model.forward_all(state, &input[first..n_ctx - 1], exec)
}

/// The negative log-likelihood of `tok` under the logits `row`, as
/// llama.cpp computes it: the maximum in f32, the sum of f32 exponentials in
/// f64.
pub fn nll(row: &[f32], tok: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    sum.ln() - f64::from(row[tok] - max)
}

/// Running sums of the negative log-likelihoods.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct NllStats {
    /// Sum of the NLLs.
    pub sum: f64,
    /// Sum of their squares.
    pub sum2: f64,
    /// How many.
    pub count: usize,
}

impl NllStats {
    /// Adds one NLL.
    pub fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.sum2 += nll * nll;
        self.count += 1;
    }

    /// Adds the NLLs of `targets[j]` under logit row `j` of `logits`.
    pub fn add_rows(&mut self, logits: &[f32], vocab: usize, targets: &[u32]) {
        for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
            self.add(nll(row, t as usize));
        }
    }

    /// The mean NLL.
    pub fn mean(&self) -> f64 {
        if self.count == 0 { f64::NAN } else { self.sum / self.count as f64 }
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        self.mean().exp()
    }

    /// The standard error of the mean NLL, `sqrt((E[x^2] - E[x]^2) / (n -
    /// 1))` (llama.cpp), or `None` when it is not positive or `n < 2`.
    pub fn nll_error(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.sum / n;
        let var = self.sum2 / n - mean * mean;
        (var > 0.0).then(|| (var / (n - 1.0)).sqrt())
    }

    /// The error of the PPL (`PPL * error of the mean NLL`), as llama.cpp's
    /// `Final estimate: PPL = x +/- y`.
    pub fn ppl_error(&self) -> Option<f64> {
        self.nll_error().map(|e| e * self.ppl())
    }
}

/// llama.cpp's `nearest_int`: round half to even.
fn nearest_int(x: f32) -> u16 {
    x.round_ties_even().clamp(0.0, 65535.0) as u16
}

/// Quantizes the log-probabilities of the logits `row` into `out` (one
/// `u16` per token) as llama.cpp does; returns `(scale, min_log_prob)` with
/// `log p(i) ≈ scale * out[i] + min_log_prob`.
pub fn quantize_log_probs(row: &[f32], out: &mut [u16]) -> (f32, f32) {
    let mut max = row[0];
    let mut min = row[0];
    for &l in &row[1..] {
        max = max.max(l);
        min = min.min(l);
    }
    let min = min.max(max - LOG_PROB_RANGE);
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum.ln() as f32;
    let min_log_prob = min - max - log_sum_exp;
    let scale = (max - min) / 65535.0;
    if scale != 0.0 {
        let inv = 1.0 / scale;
        for (q, &l) in out.iter_mut().zip(row) {
            *q = if l > min { nearest_int(inv * (l - min)) } else { 0 };
        }
    } else {
        out.fill(0);
    }
    (scale, min_log_prob)
}

/// One position of a base: its quantized log-probabilities.
#[derive(Copy, Clone, Debug)]
pub struct BaseRow<'a> {
    /// `log p = scale * q + min_log_prob`.
    pub scale: f32,
    /// See `scale`.
    pub min_log_prob: f32,
    /// The `q` values, little-endian `u16`, one per token.
    pub q: &'a [u8],
}

impl BaseRow<'_> {
    /// The quantized value of token `i`.
    pub fn q(&self, i: usize) -> u16 {
        u16::from_le_bytes([self.q[2 * i], self.q[2 * i + 1]])
    }

    /// The (dequantized) log-probability of token `i`.
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * f32::from(self.q(i)) + self.min_log_prob
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.q.len() / 2
    }

    /// Whether the row has no tokens.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// The sums llama.cpp's `--kl-divergence` accumulates, and the per-position
/// KL divergences and probability changes for the percentiles.
#[derive(Clone, Debug, Default)]
pub struct KlStats {
    /// Sum of the current model's NLLs (f32 per position, as llama.cpp).
    pub sum_nll: f64,
    /// Sum of their squares.
    pub sum_nll2: f64,
    /// Sum of the base's NLLs.
    pub sum_nll_base: f64,
    /// Sum of their squares.
    pub sum_nll_base2: f64,
    /// Sum of the products of the two.
    pub sum_nll_nll_base: f64,
    /// Sum of the KL divergences.
    pub sum_kld: f64,
    /// Sum of their squares.
    pub sum_kld2: f64,
    /// Sum of `Δp = p - p_base` of the actual next token.
    pub sum_p_diff: f64,
    /// Sum of `Δp^2`.
    pub sum_p_diff2: f64,
    /// Sum of `Δp^4`.
    pub sum_p_diff4: f64,
    /// Positions where both models put the same token first.
    pub same_top: usize,
    /// Positions.
    pub count: usize,
    /// The KL divergence of every position.
    pub kld_values: Vec<f32>,
    /// The `Δp` of every position.
    pub p_diff_values: Vec<f32>,
}

/// The KL divergence of one position and its `Δp`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct KlPosition {
    /// `KL(base || current)`.
    pub kld: f64,
    /// `p(tok) - p_base(tok)`.
    pub p_diff: f32,
    /// Whether both put the same token first.
    pub same_top: bool,
}

/// Compares the logits `row` with the base's `base` at one position whose
/// next token is `tok`, as llama.cpp's `log_softmax(..., kld)` does.
pub fn kl_position(row: &[f32], base: &BaseRow<'_>, tok: usize) -> (KlPosition, f32, f32) {
    let mut max = row[0];
    let mut imax = 0;
    for (i, &l) in row.iter().enumerate().skip(1) {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let sum: f64 = row.iter().map(|&l| f64::from((l - max).exp())).sum();
    let log_sum_exp = sum.ln() as f32;
    let nll = max + log_sum_exp - row[tok];
    let nll_base = -base.log_prob(tok);
    let shift = max + log_sum_exp;
    let mut kld = 0.0f64;
    let mut imax_base = 0;
    let mut best_base = 0.0f32;
    for (i, &l) in row.iter().enumerate() {
        let lp_base = base.log_prob(i);
        if i == 0 || lp_base > best_base {
            best_base = lp_base;
            imax_base = i;
        }
        if lp_base > -LOG_PROB_RANGE {
            let p_base = lp_base.exp();
            kld += f64::from(p_base * (lp_base - l + shift));
        }
    }
    let p_diff = (-nll).exp() - (-nll_base).exp();
    (KlPosition { kld, p_diff, same_top: imax == imax_base }, nll, nll_base)
}

/// `(mean, standard error of the mean)` from a sum and a sum of squares, as
/// llama.cpp's `mean_and_uncertainty` (the error is 0 for 10 values or fewer).
pub fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 { (df / (n - 1.0)).sqrt() } else { 0.0 };
    (f, df)
}

/// llama.cpp's `covariance` of the means of two series (0 below 10 values).
fn covariance(sum_a: f64, sum_b: f64, sum_ab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1.0)
}

/// The `fraction` percentile of the sorted `values`, linearly interpolated
/// (llama.cpp's `percentile`).
pub fn percentile(sorted: &[f32], fraction: f32) -> f32 {
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
        return f32::NAN;
    };
    if fraction <= 0.0 {
        return lo;
    }
    if fraction >= 1.0 {
        return hi;
    }
    let p = fraction * (sorted.len() - 1) as f32;
    let ip = p as usize;
    let p = p - ip as f32;
    (1.0 - p) * sorted[ip] + p * sorted[(ip + 1).min(sorted.len() - 1)]
}

/// The median of the sorted `values` (the mean of the middle two for an even count).
pub fn median(sorted: &[f32]) -> f32 {
    let n = sorted.len();
    if n == 0 {
        f32::NAN
    } else if n.is_multiple_of(2) {
        0.5 * (sorted[n / 2] + sorted[n / 2 - 1])
    } else {
        sorted[n / 2]
    }
}

/// A value and its error.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// The value.
    pub value: f64,
    /// Its standard error.
    pub error: f64,
}

impl Estimate {
    fn new((value, error): (f64, f64)) -> Estimate {
        Estimate { value, error }
    }
}

/// The running summary llama.cpp prints after every chunk of `--kl-divergence`.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct KlRunning {
    /// PPL of the current model.
    pub ppl: Estimate,
    /// `ln(PPL(Q) / PPL(base))`.
    pub log_ppl_ratio: Estimate,
    /// Mean KL divergence.
    pub kld: Estimate,
    /// RMS of `Δp` (a fraction, not %).
    pub p_diff_rms: Estimate,
    /// Fraction of positions with the same top token.
    pub same_top: Estimate,
}

/// Percentiles of a distribution.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Maximum.
    pub max: f32,
    /// 99.9 %.
    pub p99_9: f32,
    /// 99 %.
    pub p99: f32,
    /// 95 %.
    pub p95: f32,
    /// 90 %.
    pub p90: f32,
    /// Median.
    pub median: f32,
    /// 10 %.
    pub p10: f32,
    /// 5 %.
    pub p5: f32,
    /// 1 %.
    pub p1: f32,
    /// 0.1 %.
    pub p0_1: f32,
    /// Minimum.
    pub min: f32,
}

impl Percentiles {
    fn of(sorted: &[f32]) -> Percentiles {
        let p = |f| percentile(sorted, f);
        Percentiles {
            max: p(1.0),
            p99_9: p(0.999),
            p99: p(0.99),
            p95: p(0.95),
            p90: p(0.9),
            median: median(sorted),
            p10: p(0.1),
            p5: p(0.05),
            p1: p(0.01),
            p0_1: p(0.001),
            min: p(0.0),
        }
    }
}

/// The final statistics of a KL comparison, as llama-perplexity
/// `--kl-divergence` prints them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KlReport {
    /// Scored positions.
    pub count: usize,
    /// Mean PPL of the current model.
    pub ppl: Estimate,
    /// Mean PPL of the base.
    pub ppl_base: Estimate,
    /// Correlation of ln PPL(Q) and ln PPL(base).
    pub log_ppl_correlation: f64,
    /// `ln(PPL(Q) / PPL(base))`.
    pub log_ppl_ratio: Estimate,
    /// `PPL(Q) / PPL(base)`.
    pub ppl_ratio: Estimate,
    /// `PPL(Q) - PPL(base)`.
    pub ppl_diff: Estimate,
    /// Mean KL divergence.
    pub kld: Estimate,
    /// Percentiles of the per-position KL divergence.
    pub kld_percentiles: Percentiles,
    /// Mean `Δp` (fraction).
    pub p_diff: Estimate,
    /// Percentiles of `Δp` (fractions).
    pub p_diff_percentiles: Percentiles,
    /// RMS of `Δp` (fraction).
    pub p_diff_rms: Estimate,
    /// Fraction of positions where both models put the same token first.
    pub same_top: Estimate,
}

impl KlStats {
    /// Adds one position (see [`kl_position`]).
    pub fn add(&mut self, row: &[f32], base: &BaseRow<'_>, tok: usize) -> KlPosition {
        let (pos, nll, nll_base) = kl_position(row, base, tok);
        self.sum_nll += f64::from(nll);
        self.sum_nll2 += f64::from(nll * nll);
        self.sum_nll_base += f64::from(nll_base);
        self.sum_nll_base2 += f64::from(nll_base * nll_base);
        self.sum_nll_nll_base += f64::from(nll * nll_base);
        self.sum_kld += pos.kld;
        self.sum_kld2 += pos.kld * pos.kld;
        let d = f64::from(pos.p_diff);
        self.sum_p_diff += d;
        self.sum_p_diff2 += d * d;
        self.sum_p_diff4 += d * d * d * d;
        self.same_top += usize::from(pos.same_top);
        self.count += 1;
        self.kld_values.push(pos.kld as f32);
        self.p_diff_values.push(pos.p_diff);
        pos
    }

    fn log_ppl(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_nll, self.sum_nll2, self.count)
    }

    fn log_ppl_base(&self) -> (f64, f64) {
        mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, self.count)
    }

    fn log_ppl_cov(&self) -> f64 {
        covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, self.count)
    }

    fn log_ppl_ratio(&self) -> Estimate {
        let (a, da) = self.log_ppl();
        let (b, db) = self.log_ppl_base();
        let var = da * da + db * db - 2.0 * self.log_ppl_cov();
        Estimate { value: a - b, error: var.max(0.0).sqrt() }
    }

    fn p_diff_rms(&self) -> Estimate {
        let (mse, dmse) = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count);
        let rms = mse.sqrt();
        Estimate { value: rms, error: if rms > 0.0 { 0.5 / rms * dmse } else { 0.0 } }
    }

    fn same_top_estimate(&self) -> Estimate {
        let n = self.count as f64;
        let p = self.same_top as f64 / n;
        let error = if self.count > 1 { (p * (1.0 - p) / (n - 1.0)).sqrt() } else { 0.0 };
        Estimate { value: p, error }
    }

    /// The summary llama.cpp prints after each chunk.
    pub fn running(&self) -> KlRunning {
        let (lp, dlp) = self.log_ppl();
        let ppl = lp.exp();
        KlRunning {
            ppl: Estimate { value: ppl, error: ppl * dlp },
            log_ppl_ratio: self.log_ppl_ratio(),
            kld: Estimate::new(mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count)),
            p_diff_rms: self.p_diff_rms(),
            same_top: self.same_top_estimate(),
        }
    }

    /// The final statistics.
    pub fn report(&self) -> KlReport {
        let (lp, dlp) = self.log_ppl();
        let (lb, dlb) = self.log_ppl_base();
        let (ppl, ppl_base) = (lp.exp(), lb.exp());
        let (ppl_unc, ppl_base_unc) = (ppl * dlp, ppl_base * dlb);
        let cov = self.log_ppl_cov();
        let ratio = self.log_ppl_ratio();
        let ppl_ratio = ratio.value.exp();
        let ppl_cov = ppl * ppl_base * cov;
        let diff_var = ppl_unc * ppl_unc + ppl_base_unc * ppl_base_unc - 2.0 * ppl_cov;
        let mut kld = self.kld_values.clone();
        kld.sort_by(f32::total_cmp);
        let mut p_diff = self.p_diff_values.clone();
        p_diff.sort_by(f32::total_cmp);
        KlReport {
            count: self.count,
            ppl: Estimate { value: ppl, error: ppl_unc },
            ppl_base: Estimate { value: ppl_base, error: ppl_base_unc },
            log_ppl_correlation: if dlp > 0.0 && dlb > 0.0 { cov / (dlp * dlb) } else { f64::NAN },
            log_ppl_ratio: ratio,
            ppl_ratio: Estimate { value: ppl_ratio, error: ppl_ratio * ratio.error },
            ppl_diff: Estimate { value: ppl - ppl_base, error: diff_var.max(0.0).sqrt() },
            kld: Estimate::new(mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count)),
            kld_percentiles: Percentiles::of(&kld),
            p_diff: Estimate::new(mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, self.count)),
            p_diff_percentiles: Percentiles::of(&p_diff),
            p_diff_rms: self.p_diff_rms(),
            same_top: self.same_top_estimate(),
        }
    }
}

/// Writes a `--kl-base` file (see the module documentation), one chunk at a
/// time: the header and the tokens first, the log-probabilities as they
/// come, the per-position scales at the end.
#[derive(Debug)]
pub struct KlBaseWriter {
    path: PathBuf,
    out: BufWriter<File>,
    vocab: usize,
    rows: usize,
    written: usize,
    scales: Vec<f32>,
    mins: Vec<f32>,
    q: Vec<u16>,
    bytes: Vec<u8>,
}

fn tensor_entry(dtype: &str, shape: &[usize], start: usize, end: usize) -> serde_json::Value {
    serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [start, end] })
}

impl KlBaseWriter {
    /// Creates `path` for `n_chunks` chunks of `n_ctx` of `tokens` (at least
    /// `n_chunks * n_ctx` of them) of a model with `vocab` tokens.
    pub fn create(
        path: &Path,
        tokens: &[u32],
        n_ctx: usize,
        n_chunks: usize,
        vocab: usize,
        model: &str,
    ) -> Result<KlBaseWriter> {
        let n_tok = n_chunks * n_ctx;
        if tokens.len() < n_tok || vocab == 0 {
            return Err(ModelError::Invalid(format!("a KL base of {n_chunks} chunks of {n_ctx} needs {n_tok} tokens")));
        }
        let rows = n_chunks * scored_per_chunk(n_ctx);
        let tok_end = 4 * n_tok;
        let lp_end = tok_end + 2 * rows * vocab;
        let scale_end = lp_end + 4 * rows;
        let min_end = scale_end + 4 * rows;
        let metadata: BTreeMap<&str, String> = [
            ("format", KL_BASE_FORMAT.to_string()),
            ("version", KL_BASE_VERSION.to_string()),
            ("n_ctx", n_ctx.to_string()),
            ("n_vocab", vocab.to_string()),
            ("n_chunks", n_chunks.to_string()),
            ("first", first_scored(n_ctx).to_string()),
            ("model", model.to_string()),
        ]
        .into_iter()
        .collect();
        let header = serde_json::json!({
            "__metadata__": metadata,
            "tokens": tensor_entry("U32", &[n_tok], 0, tok_end),
            "log_probs": tensor_entry("U16", &[rows, vocab], tok_end, lp_end),
            "scale": tensor_entry("F32", &[rows], lp_end, scale_end),
            "min_log_prob": tensor_entry("F32", &[rows], scale_end, min_end),
        });
        let mut header = header.to_string().into_bytes();
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let io = |e| ModelError::io(path, e);
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(header.len() as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&header).map_err(io)?;
        let tok_bytes: Vec<u8> = tokens[..n_tok].iter().flat_map(|t| t.to_le_bytes()).collect();
        out.write_all(&tok_bytes).map_err(io)?;
        Ok(KlBaseWriter {
            path: path.to_path_buf(),
            out,
            vocab,
            rows,
            written: 0,
            scales: Vec::with_capacity(rows),
            mins: Vec::with_capacity(rows),
            q: vec![0; vocab],
            bytes: vec![0; 2 * vocab],
        })
    }

    /// Appends the positions of `logits` (`k x vocab`).
    pub fn write_rows(&mut self, logits: &[f32]) -> Result<()> {
        for row in logits.chunks_exact(self.vocab) {
            if self.written == self.rows {
                return Err(ModelError::Invalid("more positions than the KL base was created for".into()));
            }
            let (scale, min) = quantize_log_probs(row, &mut self.q);
            for (b, q) in self.bytes.chunks_exact_mut(2).zip(&self.q) {
                b.copy_from_slice(&q.to_le_bytes());
            }
            self.out.write_all(&self.bytes).map_err(|e| ModelError::io(&self.path, e))?;
            self.scales.push(scale);
            self.mins.push(min);
            self.written += 1;
        }
        Ok(())
    }

    /// Writes the scales and closes the file; an error unless every
    /// position was written.
    pub fn finish(mut self) -> Result<()> {
        if self.written != self.rows {
            return Err(ModelError::Invalid(format!(
                "the KL base has {} of its {} positions",
                self.written, self.rows
            )));
        }
        let io = |e| ModelError::io(&self.path, e);
        let tail: Vec<u8> = self.scales.iter().chain(&self.mins).flat_map(|v| v.to_le_bytes()).collect();
        self.out.write_all(&tail).map_err(io)?;
        self.out.flush().map_err(io)?;
        Ok(())
    }
}

/// Where the rows of a base are in its file.
#[derive(Debug)]
enum Layout {
    /// asdsl's safetensors file: absolute offsets of the three tensors.
    Safetensors { log_probs: usize, scale: usize, min: usize },
    /// llama.cpp's file: rows of `2 * ((vocab + 1) / 2) + 4` u16 (scale and
    /// min as f32 first) from `start`.
    LlamaCpp { start: usize, row_bytes: usize },
}

/// A `--kl-base` file, memory-mapped (asdsl's safetensors or llama.cpp's
/// `--kl-divergence-base` format).
#[derive(Debug)]
pub struct KlBase {
    path: PathBuf,
    mmap: Mmap,
    layout: Layout,
    /// The context the base was computed with.
    pub n_ctx: usize,
    /// Its vocabulary size.
    pub vocab: usize,
    /// Its chunks.
    pub n_chunks: usize,
    /// The evaluated tokens (`n_chunks * n_ctx`).
    pub tokens: Vec<u32>,
    /// Whether the file is llama.cpp's.
    pub llama_cpp: bool,
}

impl KlBase {
    /// Opens and checks a base file.
    pub fn open(path: &Path) -> Result<KlBase> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the file is opened read-only and mapped privately; we rely
        // on it not being truncated or rewritten while it is read, as every
        // memory-mapping reader does. All accesses are bounds-checked slices.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        if mmap.starts_with(b"_logits_") {
            Self::open_llama_cpp(path, mmap)
        } else {
            Self::open_safetensors(path, mmap)
        }
    }

    fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
        ModelError::Safetensors { path: path.to_path_buf(), reason: reason.into() }
    }

    fn open_safetensors(path: &Path, mmap: Mmap) -> Result<KlBase> {
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| Self::bad(path, format!("not a KL base (safetensors or llama.cpp): {e}")))?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(KL_BASE_FORMAT) {
            return Err(Self::bad(path, "not a KL base written by asdsl perplexity --kl-base"));
        }
        if meta.get("version").map(String::as_str) != Some(KL_BASE_VERSION) {
            return Err(Self::bad(path, format!("unsupported KL base version {:?}", meta.get("version"))));
        }
        let num = |k: &str| -> Result<usize> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Self::bad(path, format!("metadata `{k}` is missing or not a number")))
        };
        let (n_ctx, vocab, n_chunks) = (num("n_ctx")?, num("n_vocab")?, num("n_chunks")?);
        let rows = n_chunks * scored_per_chunk(n_ctx);
        let tensors = metadata.tensors();
        let data_start = 8 + header_len;
        let find = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<usize> {
            let info = tensors.get(name).ok_or_else(|| Self::bad(path, format!("tensor `{name}` is missing")))?;
            if info.dtype != dtype || info.shape != shape {
                return Err(Self::bad(
                    path,
                    format!("tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}", info.dtype, info.shape),
                ));
            }
            Ok(data_start + info.data_offsets.0)
        };
        let tok = find("tokens", Dtype::U32, &[n_chunks * n_ctx])?;
        let log_probs = find("log_probs", Dtype::U16, &[rows, vocab])?;
        let scale = find("scale", Dtype::F32, &[rows])?;
        let min = find("min_log_prob", Dtype::F32, &[rows])?;
        let tokens = mmap[tok..tok + 4 * n_chunks * n_ctx]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(KlBase {
            path: path.to_path_buf(),
            mmap,
            layout: Layout::Safetensors { log_probs, scale, min },
            n_ctx,
            vocab,
            n_chunks,
            tokens,
            llama_cpp: false,
        })
    }

    fn open_llama_cpp(path: &Path, mmap: Mmap) -> Result<KlBase> {
        let word = |at: usize| -> Result<u32> {
            mmap.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| Self::bad(path, "the llama.cpp KL base is truncated"))
        };
        let (n_ctx, vocab, n_chunks) = (word(8)? as usize, word(12)? as usize, word(16)? as usize);
        let n_tok = n_ctx * n_chunks;
        let start = 20 + 4 * n_tok;
        let row_bytes = 2 * (2 * vocab.div_ceil(2) + 4);
        let rows = n_chunks * scored_per_chunk(n_ctx);
        if vocab == 0 || mmap.len() < start + rows * row_bytes {
            return Err(Self::bad(
                path,
                format!("the llama.cpp KL base is truncated ({n_chunks} chunks of {n_ctx}, vocabulary {vocab})"),
            ));
        }
        let tokens = (0..n_tok).map(|i| word(20 + 4 * i)).collect::<Result<Vec<u32>>>()?;
        Ok(KlBase {
            path: path.to_path_buf(),
            mmap,
            layout: Layout::LlamaCpp { start, row_bytes },
            n_ctx,
            vocab,
            n_chunks,
            tokens,
            llama_cpp: true,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The base of scored position `row` (over all chunks, `chunk * scored + j`).
    pub fn row(&self, row: usize) -> BaseRow<'_> {
        let f32_at = |at: usize| {
            let b = &self.mmap[at..at + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        match self.layout {
            Layout::Safetensors { log_probs, scale, min } => {
                let at = log_probs + row * 2 * self.vocab;
                BaseRow {
                    scale: f32_at(scale + 4 * row),
                    min_log_prob: f32_at(min + 4 * row),
                    q: &self.mmap[at..at + 2 * self.vocab],
                }
            }
            Layout::LlamaCpp { start, row_bytes } => {
                let at = start + row * row_bytes;
                BaseRow {
                    scale: f32_at(at),
                    min_log_prob: f32_at(at + 4),
                    q: &self.mmap[at + 8..at + 8 + 2 * self.vocab],
                }
            }
        }
    }
}

/// What a perplexity run does besides the perplexity.
#[derive(Debug)]
pub enum Mode<'a> {
    /// Perplexity only.
    Perplexity,
    /// Save the scored log-probabilities.
    SaveBase(&'a mut KlBaseWriter),
    /// Compare against a base.
    Compare(&'a KlBase),
}

/// What a run needs to know.
#[derive(Copy, Clone, Debug)]
pub struct Setup {
    /// Tokens per chunk.
    pub n_ctx: usize,
    /// Chunks to evaluate.
    pub n_chunks: usize,
    /// The BOS token that replaces every chunk's first token (when the model
    /// adds BOS).
    pub bos: Option<u32>,
}

/// Where a run is after a chunk.
#[derive(Clone, Debug)]
pub struct ChunkDone {
    /// Chunks done (1-based index of this one).
    pub chunk: usize,
    /// Chunks in all.
    pub n_chunks: usize,
    /// The running PPL.
    pub ppl: f64,
    /// The running KL summary (when comparing).
    pub kl: Option<KlRunning>,
    /// Seconds this chunk took.
    pub seconds: f64,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The NLL sums.
    pub stats: NllStats,
    /// The running PPL after each chunk.
    pub chunk_ppl: Vec<f64>,
    /// The KL comparison (when comparing).
    pub kl: Option<KlStats>,
    /// Seconds of evaluation.
    pub seconds: f64,
}

/// Evaluates `setup.n_chunks` chunks of `tokens` and returns the NLL
/// statistics (and the KL comparison, or writes the base, per `mode`);
/// `on_chunk` is called after every chunk.
pub fn evaluate(
    model: &Model,
    state: &mut State,
    exec: &Exec,
    tokens: &[u32],
    setup: &Setup,
    mut mode: Mode<'_>,
    mut on_chunk: impl FnMut(&ChunkDone),
) -> Result<Outcome> {
    let Setup { n_ctx, n_chunks, bos } = *setup;
    let vocab = model.config.vocab_size;
    if tokens.len() < n_chunks * n_ctx {
        return Err(ModelError::Invalid(format!("{n_chunks} chunks of {n_ctx} need {} tokens", n_chunks * n_ctx)));
    }
    if let Mode::Compare(base) = &mode {
        if base.vocab != vocab {
            return Err(ModelError::Invalid(format!(
                "the KL base {} has a vocabulary of {}, the model {vocab}",
                base.path.display(),
                base.vocab
            )));
        }
        if base.n_ctx != n_ctx || base.n_chunks < n_chunks {
            return Err(ModelError::Invalid(format!(
                "the KL base {} has {} chunks of {}, asked for {n_chunks} of {n_ctx}",
                base.path.display(),
                base.n_chunks,
                base.n_ctx
            )));
        }
    }
    let first = first_scored(n_ctx);
    let scored = scored_per_chunk(n_ctx);
    let mut stats = NllStats::default();
    let mut kl = matches!(mode, Mode::Compare(_)).then(KlStats::default);
    let mut chunk_ppl = Vec::with_capacity(n_chunks);
    let t0 = Instant::now();
    for chunk in 0..n_chunks {
        let t = Instant::now();
        let input = chunk_input(tokens, n_ctx, chunk, bos);
        let logits = chunk_logits(model, state, exec, &input)?;
        let targets = &tokens[chunk * n_ctx + first + 1..(chunk + 1) * n_ctx];
        stats.add_rows(&logits, vocab, targets);
        match &mut mode {
            Mode::Perplexity => {}
            Mode::SaveBase(writer) => writer.write_rows(&logits)?,
            Mode::Compare(base) => {
                if let Some(kl) = &mut kl {
                    for (j, (row, &t)) in logits.chunks_exact(vocab).zip(targets).enumerate() {
                        kl.add(row, &base.row(chunk * scored + j), t as usize);
                    }
                }
            }
        }
        chunk_ppl.push(stats.ppl());
        on_chunk(&ChunkDone {
            chunk: chunk + 1,
            n_chunks,
            ppl: stats.ppl(),
            kl: kl.as_ref().map(KlStats::running),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(Outcome { stats, chunk_ppl, kl, seconds: t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log softmax in f64, the textbook way.
    fn log_softmax(row: &[f32]) -> Vec<f64> {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = row.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
        row.iter().map(|&l| l as f64 - lse).collect()
    }

    #[test]
    fn nll_of_uniform_logits_is_log_vocab() {
        let row = [3.0f32; 8];
        assert!((nll(&row, 5) - 8f64.ln()).abs() < 1e-12);
        let row = [1.0f32, 2.0, 3.0, -4.0];
        let lp = log_softmax(&row);
        for (t, lp) in lp.iter().enumerate() {
            assert!((nll(&row, t) + lp).abs() < 1e-6);
        }
    }

    #[test]
    fn ppl_and_error_follow_llama_cpp() {
        // NLLs 1, 2, 3, 4: mean 2.5, E[x^2] 7.5, var 1.25, error sqrt(1.25 / 3).
        let mut s = NllStats::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            s.add(v);
        }
        assert_eq!(s.count, 4);
        assert!((s.mean() - 2.5).abs() < 1e-12);
        assert!((s.ppl() - 2.5f64.exp()).abs() < 1e-9);
        let err = (1.25f64 / 3.0).sqrt();
        assert!((s.nll_error().unwrap() - err).abs() < 1e-12);
        assert!((s.ppl_error().unwrap() - err * 2.5f64.exp()).abs() < 1e-9);
        // Constant NLLs: no error (llama.cpp reports the negative deviation).
        let mut c = NllStats::default();
        c.add(1.0);
        c.add(1.0);
        assert_eq!(c.nll_error(), None);
    }

    #[test]
    fn rows_are_scored_against_the_next_tokens() {
        // Two positions, vocabulary 3: the first predicts token 2, the second token 0.
        let logits = [0.0f32, 0.0, 2.0, 1.0, 0.0, 0.0];
        let mut s = NllStats::default();
        s.add_rows(&logits, 3, &[2, 0]);
        let a = -log_softmax(&logits[..3])[2];
        let b = -log_softmax(&logits[3..])[0];
        assert!((s.sum - (a + b)).abs() < 1e-6);
        assert_eq!(s.count, 2);
    }

    #[test]
    fn chunking_as_llama_cpp() {
        assert_eq!(first_scored(512), 256);
        assert_eq!(scored_per_chunk(512), 255);
        assert_eq!(scored_per_chunk(2), 0);
        assert_eq!(count_chunks(1024, 512, None).unwrap(), 2);
        assert_eq!(count_chunks(5000, 512, Some(40)).unwrap(), 9);
        assert_eq!(count_chunks(5000, 512, Some(3)).unwrap(), 3);
        let err = count_chunks(1023, 512, None).unwrap_err().to_string();
        assert!(err.contains("1023") && err.contains("1024"), "{err}");
        assert!(count_chunks(100, 2, None).is_err());
        let tokens: Vec<u32> = (10..22).collect();
        assert_eq!(chunk_input(&tokens, 4, 1, Some(1)), vec![1, 15, 16, 17]);
        assert_eq!(chunk_input(&tokens, 4, 2, None), vec![18, 19, 20, 21]);
        assert_eq!(prepare_tokens(vec![5, 6], Some(1)), vec![1, 5, 6]);
        assert_eq!(prepare_tokens(vec![5, 6], None), vec![5, 6]);
    }

    #[test]
    fn quantized_log_probs_round_trip() {
        let row = [2.0f32, -1.0, 0.5, 3.0, -30.0];
        let mut q = [0u16; 5];
        let (scale, min) = quantize_log_probs(&row, &mut q);
        let bytes: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
        let base = BaseRow { scale, min_log_prob: min, q: &bytes };
        let lp = log_softmax(&row);
        assert_eq!(base.q(3), 65535);
        for (i, lp) in lp.iter().take(4).enumerate() {
            assert!((base.log_prob(i) as f64 - lp).abs() < 2e-4, "{i}");
        }
        // More than 16 below the best: clamped to the floor.
        assert!((base.log_prob(4) as f64 - (lp[3] - 16.0)).abs() < 1e-4);
    }

    #[test]
    fn kl_of_a_model_with_itself_is_zero() {
        let rows = [[1.0f32, 2.0, 0.5, -3.0], [0.0, 0.1, 4.0, 1.0]];
        let mut kl = KlStats::default();
        for (row, tok) in rows.iter().zip([1usize, 2]) {
            let mut q = [0u16; 4];
            let (scale, min) = quantize_log_probs(row, &mut q);
            let bytes: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
            let pos = kl.add(row, &BaseRow { scale, min_log_prob: min, q: &bytes }, tok);
            assert!(pos.kld.abs() < 1e-4, "{pos:?}");
            assert!(pos.p_diff.abs() < 1e-4);
            assert!(pos.same_top);
        }
        let r = kl.report();
        assert_eq!(r.same_top.value, 1.0);
        assert!(r.kld.value.abs() < 1e-4);
        assert!((r.ppl.value - r.ppl_base.value).abs() < 1e-3);
    }

    #[test]
    fn kl_of_known_distributions() {
        // base p = (0.5, 0.25, 0.25), current q = (0.25, 0.5, 0.25):
        // KL = 0.5 ln 2 + 0.25 ln 0.5 = 0.25 ln 2; the tops differ.
        let base_row = [2f32.ln(), 0.0, 0.0];
        let cur_row = [0.0f32, 2f32.ln(), 0.0];
        let mut q = [0u16; 3];
        let (scale, min) = quantize_log_probs(&base_row, &mut q);
        let bytes: Vec<u8> = q.iter().flat_map(|v| v.to_le_bytes()).collect();
        let base = BaseRow { scale, min_log_prob: min, q: &bytes };
        let (pos, nll, nll_base) = kl_position(&cur_row, &base, 0);
        assert!((pos.kld - 0.25 * 2f64.ln()).abs() < 1e-4, "{pos:?}");
        assert!(!pos.same_top);
        assert!((nll - 4f32.ln()).abs() < 1e-4 && (nll_base - 2f32.ln()).abs() < 1e-4);
        assert!((pos.p_diff - (0.25 - 0.5)).abs() < 1e-4);
    }

    #[test]
    fn percentiles_as_llama_cpp() {
        let v = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.0);
        assert!((percentile(&v, 0.9) - 3.6).abs() < 1e-6);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert_eq!(percentile(&v, 0.0), 0.0);
        assert_eq!(median(&v), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert!(percentile(&[], 0.5).is_nan());
        // llama.cpp: no error for 10 values or fewer.
        assert_eq!(mean_and_uncertainty(10.0, 30.0, 5), (2.0, 0.0));
        let (m, e) = mean_and_uncertainty(55.0, 385.0, 11);
        assert_eq!(m, 5.0);
        assert!((e - (10.0f64 / 10.0).sqrt()).abs() < 1e-12);
    }
}
