//! AVX2 int8 arithmetic over the interleaved layout, for the shared walk
//! [`super::interleaved::drive`].
//!
//! A 16-row vector of the layout is two 256-bit halves here: rows 0–7 and
//! rows 8–15, each lane one row, as on AVX-512. AVX2 has no 32-bit integer
//! dot product: `vpmaddubsw` multiplies the unsigned codes by the signed
//! activation bytes and adds adjacent pairs into 16-bit lanes, and
//! `vpmaddwd` by ones adds those pairs into the 32-bit lanes of the rows.
//! For 4-bit codes a 16-bit lane of one `vpmaddubsw` is at most
//! `2 * 15 * 128 = 3,840` in magnitude, so the eight dwords of a sub-block
//! (all of it) add up in 16 bits (at most 30,720) and need one `vpmaddwd`
//! per accumulator and sub-block, not one per dword: about half the
//! instructions per weight of the row-slot layout, whose lanes are codes of
//! one row and must be reduced and scaled per slot. 6-bit codes (at most
//! `2 * 63 * 128 = 16,128` per lane) widen after every dword.
//!
//! Q4_K goes further ([`k4_integer`]): with one activation scale per
//! 256-weight unit, that `vpmaddwd` multiplies by the row's 6-bit sub-block
//! scale instead of ones (at most `63 * 2 * 30,720`, about 3.9 M, per
//! sub-block, 31 M per unit: no overflow in 32 bits), the mins multiply the
//! activations' integer sums the same way, and the float work (two
//! conversions and two multiply-adds per half of the rows) is once per unit
//! instead of once per sub-block. Its headers decode to integers, not to
//! sixteen floats per sub-block.

use super::interleaved::{Columns, InterleavedKernel, UnitScales, groups, k4, k4_integer, unit_floats};
use crate::input::Int8Block;
use crate::kernel::{HeaderKind, KernelArgs, KernelFormat};
use crate::pack::INTERLEAVED_ROWS;
use crate::pack::interleaved::{sub_block_bytes, unit_bytes};
use std::arch::x86_64::*;

/// Rows per 256-bit vector: a tile's 16 rows are two halves.
const HALF_ROWS: usize = INTERLEAVED_ROWS / 2;

/// Dense, int8 activations, interleaved layout, AVX2.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX2, FMA and F16C; the matrix is
/// packed in the interleaved layout.
#[inline(always)]
pub(crate) unsafe fn dense_q8<F: KernelFormat, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { super::interleaved::drive::<F, Avx2, C>(args) }
}

/// The AVX2 kernel: two 256-bit vectors hold the 16 rows.
struct Avx2;

impl InterleavedKernel for Avx2 {
    #[inline(always)]
    unsafe fn run_tiles<F: KernelFormat, const C: usize, const N: usize>(
        args: &KernelArgs<'_>,
        tiles: [usize; N],
        c0: usize,
        decoded: Option<&[f32]>,
        scratch: &mut [UnitScales; 2],
    ) {
        // SAFETY: forwarded contract.
        unsafe { run_tiles::<F, C, N>(args, tiles, c0, decoded, scratch) }
    }

    #[inline(always)]
    unsafe fn decode_headers<F: KernelFormat>(hp: *const u8, out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { decode_headers::<F>(hp, out) }
    }
}

