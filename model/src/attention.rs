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

/// From this many tokens on, AVX-512 attention takes the blocked path
/// ([`x86::attend_blocked`]): a batch's queries in blocks against
/// transposed keys. Below it, the transposition would cost about as much
/// as the scores it serves.
const BLOCKED_FROM: usize = 4;

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
            Isa::Avx512 | Isa::Avx512Vnni if t_len >= BLOCKED_FROM => unsafe {
                x86::attend_blocked(self, head, t_len, out)
            },
            // SAFETY: as above.
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
    use std::cell::Cell;

    use super::Heads;

    /// Queries per block of the blocked path.
    const QUERIES: usize = 8;
    /// Keys per step of the scores: two vectors.
    const KEYS: usize = 32;
    /// Floats of a value row per step of the weighted sum: four vectors.
    const CHUNK: usize = 64;

    thread_local! {
        /// The transposed keys and the probability rows of the blocked path,
        /// kept per worker thread so that a prompt allocates them once.
        /// (Taken and put back rather than borrowed in a closure: a closure
        /// would not inherit the target features, and its intrinsics would
        /// become calls.)
        static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    }

    /// Attention of query head `head` for a batch of `t_len` tokens, as
    /// [`Heads::attend`] computes it, with the work of a matrix product:
    ///
    /// 1. the head's keys for positions `0..p0 + t_len` are transposed (one
    ///    row of positions per head dimension), so that a vector of scores
    ///    of 16 positions is one fused multiply-add per dimension, with no
    ///    horizontal sum;
    /// 2. per block of [`QUERIES`] tokens, the scores of every query against
    ///    every key the last of them sees (each key vector loaded once for
    ///    the block), a softmax per query with a vector exponential (keys a
    ///    query may not see get weight 0), and the weighted sum of the
    ///    values, each value vector loaded once for four queries.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and FMA.
    #[target_feature(enable = "avx512f,avx512vl,fma")]
    pub(super) unsafe fn attend_blocked(h: &Heads<'_>, head: usize, t_len: usize, out: &mut [f32]) {
        let (hd, kvd, q_stride) = (h.head_dim, h.kv_stride, h.q_stride);
        let kv_at = (head / h.group) * hd;
        let n_all = h.p0 + t_len;
        let n_pad = n_all.next_multiple_of(KEYS);
        // Every raw read below stays within these bounds.
        assert!(t_len > 0 && hd > 0, "empty attention");
        assert!((t_len - 1) * q_stride + (head + 1) * hd <= h.q.len(), "queries shorter than {t_len} tokens");
        assert!((n_all - 1) * kvd + kv_at + hd <= h.k.len().min(h.v.len()), "KV cache shorter than {n_all}");
        assert!(out.len() >= t_len * hd, "output shorter than {t_len} rows of {hd}");
        let mut scratch = SCRATCH.take();
        if scratch.len() < (hd + QUERIES) * n_pad {
            scratch.resize((hd + QUERIES) * n_pad, 0.0);
        }
        let (keys, probs) = scratch.split_at_mut(hd * n_pad);
        // keys[d * n_pad + j] = dimension d of key j; zero past the last key.
        for d in 0..hd {
            let row = &mut keys[d * n_pad..(d + 1) * n_pad];
            for (j, x) in row[..n_all].iter_mut().enumerate() {
                *x = h.k[j * kvd + kv_at + d];
            }
            row[n_all..].fill(0.0);
        }
        for t0 in (0..t_len).step_by(QUERIES) {
            let rows = QUERIES.min(t_len - t0);
            // Keys seen by the block's last query, and the steps covering them.
            let n_max = h.p0 + t0 + rows;
            let n_steps = n_max.div_ceil(KEYS) * KEYS;
            // The block's queries; a short block repeats its last one.
            let q: [&[f32]; QUERIES] = std::array::from_fn(|r| {
                let t = t0 + r.min(rows - 1);
                &h.q[t * q_stride + head * hd..t * q_stride + (head + 1) * hd]
            });
            // SAFETY: `keys` holds `hd` rows of `n_pad >= n_steps`
            // floats and `probs` `QUERIES` rows of `n_pad`; AVX-512 F.
            unsafe { scores(&q, keys, n_pad, n_steps, h.scale, probs) };
            let mut inv_sum = [0.0f32; QUERIES];
            for (r, inv_sum) in inv_sum.iter_mut().enumerate().take(rows) {
                let row = &mut probs[r * n_pad..r * n_pad + n_steps];
                // SAFETY: AVX-512 F and FMA (this function's features).
                *inv_sum = 1.0 / unsafe { softmax_numerators(row, h.p0 + t0 + r + 1) };
            }
            for r0 in (0..rows).step_by(4) {
                for d0 in (0..hd).step_by(CHUNK) {
                    let width = CHUNK.min(hd - d0);
                    // SAFETY: rows `r0..r0 + 4` of `probs` hold `n_max`
                    // weights (zero past each query's last key); value
                    // rows `0..n_max` hold `kv_at + d0 + width` floats
                    // (asserted above); AVX-512 F.
                    let acc =
                        unsafe { weighted_values(&probs[r0 * n_pad..], n_pad, &h.v[kv_at + d0..], kvd, n_max, width) };
                    for (r, acc) in acc.iter().enumerate().take(rows - r0) {
                        let t = t0 + r0 + r;
                        let o = &mut out[t * hd + d0..t * hd + d0 + width];
                        let scale = _mm512_set1_ps(inv_sum[r0 + r]);
                        for (i, v) in acc.iter().enumerate().take(width.div_ceil(16)) {
                            let m = lanes(width - 16 * i);
                            // SAFETY: the mask covers the floats of `o` from `16 i`.
                            unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(16 * i), m, _mm512_mul_ps(*v, scale)) };
                        }
                    }
                }
            }
        }
        SCRATCH.set(scratch);
    }

    /// The mask of the first `n` (at most 16) lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 { 0xFFFF } else { ((1u32 << n) - 1) as u16 }
    }

    /// `probs[r * n_pad + j] = scale * q[r] . key j` for `j < n_steps`.
    ///
    /// # Safety
    /// AVX-512 F and FMA; `keys` holds `q[r].len()` rows of `n_pad` floats,
    /// `probs` `QUERIES` rows of `n_pad`, and `n_steps <= n_pad` is a
    /// multiple of [`KEYS`].
    #[inline(always)]
    unsafe fn scores(q: &[&[f32]; QUERIES], keys: &[f32], n_pad: usize, n_steps: usize, scale: f32, probs: &mut [f32]) {
        let hd = q[0].len();
        // SAFETY: the caller's guarantee; `j + KEYS <= n_steps <= n_pad`.
        unsafe {
            let kp = keys.as_ptr();
            for j in (0..n_steps).step_by(KEYS) {
                let mut acc = [[_mm512_setzero_ps(); 2]; QUERIES];
                for d in 0..hd {
                    let k0 = _mm512_loadu_ps(kp.add(d * n_pad + j));
                    let k1 = _mm512_loadu_ps(kp.add(d * n_pad + j + 16));
                    for (acc, q) in acc.iter_mut().zip(q) {
                        let qd = _mm512_set1_ps(*q.get_unchecked(d));
                        acc[0] = _mm512_fmadd_ps(qd, k0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(qd, k1, acc[1]);
                    }
                }
                let scale = _mm512_set1_ps(scale);
                for (r, acc) in acc.iter().enumerate() {
                    let at = probs.as_mut_ptr().add(r * n_pad + j);
                    _mm512_storeu_ps(at, _mm512_mul_ps(acc[0], scale));
                    _mm512_storeu_ps(at.add(16), _mm512_mul_ps(acc[1], scale));
                }
            }
        }
    }

    /// Turns the first `n` scores of `row` into `exp(score - max)`, zeroes
    /// the rest, and returns their sum.
    ///
    /// # Safety
    /// AVX-512 F and FMA; `0 < n <= row.len()`.
    #[inline(always)]
    unsafe fn softmax_numerators(row: &mut [f32], n: usize) -> f32 {
        // SAFETY: every access is masked to `..n` or within `row`.
        unsafe {
            let p = row.as_mut_ptr();
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for j in (0..n).step_by(16) {
                max = _mm512_mask_max_ps(max, lanes(n - j), _mm512_maskz_loadu_ps(lanes(n - j), p.add(j)), max);
            }
            let max = _mm512_set1_ps(_mm512_reduce_max_ps(max));
            let mut sum = _mm512_setzero_ps();
            for j in (0..row.len()).step_by(16) {
                let m = if j < n { lanes(n - j) } else { 0 };
                let e = _mm512_maskz_mov_ps(m, exp(_mm512_sub_ps(_mm512_loadu_ps(p.add(j)), max)));
                _mm512_storeu_ps(p.add(j), e);
                sum = _mm512_add_ps(sum, e);
            }
            _mm512_reduce_add_ps(sum)
        }
    }

    /// `e^x` per lane, for `x <= 0` (softmax numerators): Cephes' `expf`
    /// polynomial on `x - n ln 2`, scaled by `2^n`; within 2 ulp of the
    /// library's `expf`, and 0 below -104.
    ///
    /// # Safety
    /// AVX-512 F and FMA.
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // SAFETY: register-only arithmetic; the caller's CPU features.
        unsafe {
            let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
                x,
                _mm512_set1_ps(std::f32::consts::LOG2_E),
            ));
            // x - n ln 2, with ln 2 in two parts so that the first product is exact.
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
            let mut p = _mm512_set1_ps(1.987_569_1e-4);
            for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
            }
            let p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            _mm512_scalef_ps(p, n)
        }
    }

    /// For four probability rows (`probs`, rows `n_pad` apart): the sums
    /// `sum_j probs[r][j] * v_j[..width]` over `j < n`, where value row `j`
    /// starts at `values[j * kvd]`, as `width.div_ceil(16)` vectors.
    ///
    /// # Safety
    /// AVX-512 F; `probs` holds four rows of at least `n` floats `n_pad`
    /// apart; value rows `0..n` hold `width <= 64` floats.
    #[inline(always)]
    unsafe fn weighted_values(
        probs: &[f32],
        n_pad: usize,
        values: &[f32],
        kvd: usize,
        n: usize,
        width: usize,
    ) -> [[__m512; 4]; 4] {
        let masks: [__mmask16; 4] = std::array::from_fn(|i| if 16 * i < width { lanes(width - 16 * i) } else { 0 });
        // SAFETY: the caller's guarantee; masked loads read only the first
        // `width` floats of a value row.
        unsafe {
            let (pp, vp) = (probs.as_ptr(), values.as_ptr());
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            for j in 0..n {
                // (`wrapping_add`: a vector past `width` is masked off entirely
                // and its address may lie past the slice. A loop, not a
                // closure: closures do not inherit the target features.)
                let mut v = [_mm512_setzero_ps(); 4];
                for (i, v) in v.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_ps(masks[i], vp.wrapping_add(j * kvd + 16 * i));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*pp.add(r * n_pad + j));
                    for i in 0..4 {
                        acc[i] = _mm512_fmadd_ps(w, v[i], acc[i]);
                    }
                }
            }
            acc
        }
    }

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
        for hd in [16, 24, 64, 80, 128] {
            for (p0, t_len) in [(5, 7), (0, 1), (0, 4), (3, 8), (0, 13), (37, 40)] {
                check_head_dim(hd, p0, t_len);
            }
        }
    }

    fn check_head_dim(hd: usize, p0: usize, t_len: usize) {
        let (heads, kv_heads) = (4, 2);
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
            if cpu::available(Isa::Avx512).unwrap_or(false) {
                widths.push(("blocked", |h, head, t, out, _| {
                    // SAFETY: AVX-512 F and FMA are available (checked above).
                    unsafe { x86::attend_blocked(h, head, t, out) }
                }));
            }
            widths.push(("dispatched", |h, head, t, out, scores| h.attend(head, t, out, scores)));
            for (name, attend_with) in widths {
                attend_with(&h, head, t_len, &mut got, &mut scores);
                for (a, b) in want.iter().zip(&got) {
                    assert!((a - b).abs() <= 1e-5, "{name} hd {hd} p0 {p0} t_len {t_len} head {head}: {a} vs {b}");
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
