//! Int8 drivers over the interleaved layout ([`crate::pack::interleaved`]):
//! the 16-row variants of Q4_0, Q4_1, Q4_K, Q6_K and q4g32, on AVX-512 here and on
//! AVX2 in [`super::interleaved_avx2`], over one shared walk ([`drive`]).
//!
//! The lanes of every vector are the 16 rows of a tile. For each 32-weight
//! sub-block and input column, eight integer dot products (four codes of
//! every row against four activation bytes broadcast) accumulate into two
//! integer vectors; one conversion and one fused multiply-add per scale group
//! then bring them into the column's float accumulator, and one more adds the
//! min term; Q4_K ([`k4_integer`]) instead multiplies each sub-block's
//! integer sums by the rows' 6-bit scales (`vpmulld`) and adds the mins
//! times the activations' integer sums, so that its float work is once per
//! 256-weight unit. A symmetric format's offset is subtracted exactly, in the
//! integer domain: the integer accumulators start at `-offset` times the
//! sum of the sub-block's int8 activations, the same for every row. The
//! headers are decoded 16 rows at a time: for a prompt once per tile, into
//! a per-thread buffer that every column group then reads; for decode once
//! per unit, as the weights stream by.

use std::arch::x86_64::*;
use std::cell::Cell;
use std::marker::PhantomData;

use super::avx512::Dot512;
use crate::input::{Input, Int8Block};
use crate::kernel::{HeaderKind, KernelArgs, KernelFormat};
use crate::pack::INTERLEAVED_ROWS;
use crate::pack::interleaved::{sub_block_bytes, supports, unit_bytes};

/// Most scale groups in one unit (Q6_K: 16 per super-block).
pub(super) const MAX_GROUPS: usize = 16;

thread_local! {
    /// The decoded headers of one tile, for the column groups of a prompt.
    /// (Taken and put back rather than borrowed in a closure: a closure
    /// would not inherit the kernel's target features, and its intrinsics
    /// would become calls.)
    static TILE_SCALES: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Scale groups per unit of `F`.
pub(super) const fn groups<F: KernelFormat>() -> usize {
    if F::SPLIT { 2 * F::SUBS_PER_UNIT } else { F::SUBS_PER_UNIT }
}

/// Floats of one unit's decoded headers: per scale group the 16 rows'
/// scales, then, for formats with a min, per group the 16 rows' mins (a
/// kernel may lay out its own decoding within as many floats, as the AVX2
/// Q4_K path does).
pub(super) const fn unit_floats<F: KernelFormat>() -> usize {
    let mins = if F::OFFSET.is_none() { 2 } else { 1 };
    groups::<F>() * INTERLEAVED_ROWS * mins
}

/// Whether `F` takes the integer path of the K-quants with 4-bit codes
/// (Q4_K): its 6-bit sub-block scales multiply the sub-blocks' integer dot
/// products and its 6-bit mins the activations' integer sums, so that the
/// float work is once per 256-weight unit, not once per sub-block. It needs
/// one activation scale per unit ([`Int8Block::Of256`]).
///
/// A sub-block's dot product is at most `32 * 15 * 127 = 60,960` in
/// magnitude; times a scale below 64, over eight sub-blocks, at most about
/// 31 M: no overflow in 32 bits.
pub(super) const fn k4_integer<F: KernelFormat>() -> bool {
    matches!(F::HEADER, HeaderKind::K4) && F::CODE_BITS == 4
}

/// The decoded headers of a unit on the K4 integer path, in the floats of
/// the unit's buffer: `d` and `-dmin` of the 16 rows (f32), then per
/// sub-block `j` one 32-bit lane per row holding its scale (AVX-512: as an
/// i32, for `vpmulld`; AVX2: as a pair of i16, for `vpmaddwd` against the
/// pair sums of the codes, rows 0-7 then 8-15), then per pair of sub-blocks
/// `(2p, 2p + 1)` one 32-bit lane per row holding the two mins as i16
/// (`vpmaddwd` against the pair of the activations' integer sums).
pub(super) mod k4 {
    use crate::pack::INTERLEAVED_ROWS;
    /// `d` of the 16 rows.
    pub(in crate::kernel::x86) const D: usize = 0;
    /// `-dmin` of the 16 rows.
    pub(in crate::kernel::x86) const NEG_DMIN: usize = INTERLEAVED_ROWS;
    /// Scales of sub-block `j`: at `SCALES + 16j`.
    pub(in crate::kernel::x86) const SCALES: usize = 2 * INTERLEAVED_ROWS;
    /// Mins of sub-blocks `2p, 2p + 1`: at `MINS + 16p`.
    pub(in crate::kernel::x86) const MINS: usize = SCALES + 8 * INTERLEAVED_ROWS;
    /// Floats in all.
    pub(in crate::kernel::x86) const FLOATS: usize = MINS + 4 * INTERLEAVED_ROWS;
}

/// What one ISA supplies to [`drive`]: the tiles' arithmetic and the
/// headers' decoding.
pub(super) trait InterleavedKernel {
    /// Computes the `N` tiles `tiles`, walked in lockstep, for input columns
    /// `c0..c0 + C`. With `decoded` (one tile only), the tile's headers come
    /// decoded from it, [`unit_floats`] per unit; without, they are decoded
    /// unit by unit into `scratch` (one per tile).
    ///
    /// # Safety
    /// As [`drive`]; every tile is below `matrix.tiles()` and `c0 + C <=
    /// columns`; `decoded`, if given, holds the headers of every unit of the tile.
    unsafe fn run_tiles<F: KernelFormat, const C: usize, const N: usize>(
        args: &KernelArgs<'_>,
        tiles: [usize; N],
        c0: usize,
        decoded: Option<&[f32]>,
        scratch: &mut [UnitScales; 2],
    );

    /// Decodes the unit's headers at `hp` (transposed) into `out`, laid out
    /// as [`unit_floats`] says, for this kernel's `run_tiles`.
    ///
    /// # Safety
    /// `hp` points at the unit; the CPU has the kernel's instructions.
    unsafe fn decode_headers<F: KernelFormat>(hp: *const u8, out: &mut [f32]);
}

/// Dense, int8 activations, interleaved layout, AVX-512 with `D`'s dot product.
///
/// # Safety
/// As [`drive`], with AVX-512 (and VNNI for the VNNI dot product).
#[inline(always)]
pub(crate) unsafe fn dense_q8<F: KernelFormat, D: Dot512, const C: usize>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { drive::<F, Avx512<D>, C>(args) }
}

