//! Rotary position embeddings: default, linear, Llama 3 and LongRoPE
//! frequencies, partial rotary dimensions, NEOX (`rotate_half`) or
//! interleaved pairing. cos/sin are tabulated for the whole context at load.
//!
//! The frequencies are computed as transformers computes them (f32
//! `inv_freq`, f32 angle `position * inv_freq`), so that the f32 path
//! matches its references.

use crate::config::{ModelConfig, RopeScaling, RopeStyle};

/// cos and sin of one set of frequencies at every position of the context.
#[derive(Debug, Clone)]
struct Table {
    /// `cos[pos * half + i]`.
    cos: Vec<f32>,
    /// `sin[pos * half + i]`.
    sin: Vec<f32>,
}

/// The rotary embedding of a model, tabulated for `context` positions.
#[derive(Debug, Clone)]
pub struct Rope {
    rotary_dim: usize,
    half: usize,
    style: RopeStyle,
    short: Table,
    /// LongRoPE: the table used once a sequence exceeds `switch` positions.
    long: Option<Table>,
    switch: usize,
}

impl Rope {
    /// Tabulates the rotary embedding of `config` for positions `0..context`.
    pub fn new(config: &ModelConfig, context: usize) -> Rope {
        let dim = config.rotary_dim;
        let half = dim / 2;
        let theta = config.rope_theta;
        // transformers: 1 / (base ** (arange(0, dim, 2).float() / dim)), in f32.
        let base_freq: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32)).collect();
        let table = |inv_freq: &[f32], position_scale: f32, mscale: f32| {
            let mut cos = vec![0.0f32; context * half];
            let mut sin = vec![0.0f32; context * half];
            for pos in 0..context {
                let p = pos as f32 / position_scale;
                for i in 0..half {
                    let angle = (p * inv_freq[i]) as f64;
                    cos[pos * half + i] = angle.cos() as f32 * mscale;
                    sin[pos * half + i] = angle.sin() as f32 * mscale;
                }
            }
            Table { cos, sin }
        };
        let (short, long, switch) = match &config.rope_scaling {
            RopeScaling::None => (table(&base_freq, 1.0, 1.0), None, usize::MAX),
            RopeScaling::Linear { factor } => (table(&base_freq, *factor, 1.0), None, usize::MAX),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let inv: Vec<f32> = base_freq
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                (table(&inv, 1.0, 1.0), None, usize::MAX)
            }
            RopeScaling::LongRope { short_factor, long_factor, original_max_position_embeddings, attention_factor } => {
                // transformers: 1 / (ext_factors * base ** (arange(0, dim, 2).float() / dim)).
                let inv = |factors: &[f32]| -> Vec<f32> {
                    (0..half).map(|i| 1.0 / (factors[i] * theta.powf((2 * i) as f32 / dim as f32))).collect()
                };
                (
                    table(&inv(short_factor), 1.0, *attention_factor),
                    Some(table(&inv(long_factor), 1.0, *attention_factor)),
                    *original_max_position_embeddings,
                )
            }
        };
        Rope { rotary_dim: dim, half, style: config.rope_style, short, long, switch }
    }

    /// Rotates the first `rotary_dim` values of each `head_dim`-wide head in
    /// `x` (one token's heads, back to back) for position `pos`. `seq_len`
    /// (the length of the sequence being processed, for LongRoPE's choice of
    /// factors) is the last position of the current call plus one.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize, seq_len: usize) {
        let table = match &self.long {
            Some(long) if seq_len > self.switch => long,
            _ => &self.short,
        };
        let half = self.half;
        let cos = &table.cos[pos * half..(pos + 1) * half];
        let sin = &table.sin[pos * half..(pos + 1) * half];
        for head in x.chunks_exact_mut(head_dim) {
            let head = &mut head[..self.rotary_dim];
            match self.style {
                RopeStyle::Neox => {
                    let (a, b) = head.split_at_mut(half);
                    for i in 0..half {
                        let (x0, x1) = (a[i], b[i]);
                        a[i] = x0 * cos[i] - x1 * sin[i];
                        b[i] = x1 * cos[i] + x0 * sin[i];
                    }
                }
                RopeStyle::Interleaved => {
                    for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                        let (x0, x1) = (pair[0], pair[1]);
                        pair[0] = x0 * cos[i] - x1 * sin[i];
                        pair[1] = x1 * cos[i] + x0 * sin[i];
                    }
                }
            }
        }
    }

    /// Positions tabulated.
    pub fn context(&self) -> usize {
        self.short.cos.len() / self.half
    }
}
