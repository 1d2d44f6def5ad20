//! AVX2 drivers (with FMA and F16C).
//!
//! Dense: the same row-slot layout as AVX-512, read as two 256-bit halves
//! per step; lanes `4j..4j+4` of a half belong to its slot `j`.

use std::arch::x86_64::*;

use std::marker::PhantomData;

use super::{
    ChunkScales, StepKernel, StepScales, TileRunner, drive, slot_half_ints, slot_half_values, slot_ints, slot_values,
    walk_tiles, write_rows,
};
use crate::kernel::{KernelArgs, KernelFormat};

/// Loads the 32 bytes at `p + 32 * half` of a plane whose real length is
/// `len` bytes (a multiple of 16), zero beyond it.
#[inline(always)]
unsafe fn load_half<const FULL: bool>(p: *const u8, len: usize, half: usize) -> __m256i {
    // SAFETY: the caller guarantees `len` readable bytes at `p`.
    unsafe {
        let at = p.add(32 * half);
        if FULL {
            _mm256_loadu_si256(at.cast())
        } else {
            let dwords = (len.saturating_sub(32 * half)).min(32) as i32 / 4;
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(dwords), idx);
            _mm256_maskload_epi32(at.cast(), mask)
        }
    }
}

/// Two-bit fields of slots `2h` and `2h + 1` from a 16-byte crumb plane.
#[inline(always)]
unsafe fn crumbs(plane: *const u8, half: usize) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe {
        let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(plane.cast()));
        let (s0, s1) = (4 * half as i32, 4 * half as i32 + 2);
        let shift = _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1);
        _mm256_and_si256(_mm256_srlv_epi32(v, shift), _mm256_set1_epi8(3))
    }
}

/// One bit per byte for slots `2h` and `2h + 1`: byte `k` = `value` where
/// bit `32h + k` of the u64 at `plane` is set.
#[inline(always)]
unsafe fn bits(plane: *const u8, half: usize, value: i8) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes.
    unsafe {
        let mask = (plane.cast::<u64>().read_unaligned() >> (32 * half)) as u32;
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(mask as i32),
            _mm256_setr_epi8(
                0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
            ),
        );
        let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
        _mm256_and_si256(set, _mm256_set1_epi8(value))
    }
}

/// The nibble plane of half a step: (low nibbles, high nibbles).
#[inline(always)]
unsafe fn nibbles<const FULL: bool>(p: *const u8, slots: usize, half: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees `16 * slots` readable bytes.
    unsafe {
        let v = load_half::<FULL>(p, 16 * slots, half);
        let low = _mm256_set1_epi8(0x0F);
        (_mm256_and_si256(v, low), _mm256_and_si256(_mm256_srli_epi16::<4>(v), low))
    }
}

/// Unpacks half `half` of a step (slots `2h`, `2h + 1`): (lo, hi) codes.
#[inline(always)]
unsafe fn unpack<const FULL: bool>(bits_per_code: u32, p: *const u8, slots: usize, half: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees the step's code bytes at `p`.
    unsafe {
        match bits_per_code {
            2 => (crumbs(p, half), crumbs(p.add(16), half)),
            3 => {
                let (lo, hi) = (crumbs(p, half), crumbs(p.add(16), half));
                (_mm256_or_si256(lo, bits(p.add(32), half, 4)), _mm256_or_si256(hi, bits(p.add(40), half, 4)))
            }
            4 => nibbles::<FULL>(p, slots, half),
            5 => {
                let (lo, hi) = nibbles::<FULL>(p, slots, half);
                let b = p.add(16 * slots);
                (_mm256_or_si256(lo, bits(b, half, 16)), _mm256_or_si256(hi, bits(b.add(8), half, 16)))
            }
            6 => {
                let (lo, hi) = nibbles::<FULL>(p, slots, half);
                let c = p.add(16 * slots);
                let clo = _mm256_slli_epi16::<4>(crumbs(c, half));
                let chi = _mm256_slli_epi16::<4>(crumbs(c.add(16), half));
                (_mm256_or_si256(lo, clo), _mm256_or_si256(hi, chi))
            }
            _ => (load_half::<FULL>(p, 16 * slots, half), load_half::<FULL>(p.add(16 * slots), 16 * slots, half)),
        }
    }
}