/// The AVX-512 kernel: one 512-bit vector holds the 16 rows.
struct Avx512<D>(PhantomData<D>);

impl<D: Dot512> InterleavedKernel for Avx512<D> {
    #[inline(always)]
    unsafe fn run_tiles<F: KernelFormat, const C: usize, const N: usize>(
        args: &KernelArgs<'_>,
        tiles: [usize; N],
        c0: usize,
        decoded: Option<&[f32]>,
        scratch: &mut [UnitScales; 2],
    ) {
        // SAFETY: forwarded contract.
        unsafe { run_tiles::<F, D, C, N>(args, tiles, c0, decoded, scratch) }
    }

    #[inline(always)]
    unsafe fn decode_headers<F: KernelFormat>(hp: *const u8, out: &mut [f32]) {
        // SAFETY: forwarded contract.
        unsafe { decode_headers::<F>(hp, out) }
    }
}

/// Runs a call on the interleaved layout with `K`'s arithmetic.
///
/// Several input columns (a prompt): tile by tile, each tile for every
/// group of `C` columns while its bytes are in cache, the remainder one
/// column at a time. One column (decode): tiles in pairs taken from the two
/// halves of the range, so that a core reads two distant streams (see
/// `kernels/BENCHMARKS.md`), and a last odd tile alone.
///
/// # Safety
/// The [`KernelArgs`] contract, with the instructions `K` uses; the matrix
/// is packed in the interleaved layout.
#[inline(always)]
pub(super) unsafe fn drive<F: KernelFormat, K: InterleavedKernel, const C: usize>(args: &KernelArgs<'_>) {
    // The registry prunes the interleaved variants of every other format, and
    // the packer refuses to pack them.
    assert!(supports::<F>(), "interleaved variants exist for Q4_0, Q4_1, Q4_K, Q6_K and q4g32 only");
    let columns = args.input.columns();
    let (start, end) = (args.tiles.start, args.tiles.end);
    // Made once per call, not per tile pair: zeroed per pair (a `memset` of
    // 3 KiB, never needed: every unit's decoding writes what the unit reads)
    // it cost the Q4_K kernel about a sixth of its 1-thread speed from DRAM
    // on shapes with short rows (`kernels/BENCHMARKS.md`).
    let mut scratch = [const { UnitScales([0.0; 2 * MAX_GROUPS * INTERLEAVED_ROWS]) }; 2];
    // SAFETY: forwarded contract; every tile and column group is in range.
    unsafe {
        if columns < C || C == 1 {
            let half = (end - start) / 2;
            for c0 in 0..columns {
                for i in 0..half {
                    K::run_tiles::<F, 1, 2>(args, [start + i, start + half + i], c0, None, &mut scratch);
                }
                if (end - start) % 2 == 1 {
                    K::run_tiles::<F, 1, 1>(args, [end - 1], c0, None, &mut scratch);
                }
            }
            return;
        }
        let m = args.matrix;
        let units = m.padded_cols() / F::UNIT;
        let mut decoded = TILE_SCALES.take();
        decoded.resize(units * unit_floats::<F>(), 0.0);
        for tile in start..end {
            let base = m.data().as_ptr().add(tile * m.tile_bytes());
            for (u, out) in decoded.chunks_exact_mut(unit_floats::<F>()).enumerate() {
                K::decode_headers::<F>(base.add(u * unit_bytes::<F>()), out);
            }
            let mut c0 = 0;
            while c0 < columns {
                if columns - c0 >= C {
                    K::run_tiles::<F, C, 1>(args, [tile], c0, Some(&decoded), &mut scratch);
                    c0 += C;
                } else {
                    K::run_tiles::<F, 1, 1>(args, [tile], c0, Some(&decoded), &mut scratch);
                    c0 += 1;
                }
            }
        }
        TILE_SCALES.set(decoded);
    }
}

