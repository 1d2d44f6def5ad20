//! Prepared activations: the input of a GEMV, padded and (for the q8 path)
//! quantized once, then shared by every matrix that multiplies it (for
//! example the q, k and v projections of one token).
//!
//! int8 activations are quantized twice, as ggml does for its two kinds of
//! weight formats ([`Int8Block`]): per 32 values as Q8_0 (`d = max|x| /
//! 127`, `q = round(x / d)`), and per 256 values as Q8_K, one scale for a
//! K-quant super-block. Both are stored alike, a scale per 32-value
//! sub-block (the same for the eight sub-blocks of a 256-value block), so
//! that every kernel reads either. Their sums are kept so that a weight
//! format's min (or offset) term costs one multiply per sub-block:
//! `sum_i (s*c_i + m) * d*q_i = s*d * sum_i c_i*q_i + m * (d * sum_i q_i)`.
//! The q8 path therefore computes exactly `W x̂` where `x̂ = d*q` is the
//! dequantized activation of the format's [`Int8Block`]; its difference
//! from `W x` is bounded by `sum_b d_b/2 * sum_{i in b} |w_i|`.

use std::sync::{Mutex, OnceLock};

use crate::cpu;
use crate::error::KernelError;
use crate::run::Threads;
use crate::variant::Isa;

/// Extra zeroed floats (and bytes) after each column, so that SIMD kernels
/// may load whole vectors past the last sub-block.
const TAIL: usize = 128;

/// How many activations share one int8 scale: the int8 activations a weight
/// format's kernels multiply (ggml's `vec_dot_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Int8Block {
    /// One scale per 32 values, as ggml's Q8_0: the formats whose blocks
    /// are 32 weights (or fewer) and the native formats.
    Of32,
    /// One scale per 256 values, as ggml's Q8_K: the K-quants. The eight
    /// sub-blocks of a super-block then share the activation scale, so that
    /// their integer dot products add up before one float step.
    Of256,
}

impl Int8Block {
    /// Every kind, in the order of [`Input`]'s sets.
    pub const ALL: [Int8Block; 2] = [Int8Block::Of32, Int8Block::Of256];

    /// Values per scale.
    pub const fn values(self) -> usize {
        match self {
            Int8Block::Of32 => 32,
            Int8Block::Of256 => 256,
        }
    }

    /// Its place in [`ALL`](Self::ALL).
    fn index(self) -> usize {
        self as usize
    }
}

/// Activations prepared for the kernels. Reuse one `Input` across calls: it
/// keeps its buffers, so preparing allocates nothing once it has grown.
#[derive(Clone, Debug, Default)]
pub struct Input {
    k: usize,
    columns: usize,
    /// Floats (and int8 values) per column, a multiple of 256 plus [`TAIL`].
    stride: usize,
    /// Sub-blocks (of 32) per column, rounded up, plus a tail.
    sub_stride: usize,
    has_q8: bool,
    x: Vec<f32>,
    sum32: Vec<f32>,
    sum16: Vec<f32>,
    /// The int8 activations per [`Int8Block`] (in its order).
    int8: [Int8Set; 2],
}

impl Input {
    /// An empty input; call [`prepare`](Self::prepare).
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepares `columns` input columns of `k` floats each (`x[c * k + i]`),
    /// with int8 activations if `q8` is set.
    pub fn prepare(&mut self, x: &[f32], k: usize, columns: usize, q8: bool) -> Result<(), KernelError> {
        self.prepare_on(x, k, columns, q8, None)
    }

