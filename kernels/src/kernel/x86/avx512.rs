//! AVX-512 drivers (F/BW/VL/DQ; VNNI where the dot product says so).
//!
//! Dense: a 512-bit vector holds one step of four slots; lanes `4j..4j+4`
//! belong to slot `j`, whose row is fixed for the whole tile, so the
//! accumulators need no shuffling until the end of the tile.

use std::arch::x86_64::*;

use std::marker::PhantomData;

use super::{
    ChunkScales, StepKernel, StepScales, TileRunner, drive, slot_half_ints, slot_half_values, slot_ints, slot_values,
    walk_tiles, write_rows,
};
use crate::kernel::{HeaderKind, KernelArgs, KernelFormat};

/// An int8 dot product: `acc[l] += sum_{i<4} codes[4l+i] * x[4l+i]`, codes
/// unsigned, activations signed.
pub(crate) trait Dot512: Copy {
    /// # Safety
    /// The CPU has the instructions of the implementation.
    unsafe fn dot<const WIDE: bool>(acc: __m512i, codes: __m512i, x: __m512i) -> __m512i;
}

/// `vpdpbusd` (AVX-512 VNNI).
#[derive(Copy, Clone, Debug)]
pub(crate) struct VnniDot;
/// `vpmaddubsw` + `vpmaddwd` (AVX-512 BW); 8-bit codes widen to 16 bits
/// first, because `vpmaddubsw` would saturate.
#[derive(Copy, Clone, Debug)]
pub(crate) struct MaddDot;

impl Dot512 for VnniDot {
    #[inline(always)]
    unsafe fn dot<const WIDE: bool>(acc: __m512i, codes: __m512i, x: __m512i) -> __m512i {
        // SAFETY: the caller guarantees AVX-512 VNNI.
        unsafe { _mm512_dpbusd_epi32(acc, codes, x) }
    }
}

impl Dot512 for MaddDot {
    #[inline(always)]
    unsafe fn dot<const WIDE: bool>(acc: __m512i, codes: __m512i, x: __m512i) -> __m512i {
        // SAFETY: the caller guarantees AVX-512 BW.
        unsafe {
            if !WIDE {
                // Codes below 128: pairs of products fit in i16.
                let pairs = _mm512_maddubs_epi16(codes, x);
                _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
            } else {
                let c0 = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(codes));
                let c1 = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(codes));
                let x0 = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(x));
                let x1 = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(x));
                // m0: slots 0 and 1 (8 lanes each), m1: slots 2 and 3.
                let (m0, m1) = (_mm512_madd_epi16(c0, x0), _mm512_madd_epi16(c1, x1));
                let a = _mm512_shuffle_i32x4::<0b10_00_10_00>(m0, m1);
                let b = _mm512_shuffle_i32x4::<0b11_01_11_01>(m0, m1);
                _mm512_add_epi32(acc, _mm512_add_epi32(a, b))
            }
        }
    }
}

/// Loads `bytes` (a multiple of 16, at most 64) bytes, zero-extended.
#[inline(always)]
unsafe fn load_bytes<const FULL: bool>(p: *const u8, bytes: usize) -> __m512i {
    // SAFETY: the caller guarantees `bytes` readable bytes at `p`.
    unsafe {
        if FULL { _mm512_loadu_si512(p.cast()) } else { _mm512_maskz_loadu_epi8(u64::MAX >> (64 - bytes), p.cast()) }
    }
}

/// Two-bit fields: byte `16j + i` = bits `2j..2j+2` of `plane[i]` (16 bytes).
#[inline(always)]
unsafe fn crumbs(plane: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe {
        let v = _mm512_broadcast_i32x4(_mm_loadu_si128(plane.cast()));
        let shift = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
        _mm512_and_si512(_mm512_srlv_epi32(v, shift), _mm512_set1_epi8(3))
    }
}

/// One bit per byte: byte `k` = `value` where bit `k` of the u64 at `plane`.
#[inline(always)]
unsafe fn bits(plane: *const u8, value: i8) -> __m512i {
    // SAFETY: the caller guarantees 8 readable bytes.
    unsafe {
        let mask = plane.cast::<u64>().read_unaligned();
        _mm512_maskz_mov_epi8(mask, _mm512_set1_epi8(value))
    }
}