/// `acc[l] += sum_{i<4} codes[4l+i] * x[4l+i]`.
#[inline(always)]
unsafe fn dot_product<const WIDE: bool>(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    // SAFETY: AVX2, guaranteed by the caller.
    unsafe {
        if !WIDE {
            let pairs = _mm256_maddubs_epi16(codes, x);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        } else {
            let c0 = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(codes));
            let c1 = _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(codes));
            let x0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x));
            let x1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(x));
            let (m0, m1) = (_mm256_madd_epi16(c0, x0), _mm256_madd_epi16(c1, x1));
            let a = _mm256_permute2x128_si256::<0x20>(m0, m1);
            let b = _mm256_permute2x128_si256::<0x31>(m0, m1);
            _mm256_add_epi32(acc, _mm256_add_epi32(a, b))
        }
    }
}

/// The int8 activations of slots `2h`, `2h + 1` of the step at slot `g`.
#[inline(always)]
unsafe fn activations<const R: usize>(q: *const i8, g: usize, half: usize) -> (__m256i, __m256i) {
    // SAFETY: the caller guarantees reads up to 128 bytes past the step's
    // first sub-block (the input's zero tail).
    unsafe {
        match R {
            1 => {
                let at = q.add(32 * (g + 2 * half));
                let (a, b) = (_mm256_loadu_si256(at.cast()), _mm256_loadu_si256(at.add(32).cast()));
                (_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
            }
            _ => {
                let sub = if R == 2 { g / 2 + half } else { g / R };
                let at = q.add(32 * sub);
                (
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(at.cast())),
                    _mm256_broadcastsi128_si256(_mm_loadu_si128(at.add(16).cast())),
                )
            }
        }
    }
}

/// Lanes `2h` and `2h + 1` of `v`, each repeated four times.
#[inline(always)]
unsafe fn expand(v: __m128, half: usize) -> __m256 {
    // SAFETY: AVX2, guaranteed by the caller.
    unsafe {
        let (a, b) = (2 * half as i32, 2 * half as i32 + 1);
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_setr_epi32(a, a, a, a, b, b, b, b))
    }
}

const fn groups(r: usize) -> usize {
    if r > 2 { r / 2 } else { 1 }
}

const fn min_groups(r: usize) -> usize {
    if r > 4 { r / 4 } else { 1 }
}

/// Dense, int8 activations.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX2, FMA and F16C.
#[inline(always)]
pub(crate) unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract (16-row variants read the interleaved layout).
    unsafe {
        if R == crate::pack::INTERLEAVED_ROWS {
            super::interleaved_avx2::dense_q8::<F, C>(args)
        } else {
            drive::<Q8Tile<F, R, C>, Q8Tile<F, R, 1>, C>(args)
        }
    }
}

#[derive(Copy, Clone)]
/// The accumulators of one tile and column group of the int8 path: one
/// vector per half-step position, and per-slot min terms.
struct Q8Tile<F, const R: usize, const C: usize> {
    q: [*const i8; C],
    d: [*const f32; C],
    sums: [*const f32; C],
    isums: [*const i32; C],
    acc: [[__m256; C]; 4],
    macc: [[__m128; C]; 2],
    _format: PhantomData<F>,
}

