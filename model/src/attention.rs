//! Causal self-attention of one query head over the KV cache, on the widest
//! f32 vectors the CPU allows.
//!
//! The loops are plain Rust written so that they vectorize (sixteen
//! independent accumulators, no reduction through one float), compiled three
//! times: inside `#[target_feature]` wrappers for AVX-512 and AVX2 (with fused
//! multiply-adds) and once for any CPU. The width is chosen once per process
//! from [`cpu::best_isa`], so `ASDSL_FORCE_ISA` caps it like the kernels.
//! Prompt processing spends most of its non-GEMM time here: on baseline
//! x86-64 (SSE2, no FMA) these loops ran at a tenth of the AVX-512 rate.

use std::sync::OnceLock;

use asdsl_kernels::cpu;
use asdsl_kernels::variant::Isa;

use crate::linear::{dot_with as dot, fma};

/// The ISA the loops run on, chosen once.
fn width() -> Isa {
    static WIDTH: OnceLock<Isa> = OnceLock::new();
    *WIDTH.get_or_init(cpu::best_isa)
}

/// The queries of a batch and one layer's KV cache.
pub(crate) struct Heads<'a> {
    /// Queries, `t_len` rows of `q_stride` (all heads of a token).
    pub q: &'a [f32],
    pub q_stride: usize,
    /// Cached keys and values of this layer, one row of `kv_stride` per position.
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub kv_stride: usize,
    pub head_dim: usize,
    /// Query heads per KV head.
    pub group: usize,
    /// Position of the batch's first token.
    pub p0: usize,
    /// `1 / sqrt(head_dim)`.
    pub scale: f32,
}

impl Heads<'_> {
    /// Attention of query head `head` for the first `t_len` tokens of the
    /// batch: token `t` attends to positions `0..=p0 + t`. Writes `t_len`
    /// rows of `head_dim` to `out`; `scores` holds at least `p0 + t_len`.
    pub(crate) fn attend(&self, head: usize, t_len: usize, out: &mut [f32], scores: &mut [f32]) {
        match width() {
            // SAFETY: `best_isa` saw AVX-512 F and FMA on this CPU.
            Isa::Avx512 | Isa::Avx512Vnni => unsafe { attend_avx512(self, head, t_len, out, scores) },
            // SAFETY: `best_isa` saw AVX2 and FMA on this CPU.
            Isa::Avx2 => unsafe { attend_avx2(self, head, t_len, out, scores) },
            Isa::Scalar => attend::<false, Portable<false>>(self, head, t_len, out, scores),
        }
    }
}

#[target_feature(enable = "avx512f,avx512vl,fma")]
fn attend_avx512(h: &Heads<'_>, head: usize, t_len: usize, out: &mut [f32], scores: &mut [f32]) {
    attend::<true, x86::Avx512>(h, head, t_len, out, scores)
}

#[target_feature(enable = "avx2,fma")]
fn attend_avx2(h: &Heads<'_>, head: usize, t_len: usize, out: &mut [f32], scores: &mut [f32]) {
    attend::<true, Portable<true>>(h, head, t_len, out, scores)
}

/// How the scores of one query are computed.
trait Scores {
    /// `out[j] = scale * q . k_j` for the keys `k_j = k[j * stride..][..q.len()]`.
    ///
    /// # Safety
    /// The CPU has the instructions of the implementation.
    unsafe fn scores(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]);
}