/// The nibble plane of a step: (low nibbles, high nibbles).
#[inline(always)]
unsafe fn nibbles<const FULL: bool>(p: *const u8, slots: usize) -> (__m512i, __m512i) {
    // SAFETY: the caller guarantees `16 * slots` readable bytes.
    unsafe {
        let v = load_bytes::<FULL>(p, 16 * slots);
        let low = _mm512_set1_epi8(0x0F);
        (_mm512_and_si512(v, low), _mm512_and_si512(_mm512_srli_epi16::<4>(v), low))
    }
}

/// Unpacks the codes of one step: (lo, hi), byte `16j + i` = code `i`
/// (lo) or `16 + i` (hi) of slot `j`. `slots` real slots; the rest are zero.
#[inline(always)]
unsafe fn unpack<const FULL: bool>(bits_per_code: u32, p: *const u8, slots: usize) -> (__m512i, __m512i) {
    // SAFETY: the caller guarantees the step's code bytes at `p`.
    unsafe {
        match bits_per_code {
            2 => (crumbs(p), crumbs(p.add(16))),
            3 => {
                let (lo, hi) = (crumbs(p), crumbs(p.add(16)));
                (_mm512_or_si512(lo, bits(p.add(32), 4)), _mm512_or_si512(hi, bits(p.add(40), 4)))
            }
            4 => nibbles::<FULL>(p, slots),
            5 => {
                let (lo, hi) = nibbles::<FULL>(p, slots);
                let b = p.add(16 * slots);
                (_mm512_or_si512(lo, bits(b, 16)), _mm512_or_si512(hi, bits(b.add(8), 16)))
            }
            6 => {
                let (lo, hi) = nibbles::<FULL>(p, slots);
                let c = p.add(16 * slots);
                let (clo, chi) = (_mm512_slli_epi16::<4>(crumbs(c)), _mm512_slli_epi16::<4>(crumbs(c.add(16))));
                (_mm512_or_si512(lo, clo), _mm512_or_si512(hi, chi))
            }
            _ => (load_bytes::<FULL>(p, 16 * slots), load_bytes::<FULL>(p.add(16 * slots), 16 * slots)),
        }
    }
}

/// The int8 activations of the four slots of the step starting at slot `g`:
/// (lo, hi), matching the layout of [`unpack`].
#[inline(always)]
unsafe fn activations<const R: usize>(q: *const i8, g: usize) -> (__m512i, __m512i) {
    // SAFETY: the caller guarantees `q` is readable 128 bytes past the
    // step's first sub-block (the input's zero tail).
    unsafe {
        match R {
            1 => {
                let (a, b) = (_mm512_loadu_si512(q.add(32 * g).cast()), _mm512_loadu_si512(q.add(32 * g + 64).cast()));
                let lo = _mm512_permutex2var_epi64(a, _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0), b);
                let hi = _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2), b);
                (lo, hi)
            }
            2 => {
                let a = _mm512_loadu_si512(q.add(32 * (g / 2)).cast());
                (_mm512_shuffle_i64x2::<0b10_10_00_00>(a, a), _mm512_shuffle_i64x2::<0b11_11_01_01>(a, a))
            }
            _ => {
                let at = q.add(32 * (g / R));
                (
                    _mm512_broadcast_i32x4(_mm_loadu_si128(at.cast())),
                    _mm512_broadcast_i32x4(_mm_loadu_si128(at.add(16).cast())),
                )
            }
        }
    }
}

/// Repeats each of four lanes four times.
#[inline(always)]
unsafe fn expand(v: __m128) -> __m512 {
    // SAFETY: AVX-512 F, guaranteed by the caller.
    unsafe {
        let idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(v))
    }
}

/// Accumulator groups: a tile of 8 rows alternates two groups of 4.
const GROUPS: usize = 2;

const fn groups(r: usize) -> usize {
    if r > 4 { r / 4 } else { 1 }
}