impl<F: KernelFormat, const R: usize, const C: usize> TileRunner for Q8Tile<F, R, C> {
    #[inline(always)]
    unsafe fn run<const N: usize>(args: &KernelArgs<'_>, tiles: [usize; N], c0: usize, scales: &mut [ChunkScales; 2]) {
        let (m, input) = (args.matrix, args.input);
        // SAFETY: AVX, guaranteed by the caller.
        let (acc, macc) = unsafe { ([[_mm256_setzero_ps(); C]; 4], [[_mm_setzero_ps(); C]; 2]) };
        let mut t = Q8Tile::<F, R, C> {
            q: [std::ptr::null(); C],
            d: [std::ptr::null(); C],
            sums: [std::ptr::null(); C],
            isums: [std::ptr::null(); C],
            acc,
            macc,
            _format: PhantomData,
        };
        let input = input.int8(F::INT8_BLOCK);
        for c in 0..C {
            t.q[c] = input.q(c0 + c).as_ptr();
            t.d[c] = input.d(c0 + c).as_ptr();
            t.sums[c] = if F::SPLIT { input.qsum16(c0 + c) } else { input.qsum32(c0 + c) }.as_ptr();
            t.isums[c] = if F::SPLIT { input.isum16(c0 + c) } else { input.isum32(c0 + c) }.as_ptr();
        }
        // SAFETY: the tile lies within the packed data (the layout's
        // invariant); AVX2 is guaranteed by the caller.
        unsafe {
            let t = walk_tiles::<F, R, Self, N>(m, tiles, t, scales);
            for (t, &tile) in t.iter().zip(&tiles) {
                for c in 0..C {
                    let mut out = [0.0f32; 8];
                    for a in 0..groups(R) {
                        let mut lanes = [0.0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), t.acc[a][c]);
                        for j in 0..2 {
                            out[(2 * a + j) % R] += lanes[4 * j..4 * j + 4].iter().sum::<f32>();
                        }
                    }
                    add_mins::<R, C>(&mut out, &t.macc, c);
                    write_rows::<R>(args, tile, c0 + c, &out);
                }
            }
        }
    }
}

impl<F: KernelFormat, const R: usize, const C: usize> StepKernel for Q8Tile<F, R, C> {
    #[inline(always)]
    unsafe fn step(&mut self, p: *const u8, g: usize, slots: usize, sc: StepScales) {
        // SAFETY: the step's codes are at `p`; the input columns are padded
        // for every read below; AVX2 is guaranteed by the caller.
        unsafe {
            for half in 0..2 {
                if 2 * half >= slots {
                    break;
                }
                let a = (g / 2 + half) % groups(R);
                let (lo, hi) = if slots == 4 {
                    unpack::<true>(F::CODE_BITS, p, 4, half)
                } else {
                    unpack::<false>(F::CODE_BITS, p, slots, half)
                };
                for c in 0..C {
                    let (xlo, xhi) = activations::<R>(self.q[c], g, half);
                    let dx = slot_values::<R>(self.d[c], g);
                    let acc = &mut self.acc[a][c];
                    if F::SPLIT {
                        let (zlo, zhi) = match F::OFFSET {
                            Some(o) if !signed_bytes::<F>() => {
                                let (ilo, ihi) = slot_half_ints::<R>(self.isums[c], g);
                                (offset_lanes(o, ilo, half), offset_lanes(o, ihi, half))
                            }
                            _ => (_mm256_setzero_si256(), _mm256_setzero_si256()),
                        };
                        let (ilo, ihi) = (dot::<F>(zlo, lo, xlo), dot::<F>(zhi, hi, xhi));
                        let slo = expand(_mm_mul_ps(sc.s_lo, dx), half);
                        let shi = expand(_mm_mul_ps(sc.s_hi, dx), half);
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ilo), slo, *acc);
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ihi), shi, *acc);
                    } else {
                        let z = match F::OFFSET {
                            Some(o) if !signed_bytes::<F>() => offset_lanes(o, slot_ints::<R>(self.isums[c], g), half),
                            _ => _mm256_setzero_si256(),
                        };
                        let i = if F::CODE_BITS <= 6 {
                            // A pair of products is at most 2 * 63 * 127 =
                            // 16,002: the lo and hi pairs add up in 16 bits.
                            let pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
                            _mm256_add_epi32(z, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
                        } else {
                            dot::<F>(dot::<F>(z, lo, xlo), hi, xhi)
                        };
                        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), expand(_mm_mul_ps(sc.s_lo, dx), half), *acc);
                    }
                }
            }
            if F::OFFSET.is_none() {
                let am = (g / 4) % min_groups(R);
                for c in 0..C {
                    accumulate_mins::<F, R>(&mut self.macc[am][c], sc, self.sums[c], g);
                }
            }
        }
    }
}