/// [`InterleavedKernel::run_tiles`] on AVX2.
///
/// # Safety
/// As [`InterleavedKernel::run_tiles`], with AVX2, FMA and F16C.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // tile, column, group and half index several arrays of registers
unsafe fn run_tiles<F: KernelFormat, const C: usize, const N: usize>(
    args: &KernelArgs<'_>,
    tiles: [usize; N],
    c0: usize,
    decoded: Option<&[f32]>,
    scratch: &mut [UnitScales; 2],
) {
    const {
        assert!(!k4_integer::<F>() || matches!(F::INT8_BLOCK, Int8Block::Of256), "one activation scale per unit");
        assert!(!k4_integer::<F>() || F::SUBS_PER_UNIT == 8, "Q4_K's geometry");
        assert!(k4::FLOATS <= unit_floats::<F>() || !k4_integer::<F>(), "the K4 headers fit the unit's floats");
    }
    let (m, input) = (args.matrix, args.input);
    let units = m.padded_cols() / F::UNIT;
    let Columns { q, d, sums, isums } = Columns::<C>::of::<F>(input, c0);
    const { assert!(N <= 2, "one scratch per tile") };
    let (scale_groups, floats) = (groups::<F>(), unit_floats::<F>());
    if let Some(decoded) = decoded {
        assert!(N == 1 && decoded.len() >= units * floats, "decoded headers of one whole tile");
    }
    // Integer accumulators per scale group: one (both halves of the codes)
    // unless the format scales the halves apart.
    const fn int_groups<F: KernelFormat>() -> usize {
        if F::SPLIT { 2 } else { 1 }
    }
    // SAFETY: each tile's bytes are `units * unit_bytes` from its start (the
    // layout's arithmetic); every activation read is within the column's
    // `padded_cols` int8 values and per-sub-block arrays; the decoded
    // headers are read within a unit's `unit_floats`; AVX2, FMA and F16C
    // are guaranteed by the caller.
    unsafe {
        let bases = tiles.map(|tile| m.data().as_ptr().add(tile * m.tile_bytes()));
        // Float accumulators per tile, column and half of the rows.
        let mut acc = [[[_mm256_setzero_ps(); 2]; C]; N];
        let ones = _mm256_set1_epi16(1);
        for u in 0..units {
            let mut scales = [std::ptr::null::<f32>(); N];
            for n in 0..N {
                let p = bases[n].add(u * unit_bytes::<F>());
                scales[n] = match decoded {
                    Some(decoded) => decoded.as_ptr().add(u * floats),
                    None => {
                        decode_headers::<F>(p, &mut scratch[n].0);
                        scratch[n].0.as_ptr()
                    }
                };
            }
            // The K4 integer path: the unit's scaled integer dot products
            // per tile, column and half of the rows.
            let mut unit_ints = [[[_mm256_setzero_si256(); 2]; C]; N];
            for s in 0..F::SUBS_PER_UNIT {
                let sub = u * F::SUBS_PER_UNIT + s;
                if C == 1 {
                    // Decode streams the weights once, from DRAM: prefetch
                    // ahead, a sub-block's share of the unit at a time.
                    let share = unit_bytes::<F>().div_ceil(F::SUBS_PER_UNIT);
                    for base in bases {
                        super::prefetch_ahead(base.wrapping_add(u * unit_bytes::<F>() + s * share), share);
                    }
                }
                let cps = bases.map(|base| {
                    base.add(u * unit_bytes::<F>() + INTERLEAVED_ROWS * F::UNIT_HEADER)
                        .add(s * sub_block_bytes(F::CODE_BITS))
                });
                let dots = sub_block_dots::<F, C, N>(cps, q.map(|q| q.add(32 * sub)));
                if k4_integer::<F>() {
                    for n in 0..N {
                        for c in 0..C {
                            for h in 0..2 {
                                let sc = _mm256_loadu_si256(scales[n].add(k4::SCALES + 16 * s + 8 * h).cast());
                                let scaled = _mm256_madd_epi16(dots[n][c][0][h], sc);
                                unit_ints[n][c][h] = _mm256_add_epi32(unit_ints[n][c][h], scaled);
                            }
                        }
                    }
                    continue;
                }
                for n in 0..N {
                    for c in 0..C {
                        let dx = _mm256_set1_ps(*d[c].add(sub));
                        for g in 0..int_groups::<F>() {
                            let group = if F::SPLIT { 2 * s + g } else { s };
                            let offset = match F::OFFSET {
                                Some(o) => -o * *isums[c].add(if F::SPLIT { 2 * sub + g } else { sub }),
                                None => 0,
                            };
                            for h in 0..2 {
                                let ints = if F::CODE_BITS == 4 {
                                    _mm256_madd_epi16(dots[n][c][g][h], ones)
                                } else {
                                    dots[n][c][g][h]
                                };
                                let ints = _mm256_add_epi32(ints, _mm256_set1_epi32(offset));
                                let at = INTERLEAVED_ROWS * group + HALF_ROWS * h;
                                let sc = _mm256_mul_ps(_mm256_loadu_ps(scales[n].add(at)), dx);
                                acc[n][c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ints), sc, acc[n][c][h]);
                                if F::OFFSET.is_none() {
                                    let xs = _mm256_set1_ps(*sums[c].add(if F::SPLIT { 2 * sub + g } else { sub }));
                                    let at = INTERLEAVED_ROWS * (scale_groups + group) + HALF_ROWS * h;
                                    acc[n][c][h] =
                                        _mm256_fmadd_ps(_mm256_loadu_ps(scales[n].add(at)), xs, acc[n][c][h]);
                                }
                            }
                        }
                    }
                }
            }
            if k4_integer::<F>() {
                // Once per unit: `dx * (d * sum_j scale_j * dot_j - dmin *
                // sum_j min_j * isum_j)`, the mins' sum in integers too.
                let first = u * F::SUBS_PER_UNIT;
                for c in 0..C {
                    let dx = _mm256_set1_ps(*d[c].add(first));
                    let isum = |j: usize| *isums[c].add(first + j) as i16 as u16 as u32;
                    let isum_pairs: [__m256i; 4] =
                        std::array::from_fn(|p| _mm256_set1_epi32((isum(2 * p) | isum(2 * p + 1) << 16) as i32));
                    for n in 0..N {
                        for h in 0..2 {
                            let mut min_ints = _mm256_setzero_si256();
                            for (p, pair) in isum_pairs.iter().enumerate() {
                                let mins = _mm256_loadu_si256(scales[n].add(k4::MINS + 16 * p + 8 * h).cast());
                                min_ints = _mm256_add_epi32(min_ints, _mm256_madd_epi16(mins, *pair));
                            }
                            let d_dx = _mm256_mul_ps(_mm256_loadu_ps(scales[n].add(k4::D + 8 * h)), dx);
                            let dmin_dx = _mm256_mul_ps(_mm256_loadu_ps(scales[n].add(k4::NEG_DMIN + 8 * h)), dx);
                            acc[n][c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(unit_ints[n][c][h]), d_dx, acc[n][c][h]);
                            acc[n][c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(min_ints), dmin_dx, acc[n][c][h]);
                        }
                    }
                }
            }
        }
        for (acc, &tile) in acc.iter().zip(&tiles) {
            for (c, acc) in acc.iter().enumerate() {
                let mut lanes = [0.0f32; INTERLEAVED_ROWS];
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(HALF_ROWS), acc[1]);
                super::write_rows::<INTERLEAVED_ROWS>(args, tile, c0 + c, &lanes);
            }
        }
    }
}