/// Dense, int8 activations.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX-512 (and VNNI for [`VnniDot`]).
#[inline(always)]
pub(crate) unsafe fn dense_q8<F: KernelFormat, D: Dot512, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract (16-row variants read the interleaved layout).
    unsafe {
        if R == crate::pack::INTERLEAVED_ROWS {
            super::interleaved::dense_q8::<F, D, C>(args)
        } else {
            drive::<Q8Tile<F, D, R, C>, Q8Tile<F, D, R, 1>, C>(args)
        }
    }
}

/// The accumulators of one tile and column group of the int8 path.
#[derive(Copy, Clone)]
struct Q8Tile<F, D, const R: usize, const C: usize> {
    q: [*const i8; C],
    d: [*const f32; C],
    sums: [*const f32; C],
    isums: [*const i32; C],
    acc: [[__m512; C]; GROUPS],
    macc: [[__m128; C]; GROUPS],
    _types: PhantomData<(F, D)>,
}

impl<F: KernelFormat, D: Dot512, const R: usize, const C: usize> TileRunner for Q8Tile<F, D, R, C> {
    #[inline(always)]
    unsafe fn run<const N: usize>(args: &KernelArgs<'_>, tiles: [usize; N], c0: usize, scales: &mut [ChunkScales; 2]) {
        let (m, input) = (args.matrix, args.input);
        // SAFETY: zeroing vectors needs only AVX-512 F, which the caller guarantees.
        let (acc, macc) = unsafe { ([[_mm512_setzero_ps(); C]; GROUPS], [[_mm_setzero_ps(); C]; GROUPS]) };
        let mut t = Q8Tile::<F, D, R, C> {
            q: [std::ptr::null(); C],
            d: [std::ptr::null(); C],
            sums: [std::ptr::null(); C],
            isums: [std::ptr::null(); C],
            acc,
            macc,
            _types: PhantomData,
        };
        let input = input.int8(F::INT8_BLOCK);
        for c in 0..C {
            t.q[c] = input.q(c0 + c).as_ptr();
            t.d[c] = input.d(c0 + c).as_ptr();
            t.sums[c] = if F::SPLIT { input.qsum16(c0 + c) } else { input.qsum32(c0 + c) }.as_ptr();
            t.isums[c] = if F::SPLIT { input.isum16(c0 + c) } else { input.isum32(c0 + c) }.as_ptr();
        }
        // SAFETY: the tile lies within the packed data (the layout's
        // invariant); AVX-512 is guaranteed by the caller.
        unsafe {
            let t = walk_tiles::<F, R, Self, N>(m, tiles, t, scales);
            for (t, &tile) in t.iter().zip(&tiles) {
                finish::<R, C>(args, tile, c0, &t.acc, &t.macc);
            }
        }
    }
}

impl<F: KernelFormat, D: Dot512, const R: usize, const C: usize> StepKernel for Q8Tile<F, D, R, C> {
    const AVX512: bool = true;

    #[inline(always)]
    unsafe fn step(&mut self, p: *const u8, g: usize, slots: usize, sc: StepScales) {
        // SAFETY: forwarded from the caller. The group is a constant in each
        // branch: indexed by a run-time value, the accumulators would live
        // in memory (a load and a store around every FMA), which cost the
        // 8-row tiles 8-27 % of their cache-resident speed (kernels/TUNING.md).
        unsafe {
            if groups(R) == 2 && (g / 4) % 2 == 1 {
                self.accumulate::<1>(p, g, slots, sc)
            } else {
                self.accumulate::<0>(p, g, slots, sc)
            }
        }
    }
}

