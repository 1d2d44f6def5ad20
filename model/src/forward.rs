//! The transformer forward pass over a KV cache.
//!
//! A [`State`] is one sequence: its KV cache (f32, preallocated for the
//! whole context), its position, the rotary tables and every scratch buffer
//! a forward call needs, sized for the largest batch at creation, so that
//! decoding allocates nothing per token. Tokens are processed in batches of
//! up to `max_batch` columns: every matrix multiplies the whole batch at once
//! (the kernels' multi-column variants), attention is causal within it.

use asdsl_kernels::input::Input;

use crate::attention::Heads;
use crate::error::{ModelError, Result};
use crate::exec::Exec;
use crate::linear::Linear;
use crate::model::{GateUp, Model, Qkv};
use crate::rope::Rope;

/// The default number of prompt tokens processed per forward call.
pub const DEFAULT_BATCH: usize = 32;

/// One sequence's KV cache and scratch buffers.
#[derive(Debug)]
pub struct State {
    context: usize,
    max_batch: usize,
    pos: usize,
    rope: Rope,
    /// `[layer][position][kv_dim]`.
    k_cache: Vec<f32>,
    /// `[layer][position][kv_dim]`.
    v_cache: Vec<f32>,
    x: Vec<f32>,
    xn: Vec<f32>,
    qkv: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output per head: `[head][t][head_dim]`.
    attn_heads: Vec<f32>,
    /// Attention output per token: `[t][q_dim]`.
    attn: Vec<f32>,
    /// Attention scores, one context-long row per head.
    scores: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    logits: Vec<f32>,
    input: Input,
}

/// Which logits a forward call computes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Want {
    None,
    Last,
    All,
}

impl State {
    /// The number of tokens processed so far (the next position).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The context length (positions the cache holds).
    pub fn context(&self) -> usize {
        self.context
    }

    /// Forgets the sequence (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
    }
}

impl Model {
    /// A state for sequences of up to `context` tokens, processing up to
    /// `max_batch` tokens per forward call. `context` is capped at the
    /// model's `max_position_embeddings`.
    pub fn new_state(&self, context: usize, max_batch: usize) -> Result<State> {
        let c = &self.config;
        if context == 0 || max_batch == 0 {
            return Err(ModelError::Invalid("context and batch must be at least 1".into()));
        }
        let context = context.min(c.max_position_embeddings);
        let b = max_batch.min(context);
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let cache = c.num_layers * context * kvd;
        Ok(State {
            context,
            max_batch: b,
            pos: 0,
            rope: Rope::new(c, context),
            k_cache: vec![0.0; cache],
            v_cache: vec![0.0; cache],
            x: vec![0.0; b * h],
            xn: vec![0.0; b * h],
            qkv: vec![0.0; b * (qd + 2 * kvd)],
            q: vec![0.0; b * qd],
            k: vec![0.0; b * kvd],
            v: vec![0.0; b * kvd],
            attn_heads: vec![0.0; b * qd],
            attn: vec![0.0; b * qd],
            scores: vec![0.0; c.num_heads * context],
            proj: vec![0.0; b * h],
            gate_up: vec![0.0; b * 2 * inter],
            up: vec![0.0; b * inter],
            act: vec![0.0; b * inter],
            logits: vec![0.0; b * c.vocab_size],
            input: Input::new(),
        })
    }