/// The integer dot products of one sub-block, per tile, column, scale
/// group (two if the format scales the halves of the codes apart) and half
/// of the rows: for 4-bit codes 16-bit sums of code pairs (two lanes per
/// row), for 6-bit codes 32-bit sums (one lane per row). `cps` are the
/// tiles' sub-blocks, `q` the columns' 32 int8 activations.
///
/// # Safety
/// `cps` point at sub-blocks of the layout, `q` at 32 readable int8 values; AVX2.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // tile, column and half index several arrays of registers
unsafe fn sub_block_dots<F: KernelFormat, const C: usize, const N: usize>(
    cps: [*const u8; N],
    q: [*const i8; C],
) -> [[[[__m256i; 2]; 2]; C]; N] {
    // SAFETY: forwarded from the caller.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut sums = [[[[_mm256_setzero_si256(); 2]; 2]; C]; N];
        // The sub-block's eight dwords, alternating between the halves of
        // the codes (0..16 and 16..32), as on AVX-512; a macro, so that
        // each dword's offsets and shifts are constants.
        macro_rules! dword {
            ($k:literal) => {
                let g = if F::SPLIT { $k / 4 } else { 0 };
                for n in 0..N {
                    for h in 0..2 {
                        let w = dword_codes::<F>(cps[n], $k, h);
                        for c in 0..C {
                            let x = _mm256_set1_epi32(q[c].add(4 * $k).cast::<i32>().read_unaligned());
                            let pairs = _mm256_maddubs_epi16(w, x);
                            sums[n][c][g][h] = if F::CODE_BITS == 4 {
                                _mm256_add_epi16(sums[n][c][g][h], pairs)
                            } else {
                                _mm256_add_epi32(sums[n][c][g][h], _mm256_madd_epi16(pairs, ones))
                            };
                        }
                    }
                }
            };
        }
        dword!(0);
        dword!(4);
        dword!(1);
        dword!(5);
        dword!(2);
        dword!(6);
        dword!(3);
        dword!(7);
        sums
    }
}