impl<F: KernelFormat, D: Dot512, const R: usize, const C: usize> Q8Tile<F, D, R, C> {
    /// One step into accumulator group `A` (rows `4A..4A + 4` of the tile).
    ///
    /// # Safety
    /// As [`StepKernel::step`].
    #[inline(always)]
    unsafe fn accumulate<const A: usize>(&mut self, p: *const u8, g: usize, slots: usize, sc: StepScales) {
        // SAFETY: the step's codes are at `p`; the input columns are padded
        // for every read below; AVX-512 is guaranteed by the caller.
        unsafe {
            let (lo, hi) =
                if slots == 4 { unpack::<true>(F::CODE_BITS, p, 4) } else { unpack::<false>(F::CODE_BITS, p, slots) };
            for c in 0..C {
                let (xlo, xhi) = activations::<R>(self.q[c], g);
                let dx = slot_values::<R>(self.d[c], g);
                let acc = &mut self.acc[A][c];
                if F::SPLIT {
                    let (zlo, zhi) = match F::OFFSET {
                        Some(o) => {
                            let (ilo, ihi) = slot_half_ints::<R>(self.isums[c], g);
                            (offset_lanes(o, ilo), offset_lanes(o, ihi))
                        }
                        None => (_mm512_setzero_si512(), _mm512_setzero_si512()),
                    };
                    let (ilo, ihi) = (dot::<F, D>(zlo, lo, xlo), dot::<F, D>(zhi, hi, xhi));
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ilo), expand(_mm_mul_ps(sc.s_lo, dx)), *acc);
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ihi), expand(_mm_mul_ps(sc.s_hi, dx)), *acc);
                    if F::OFFSET.is_none() {
                        let (qlo, qhi) = slot_half_values::<R>(self.sums[c], g);
                        self.macc[A][c] = _mm_fmadd_ps(sc.m_lo, qlo, self.macc[A][c]);
                        self.macc[A][c] = _mm_fmadd_ps(sc.m_hi, qhi, self.macc[A][c]);
                    }
                } else {
                    let z = match F::OFFSET {
                        Some(o) => offset_lanes(o, slot_ints::<R>(self.isums[c], g)),
                        None => _mm512_setzero_si512(),
                    };
                    let i = dot::<F, D>(dot::<F, D>(z, lo, xlo), hi, xhi);
                    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), expand(_mm_mul_ps(sc.s_lo, dx)), *acc);
                    if F::OFFSET.is_none() {
                        self.macc[A][c] = _mm_fmadd_ps(sc.m_lo, slot_values::<R>(self.sums[c], g), self.macc[A][c]);
                    }
                }
            }
        }
    }
}

/// The dot product for `F`'s code width.
#[inline(always)]
unsafe fn dot<F: KernelFormat, D: Dot512>(acc: __m512i, codes: __m512i, x: __m512i) -> __m512i {
    // SAFETY: forwarded from the caller.
    unsafe { if F::CODE_BITS == 8 { D::dot::<true>(acc, codes, x) } else { D::dot::<false>(acc, codes, x) } }
}

/// `-offset * sums[j]` in lane `4j` of each slot, zero elsewhere: the
/// starting value of an integer accumulator that subtracts a symmetric
/// format's offset exactly.
#[inline(always)]
unsafe fn offset_lanes(offset: i32, sums: __m128i) -> __m512i {
    // SAFETY: AVX-512 F, guaranteed by the caller.
    unsafe {
        let v = _mm_mullo_epi32(sums, _mm_set1_epi32(-offset));
        let idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
        _mm512_maskz_permutexvar_epi32(0x1111, idx, _mm512_castsi128_si512(v))
    }
}

impl ChunkScales {
    /// The headers of a K-format chunk of `R` (4 or 8) rows decoded four rows
    /// at a time: the scales of all 32 sub-blocks of four rows land in slot
    /// order in four vectors, with no per-row work.
    ///
    /// # Safety
    /// `headers` points at the chunk's `R` super-block headers followed by at
    /// least 64 readable bytes; the CPU has AVX-512 F/BW/VL/DQ.
    #[inline(always)]
    pub(super) unsafe fn prepare_super_blocks_avx512<F: KernelFormat, const R: usize>(&mut self, headers: *const u8) {
        // SAFETY: the caller guarantees the reads and AVX-512; the stores
        // stay within the 64-slot arrays (R <= 8 rows x 8 sub-blocks).
        unsafe {
            let mut groups = [[_mm512_setzero_ps(); 4]; 2];
            for (g, group) in groups.iter_mut().enumerate().take(R / 4) {
                let h = headers.add(4 * g * F::UNIT_HEADER);
                *group = if matches!(F::HEADER, HeaderKind::K4) { k4_four_rows(h) } else { k6_four_rows(h) };
            }
            // Each group: [lo scales of sub-blocks 0..4, of 4..8, then mins (K4) or hi scales (K6)].
            let second =
                if matches!(F::HEADER, HeaderKind::K4) { self.m_lo.as_mut_ptr() } else { self.s_hi.as_mut_ptr() };
            store_slot_order::<R>(groups[0][0], groups[0][1], groups[1][0], groups[1][1], self.s_lo.as_mut_ptr());
            store_slot_order::<R>(groups[0][2], groups[0][3], groups[1][2], groups[1][3], second);
            if matches!(F::HEADER, HeaderKind::K6) {
                // Symmetric: min = -32 * scale (used by the f32 path).
                let offset = _mm512_set1_ps(-32.0);
                for at in (0..8 * R).step_by(16) {
                    let (lo, hi) = (self.s_lo.as_ptr().add(at), self.s_hi.as_ptr().add(at));
                    _mm512_storeu_ps(self.m_lo.as_mut_ptr().add(at), _mm512_mul_ps(offset, _mm512_loadu_ps(lo)));
                    _mm512_storeu_ps(self.m_hi.as_mut_ptr().add(at), _mm512_mul_ps(offset, _mm512_loadu_ps(hi)));
                }
            }
        }
    }
}