    /// [`prepare`](Self::prepare), quantizing the columns of a batch on
    /// `threads` (the int8 activations of a 512-token prompt take as long
    /// as a few GEMVs; one thread would leave the others waiting).
    pub fn prepare_on(
        &mut self,
        x: &[f32],
        k: usize,
        columns: usize,
        q8: bool,
        threads: Option<&Threads>,
    ) -> Result<(), KernelError> {
        if k == 0 || columns == 0 {
            return Err(KernelError::Shape(format!("input of {columns} columns of {k} values")));
        }
        if x.len() != k * columns {
            return Err(KernelError::Shape(format!("input has {} values, expected {columns} columns of {k}", x.len())));
        }
        self.k = k;
        self.columns = columns;
        self.stride = k.div_ceil(256) * 256 + TAIL;
        self.sub_stride = self.stride / 32;
        self.has_q8 = q8;
        let stride = self.stride;
        let subs = self.sub_stride;
        resize_zeroed(&mut self.x, columns * stride);
        resize_zeroed(&mut self.sum32, columns * subs);
        resize_zeroed(&mut self.sum16, columns * subs * 2);
        for c in 0..columns {
            let src = &x[c * k..(c + 1) * k];
            let dst = &mut self.x[c * stride..(c + 1) * stride];
            dst[..k].copy_from_slice(src);
            dst[k..].fill(0.0);
            for (s, v) in dst.chunks_exact(16).enumerate().take(subs * 2) {
                self.sum16[c * subs * 2 + s] = v.iter().sum();
            }
            for s in 0..subs {
                self.sum32[c * subs + s] = self.sum16[c * subs * 2 + 2 * s] + self.sum16[c * subs * 2 + 2 * s + 1];
            }
        }
        if q8 {
            let x = &self.x[..columns * stride];
            for (set, block) in self.int8.iter_mut().zip(Int8Block::ALL) {
                set.resize(columns, stride, subs);
                let out = Q8Columns::of(set);
                match threads.filter(|t| t.count() > 1 && columns > 1) {
                    None => out.quantize(x, stride, subs, block),
                    Some(threads) => {
                        // One share of whole columns per thread, taken by whichever thread claims it.
                        let per_share = columns.div_ceil(threads.count());
                        let mut shares = Vec::with_capacity(threads.count());
                        let mut rest = out;
                        for xs in x.chunks(per_share * stride) {
                            let (share, tail) = rest.split_at(xs.len() / stride, stride, subs);
                            shares.push(Mutex::new(Some((xs, share))));
                            rest = tail;
                        }
                        threads.broadcast(|i| {
                            let taken = shares.get(i).and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take());
                            if let Some((xs, share)) = taken {
                                share.quantize(xs, stride, subs, block);
                            }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Values per column.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Whether int8 activations were prepared.
    pub fn has_q8(&self) -> bool {
        self.has_q8
    }

    /// Column `c`, zero-padded (f32).
    pub fn x(&self, c: usize) -> &[f32] {
        &self.x[c * self.stride..(c + 1) * self.stride]
    }

    /// The int8 activations for `block`.
    ///
    /// # Panics
    /// If the input was prepared without int8 activations.
    pub fn int8(&self, block: Int8Block) -> Int8<'_> {
        assert!(self.has_q8, "the input was prepared without int8 activations");
        Int8 { set: &self.int8[block.index()], k: self.k, stride: self.stride, sub_stride: self.sub_stride }
    }

    /// Per 32-value sub-block of column `c`: the sum of the f32 activations.
    pub fn sum32(&self, c: usize) -> &[f32] {
        &self.sum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the f32 activations.
    pub fn sum16(&self, c: usize) -> &[f32] {
        &self.sum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }
}

/// One int8 quantization of all columns: per column `stride` values, and
/// per sub-block a scale and sums.
#[derive(Clone, Debug, Default)]
struct Int8Set {
    q: Vec<i8>,
    d: Vec<f32>,
    qsum32: Vec<f32>,
    qsum16: Vec<f32>,
    isum32: Vec<i32>,
    isum16: Vec<i32>,
}

impl Int8Set {
    /// Zeroed buffers for `columns` columns.
    fn resize(&mut self, columns: usize, stride: usize, subs: usize) {
        resize_zeroed(&mut self.q, columns * stride);
        resize_zeroed(&mut self.d, columns * subs);
        resize_zeroed(&mut self.qsum32, columns * subs);
        resize_zeroed(&mut self.qsum16, columns * subs * 2);
        resize_zeroed(&mut self.isum32, columns * subs);
        resize_zeroed(&mut self.isum16, columns * subs * 2);
    }
}

/// The int8 activations of an [`Input`] for one [`Int8Block`]
/// ([`Input::int8`]).
#[derive(Copy, Clone, Debug)]
pub struct Int8<'a> {
    set: &'a Int8Set,
    k: usize,
    stride: usize,
    sub_stride: usize,
}

impl<'a> Int8<'a> {
    /// The int8 activations of column `c`, zero-padded.
    pub fn q(&self, c: usize) -> &'a [i8] {
        &self.set.q[c * self.stride..(c + 1) * self.stride]
    }

    /// The int8 scale of each 32-value sub-block of column `c` (for
    /// [`Int8Block::Of256`] the same for the eight sub-blocks of a block).
    pub fn d(&self, c: usize) -> &'a [f32] {
        &self.set.d[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 32-value sub-block of column `c`: the sum of the dequantized int8 activations.
    pub fn qsum32(&self, c: usize) -> &'a [f32] {
        &self.set.qsum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the dequantized int8 activations.
    pub fn qsum16(&self, c: usize) -> &'a [f32] {
        &self.set.qsum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }

    /// Per 32-value sub-block of column `c`: the sum of the int8 activations.
    pub fn isum32(&self, c: usize) -> &'a [i32] {
        &self.set.isum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the int8 activations.
    pub fn isum16(&self, c: usize) -> &'a [i32] {
        &self.set.isum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }

    /// The activations the q8 path actually multiplies: `d * q` (f32).
    pub fn dequantized(&self, c: usize) -> Vec<f32> {
        let (q, d) = (self.q(c), self.d(c));
        (0..self.k).map(|i| d[i / 32] * q[i] as f32).collect()
    }
}

/// The int8 side of some whole columns of an [`Input`]: per column `stride`
/// int8 values, `subs` scales and 32-value sums, `2 * subs` 16-value sums.
struct Q8Columns<'a> {
    q: &'a mut [i8],
    d: &'a mut [f32],
    qsum32: &'a mut [f32],
    qsum16: &'a mut [f32],
    isum32: &'a mut [i32],
    isum16: &'a mut [i32],
}

impl<'a> Q8Columns<'a> {
    /// All columns of `set`.
    fn of(set: &'a mut Int8Set) -> Self {
        Q8Columns {
            q: &mut set.q,
            d: &mut set.d,
            qsum32: &mut set.qsum32,
            qsum16: &mut set.qsum16,
            isum32: &mut set.isum32,
            isum16: &mut set.isum16,
        }
    }

    /// The first `n` columns and the rest.
    fn split_at(self, n: usize, stride: usize, subs: usize) -> (Self, Self) {
        let (q, q_rest) = self.q.split_at_mut((n * stride).min(self.q.len()));
        let (d, d_rest) = self.d.split_at_mut((n * subs).min(self.d.len()));
        let (qsum32, qsum32_rest) = self.qsum32.split_at_mut((n * subs).min(self.qsum32.len()));
        let (qsum16, qsum16_rest) = self.qsum16.split_at_mut((2 * n * subs).min(self.qsum16.len()));
        let (isum32, isum32_rest) = self.isum32.split_at_mut((n * subs).min(self.isum32.len()));
        let (isum16, isum16_rest) = self.isum16.split_at_mut((2 * n * subs).min(self.isum16.len()));
        (
            Q8Columns { q, d, qsum32, qsum16, isum32, isum16 },
            Q8Columns {
                q: q_rest,
                d: d_rest,
                qsum32: qsum32_rest,
                qsum16: qsum16_rest,
                isum32: isum32_rest,
                isum16: isum16_rest,
            },
        )
    }

    /// Quantizes the columns of `x` (`stride` floats each) per `block` on
    /// the widest vectors this CPU allows (chosen once).
    fn quantize(self, x: &[f32], stride: usize, subs: usize, block: Int8Block) {
        static ISA: OnceLock<Isa> = OnceLock::new();
        match *ISA.get_or_init(cpu::best_isa) {
            // SAFETY: `best_isa` saw AVX-512 F/BW/VL on this CPU.
            Isa::Avx512 | Isa::Avx512Vnni => unsafe { self.quantize_avx512(x, stride, subs, block) },
            // SAFETY: `best_isa` saw AVX2 on this CPU.
            Isa::Avx2 => unsafe { self.quantize_avx2(x, stride, subs, block) },
            Isa::Scalar => self.quantize_with(x, stride, subs, block),
        }
    }

    /// [`quantize_with`](Self::quantize_with) in AVX-512 intrinsics, bit for
    /// bit: compiled from the portable loop, each value went through a
    /// scalar conversion and byte insert, and quantizing a prompt's
    /// activations took 8 % of its compute (`perf`, llama-1b Q4_K_M pp512).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    fn quantize_avx512(mut self, x: &[f32], stride: usize, subs: usize, block: Int8Block) {
        let sub_x = |at: usize| -> &[f32; 32] { x[at..at + 32].try_into().expect("32 values") };
        for c in 0..x.len() / stride {
            for (first, end) in blocks(subs, block) {
                let mut amax_bits = 0;
                for s in first..end {
                    // SAFETY: the CPU has AVX-512 F/BW/VL (this function's features).
                    amax_bits = amax_bits.max(unsafe { x86::amax_bits32(sub_x(c * stride + 32 * s)) });
                }
                let d = f32::from_bits(amax_bits) / 127.0;
                for s in first..end {
                    let at = c * stride + 32 * s;
                    let q: &mut [i8; 32] = (&mut self.q[at..at + 32]).try_into().expect("32 values");
                    // SAFETY: the CPU has AVX-512 F/BW/VL (this function's features).
                    let sums = unsafe { x86::quantize32(sub_x(at), q, d) };
                    self.store_sub(c * subs + s, d, sums);
                }
            }
        }
    }

    /// [`quantize_with`](Self::quantize_with) compiled for AVX2.
    #[target_feature(enable = "avx2,sse4.1")]
    fn quantize_avx2(self, x: &[f32], stride: usize, subs: usize, block: Int8Block) {
        self.quantize_with(x, stride, subs, block)
    }

    /// Stores sub-block `i`'s scale `d` and, from the sums of its two 16-value
    /// halves of int8 values, the sums the kernels need.
    #[inline(always)]
    fn store_sub(&mut self, i: usize, d: f32, [lo, hi]: [i32; 2]) {
        self.d[i] = d;
        self.qsum16[2 * i] = d * lo as f32;
        self.qsum16[2 * i + 1] = d * hi as f32;
        self.qsum32[i] = d * (lo + hi) as f32;
        self.isum16[2 * i] = lo;
        self.isum16[2 * i + 1] = hi;
        self.isum32[i] = lo + hi;
    }

    /// The int8 activations of every `block` of values: `d = max|x| / 127`,
    /// `q = round(x / d)` (half away from zero, on every ISA), and per
    /// 32-value sub-block the scale and the sums the kernels need.
    #[inline(always)]
    fn quantize_with(mut self, x: &[f32], stride: usize, subs: usize, block: Int8Block) {
        for c in 0..x.len() / stride {
            for (first, end) in blocks(subs, block) {
                let xs = &x[c * stride + 32 * first..c * stride + 32 * end];
                // max |x| over the bits (ordered like the values for
                // non-negative floats), so that it vectorizes; NaN is skipped
                // as `f32::max` skips it.
                let amax_bits = xs.iter().map(|v| if v.is_nan() { 0 } else { v.abs().to_bits() }).max().unwrap_or(0);
                let d = f32::from_bits(amax_bits) / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                for s in first..end {
                    let xs = &x[c * stride + 32 * s..c * stride + 32 * s + 32];
                    let q = &mut self.q[c * stride + 32 * s..c * stride + 32 * s + 32];
                    let mut half_sums = [0i32; 2];
                    for ((q, xs), sum) in q.chunks_exact_mut(16).zip(xs.chunks_exact(16)).zip(&mut half_sums) {
                        for (q, &v) in q.iter_mut().zip(xs) {
                            // Non-finite inputs become 0, as a NaN cannot be an int8.
                            let r = if v.is_finite() { (v * id).round().clamp(-127.0, 127.0) } else { 0.0 };
                            *q = r as i8;
                            *sum += r as i32;
                        }
                    }
                    self.store_sub(c * subs + s, d, half_sums);
                }
            }
        }
    }
}

/// The blocks of a column of `subs` sub-blocks: `(first, end)` sub-block
/// ranges of `block`'s length (the last one shorter when `subs` does not
/// divide: the column's zeroed tail).
fn blocks(subs: usize, block: Int8Block) -> impl Iterator<Item = (usize, usize)> {
    let per = block.values() / 32;
    (0..subs).step_by(per).map(move |first| (first, (first + per).min(subs)))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The 32 values of `xs` in two vectors, and the bits of their absolute values.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[inline(always)]
    unsafe fn load32(xs: &[f32; 32]) -> ([__m512; 2], [__m512i; 2]) {
        // SAFETY: the loads read the 32 floats of `xs`; the instructions are
        // the caller's guarantee.
        unsafe {
            let v = [_mm512_loadu_ps(xs.as_ptr()), _mm512_loadu_ps(xs.as_ptr().add(16))];
            let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
            let abs_bits = [
                _mm512_and_si512(_mm512_castps_si512(v[0]), abs_mask),
                _mm512_and_si512(_mm512_castps_si512(v[1]), abs_mask),
            ];
            (v, abs_bits)
        }
    }

    /// The bits of `max |x|` over one 32-value sub-block, NaN counted as 0,
    /// as [`super::Q8Columns::quantize_with`] finds them.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[inline(always)]
    pub(super) unsafe fn amax_bits32(xs: &[f32; 32]) -> u32 {
        // SAFETY: `load32` reads the 32 floats of `xs`; the instructions are
        // the caller's guarantee.
        unsafe {
            let (_, abs_bits) = load32(xs);
            let infinity = _mm512_set1_epi32(0x7F80_0000);
            // NaN (bits above infinity's) counted as 0.
            let not_nan = [
                _mm512_maskz_mov_epi32(_mm512_cmple_epu32_mask(abs_bits[0], infinity), abs_bits[0]),
                _mm512_maskz_mov_epi32(_mm512_cmple_epu32_mask(abs_bits[1], infinity), abs_bits[1]),
            ];
            _mm512_reduce_max_epu32(_mm512_max_epu32(not_nan[0], not_nan[1]))
        }
    }

    /// One 32-value sub-block quantized with scale `d` as
    /// [`super::Q8Columns::quantize_with`] does: returns the sums of the two
    /// 16-value halves of `q`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VL.
    #[inline(always)]
    pub(super) unsafe fn quantize32(xs: &[f32; 32], q: &mut [i8; 32], d: f32) -> [i32; 2] {
        // SAFETY: the loads read the 32 floats of `xs`, the stores write the
        // 32 bytes of `q`; the instructions are the caller's guarantee.
        unsafe {
            // (No closures here: they would not inherit the target features.)
            let (v, abs_bits) = load32(xs);
            let infinity = _mm512_set1_epi32(0x7F80_0000);
            let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let mut sums = [0i32; 2];
            for h in 0..2 {
                let y = _mm512_mul_ps(v[h], id);
                // Half away from zero: truncate, then step away from zero
                // when the (exact) remainder is at least one half.
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let rest = _mm512_abs_ps(_mm512_sub_ps(y, t));
                let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(rest, _mm512_set1_ps(0.5));
                let one = _mm512_or_ps(_mm512_and_ps(y, _mm512_set1_ps(-0.0)), _mm512_set1_ps(1.0));
                let r = _mm512_mask_add_ps(t, away, t, one);
                let r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0)), _mm512_set1_ps(127.0));
                // Non-finite inputs, and a NaN product, become 0.
                let keep = _mm512_cmplt_epu32_mask(abs_bits[h], infinity) & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(y, y);
                let i = _mm512_maskz_cvttps_epi32(keep, r);
                _mm_storeu_si128(q.as_mut_ptr().add(16 * h).cast(), _mm512_cvtepi32_epi8(i));
                sums[h] = _mm512_reduce_add_epi32(i);
            }
            sums
        }
    }
}

