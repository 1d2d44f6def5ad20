//! Choosing the next token from logits: greedy, or temperature sampling
//! after a repetition penalty and top-k / top-p / min-p filters (applied in
//! llama.cpp's order: penalty, top-k, top-p, min-p, temperature), with a
//! seeded generator so that the same seed gives the same output.

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// `<= 0` means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens by this (1: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p
    /// 0.05, no repetition penalty (window 64).
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplerConfig { temperature: 0.0, ..SamplerConfig::default() }
    }
}

/// SplitMix64: a small, fast, well-mixed 64-bit generator (Steele, Lea and
/// Flood, 2014), enough for sampling and fully determined by its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A sampler: its settings, generator and scratch (reused, so sampling
/// allocates nothing once warmed up).
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: SplitMix64,
    candidates: Vec<(f32, u32)>,
    penalized: Vec<u32>,
}

impl Sampler {
    /// A sampler with these settings.
    pub fn new(config: SamplerConfig) -> Self {
        let rng = SplitMix64::new(config.seed);
        Sampler { config, rng, candidates: Vec::new(), penalized: Vec::new() }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token from `logits`, given the tokens so far
    /// (`history`, for the repetition penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let c = &self.config;
        let penalize = c.repeat_penalty != 1.0 && c.repeat_last_n > 0;
        if penalize {
            self.penalized.clear();
            let start = history.len().saturating_sub(c.repeat_last_n);
            for &t in &history[start..] {
                if (t as usize) < logits.len() && !self.penalized.contains(&t) {
                    self.penalized.push(t);
                }
            }
        }
        let penalty = c.repeat_penalty;
        let logit = |i: usize, penalized: &[u32]| -> f32 {
            let l = logits[i];
            if penalize && penalized.contains(&(i as u32)) {
                if l > 0.0 { l / penalty } else { l * penalty }
            } else {
                l
            }
        };
        if c.temperature <= 0.0 {
            if !penalize {
                return argmax(logits);
            }
            let mut best = (f32::NEG_INFINITY, 0u32);
            for i in 0..logits.len() {
                let l = logit(i, &self.penalized);
                if l > best.0 {
                    best = (l, i as u32);
                }
            }
            return best.1;
        }
        self.candidates.clear();
        for i in 0..logits.len() {
            let l = logit(i, &self.penalized);
            if l.is_finite() {
                self.candidates.push((l, i as u32));
            }
        }
        if self.candidates.is_empty() {
            return argmax(logits);
        }
        let cands = &mut self.candidates;
        // Descending by logit, ties by token id (deterministic).
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if c.top_k > 0 && c.top_k < cands.len() {
            cands.select_nth_unstable_by(c.top_k - 1, order);
            cands.truncate(c.top_k);
        }
        cands.sort_unstable_by(order);
        // Probabilities at temperature 1 for the filters, as llama.cpp.
        let max = cands[0].0;
        let mut sum = 0.0f64;
        for (l, _) in cands.iter() {
            sum += ((l - max) as f64).exp();
        }
        if c.top_p < 1.0 {
            let mut acc = 0.0f64;
            let mut keep = cands.len();
            for (i, (l, _)) in cands.iter().enumerate() {
                acc += ((l - max) as f64).exp() / sum;
                if acc >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }
        if c.min_p > 0.0 {
            // p_i / p_max = exp(l_i - max).
            let threshold = (c.min_p as f64).ln();
            let keep = cands.iter().take_while(|(l, _)| ((l - max) as f64) >= threshold).count();
            cands.truncate(keep.max(1));
        }
        let inv_t = 1.0 / c.temperature as f64;
        let mut total = 0.0f64;
        for (l, _) in cands.iter_mut() {
            let w = (((*l - max) as f64) * inv_t).exp();
            *l = w as f32;
            total += w;
        }
        let r = self.rng.next_f32() as f64 * total;
        let mut acc = 0.0f64;
        for &(w, id) in cands.iter() {
            acc += w as f64;
            if r < acc {
                return id;
            }
        }
        cands[cands.len() - 1].1
    }
}

/// The index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (i, &l) in logits.iter().enumerate() {
        if l > best.0 {
            best = (l, i as u32);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
    }

    #[test]
    fn repetition_penalty_moves_greedy() {
        let config = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(config);
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[1]), 3);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let config = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..config.clone() });
            (0..50).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let config = SamplerConfig { temperature: 5.0, top_k: 1, ..SamplerConfig::default() };
        let mut s = Sampler::new(config);
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9], &[]), 1);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let config = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.5, ..SamplerConfig::default() };
        let mut s = Sampler::new(config);
        // exp(-10) of the best: always dropped.
        for _ in 0..50 {
            let t = s.sample(&[0.0, 10.0, 9.9, -5.0], &[]);
            assert!(t == 1 || t == 2);
        }
    }
}