/// Stores the slot-order values of one or two groups of four rows (`a*`:
/// rows 0..4, `b*`: rows 4..8; `*0`: sub-blocks 0..4, `*1`: 4..8, each 4
/// sub-blocks x 4 rows) as the slot order of `R` rows.
#[inline(always)]
unsafe fn store_slot_order<const R: usize>(a0: __m512, a1: __m512, b0: __m512, b1: __m512, out: *mut f32) {
    // SAFETY: AVX-512 F, guaranteed by the caller; `out` holds 64 floats.
    unsafe {
        if R == 4 {
            _mm512_storeu_ps(out, a0);
            _mm512_storeu_ps(out.add(16), a1);
        } else {
            // Step 2j is rows 0..4 of sub-block j, step 2j + 1 rows 4..8.
            let lo = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
            let hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
            _mm512_storeu_ps(out, _mm512_permutex2var_ps(a0, lo, b0));
            _mm512_storeu_ps(out.add(16), _mm512_permutex2var_ps(a0, hi, b0));
            _mm512_storeu_ps(out.add(32), _mm512_permutex2var_ps(a1, lo, b1));
            _mm512_storeu_ps(out.add(48), _mm512_permutex2var_ps(a1, hi, b1));
        }
    }
}

/// Byte `4r + s` to `4s + r` in each 128-bit lane (4x4 transposes).
#[inline(always)]
unsafe fn transpose_bytes_4x4(v: __m512i) -> __m512i {
    // SAFETY: AVX-512 BW, guaranteed by the caller.
    unsafe {
        let t = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(t))
    }
}

/// Four consecutive Q4_K/Q5_K super-block headers (16 bytes each) at `h`,
/// decoded: `[scales of sub-blocks 0..4, scales 4..8, mins 0..4, mins 4..8]`,
/// each 4 sub-blocks x 4 rows (slot order of four rows).
#[inline(always)]
unsafe fn k4_four_rows(h: *const u8) -> [__m512; 4] {
    // SAFETY: the caller guarantees 64 readable bytes and AVX-512 F/BW.
    unsafe {
        let v = _mm512_loadu_si512(h.cast());
        // Per header: q = bytes 4..16; see `k4_scales_mins` for the bit layout.
        let a = _mm512_shuffle_epi8(
            v,
            _mm512_broadcast_i32x4(_mm_setr_epi8(4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15)),
        );
        let b = _mm512_shuffle_epi8(
            v,
            _mm512_broadcast_i32x4(_mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, 4, 5, 6, 7, 8, 9, 10, 11)),
        );
        let low = _mm512_and_si512(
            a,
            _mm512_broadcast_i32x4(_mm_setr_epi8(63, 63, 63, 63, 63, 63, 63, 63, 15, 15, 15, 15, 0, 0, 0, 0)),
        );
        let nib = _mm512_and_si512(
            _mm512_srli_epi16::<4>(a),
            _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)),
        );
        let high = _mm512_srli_epi16::<2>(_mm512_and_si512(b, _mm512_set1_epi8(0xC0u8 as i8)));
        // Per lane (row): dwords [sc 0..4, m 0..4, sc 4..8, m 4..8].
        let w = _mm512_or_si512(_mm512_or_si512(low, nib), high);
        // Lanes become [sc 0..4, sc 4..8, m 0..4, m 4..8], dword r = row r.
        let t = _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 7, 3, 13, 9, 5, 1, 14, 10, 6, 2, 12, 8, 4, 0), w);
        let t = transpose_bytes_4x4(t);
        // d and dmin of the four rows: [d0, dmin0, d1, dmin1, ...].
        let dd = _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), v);
        let dd = _mm256_cvtph_ps(_mm512_castsi512_si128(dd));
        let dd = _mm512_castps256_ps512(dd);
        let d = _mm512_permutexvar_ps(_mm512_set_epi32(6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0, 6, 4, 2, 0), dd);
        let dmin = _mm512_permutexvar_ps(_mm512_set_epi32(7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1, 7, 5, 3, 1), dd);
        let neg = _mm512_sub_ps(_mm512_setzero_ps(), dmin);
        [
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(t)))),
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32::<1>(t)))),
            _mm512_mul_ps(neg, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32::<2>(t)))),
            _mm512_mul_ps(neg, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32::<3>(t)))),
        ]
    }
}