/// The codes of dword `k` (codes `4k..4k+4`) of the sub-block at `cp`, for
/// rows `8h..8h + 8`: byte `4l + b` = code `4k + b` of row `8h + l`.
///
/// # Safety
/// `cp` points at a sub-block of the layout; AVX2.
#[inline(always)]
unsafe fn dword_codes<F: KernelFormat>(cp: *const u8, k: usize, h: usize) -> __m256i {
    // SAFETY: the planes of the sub-block are at `cp` (see the layout); a
    // 64-byte vector of the layout holds rows 0-7 in its first 32 bytes.
    unsafe {
        let nibbles = _mm256_loadu_si256(cp.add(64 * (k / 2) + 32 * h).cast());
        let low = _mm256_set1_epi8(0x0F);
        let w = if k.is_multiple_of(2) {
            _mm256_and_si256(nibbles, low)
        } else {
            _mm256_and_si256(_mm256_srli_epi16::<4>(nibbles), low)
        };
        if F::CODE_BITS != 6 {
            return w;
        }
        // Bits 4-5: crumb `k % 4` of crumb vector `k / 4`, moved to bits 4-5
        // of each byte (16-bit shifts; the mask drops what crosses bytes).
        let crumbs = _mm256_loadu_si256(cp.add(4 * 64 + 64 * (k / 4) + 32 * h).cast());
        let moved = match k % 4 {
            0 => _mm256_slli_epi16::<4>(crumbs),
            1 => _mm256_slli_epi16::<2>(crumbs),
            2 => crumbs,
            _ => _mm256_srli_epi16::<2>(crumbs),
        };
        _mm256_or_si256(w, _mm256_and_si256(moved, _mm256_set1_epi8(0x30)))
    }
}

/// One header field byte `f` of all 16 rows.
///
/// # Safety
/// `hp` points at the unit's transposed headers.
#[inline(always)]
unsafe fn field(hp: *const u8, f: usize) -> __m128i {
    // SAFETY: byte `f` of the 16 headers is at `16f..16f + 16`.
    unsafe { _mm_loadu_si128(hp.add(INTERLEAVED_ROWS * f).cast()) }
}

/// The f16 at header bytes `f, f + 1` of all 16 rows, as f32: rows 0-7, 8-15.
///
/// # Safety
/// As [`field`]; F16C and AVX.
#[inline(always)]
unsafe fn field_f16(hp: *const u8, f: usize) -> [__m256; 2] {
    // SAFETY: forwarded from the caller.
    unsafe {
        let (lo, hi) = (field(hp, f), field(hp, f + 1));
        [_mm256_cvtph_ps(_mm_unpacklo_epi8(lo, hi)), _mm256_cvtph_ps(_mm_unpackhi_epi8(lo, hi))]
    }
}

/// Bytes (one per row, unsigned or signed) times `factor`, stored at `out`
/// (16 floats).
///
/// # Safety
/// `out` is writable for 16 floats; AVX2.
#[inline(always)]
unsafe fn store_scaled<const SIGNED: bool>(bytes: __m128i, factor: [__m256; 2], out: *mut f32) {
    // SAFETY: forwarded from the caller.
    unsafe {
        for (h, factor) in factor.iter().enumerate() {
            let b = if h == 0 { bytes } else { _mm_srli_si128::<8>(bytes) };
            let ints = if SIGNED { _mm256_cvtepi8_epi32(b) } else { _mm256_cvtepu8_epi32(b) };
            _mm256_storeu_ps(out.add(HALF_ROWS * h), _mm256_mul_ps(*factor, _mm256_cvtepi32_ps(ints)));
        }
    }
}

/// Stores 16 rows' floats at `out`.
///
/// # Safety
/// `out` is writable for 16 floats; AVX.
#[inline(always)]
unsafe fn store(v: [__m256; 2], out: *mut f32) {
    // SAFETY: forwarded from the caller.
    unsafe {
        _mm256_storeu_ps(out, v[0]);
        _mm256_storeu_ps(out.add(HALF_ROWS), v[1]);
    }
}