/// The int8 activations of input columns `c0..c0 + C` and, per column, their
/// scales per sub-block and, per scale group, the float sums of the
/// activations (for the min term) and the integer sums (for a symmetric
/// format's offset).
pub(super) struct Columns<const C: usize> {
    pub(super) q: [*const i8; C],
    pub(super) d: [*const f32; C],
    pub(super) sums: [*const f32; C],
    pub(super) isums: [*const i32; C],
}

impl<const C: usize> Columns<C> {
    /// The columns `c0..c0 + C` of `input`, with `F`'s scale groups.
    #[inline(always)]
    pub(super) fn of<F: KernelFormat>(input: &Input, c0: usize) -> Self {
        let split = F::SPLIT;
        let input = input.int8(F::INT8_BLOCK);
        Columns {
            q: std::array::from_fn(|c| input.q(c0 + c).as_ptr()),
            d: std::array::from_fn(|c| input.d(c0 + c).as_ptr()),
            sums: std::array::from_fn(|c| if split { input.qsum16(c0 + c) } else { input.qsum32(c0 + c) }.as_ptr()),
            isums: std::array::from_fn(|c| if split { input.isum16(c0 + c) } else { input.isum32(c0 + c) }.as_ptr()),
        }
    }
}

/// The decoded headers of one unit, as [`unit_floats`] lays them out (room
/// for the largest format).
#[repr(C, align(64))]
pub(super) struct UnitScales(pub(super) [f32; 2 * MAX_GROUPS * INTERLEAVED_ROWS]);