/// Four consecutive Q6_K super-block headers (18 bytes: 16 i8 scales of
/// 16-weight halves, then f16 `d`) at `h`, decoded: `[lo scales of
/// sub-blocks 0..4, lo 4..8, hi 0..4, hi 4..8]` in slot order of four rows.
#[inline(always)]
unsafe fn k6_four_rows(h: *const u8) -> [__m512; 4] {
    // SAFETY: the caller guarantees 4 x 18 readable bytes and AVX-512 F/BW.
    unsafe {
        let (r0, r1) = (_mm_loadu_si128(h.cast()), _mm_loadu_si128(h.add(18).cast()));
        let (r2, r3) = (_mm_loadu_si128(h.add(36).cast()), _mm_loadu_si128(h.add(54).cast()));
        let v = _mm512_inserti32x4::<3>(
            _mm512_inserti32x4::<2>(_mm512_inserti32x4::<1>(_mm512_castsi128_si512(r0), r1), r2),
            r3,
        );
        // Per lane: [even scales 0..4, even 4..8, odd 0..4, odd 4..8] (even = lo half).
        let split = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        let w = _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(split));
        let t = _mm512_permutexvar_epi32(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0), w);
        let t = transpose_bytes_4x4(t);
        let d_at = |r: usize| h.add(18 * r + 16).cast::<i16>().read_unaligned();
        let d4 = _mm_cvtph_ps(_mm_setr_epi16(d_at(0), d_at(1), d_at(2), d_at(3), 0, 0, 0, 0));
        let d = _mm512_broadcast_f32x4(d4);
        [
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_castsi512_si128(t)))),
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32::<1>(t)))),
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32::<2>(t)))),
            _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32::<3>(t)))),
        ]
    }
}

/// Sums each row's lanes and writes the tile's outputs.
#[inline(always)]
unsafe fn finish<const R: usize, const C: usize>(
    args: &KernelArgs<'_>,
    tile: usize,
    c0: usize,
    acc: &[[__m512; C]; GROUPS],
    macc: &[[__m128; C]; GROUPS],
) {
    for c in 0..C {
        let mut sums = [0.0f32; 8];
        for a in 0..groups(R) {
            let mut lanes = [0.0f32; 16];
            let mut mins = [0.0f32; 4];
            // SAFETY: plain stores of vectors into arrays of their size.
            unsafe {
                _mm512_storeu_ps(lanes.as_mut_ptr(), acc[a][c]);
                _mm_storeu_ps(mins.as_mut_ptr(), macc[a][c]);
            }
            for j in 0..4 {
                let row = (4 * a + j) % R;
                sums[row] += lanes[4 * j..4 * j + 4].iter().sum::<f32>() + mins[j];
            }
        }
        write_rows::<R>(args, tile, c0 + c, &sums);
    }
}