fn resize_zeroed<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 quantizer gives the portable loop's bytes and sums bit for
    /// bit, on values that include halves, NaN, infinities, subnormals and
    /// sub-blocks whose inverse scale overflows.
    #[test]
    fn avx512_quantizes_like_the_portable_loop() {
        if !["avx512f", "avx512bw", "avx512vl"].iter().all(|f| cpu::detect().has(f)) {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        let subs = 24;
        let mut x: Vec<f32> = (0..32 * subs).map(|i| ((i * 7919) % 1013) as f32 / 8.0 - 63.0).collect();
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-45, -3e-39, 0.5, -0.5, 1.5];
        for (i, v) in specials.iter().enumerate() {
            x[32 + 3 * i] = *v;
        }
        // Sub-blocks of only tiny values (1/d overflows), only zeros, one NaN.
        x[64..96].fill(2e-38);
        x[96..128].fill(0.0);
        x[128..160].fill(1e-40);
        x[160..192].fill(f32::NAN);
        let run = |avx512: bool, block: Int8Block| {
            let (mut q, mut d) = (vec![0i8; x.len()], vec![0.0f32; subs]);
            let (mut qsum32, mut qsum16) = (vec![0.0f32; subs], vec![0.0f32; 2 * subs]);
            let (mut isum32, mut isum16) = (vec![0i32; subs], vec![0i32; 2 * subs]);
            let cols = Q8Columns {
                q: &mut q,
                d: &mut d,
                qsum32: &mut qsum32,
                qsum16: &mut qsum16,
                isum32: &mut isum32,
                isum16: &mut isum16,
            };
            if avx512 {
                // SAFETY: the CPU has AVX-512 F/BW/VL (checked above).
                unsafe { cols.quantize_avx512(&x, x.len(), subs, block) }
            } else {
                cols.quantize_with(&x, x.len(), subs, block)
            }
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (q, bits(&d), bits(&qsum32), bits(&qsum16), isum32, isum16)
        };
        for block in Int8Block::ALL {
            assert_eq!(run(true, block), run(false, block), "{block:?}");
        }
    }

    /// Quantizing on several threads gives exactly the single-thread
    /// result, for column counts that do and do not divide among them; the
    /// quantization rounds half away from zero and maps NaN to 0.
    #[test]
    fn threads_quantize_like_one_thread() {
        let k = 200;
        for columns in [1, 2, 3, 5, 8] {
            let mut x: Vec<f32> = (0..k * columns).map(|i| ((i * 7919) % 1013) as f32 / 50.0 - 10.0).collect();
            x[3] = f32::NAN;
            let mut one = Input::new();
            one.prepare(&x, k, columns, true).unwrap();
            for threads in [2, 3] {
                let pool = Threads::new(threads).unwrap();
                let mut many = Input::new();
                many.prepare_on(&x, k, columns, true, Some(&pool)).unwrap();
                for (block, c) in Int8Block::ALL.into_iter().flat_map(|b| (0..columns).map(move |c| (b, c))) {
                    let (one, many) = (one.int8(block), many.int8(block));
                    assert_eq!(one.q(c), many.q(c), "columns {columns} threads {threads} {block:?} col {c}");
                    assert_eq!(one.d(c), many.d(c));
                    assert_eq!(one.qsum16(c), many.qsum16(c));
                    assert_eq!(one.qsum32(c), many.qsum32(c));
                    assert_eq!(one.isum16(c), many.isum16(c));
                    assert_eq!(one.isum32(c), many.isum32(c));
                }
            }
            assert_eq!(one.int8(Int8Block::Of32).q(0)[3], 0, "NaN becomes 0");
            assert_eq!(one.int8(Int8Block::Of256).q(0)[3], 0, "NaN becomes 0");
        }
        // Half away from zero: with max |x| = 127, d = 1 and 2.5 -> 3, -2.5 -> -3.
        let mut x = vec![0.0f32; 32];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -2.5;
        let mut input = Input::new();
        input.prepare(&x, 32, 1, true).unwrap();
        assert_eq!(&input.int8(Int8Block::Of32).q(0)[..3], &[127, 3, -3]);
    }

    /// Per 256 values, one scale serves eight sub-blocks: a sub-block of
    /// small values is quantized with the scale of the block's largest.
    #[test]
    fn one_scale_per_256_values() {
        let k = 300;
        let mut x: Vec<f32> = (0..k).map(|i| (i % 7) as f32 / 10.0).collect();
        x[200] = 127.0;
        x[260] = -12.7;
        let mut input = Input::new();
        input.prepare(&x, k, 1, true).unwrap();
        let (per32, per256) = (input.int8(Int8Block::Of32), input.int8(Int8Block::Of256));
        assert!(per256.d(0)[..8].iter().all(|&d| d == 1.0), "{:?}", &per256.d(0)[..8]);
        assert_eq!(per256.q(0)[200], 127);
        assert_eq!(per256.q(0)[1], 0, "0.1 rounds to 0 with d = 1");
        assert_eq!(per32.q(0)[1], 127 / 6, "0.1 of a sub-block whose max is 0.6");
        // The second block: 44 values and the zeroed tail.
        assert!((per256.d(0)[8] - 0.1).abs() < 1e-7, "{}", per256.d(0)[8]);
        assert_eq!(per256.q(0)[260], -127);
        assert_eq!(per256.isum32(0)[0], per256.q(0)[..32].iter().map(|&q| q as i32).sum::<i32>());
    }
}
