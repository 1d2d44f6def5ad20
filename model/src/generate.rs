//! The generation loop: a prompt's ids are prefilled in batches, then tokens
//! are decoded one at a time and handed to a callback as they come, until
//! the asked-for count, an end-of-sequence token (unless ignored), or the
//! callback says stop.

use std::time::Instant;

use crate::error::{ModelError, Result};
use crate::exec::Exec;
use crate::forward::State;
use crate::model::Model;
use crate::sampler::Sampler;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Extra stop tokens (besides the model's end-of-sequence ids).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 128, ignore_eos: false, stop_tokens: Vec::new() }
    }
}

/// Why generation stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    Length,
    /// An end-of-sequence (or stop) token was generated; it is the last of
    /// the generated ids.
    Eos,
    /// The callback asked to stop.
    Callback,
    /// The context is full.
    Context,
}

/// Wall-clock times of a generation.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens processed.
    pub prompt_tokens: usize,
    /// Seconds spent on them (prefill, to the first logits).
    pub prompt_seconds: f64,
    /// Tokens generated after the first (each costs one decode step).
    pub decode_tokens: usize,
    /// Seconds spent decoding them.
    pub decode_seconds: f64,
    /// Tokens generated (the first comes from the prefill's logits).
    pub generated_tokens: usize,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_tok_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_seconds)
    }

    /// Decode tokens per second.
    pub fn decode_tok_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_seconds)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// The result of a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Generated ids (including a final end-of-sequence token, if one stopped it).
    pub ids: Vec<u32>,
    /// Why it stopped.
    pub stop: StopReason,
    /// Timings.
    pub timings: Timings,
}

/// Generates from `prompt` (ids, BOS included if the model wants one) on a
/// fresh `state`; `on_token(id)` is called for each generated id and returns
/// `false` to stop.
pub fn generate(
    model: &Model,
    state: &mut State,
    exec: &Exec,
    sampler: &mut Sampler,
    prompt: &[u32],
    options: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(ModelError::Invalid("the prompt has no tokens".into()));
    }
    state.reset();
    if prompt.len() > state.context() {
        return Err(ModelError::ContextOverflow { needed: prompt.len(), context: state.context() });
    }
    let mut timings = Timings { prompt_tokens: prompt.len(), ..Timings::default() };
    // At most the context's worth of ids is ever generated: `max_tokens`
    // (a user's number) does not size an allocation.
    let room = state.context() - prompt.len() + 1;
    let mut history: Vec<u32> = Vec::with_capacity(prompt.len() + options.max_tokens.min(room));
    history.extend_from_slice(prompt);
    let mut ids = Vec::with_capacity(options.max_tokens.min(room));
    if options.max_tokens == 0 {
        return Ok(Generation { ids, stop: StopReason::Length, timings });
    }
    let start = Instant::now();
    let logits = finite(model.forward_last(state, prompt, exec)?, prompt.len() - 1)?;
    let mut next = sampler.sample(logits, &history);
    timings.prompt_seconds = start.elapsed().as_secs_f64();
    let decode_start = Instant::now();
    let is_stop = |t: u32| model.config.eos_token_ids.contains(&t) || options.stop_tokens.contains(&t);
    let stop = loop {
        ids.push(next);
        history.push(next);
        timings.generated_tokens += 1;
        if !on_token(next) {
            break StopReason::Callback;
        }
        if !options.ignore_eos && is_stop(next) {
            break StopReason::Eos;
        }
        if ids.len() >= options.max_tokens {
            break StopReason::Length;
        }
        if state.position() >= state.context() {
            break StopReason::Context;
        }
        let position = state.position();
        let logits = finite(model.forward_last(state, &[next], exec)?, position)?;
        next = sampler.sample(logits, &history);
        timings.decode_tokens += 1;
    };
    timings.decode_seconds = decode_start.elapsed().as_secs_f64();
    Ok(Generation { ids, stop, timings })
}

/// `logits` if they are all finite; NaN or infinite logits (from NaN or
/// infinite weights or scales) are an error rather than a stream of
/// arbitrary tokens.
fn finite(logits: &[f32], position: usize) -> Result<&[f32]> {
    if logits.iter().all(|x| x.is_finite()) { Ok(logits) } else { Err(ModelError::NonFiniteLogits { position }) }
}