/// The loops; `FMA` fuses multiply and add (only where the CPU has FMA: it
/// is a library call otherwise); `S` computes the scores.
///
/// Only the `attend_*` functions instantiate it, each with the `S` its
/// target features allow.
#[inline(always)]
fn attend<const FMA: bool, S: Scores>(h: &Heads<'_>, head: usize, t_len: usize, out: &mut [f32], scores: &mut [f32]) {
    let (hd, kvd) = (h.head_dim, h.kv_stride);
    let g = head / h.group;
    for t in 0..t_len {
        let n = h.p0 + t + 1;
        let q = &h.q[t * h.q_stride + head * hd..t * h.q_stride + (head + 1) * hd];
        let scores = &mut scores[..n];
        // SAFETY: the `attend_*` caller runs with `S`'s instructions.
        unsafe { S::scores(q, &h.k[g * hd..], kvd, h.scale, scores) };
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        let o = &mut out[t * hd..(t + 1) * hd];
        o.fill(0.0);
        for (j, &w) in scores.iter().enumerate() {
            let v = &h.v[j * kvd + g * hd..j * kvd + (g + 1) * hd];
            axpy::<FMA>(w * inv, v, o);
        }
    }
}

/// Scores in plain Rust, one key at a time.
struct Portable<const FMA: bool>;

impl<const FMA: bool> Scores for Portable<FMA> {
    #[inline(always)]
    unsafe fn scores(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        for (j, s) in out.iter_mut().enumerate() {
            *s = dot::<FMA>(q, &k[j * stride..j * stride + q.len()]) * scale;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Scores with AVX-512 F: four keys at a time, their four sums reduced
    /// together.
    pub(super) struct Avx512;

    impl super::Scores for Avx512 {
        #[inline(always)]
        unsafe fn scores(q: &[f32], k: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
            let (hd, n) = (q.len(), out.len());
            if n == 0 {
                return;
            }
            // Every load below stays within key rows 0..n and the query.
            assert!((n - 1) * stride + hd <= k.len(), "keys shorter than {n} rows of {hd}");
            let keys = Keys { q: q.as_ptr(), k: k.as_ptr(), stride, hd };
            // SAFETY: the CPU has AVX-512 F (the caller's guarantee); `dot4`
            // reads key rows `j..j + count` with `j + count <= n`.
            unsafe {
                let mut j = 0;
                while j + 4 <= n {
                    let s = sum4(keys.dot4(j, 4));
                    _mm_storeu_ps(out.as_mut_ptr().add(j), _mm_mul_ps(s, _mm_set1_ps(scale)));
                    j += 4;
                }
                if j < n {
                    let acc = keys.dot4(j, n - j);
                    for (r, out) in out[j..].iter_mut().enumerate() {
                        *out = _mm512_reduce_add_ps(acc[r]) * scale;
                    }
                }
            }
        }
    }

    /// A query and the key rows it meets.
    struct Keys {
        q: *const f32,
        k: *const f32,
        stride: usize,
        hd: usize,
    }

    impl Keys {
        /// `q . k_{j + r}` as vectors of partial sums, for `r < count <= 4`
        /// (the rest zero).
        ///
        /// # Safety
        /// AVX-512 F; `q` holds `hd` floats and key row `j + r` starts at
        /// `k + (j + r) * stride` and holds `hd` floats.
        #[inline(always)]
        unsafe fn dot4(&self, j: usize, count: usize) -> [__m512; 4] {
            let (full, tail) = (self.hd / 16, self.hd % 16);
            let mask: __mmask16 = ((1u32 << tail) - 1) as u16;
            // SAFETY: the caller's guarantee; the masked loads read only
            // the first `tail` floats past the whole vectors.
            unsafe {
                let row = |r: usize| self.k.add((j + r) * self.stride);
                let mut acc = [_mm512_setzero_ps(); 4];
                for i in 0..full {
                    let qv = _mm512_loadu_ps(self.q.add(16 * i));
                    for (r, acc) in acc.iter_mut().enumerate().take(count) {
                        *acc = _mm512_fmadd_ps(qv, _mm512_loadu_ps(row(r).add(16 * i)), *acc);
                    }
                }
                if tail > 0 {
                    let qv = _mm512_maskz_loadu_ps(mask, self.q.add(16 * full));
                    for (r, acc) in acc.iter_mut().enumerate().take(count) {
                        *acc = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mask, row(r).add(16 * full)), *acc);
                    }
                }
                acc
            }
        }
    }