/// Whether `F`'s codes are signed bytes stored with 128 added (Q8_0): their
/// products are formed signed, and no offset is subtracted afterwards.
const fn signed_bytes<F: KernelFormat>() -> bool {
    F::CODE_BITS == 8 && matches!(F::OFFSET, Some(128))
}

/// The dot product for `F`'s code width. Signed bytes ([`signed_bytes`])
/// take `vpmaddubsw` of `|w|` and `x` with `w`'s sign (llama.cpp's way):
/// `|w| <= 128` and `|x| <= 127` keep a pair within 16 bits, and it takes
/// six instructions where widening to 16 bits takes twelve.
#[inline(always)]
unsafe fn dot<F: KernelFormat>(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    // SAFETY: forwarded from the caller.
    unsafe {
        if signed_bytes::<F>() {
            let w = _mm256_xor_si256(codes, _mm256_set1_epi8(-128));
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        } else if F::CODE_BITS == 8 {
            dot_product::<true>(acc, codes, x)
        } else {
            dot_product::<false>(acc, codes, x)
        }
    }
}

/// `-offset * sums[2h + j]` in lane `4j` (`j` = 0, 1), zero elsewhere: the
/// starting value of an integer accumulator that subtracts a symmetric
/// format's offset exactly.
#[inline(always)]
unsafe fn offset_lanes(offset: i32, sums: __m128i, half: usize) -> __m256i {
    // SAFETY: AVX2, guaranteed by the caller.
    unsafe {
        let v = _mm_mullo_epi32(sums, _mm_set1_epi32(-offset));
        let (a, b) = (2 * half as i32, 2 * half as i32 + 1);
        let spread = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(v), _mm256_setr_epi32(a, a, a, a, b, b, b, b));
        _mm256_and_si256(spread, _mm256_setr_epi32(-1, 0, 0, 0, -1, 0, 0, 0))
    }
}

/// `macc += min * (sum of activations)` for the four slots of a step.
#[inline(always)]
unsafe fn accumulate_mins<F: KernelFormat, const R: usize>(
    macc: &mut __m128,
    sc: StepScales,
    sums: *const f32,
    g: usize,
) {
    // SAFETY: the sums arrays are padded for these reads; FMA is guaranteed by the caller.
    unsafe {
        if F::SPLIT {
            let (qlo, qhi) = slot_half_values::<R>(sums, g);
            *macc = _mm_fmadd_ps(sc.m_lo, qlo, *macc);
            *macc = _mm_fmadd_ps(sc.m_hi, qhi, *macc);
        } else {
            *macc = _mm_fmadd_ps(sc.m_lo, slot_values::<R>(sums, g), *macc);
        }
    }
}

/// Adds the per-slot min terms of column `c` to the rows they belong to.
#[inline(always)]
fn add_mins<const R: usize, const C: usize>(out: &mut [f32; 8], macc: &[[__m128; C]; 2], c: usize) {
    for (a, m) in macc.iter().enumerate().take(min_groups(R)) {
        let mut mins = [0.0f32; 4];
        // SAFETY: a plain store of a vector into an array of its size (SSE).
        unsafe { _mm_storeu_ps(mins.as_mut_ptr(), m[c]) };
        for (j, v) in mins.iter().enumerate() {
            out[(4 * a + j) % R] += v;
        }
    }
}

/// Dense, f32 activations.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX2, FMA and F16C.
#[inline(always)]
pub(crate) unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { drive::<F32Tile<F, R, C>, F32Tile<F, R, 1>, C>(args) }
}

/// The accumulators of the f32 path: one vector per row.
#[derive(Copy, Clone)]
struct F32Tile<F, const R: usize, const C: usize> {
    x: [*const f32; C],
    acc: [[__m256; C]; 8],
    _format: PhantomData<F>,
}