    /// Runs `tokens` at the state's next positions and returns the logits
    /// of the last one (`vocab_size` floats).
    pub fn forward_last<'s>(&self, state: &'s mut State, tokens: &[u32], exec: &Exec) -> Result<&'s [f32]> {
        self.check(state, tokens)?;
        let chunks = tokens.len().div_ceil(state.max_batch);
        for (i, chunk) in tokens.chunks(state.max_batch).enumerate() {
            let want = if i + 1 == chunks { Want::Last } else { Want::None };
            self.forward_batch(state, chunk, want, exec)?;
        }
        Ok(&state.logits[..self.config.vocab_size])
    }

    /// Runs `tokens` at the state's next positions and returns the logits
    /// at every one of them (`tokens.len() x vocab_size`, row-major).
    pub fn forward_all(&self, state: &mut State, tokens: &[u32], exec: &Exec) -> Result<Vec<f32>> {
        self.check(state, tokens)?;
        let vocab = self.config.vocab_size;
        let mut all = Vec::with_capacity(tokens.len() * vocab);
        for chunk in tokens.chunks(state.max_batch) {
            self.forward_batch(state, chunk, Want::All, exec)?;
            all.extend_from_slice(&state.logits[..chunk.len() * vocab]);
        }
        Ok(all)
    }

    fn check(&self, state: &State, tokens: &[u32]) -> Result<()> {
        if tokens.is_empty() {
            return Err(ModelError::Invalid("no tokens to run".into()));
        }
        let needed = state.pos + tokens.len();
        if needed > state.context {
            return Err(ModelError::ContextOverflow { needed, context: state.context });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            return Err(ModelError::Invalid(format!(
                "token id {t} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    fn forward_batch(&self, s: &mut State, tokens: &[u32], want: Want, exec: &Exec) -> Result<()> {
        let c = &self.config;
        let t_len = tokens.len();
        let (h, qd, kvd, inter, hd) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size, c.head_dim);
        let (heads, kv_heads) = (c.num_heads, c.num_kv_heads);
        let p0 = s.pos;
        let seq_len = p0 + t_len;
        let ctx = s.context;
        let eps = c.rms_norm_eps;
        let q8 = self.needs_q8;

        for (t, &tok) in tokens.iter().enumerate() {
            self.embed.row(tok as usize, &mut s.x[t * h..(t + 1) * h])?;
        }
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            rms_norm(&s.x[..t_len * h], &layer.attn_norm, eps, &mut s.xn[..t_len * h]);
            s.input.prepare_on(&s.xn[..t_len * h], h, t_len, q8, Some(exec.threads()))?;
            match &layer.qkv {
                Qkv::Fused(w) => {
                    let rows = qd + 2 * kvd;
                    w.forward(&s.input, &mut s.qkv, exec)?;
                    for t in 0..t_len {
                        let src = &s.qkv[t * rows..(t + 1) * rows];
                        s.q[t * qd..(t + 1) * qd].copy_from_slice(&src[..qd]);
                        s.k[t * kvd..(t + 1) * kvd].copy_from_slice(&src[qd..qd + kvd]);
                        s.v[t * kvd..(t + 1) * kvd].copy_from_slice(&src[qd + kvd..]);
                    }
                }
                Qkv::Split { q, k, v } => {
                    q.forward(&s.input, &mut s.q, exec)?;
                    k.forward(&s.input, &mut s.k, exec)?;
                    v.forward(&s.input, &mut s.v, exec)?;
                }
            }
            let layer_cache = l * ctx * kvd;
            for t in 0..t_len {
                let pos = p0 + t;
                s.rope.apply(&mut s.q[t * qd..(t + 1) * qd], hd, pos, seq_len);
                s.rope.apply(&mut s.k[t * kvd..(t + 1) * kvd], hd, pos, seq_len);
                let at = layer_cache + pos * kvd;
                s.k_cache[at..at + kvd].copy_from_slice(&s.k[t * kvd..(t + 1) * kvd]);
                s.v_cache[at..at + kvd].copy_from_slice(&s.v[t * kvd..(t + 1) * kvd]);
            }
            let attention = Heads {
                q: &s.q,
                q_stride: qd,
                k: &s.k_cache[layer_cache..layer_cache + ctx * kvd],
                v: &s.v_cache[layer_cache..layer_cache + ctx * kvd],
                kv_stride: kvd,
                head_dim: hd,
                group: heads / kv_heads,
                p0,
                scale: 1.0 / (hd as f32).sqrt(),
            };
            exec.for_each_chunk2(
                &mut s.attn_heads[..heads * t_len * hd],
                t_len * hd,
                &mut s.scores[..heads * ctx],
                ctx,
                |head, out, scores| attention.attend(head, t_len, out, scores),
            );
            for head in 0..heads {
                for t in 0..t_len {
                    let src = &s.attn_heads[(head * t_len + t) * hd..(head * t_len + t + 1) * hd];
                    s.attn[t * qd + head * hd..t * qd + (head + 1) * hd].copy_from_slice(src);
                }
            }
            s.input.prepare_on(&s.attn[..t_len * qd], qd, t_len, q8, Some(exec.threads()))?;
            layer.o.forward(&s.input, &mut s.proj, exec)?;
            add(&mut s.x[..t_len * h], &s.proj[..t_len * h]);

            // MLP.
            rms_norm(&s.x[..t_len * h], &layer.ffn_norm, eps, &mut s.xn[..t_len * h]);
            s.input.prepare_on(&s.xn[..t_len * h], h, t_len, q8, Some(exec.threads()))?;
            match &layer.gate_up {
                GateUp::Fused(w) => {
                    w.forward(&s.input, &mut s.gate_up, exec)?;
                    let gate_up = &s.gate_up;
                    exec.for_each_chunk(&mut s.act[..t_len * inter], inter, |t, act| {
                        let (g, u) = gate_up[t * 2 * inter..(t + 1) * 2 * inter].split_at(inter);
                        swiglu(g, u, act);
                    });
                }
                GateUp::Split { gate, up } => {
                    gate.forward(&s.input, &mut s.gate_up, exec)?;
                    up.forward(&s.input, &mut s.up, exec)?;
                    let (g, u) = (&s.gate_up, &s.up);
                    exec.for_each_chunk(&mut s.act[..t_len * inter], inter, |t, act| {
                        swiglu(&g[t * inter..(t + 1) * inter], &u[t * inter..(t + 1) * inter], act);
                    });
                }
            }
            s.input.prepare_on(&s.act[..t_len * inter], inter, t_len, q8, Some(exec.threads()))?;
            layer.down.forward(&s.input, &mut s.proj, exec)?;
            add(&mut s.x[..t_len * h], &s.proj[..t_len * h]);
        }
        s.pos += t_len;

        match want {
            Want::None => {}
            Want::Last => {
                let last = &s.x[(t_len - 1) * h..t_len * h];
                rms_norm(last, &self.norm, eps, &mut s.xn[..h]);
                s.input.prepare_on(&s.xn[..h], h, 1, q8, Some(exec.threads()))?;
                self.output.forward(&s.input, &mut s.logits, exec)?;
            }
            Want::All => {
                rms_norm(&s.x[..t_len * h], &self.norm, eps, &mut s.xn[..t_len * h]);
                s.input.prepare_on(&s.xn[..t_len * h], h, t_len, q8, Some(exec.threads()))?;
                self.output.forward(&s.input, &mut s.logits, exec)?;
            }
        }
        Ok(())
    }

    /// The output head.
    pub fn output(&self) -> &Linear {
        &self.output
    }
}

/// RMSNorm of each `weight.len()`-wide row of `x` into `out`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (x, o) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let inv = 1.0 / ((ss / n as f64) as f32 + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(x).zip(weight) {
            *o = w * (v * inv);
        }
    }
}

/// `out = silu(gate) * up`.
fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