    /// The lane sums of four vectors, as the four lanes of one.
    #[inline(always)]
    unsafe fn sum4(a: [__m512; 4]) -> __m128 {
        // SAFETY: AVX-512 F, guaranteed by the caller.
        unsafe {
            // Per 128-bit lane: [a0 0+2, a1 0+2, a0 1+3, a1 1+3] and the same for a2, a3.
            let t01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
            let t23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
            // Per 128-bit lane: [a0, a1, a2, a3] partial sums.
            let u = _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(t01, t23),
                _mm512_shuffle_ps::<0b11_10_11_10>(t01, t23),
            );
            let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(u)));
            let v = _mm256_add_ps(_mm512_castps512_ps256(u), high);
            _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v))
        }
    }
}

/// `y += w * x`.
#[inline(always)]
fn axpy<const FMA: bool>(w: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = fma::<FMA>(w, x, *y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of the `attend*` entry points.
    type AttendFn = fn(&Heads<'_>, usize, usize, &mut [f32], &mut [f32]);

    /// Every width the CPU has gives the portable result within float
    /// rounding (fused and unfused multiply-adds differ in the last bits).
    #[test]
    fn widths_agree_with_the_portable_loops() {
        for hd in [16, 24, 64] {
            check_head_dim(hd);
        }
    }

    fn check_head_dim(hd: usize) {
        let (heads, kv_heads, p0, t_len) = (4, 2, 5, 7);
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        let q: Vec<f32> = (0..t_len * qd).map(|_| next()).collect();
        let k: Vec<f32> = (0..(p0 + t_len) * kvd).map(|_| next()).collect();
        let v: Vec<f32> = (0..(p0 + t_len) * kvd).map(|_| next()).collect();
        let h = Heads {
            q: &q,
            q_stride: qd,
            k: &k,
            v: &v,
            kv_stride: kvd,
            head_dim: hd,
            group: heads / kv_heads,
            p0,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        for head in 0..heads {
            let mut scores = vec![0.0; p0 + t_len];
            let (mut want, mut got) = (vec![0.0; t_len * hd], vec![0.0; t_len * hd]);
            attend::<false, Portable<false>>(&h, head, t_len, &mut want, &mut scores);
            let mut widths: Vec<(&str, AttendFn)> = Vec::new();
            if cpu::available(Isa::Avx2).unwrap_or(false) {
                widths.push(("avx2", |h, head, t, out, scores| {
                    // SAFETY: AVX2 and FMA are available (checked above).
                    unsafe { attend_avx2(h, head, t, out, scores) }
                }));
            }
            if cpu::available(Isa::Avx512).unwrap_or(false) {
                widths.push(("avx512", |h, head, t, out, scores| {
                    // SAFETY: AVX-512 F is available (checked above).
                    unsafe { attend_avx512(h, head, t, out, scores) }
                }));
            }
            widths.push(("dispatched", |h, head, t, out, scores| h.attend(head, t, out, scores)));
            for (name, attend_with) in widths {
                attend_with(&h, head, t_len, &mut got, &mut scores);
                for (a, b) in want.iter().zip(&got) {
                    assert!((a - b).abs() <= 1e-5, "{name} head {head}: {a} vs {b}");
                }
            }
            // The first token sees only position 0..=p0; check one output by hand.
            let n = p0 + 1;
            let g = head / h.group;
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (0..hd).map(|i| q[head * hd + i] as f64 * k[j * kvd + g * hd + i] as f64).sum::<f64>()
                        * h.scale as f64
                })
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            let o0: f64 = (0..n).map(|j| e[j] / z * v[j * kvd + g * hd] as f64).sum();
            assert!((o0 - got[0] as f64).abs() < 1e-5, "head {head}: {o0} vs {}", got[0]);
        }
    }
}