impl<F: KernelFormat, const R: usize, const C: usize> TileRunner for F32Tile<F, R, C> {
    #[inline(always)]
    unsafe fn run<const N: usize>(args: &KernelArgs<'_>, tiles: [usize; N], c0: usize, scales: &mut [ChunkScales; 2]) {
        let (m, input) = (args.matrix, args.input);
        // SAFETY: AVX, guaranteed by the caller.
        let acc = unsafe { [[_mm256_setzero_ps(); C]; 8] };
        let mut t = F32Tile::<F, R, C> { x: [std::ptr::null(); C], acc, _format: PhantomData };
        for c in 0..C {
            t.x[c] = input.x(c0 + c).as_ptr();
        }
        // SAFETY: as in `Q8Tile::run`.
        unsafe {
            let t = walk_tiles::<F, R, Self, N>(m, tiles, t, scales);
            for (t, &tile) in t.iter().zip(&tiles) {
                for c in 0..C {
                    let mut out = [0.0f32; 8];
                    for (r, o) in out.iter_mut().enumerate().take(R) {
                        let mut lanes = [0.0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), t.acc[r][c]);
                        *o = lanes.iter().sum();
                    }
                    write_rows::<R>(args, tile, c0 + c, &out);
                }
            }
        }
    }
}

impl<F: KernelFormat, const R: usize, const C: usize> StepKernel for F32Tile<F, R, C> {
    #[inline(always)]
    unsafe fn step(&mut self, p: *const u8, g: usize, slots: usize, sc: StepScales) {
        // SAFETY: as in `Q8Tile::step`.
        unsafe {
            let mut scale = [[0.0f32; 4]; 4];
            _mm_storeu_ps(scale[0].as_mut_ptr(), sc.s_lo);
            _mm_storeu_ps(scale[1].as_mut_ptr(), sc.m_lo);
            _mm_storeu_ps(scale[2].as_mut_ptr(), sc.s_hi);
            _mm_storeu_ps(scale[3].as_mut_ptr(), sc.m_hi);
            for half in 0..2 {
                if 2 * half >= slots {
                    break;
                }
                let (lo, hi) = if slots == 4 {
                    unpack::<true>(F::CODE_BITS, p, 4, half)
                } else {
                    unpack::<false>(F::CODE_BITS, p, slots, half)
                };
                for k in 0..2 {
                    let j = 2 * half + k;
                    if j >= slots {
                        break;
                    }
                    let (row, sub) = ((g + j) % R, (g + j) / R);
                    let (l, h) = if k == 0 {
                        (_mm256_castsi256_si128(lo), _mm256_castsi256_si128(hi))
                    } else {
                        (_mm256_extracti128_si256::<1>(lo), _mm256_extracti128_si256::<1>(hi))
                    };
                    // Each weight exactly as `dequantize` makes it: scale * code + min.
                    let (s_lo, m_lo) = (_mm256_set1_ps(scale[0][j]), _mm256_set1_ps(scale[1][j]));
                    let (s_hi, m_hi) = (_mm256_set1_ps(scale[2][j]), _mm256_set1_ps(scale[3][j]));
                    let w = [
                        _mm256_fmadd_ps(to_f32(l), s_lo, m_lo),
                        _mm256_fmadd_ps(to_f32(_mm_srli_si128::<8>(l)), s_lo, m_lo),
                        _mm256_fmadd_ps(to_f32(h), s_hi, m_hi),
                        _mm256_fmadd_ps(to_f32(_mm_srli_si128::<8>(h)), s_hi, m_hi),
                    ];
                    for c in 0..C {
                        let xs = self.x[c].add(32 * sub);
                        let acc = &mut self.acc[row][c];
                        for (i, w) in w.iter().enumerate() {
                            *acc = _mm256_fmadd_ps(*w, _mm256_loadu_ps(xs.add(8 * i)), *acc);
                        }
                    }
                }
            }
        }
    }
}

/// The low eight bytes as floats.
#[inline(always)]
unsafe fn to_f32(v: __m128i) -> __m256 {
    // SAFETY: AVX2, guaranteed by the caller.
    unsafe { _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)) }
}

/// Column-sparse, f32 activations.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX2.
#[inline(always)]
pub(crate) unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { super::colsparse::colsparse_f32_avx2::<F>(args) }
}