/// [`InterleavedKernel::run_tiles`] on AVX-512.
///
/// # Safety
/// As [`InterleavedKernel::run_tiles`], with AVX-512 (and VNNI for the VNNI
/// dot product).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // tile, column and pair index several arrays of registers
unsafe fn run_tiles<F: KernelFormat, D: Dot512, const C: usize, const N: usize>(
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
    // SAFETY: each tile's bytes are `units * unit_bytes` from its start (the
    // layout's arithmetic); every activation read is within the column's
    // `padded_cols` int8 values and per-sub-block arrays; AVX-512 is
    // guaranteed by the caller.
    unsafe {
        let bases = tiles.map(|tile| m.data().as_ptr().add(tile * m.tile_bytes()));
        let mut acc = [[_mm512_setzero_ps(); C]; N];
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
            // per tile and column.
            let mut unit_ints = [[_mm512_setzero_si512(); C]; N];
            for s in 0..F::SUBS_PER_UNIT {
                let sub = u * F::SUBS_PER_UNIT + s;
                if C == 1 {
                    // Decode streams the weights once, from DRAM: prefetch
                    // ahead, a sub-block's share of the unit at a time (a
                    // burst of a whole K-quant unit per tile was slower).
                    let share = unit_bytes::<F>().div_ceil(F::SUBS_PER_UNIT);
                    for base in bases {
                        super::prefetch_ahead(base.wrapping_add(u * unit_bytes::<F>() + s * share), share);
                    }
                }
                // Integer accumulators per tile and column: codes 0..16 and 16..32.
                let mut halves = [[[_mm512_setzero_si512(); 2]; C]; N];
                if let Some(offset) = F::OFFSET {
                    for c in 0..C {
                        let (lo, hi) = if F::SPLIT {
                            (-offset * *isums[c].add(2 * sub), -offset * *isums[c].add(2 * sub + 1))
                        } else {
                            (-offset * *isums[c].add(sub), 0)
                        };
                        for halves in halves.iter_mut() {
                            halves[c] = [_mm512_set1_epi32(lo), _mm512_set1_epi32(hi)];
                        }
                    }
                }
                // The sub-block's eight dwords, alternating between the
                // halves (codes 0..16 and 16..32) so that consecutive dot
                // products of one column go to different accumulators.
                // Written out: as a loop, the 6-bit formats' larger body was
                // not unrolled, and the accumulators, indexed by `k / 4`,
                // lived on the stack (`perf annotate`).
                macro_rules! dword {
                    ($k:literal) => {
                        for n in 0..N {
                            let cp = bases[n]
                                .add(u * unit_bytes::<F>() + INTERLEAVED_ROWS * F::UNIT_HEADER)
                                .add(s * sub_block_bytes(F::CODE_BITS));
                            let w = dword_codes::<F>(cp, $k);
                            for c in 0..C {
                                let x = _mm512_set1_epi32(q[c].add(32 * sub + 4 * $k).cast::<i32>().read_unaligned());
                                halves[n][c][$k / 4] = D::dot::<false>(halves[n][c][$k / 4], w, x);
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
                if k4_integer::<F>() {
                    for n in 0..N {
                        let sc = _mm512_loadu_si512(scales[n].add(k4::SCALES + INTERLEAVED_ROWS * s).cast());
                        for c in 0..C {
                            let dot = _mm512_add_epi32(halves[n][c][0], halves[n][c][1]);
                            unit_ints[n][c] = _mm512_add_epi32(unit_ints[n][c], _mm512_mullo_epi32(dot, sc));
                        }
                    }
                    continue;
                }
                for n in 0..N {
                    for c in 0..C {
                        let dx = _mm512_set1_ps(*d[c].add(sub));
                        let groups: &[usize] = if F::SPLIT { &[0, 1] } else { &[0] };
                        for &h in groups {
                            let (g, i) = if F::SPLIT {
                                (2 * s + h, halves[n][c][h])
                            } else {
                                (s, _mm512_add_epi32(halves[n][c][0], halves[n][c][1]))
                            };
                            let sc = _mm512_mul_ps(_mm512_loadu_ps(scales[n].add(INTERLEAVED_ROWS * g)), dx);
                            acc[n][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), sc, acc[n][c]);
                            if F::OFFSET.is_none() {
                                let at = if F::SPLIT { 2 * sub + h } else { sub };
                                let xs = _mm512_set1_ps(*sums[c].add(at));
                                let min = _mm512_loadu_ps(scales[n].add(INTERLEAVED_ROWS * (scale_groups + g)));
                                acc[n][c] = _mm512_fmadd_ps(min, xs, acc[n][c]);
                            }
                        }
                    }
                }
            }
            if k4_integer::<F>() {
                // Once per unit: `dx * (d * sum_j scale_j * dot_j - dmin *
                // sum_j min_j * isum_j)`, the mins' sum in integers too
                // (a sub-block's integer sum is at most 32 * 127 in
                // magnitude: an i16).
                let first = u * F::SUBS_PER_UNIT;
                for c in 0..C {
                    let dx = _mm512_set1_ps(*d[c].add(first));
                    let isum = |j: usize| *isums[c].add(first + j) as i16 as u16 as u32;
                    let isum_pairs: [__m512i; 4] =
                        std::array::from_fn(|p| _mm512_set1_epi32((isum(2 * p) | isum(2 * p + 1) << 16) as i32));
                    for n in 0..N {
                        let mut min_ints = _mm512_setzero_si512();
                        for (p, pair) in isum_pairs.iter().enumerate() {
                            let mins = _mm512_loadu_si512(scales[n].add(k4::MINS + INTERLEAVED_ROWS * p).cast());
                            min_ints = _mm512_add_epi32(min_ints, _mm512_madd_epi16(mins, *pair));
                        }
                        let d_dx = _mm512_mul_ps(_mm512_loadu_ps(scales[n].add(k4::D)), dx);
                        let dmin_dx = _mm512_mul_ps(_mm512_loadu_ps(scales[n].add(k4::NEG_DMIN)), dx);
                        acc[n][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(unit_ints[n][c]), d_dx, acc[n][c]);
                        acc[n][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(min_ints), dmin_dx, acc[n][c]);
                    }
                }
            }
        }
        for (acc, &tile) in acc.iter().zip(&tiles) {
            for (c, acc) in acc.iter().enumerate() {
                let mut lanes = [0.0f32; INTERLEAVED_ROWS];
                _mm512_storeu_ps(lanes.as_mut_ptr(), *acc);
                super::write_rows::<INTERLEAVED_ROWS>(args, tile, c0 + c, &lanes);
            }
        }
    }
}

/// The codes of dword `k` (codes `4k..4k+4`) of the sub-block at `cp`, for
/// all 16 rows: byte `4l + b` = code `4k + b` of row `l`.
///
/// # Safety
/// `cp` points at a sub-block of the layout; AVX-512 BW.
#[inline(always)]
unsafe fn dword_codes<F: KernelFormat>(cp: *const u8, k: usize) -> __m512i {
    // SAFETY: the planes of the sub-block are at `cp` (see the layout).
    unsafe {
        let nibbles = _mm512_loadu_si512(cp.add(64 * (k / 2)).cast());
        let low = _mm512_set1_epi8(0x0F);
        let w = if k.is_multiple_of(2) {
            _mm512_and_si512(nibbles, low)
        } else {
            _mm512_and_si512(_mm512_srli_epi16::<4>(nibbles), low)
        };
        if F::CODE_BITS != 6 {
            return w;
        }
        // Bits 4-5: crumb `k % 4` of crumb vector `k / 4`, moved to bits 4-5
        // of each byte (16-bit shifts; the mask drops what crosses bytes).
        let crumbs = _mm512_loadu_si512(cp.add(4 * 64 + 64 * (k / 4)).cast());
        let moved = match k % 4 {
            0 => _mm512_slli_epi16::<4>(crumbs),
            1 => _mm512_slli_epi16::<2>(crumbs),
            2 => crumbs,
            _ => _mm512_srli_epi16::<2>(crumbs),
        };
        // w | (moved & 0x30) in one instruction (truth table A | (B & C)).
        _mm512_ternarylogic_epi32::<0xF8>(w, moved, _mm512_set1_epi8(0x30))
    }
}

/// One header field byte `h` of all 16 rows.
///
/// # Safety
/// `hp` points at the unit's transposed headers.
#[inline(always)]
unsafe fn field(hp: *const u8, h: usize) -> __m128i {
    // SAFETY: byte `h` of the 16 headers is at `16h..16h + 16`.
    unsafe { _mm_loadu_si128(hp.add(INTERLEAVED_ROWS * h).cast()) }
}

/// The f16 at header bytes `h, h + 1` of all 16 rows, as f32.
///
/// # Safety
/// As [`field`]; F16C and AVX-512 F.
#[inline(always)]
unsafe fn field_f16(hp: *const u8, h: usize) -> __m512 {
    // SAFETY: forwarded from the caller.
    unsafe {
        let (lo, hi) = (field(hp, h), field(hp, h + 1));
        let halves = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
        _mm512_cvtph_ps(halves)
    }
}

/// Decodes the unit's headers at `hp` (transposed) into `out`, laid out as
/// [`unit_floats`] says.
///
/// # Safety
/// `hp` points at the unit; AVX-512 F/BW, F16C.
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
                let neg_dmin = _mm512_sub_ps(_mm512_setzero_ps(), field_f16(hp, 2));
                _mm512_storeu_ps(base.add(k4::D), d);
                _mm512_storeu_ps(base.add(k4::NEG_DMIN), neg_dmin);
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
                    let sc = _mm512_cvtepu8_epi32(sc);
                    _mm512_storeu_si512(base.add(k4::SCALES + INTERLEAVED_ROWS * j).cast(), sc);
                    *mins = mn;
                }
                for p in 0..4 {
                    // Each row's mins of sub-blocks 2p and 2p + 1 as the two i16 of its dword.
                    let (a, b) = (mins[2 * p], mins[2 * p + 1]);
                    let pairs = _mm256_set_m128i(_mm_unpackhi_epi8(a, b), _mm_unpacklo_epi8(a, b));
                    _mm512_storeu_si512(base.add(k4::MINS + INTERLEAVED_ROWS * p).cast(), _mm512_cvtepu8_epi16(pairs));
                }
            }
            HeaderKind::K6 => {
                // Sixteen i8 scales, then f16 d (the offset is integer).
                let d = field_f16(hp, 16);
                for g in 0..16 {
                    let s = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(field(hp, g))));
                    _mm512_storeu_ps(scale(g), s);
                }
            }
            // One 32-weight block per unit: f16 scale (Q4_0), then f16 min (Q4_1).
            HeaderKind::Scale { .. } => _mm512_storeu_ps(scale(0), field_f16(hp, 0)),
            HeaderKind::ScaleMin => {
                _mm512_storeu_ps(scale(0), field_f16(hp, 0));
                _mm512_storeu_ps(min(0), field_f16(hp, 2));
            }
            HeaderKind::Other => {}
        }
    }
}
