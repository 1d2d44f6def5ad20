//! Int8 drivers over the interleaved layout ([`crate::pack::interleaved`]):
//! the 16-row variants of Q4_0, Q4_1, Q4_K, Q6_K and q4g32, on AVX-512 here and on
//! AVX2 in [`super::interleaved_avx2`], over one shared walk ([`drive`]).
//!
//! The lanes of every vector are the 16 rows of a tile. For each 32-weight
//! sub-block and input column, eight integer dot products (four codes of
//! every row against four activation bytes broadcast) accumulate into two
//! integer vectors; one conversion and one fused multiply-add per scale group
//! then bring them into the column's float accumulator, and one more adds the
//! min term. A symmetric format's offset is subtracted exactly, in the
//! integer domain: the integer accumulators start at `-offset` times the
//! sum of the sub-block's int8 activations, the same for every row. The
//! headers are decoded 16 rows at a time: for a prompt once per tile, into
//! a per-thread buffer that every column group then reads; for decode once
//! per unit, as the weights stream by.

use std::arch::x86_64::*;
use std::cell::Cell;
use std::marker::PhantomData;

use super::avx512::Dot512;
use crate::input::Input;
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

/// What one ISA supplies to [`drive`]: the tiles' arithmetic and the
/// headers' decoding.
pub(super) trait InterleavedKernel {
    /// Computes the `N` tiles `tiles`, walked in lockstep, for input columns
    /// `c0..c0 + C`. With `decoded` (one tile only), the tile's headers come
    /// decoded from it, [`unit_floats`] per unit; without, they are decoded
    /// unit by unit.
    ///
    /// # Safety
    /// As [`drive`]; every tile is below `matrix.tiles()` and `c0 + C <=
    /// columns`; `decoded`, if given, holds the headers of every unit of the tile.
    unsafe fn run_tiles<F: KernelFormat, const C: usize, const N: usize>(
        args: &KernelArgs<'_>,
        tiles: [usize; N],
        c0: usize,
        decoded: Option<&[f32]>,
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
    ) {
        // SAFETY: forwarded contract.
        unsafe { run_tiles::<F, D, C, N>(args, tiles, c0, decoded) }
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
    // SAFETY: forwarded contract; every tile and column group is in range.
    unsafe {
        if columns < C || C == 1 {
            let half = (end - start) / 2;
            for c0 in 0..columns {
                for i in 0..half {
                    K::run_tiles::<F, 1, 2>(args, [start + i, start + half + i], c0, None);
                }
                if (end - start) % 2 == 1 {
                    K::run_tiles::<F, 1, 1>(args, [end - 1], c0, None);
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
                    K::run_tiles::<F, C, 1>(args, [tile], c0, Some(&decoded));
                    c0 += C;
                } else {
                    K::run_tiles::<F, 1, 1>(args, [tile], c0, Some(&decoded));
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
unsafe fn run_tiles<F: KernelFormat, D: Dot512, const C: usize, const N: usize>(
    args: &KernelArgs<'_>,
    tiles: [usize; N],
    c0: usize,
    decoded: Option<&[f32]>,
) {
    let (m, input) = (args.matrix, args.input);
    let units = m.padded_cols() / F::UNIT;
    let Columns { q, d, sums, isums } = Columns::<C>::of::<F>(input, c0);
    let mut unit_scales = [const { UnitScales([0.0; 2 * MAX_GROUPS * INTERLEAVED_ROWS]) }; N];
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
                if C == 1 {
                    // Decode streams the weights once, from DRAM: prefetch ahead.
                    super::prefetch_ahead(p, unit_bytes::<F>());
                }
                scales[n] = match decoded {
                    Some(decoded) => decoded.as_ptr().add(u * floats),
                    None => {
                        decode_headers::<F>(p, &mut unit_scales[n].0);
                        unit_scales[n].0.as_ptr()
                    }
                };
            }
            for s in 0..F::SUBS_PER_UNIT {
                let sub = u * F::SUBS_PER_UNIT + s;
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

/// Unsigned bytes (one per row) times `factor`.
#[inline(always)]
unsafe fn scaled_u8(bytes: __m128i, factor: __m512) -> __m512 {
    // SAFETY: AVX-512 F, guaranteed by the caller.
    unsafe { _mm512_mul_ps(factor, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes))) }
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
            HeaderKind::K4 => {
                // d, dmin, then 12 bytes of 6-bit scales and mins (ggml's
                // `get_scale_min_k4`, for 16 rows at once; `q[k]` is byte 4 + k).
                let d = field_f16(hp, 0);
                let neg_dmin = _mm512_sub_ps(_mm512_setzero_ps(), field_f16(hp, 2));
                let q = |k: usize| field(hp, 4 + k);
                let (six, four, top) = (_mm_set1_epi8(63), _mm_set1_epi8(0x0F), _mm_set1_epi8(0xC0u8 as i8));
                for j in 0..8 {
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
                    _mm512_storeu_ps(scale(j), scaled_u8(sc, d));
                    _mm512_storeu_ps(min(j), scaled_u8(mn, neg_dmin));
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