/// [`InterleavedKernel::decode_headers`] on AVX2 (the same results as the
/// AVX-512 decoding, eight rows at a time, except for Q4_K, whose headers
/// decode to the integers of its integer path: [`k4`]).
///
/// # Safety
/// `hp` points at the unit; AVX2 and F16C.
#[inline(always)]
unsafe fn decode_headers<F: KernelFormat>(hp: *const u8, out: &mut [f32]) {
    assert!(out.len() >= unit_floats::<F>(), "room for one unit's headers");
    let groups = groups::<F>();
    let base = out.as_mut_ptr();
    let scale = |g: usize| base.wrapping_add(INTERLEAVED_ROWS * g);
    let min = |g: usize| base.wrapping_add(INTERLEAVED_ROWS * (groups + g));
    // SAFETY: the header fields are within the unit's headers; the stores
    // stay within `out` (`unit_floats` floats, asserted).
    unsafe {
        match F::HEADER {
            // (Q5_K has no interleaved variants: `drive` refuses it.)
            HeaderKind::K4 if !k4_integer::<F>() => unreachable!("interleaved K4 headers are Q4_K's"),
            HeaderKind::K4 => {
                // d, dmin, then 12 bytes of 6-bit scales and mins (ggml's
                // `get_scale_min_k4`, for 16 rows at once; `q[k]` is byte 4
                // + k), laid out for the integer path (see [`k4`]).
                assert!(out.len() >= k4::FLOATS, "room for one unit's K4 headers");
                let d = field_f16(hp, 0);
                let dmin = field_f16(hp, 2);
                let neg_dmin =
                    [_mm256_sub_ps(_mm256_setzero_ps(), dmin[0]), _mm256_sub_ps(_mm256_setzero_ps(), dmin[1])];
                store(d, base.add(k4::D));
                store(neg_dmin, base.add(k4::NEG_DMIN));
                let q = |k: usize| field(hp, 4 + k);
                let (six, four, top) = (_mm_set1_epi8(63), _mm_set1_epi8(0x0F), _mm_set1_epi8(0xC0u8 as i8));
                let mut mins = [_mm_setzero_si128(); 8];
                for (j, mins) in mins.iter_mut().enumerate() {
                    let (sc, mn) = if j < 4 {
                        (_mm_and_si128(q(j), six), _mm_and_si128(q(j + 4), six))
                    } else {
                        // The two high bits come from bytes j - 4 (scales) and
                        // j (mins), bits 6-7, moved to bits 4-5.
                        let sc_high = _mm_srli_epi16::<2>(_mm_and_si128(q(j - 4), top));
                        let mn_high = _mm_srli_epi16::<2>(_mm_and_si128(q(j), top));
                        let sc = _mm_or_si128(_mm_and_si128(q(j + 4), four), sc_high);
                        let mn = _mm_or_si128(_mm_and_si128(_mm_srli_epi16::<4>(q(j + 4)), four), mn_high);
                        (sc, mn)
                    };
                    // Each row's scale twice, as the two i16 of its dword.
                    let pairs = [_mm_unpacklo_epi8(sc, sc), _mm_unpackhi_epi8(sc, sc)];
                    for (h, pair) in pairs.into_iter().enumerate() {
                        _mm256_storeu_si256(base.add(k4::SCALES + 16 * j + 8 * h).cast(), _mm256_cvtepu8_epi16(pair));
                    }
                    *mins = mn;
                }
                for p in 0..4 {
                    // Each row's mins of sub-blocks 2p and 2p + 1 as the two i16 of its dword.
                    let (a, b) = (mins[2 * p], mins[2 * p + 1]);
                    let pairs = [_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b)];
                    for (h, pair) in pairs.into_iter().enumerate() {
                        _mm256_storeu_si256(base.add(k4::MINS + 16 * p + 8 * h).cast(), _mm256_cvtepu8_epi16(pair));
                    }
                }
            }
            HeaderKind::K6 => {
                // Sixteen i8 scales, then f16 d (the offset is integer).
                let d = field_f16(hp, 16);
                for g in 0..16 {
                    store_scaled::<true>(field(hp, g), d, scale(g));
                }
            }
            // One 32-weight block per unit: f16 scale (Q4_0), then f16 min (Q4_1).
            HeaderKind::Scale { .. } => store(field_f16(hp, 0), scale(0)),
            HeaderKind::ScaleMin => {
                store(field_f16(hp, 0), scale(0));
                store(field_f16(hp, 2), min(0));
            }
            HeaderKind::Other => {}
        }
    }
}