/// Dense, f32 activations: codes become floats and meet the f32 input.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX-512.
#[inline(always)]
pub(crate) unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { drive::<F32Tile<F, R, C>, F32Tile<F, R, 1>, C>(args) }
}

/// The accumulators of one tile and column group of the f32 path: one
/// vector per row (lanes are weights).
#[derive(Copy, Clone)]
struct F32Tile<F, const R: usize, const C: usize> {
    x: [*const f32; C],
    acc: [[__m512; C]; 8],
    _format: PhantomData<F>,
}

impl<F: KernelFormat, const R: usize, const C: usize> TileRunner for F32Tile<F, R, C> {
    #[inline(always)]
    unsafe fn run<const N: usize>(args: &KernelArgs<'_>, tiles: [usize; N], c0: usize, scales: &mut [ChunkScales; 2]) {
        let (m, input) = (args.matrix, args.input);
        // SAFETY: AVX-512 F, guaranteed by the caller.
        let acc = unsafe { [[_mm512_setzero_ps(); C]; 8] };
        let mut t = F32Tile::<F, R, C> { x: [std::ptr::null(); C], acc, _format: PhantomData };
        for c in 0..C {
            t.x[c] = input.x(c0 + c).as_ptr();
        }
        // SAFETY: as in `Q8Tile::run`.
        unsafe {
            let t = walk_tiles::<F, R, Self, N>(m, tiles, t, scales);
            for (t, &tile) in t.iter().zip(&tiles) {
                for c in 0..C {
                    let mut sums = [0.0f32; 8];
                    for (r, s) in sums.iter_mut().enumerate().take(R) {
                        *s = _mm512_reduce_add_ps(t.acc[r][c]);
                    }
                    write_rows::<R>(args, tile, c0 + c, &sums);
                }
            }
        }
    }
}

impl<F: KernelFormat, const R: usize, const C: usize> StepKernel for F32Tile<F, R, C> {
    const AVX512: bool = true;

    #[inline(always)]
    unsafe fn step(&mut self, p: *const u8, g: usize, slots: usize, sc: StepScales) {
        // SAFETY: as in `Q8Tile::step`.
        unsafe {
            let (lo, hi) =
                if slots == 4 { unpack::<true>(F::CODE_BITS, p, 4) } else { unpack::<false>(F::CODE_BITS, p, slots) };
            let lanes_lo = [
                _mm512_castsi512_si128(lo),
                _mm512_extracti32x4_epi32::<1>(lo),
                _mm512_extracti32x4_epi32::<2>(lo),
                _mm512_extracti32x4_epi32::<3>(lo),
            ];
            let lanes_hi = [
                _mm512_castsi512_si128(hi),
                _mm512_extracti32x4_epi32::<1>(hi),
                _mm512_extracti32x4_epi32::<2>(hi),
                _mm512_extracti32x4_epi32::<3>(hi),
            ];
            let (s_lo, m_lo, s_hi, m_hi) = (expand(sc.s_lo), expand(sc.m_lo), expand(sc.s_hi), expand(sc.m_hi));
            for j in 0..slots {
                let (row, sub) = ((g + j) % R, (g + j) / R);
                // Each weight exactly as `dequantize` makes it: scale * code + min.
                let pick = _mm512_set1_epi32(4 * j as i32);
                let w_lo = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lanes_lo[j])),
                    _mm512_permutexvar_ps(pick, s_lo),
                    _mm512_permutexvar_ps(pick, m_lo),
                );
                let w_hi = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lanes_hi[j])),
                    _mm512_permutexvar_ps(pick, s_hi),
                    _mm512_permutexvar_ps(pick, m_hi),
                );
                for c in 0..C {
                    let xs = self.x[c].add(32 * sub);
                    let acc = &mut self.acc[row][c];
                    *acc = _mm512_fmadd_ps(w_lo, _mm512_loadu_ps(xs), *acc);
                    *acc = _mm512_fmadd_ps(w_hi, _mm512_loadu_ps(xs.add(16)), *acc);
                }
            }
        }
    }
}

/// Column-sparse, f32 activations.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX-512.
#[inline(always)]
pub(crate) unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { super::colsparse::colsparse_f32_avx512::<F>(args) }
}
