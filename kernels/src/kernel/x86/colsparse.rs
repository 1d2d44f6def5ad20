//! Column-sparse drivers (f32 activations) for AVX2 and AVX-512, over the
//! column-major layout ([`crate::pack::columns`]).
//!
//! # Loop order and memory traffic
//!
//! The layout stores, per unit of columns, the headers of every row and then
//! each column's codes for every row. A 64-row tile of one column is small
//! (32 bytes for 4-bit codes), so visiting every column once per tile, tile
//! by tile (the scalar order), reads half cache lines scattered over the
//! whole matrix, and no prefetcher can follow. Here the tiles of a call are
//! taken in *bands* of up to [`BAND_TILES`] tiles (2048 rows), and
//!
//! ```text
//! for band:
//!   for scale sub-block with a nonzero activation:      (list: offsets, x)
//!     decode (scale, min) of every tile of the band      (stack, lane order)
//!     for group of up to GROUP nonzero columns:
//!       for tile in band:
//!         prefetch this tile's bytes of the next group's columns
//!         acc = first group ? 0 : partial[tile]         (registers)
//!         for column in group: acc += (scale * code + min) * x
//!         last group ? total[tile] += acc : partial[tile] = acc
//! ```
//!
//! Within a sub-block the headers and each nonzero column are read as
//! ascending runs over the band's rows (1 KiB per column of 4-bit codes in a
//! 2048-row band; adjacent columns are adjacent in memory), a few streams at
//! a time, in whole cache lines. The next group's columns (or, after the last
//! group, the next nonzero sub-block's columns and headers) are prefetched
//! tile by tile while the current group is computed, one group ahead: the
//! hardware prefetchers alone do not start on runs this short. Columns of a
//! zero activation, and the headers of a sub-block whose activations are all
//! zero, are never touched; a sub-block with at most [`GROUP`] nonzero
//! columns keeps its sums in registers from the first column to the total.
//!
//! Measured on a 4096 x 14336 Q4_0 down projection with DRAM-resident
//! weights (`benches/colsparse.rs`), this order reads about as fast as the
//! compute allows at full density, where the f32 path (two FMAs per weight)
//! rather than memory is the limit; at low density the cost is the headers,
//! which every sub-block with one nonzero activation needs for all rows.
//!
//! # Arithmetic
//!
//! Each weight is made as `dequantize` makes it, `w = scale * code + min`
//! (one FMA), then `acc += w * x` (one FMA): no factoring into `scale *
//! sum(code * x) + min * sum(x)`, whose terms may cancel. A sub-block's sum
//! is formed in f32 (registers, and `partial` between groups) and added into
//! an f32 per-row total. Headers decode in SIMD with the arithmetic of the
//! format's `affine` (f16 conversion, then the same products), for Q4_0-style
//! scales, scale-and-min pairs, the K formats' packed 6-bit scales (Q4_K,
//! Q5_K) and i8 scales (Q6_K); any other header goes through `affine` row by
//! row.
//!
//! # Rows in lanes
//!
//! A 64-row tile is four 16-row groups. AVX-512 keeps one vector per group;
//! for the nibble plane (4-, 5- and 6-bit codes) it uses the order in which
//! one `vpmovzxbd` of 16 plane bytes yields codes (lanes 0–7 rows 0–7 and
//! 8–15 rows 16–23 of a 32-row half, then rows 8–15 and 24–31), and puts the
//! scales into the same order; AVX2 keeps two vectors per group in row order.
//! [`ColumnKernel::lane_row`] maps lanes back to rows when the outputs are
//! written.

use std::arch::x86_64::*;

use crate::formats::Format;
use crate::kernel::{HeaderKind, KernelArgs, KernelFormat, unit_affine_scaled};
use crate::pack::COLUMN_MAJOR_ROWS as ROWS;
use crate::pack::columns::column_bytes;

/// Most tiles whose totals are kept at once (2048 rows, 8 KiB of f32).
const BAND_TILES: usize = 32;

/// Columns whose accumulation into a tile's registers is one pass (a
/// group): each pass reads and writes the tile's partial sums once.
const GROUP: usize = 8;

/// Largest scale sub-block (`min(SCALE_LEN, UNIT)`) of any format.
const MAX_SUB: usize = 256;

/// How the headers of 16 consecutive rows become scales and mins.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Headers {
    /// One f16 scale per row (2 bytes); `min = -offset * scale`.
    Scale,
    /// An f16 scale and an f16 min per row (4 bytes).
    ScaleMin,
    /// Two blocks of f16 scale and min per row (8 bytes: native 16-weight groups).
    ScaleMinPairs,
    /// Q4_K and Q5_K: f16 `d` and `dmin`, then eight 6-bit scales and mins
    /// packed in 12 bytes (ggml's `get_scale_min_k4`); 16 bytes per row.
    K4,
    /// Q6_K: sixteen i8 scales, then f16 `d`; 18 bytes per row.
    K6,
    /// Through [`unit_affine_scaled`], one row at a time.
    Scalar,
}

const fn headers<F: KernelFormat>() -> Headers {
    match F::FORMAT {
        Format::Q4K | Format::Q5K if F::UNIT_HEADER == 16 && F::BLOCK_LEN == F::UNIT && F::SCALE_LEN == 32 => {
            return Headers::K4;
        }
        Format::Q6K if F::UNIT_HEADER == 18 && F::BLOCK_LEN == F::UNIT && F::SCALE_LEN == 16 => return Headers::K6,
        _ => {}
    }
    match F::HEADER {
        HeaderKind::Scale { .. } if F::HEADER_BYTES == 2 && F::UNIT_HEADER == 2 => Headers::Scale,
        HeaderKind::ScaleMin if F::HEADER_BYTES == 4 && F::UNIT_HEADER == 4 => Headers::ScaleMin,
        HeaderKind::ScaleMin if F::HEADER_BYTES == 4 && F::UNIT_HEADER == 8 => Headers::ScaleMinPairs,
        _ => Headers::Scalar,
    }
}

/// The `pshufb` control that gathers, in each 16-byte Q4_K/Q5_K row header
/// `h`, the f16 `d` and `dmin` into dword 0 and the bytes of sub-block `j`'s
/// 6-bit scale and min into dword 1: `[h[4 + j], h[8 + j], -, -]` for `j < 4`,
/// `[h[8 + j], h[8 + j], h[j], h[4 + j]]` otherwise; then, per lane,
/// `scale = d * sc` and `min = -(dmin * m)` as in `affine`, with `sc = x & 63`
/// and `m = x >> 8 & 63` for `j < 4`, otherwise `sc = x & 15 | x >> 18 & 48`
/// and `m = x >> 12 & 15 | x >> 26 & 48`.
fn k4_control(j: usize) -> [i32; 4] {
    let x =
        if j < 4 { (4 + j) | (8 + j) << 8 | 0x8080 << 16 } else { (8 + j) | (8 + j) << 8 | j << 16 | (4 + j) << 24 };
    [0x0302_0100, x as i32, -0x7f7f_7f80, -0x7f7f_7f80]
}

/// `-offset` of a symmetric format's header (0 otherwise).
const fn neg_offset<F: KernelFormat>() -> f32 {
    match F::HEADER {
        HeaderKind::Scale { offset } => -offset,
        _ => 0.0,
    }
}

/// Bytes per 64-row tile of a column's first and second bit plane.
const fn plane_tile_bytes(bits: u32) -> (usize, usize) {
    match bits {
        2 => (16, 0),
        3 => (16, 8),
        4 => (32, 0),
        5 => (32, 8),
        6 => (32, 16),
        _ => (64, 0),
    }
}

/// Whether the codes come from a nibble plane.
const fn nibble_plane(bits: u32) -> bool {
    matches!(bits, 4..=6)
}

/// Bit position, within the little-endian u32 of a 16-row crumb group, of
/// the two bits of row `i` (`0..16`): byte `i % 4`, bits `2 * (i / 4)`.
const fn crumb_shift(i: usize) -> u32 {
    (8 * (i % 4) + 2 * (i / 4)) as u32
}

/// The scales of one sub-block for the 64 rows of a tile, in registers, in
/// lane order (`s[v]`, `m[v]` go with code vector `v`).
#[derive(Copy, Clone)]
struct TileScales<V, const N: usize> {
    s: [V; N],
    m: [V; N],
}

/// The scales and mins of one sub-block for the 64 rows of a tile, in
/// memory, in lane order.
#[derive(Copy, Clone)]
#[repr(C, align(64))]
struct ScaleLanes {
    s: [f32; ROWS],
    m: [f32; ROWS],
}

/// One float per row of a tile, in lane order.
#[derive(Copy, Clone)]
#[repr(C, align(64))]
struct Lanes([f32; ROWS]);

/// Scales and mins of the 64 rows at `headers` (the unit's header bytes of
/// the tile's first row) for the sub-block starting at unit element
/// `element`, in row order, through the format's scalar `affine`.
///
/// # Safety
/// `headers` is readable for `64 * UNIT_HEADER` bytes.
#[inline(always)]
unsafe fn scalar_scales<F: KernelFormat>(headers: *const u8, element: usize) -> ([f32; ROWS], [f32; ROWS]) {
    // SAFETY: the caller guarantees the header bytes of the tile's rows.
    let bytes = unsafe { std::slice::from_raw_parts(headers, ROWS * F::UNIT_HEADER) };
    let (mut s, mut m) = ([0.0f32; ROWS], [0.0f32; ROWS]);
    for r in 0..ROWS {
        (s[r], m[r]) = unit_affine_scaled::<F>(&bytes[r * F::UNIT_HEADER..(r + 1) * F::UNIT_HEADER], element);
    }
    (s, m)
}

/// One instruction set's work on a tile.
trait ColumnKernel<F: KernelFormat> {
    /// A tile's scales and mins, ready for [`column`](Self::column).
    type Scales;
    /// A tile's accumulators.
    type Acc;

    /// The row (within the tile) of lane `p` (`0..64`, vector `p / lanes`).
    fn lane_row(p: usize) -> usize;

    /// Decodes the scales of the tile whose first row's headers are at
    /// `headers`, for the sub-block at unit element `element`, into `out`.
    ///
    /// # Safety
    /// `headers` is readable for `64 * UNIT_HEADER` bytes; the CPU has the ISA.
    unsafe fn decode(headers: *const u8, element: usize, out: &mut ScaleLanes);

    /// Lists the nonzero values of `xs` (whose first column's codes are at
    /// byte `first` of its unit's columns) in `list`; returns how many.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn scan(xs: &[f32], first: usize, col_bytes: usize, list: &mut SubBlock) -> usize;

    /// The decoded scales of a tile.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn scales(lanes: &ScaleLanes) -> Self::Scales;

    /// Zeroed accumulators.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn zero() -> Self::Acc;

    /// Accumulators loaded from `lanes`.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn load(lanes: &Lanes) -> Self::Acc;

    /// `lanes = acc`.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn store(acc: &Self::Acc, lanes: &mut Lanes);

    /// `lanes += acc`.
    ///
    /// # Safety
    /// The CPU has the ISA.
    unsafe fn add_into(acc: &Self::Acc, lanes: &mut Lanes);

    /// `acc += (scale * code + min) * x` for the tile's 64 rows of one
    /// column, whose first bit plane's tile bytes are at `first` and second
    /// plane's at `second`.
    ///
    /// # Safety
    /// The planes' tile bytes are readable; the CPU has the ISA.
    unsafe fn column(acc: &mut Self::Acc, scales: &Self::Scales, first: *const u8, second: *const u8, x: f32);
}

/// Room in [`SubBlock`] for a sub-block's columns and one vector more.
const LIST: usize = MAX_SUB + 16;

/// The nonzero activations of one scale sub-block.
struct SubBlock {
    /// The sub-block's index (`0..units * subs per unit`).
    index: usize,
    /// How many of its columns have a nonzero activation.
    n: usize,
    /// Byte offsets of those columns' codes from the unit's first column.
    offsets: [usize; LIST],
    /// Their activations.
    values: [f32; LIST],
}

impl SubBlock {
    #[inline(always)]
    fn new() -> SubBlock {
        SubBlock { index: 0, n: 0, offsets: [0; LIST], values: [0.0; LIST] }
    }

    /// Lists the nonzero activations of the first sub-block at or after
    /// `from` that has any; `false` if none is left.
    ///
    /// # Safety
    /// The CPU has the ISA of `K`.
    #[inline(always)]
    unsafe fn find<F: KernelFormat, K: ColumnKernel<F>>(&mut self, x: &[f32], from: usize, g: &Geometry) -> bool {
        let mut index = from;
        while index < g.subs {
            let xs = &x[index * g.sub_len..(index + 1) * g.sub_len];
            let first = (index % g.subs_per_unit) * g.sub_len * g.col_bytes;
            // SAFETY: forwarded ISA guarantee.
            let n = unsafe { K::scan(xs, first, g.col_bytes, self) };
            if n > 0 {
                self.index = index;
                self.n = n;
                return true;
            }
            index += 1;
        }
        false
    }
}

/// Lists the nonzero values of `xs` (whose first column's codes are at byte
/// `first` of its unit's columns) in `list`, without branches; returns how
/// many.
#[inline(always)]
fn scan_scalar(xs: &[f32], first: usize, col_bytes: usize, list: &mut SubBlock) -> usize {
    // Every column is written, and the count advances past nonzero ones.
    let mut n = 0;
    for (j, &v) in xs.iter().enumerate() {
        list.offsets[n] = first + j * col_bytes;
        list.values[n] = v;
        n += (v != 0.0) as usize;
    }
    n
}

/// The column-major geometry of a matrix.
struct Geometry {
    /// Bytes of one column's codes (all planes).
    col_bytes: usize,
    /// Columns per scale sub-block.
    sub_len: usize,
    /// Sub-blocks per unit.
    subs_per_unit: usize,
    /// Sub-blocks of the (padded) matrix.
    subs: usize,
}

/// The shared loop (see the module documentation).
///
/// # Safety
/// The [`KernelArgs`] contract, with the ISA of `K`; the matrix is in the
/// column-major layout.
#[inline(always)]
unsafe fn drive<F: KernelFormat, K: ColumnKernel<F>>(args: &KernelArgs<'_>) {
    const { assert!(F::SCALE_LEN <= MAX_SUB || F::UNIT <= MAX_SUB) };
    let m = args.matrix;
    let padded_rows = m.tiles() * ROWS;
    let col_bytes = column_bytes(F::CODE_BITS, padded_rows);
    let header_bytes = padded_rows * F::UNIT_HEADER;
    let unit_bytes = header_bytes + F::UNIT * col_bytes;
    let sub_len = F::SCALE_LEN.min(F::UNIT);
    let subs_per_unit = F::UNIT / sub_len;
    let geometry = Geometry { col_bytes, sub_len, subs_per_unit, subs: m.padded_cols() / sub_len };
    let (p1, p2) = plane_tile_bytes(F::CODE_BITS);
    // The second plane follows the first, which holds `p1` bytes per tile.
    let plane2 = m.tiles() * p1;
    let tile_headers = ROWS * F::UNIT_HEADER;
    let x = args.input.x(0);
    let data = m.data().as_ptr();
    let rows = m.rows();

    let mut totals = [Lanes([0.0; ROWS]); BAND_TILES];
    let mut partial = [Lanes([0.0; ROWS]); BAND_TILES];
    let mut scales = [ScaleLanes { s: [0.0; ROWS], m: [0.0; ROWS] }; BAND_TILES];
    let mut lists = [SubBlock::new(), SubBlock::new()];
    let mut band = args.tiles.start;
    while band < args.tiles.end {
        let tiles = (args.tiles.end - band).min(BAND_TILES);
        for t in &mut totals[..tiles] {
            *t = Lanes([0.0; ROWS]);
        }
        let mut c = 0;
        // SAFETY: the ISA is the caller's guarantee.
        let mut more = unsafe { lists[0].find::<F, K>(x, 0, &geometry) };
        while more {
            let (l0, l1) = lists.split_at_mut(1);
            let (cur, next) = if c == 0 { (&l0[0], &mut l1[0]) } else { (&l1[0], &mut l0[0]) };
            // SAFETY: the ISA is the caller's guarantee.
            let has_next = unsafe { next.find::<F, K>(x, cur.index + 1, &geometry) };
            let unit = cur.index / subs_per_unit;
            let next_unit = next.index / subs_per_unit;
            // SAFETY: the sub-blocks are below `subs`, so their units lie
            // within the packed data; `wrapping_add` for the one that may not
            // exist (it is then only prefetched, which never faults).
            let (headers, next_headers) =
                unsafe { (data.add(unit * unit_bytes), data.wrapping_add(next_unit * unit_bytes)) };
            let element = (cur.index % subs_per_unit) * sub_len;
            for (t, scales) in scales[..tiles].iter_mut().enumerate() {
                // SAFETY: the tile's header rows lie within the unit's headers.
                unsafe { K::decode(headers.add((band + t) * tile_headers), element, scales) };
            }
            // SAFETY: the codes follow the unit's headers (the layout).
            let codes = unsafe { headers.add(header_bytes) };
            let next_codes = next_headers.wrapping_add(header_bytes);
            let prefetch_headers = has_next && next_unit != unit;
            let mut g0 = 0;
            while g0 < cur.n {
                let g1 = (g0 + GROUP).min(cur.n);
                let (first_group, last_group) = (g0 == 0, g1 == cur.n);
                // The columns of the next group (of this sub-block or the next),
                // prefetched tile by tile one group ahead.
                let (ahead_codes, ahead) = if !last_group {
                    (codes, &cur.offsets[g1..(g1 + GROUP).min(cur.n)])
                } else if has_next {
                    (next_codes, &next.offsets[..GROUP.min(next.n)])
                } else {
                    (codes, &cur.offsets[..0])
                };
                let (offsets, values) = (&cur.offsets[g0..g1], &cur.values[g0..g1]);
                for t in 0..tiles {
                    let tile = band + t;
                    // SAFETY: `tile` is below `m.tiles()` (the contract), so its
                    // plane bytes lie within each column; prefetches never
                    // fault; the ISA is the caller's guarantee.
                    unsafe {
                        let a1 = ahead_codes.wrapping_add(tile * p1 + p1 - 1);
                        let a2 = ahead_codes.wrapping_add(plane2 + tile * p2);
                        for &o in ahead {
                            prefetch(a1.wrapping_add(o));
                            if p2 > 0 {
                                prefetch(a2.wrapping_add(o));
                            }
                        }
                        if prefetch_headers && first_group {
                            let h = next_headers.wrapping_add(tile * tile_headers);
                            for line in 0..tile_headers.div_ceil(64) {
                                prefetch(h.wrapping_add(64 * line));
                            }
                        }
                        let (first, second) = (codes.add(tile * p1), codes.wrapping_add(plane2 + tile * p2));
                        let sc = K::scales(&scales[t]);
                        let mut acc = if first_group { K::zero() } else { K::load(&partial[t]) };
                        if offsets.len() == GROUP {
                            // A whole group: a loop of fixed length, unrolled.
                            for k in 0..GROUP {
                                let (o, v) = (*offsets.get_unchecked(k), *values.get_unchecked(k));
                                K::column(&mut acc, &sc, first.add(o), second.wrapping_add(o), v);
                            }
                        } else {
                            for (&o, &v) in offsets.iter().zip(values) {
                                K::column(&mut acc, &sc, first.add(o), second.wrapping_add(o), v);
                            }
                        }
                        if last_group {
                            K::add_into(&acc, &mut totals[t]);
                        } else {
                            K::store(&acc, &mut partial[t]);
                        }
                    }
                }
                g0 = g1;
            }
            c ^= 1;
            more = has_next;
        }
        for (t, totals) in totals[..tiles].iter().enumerate() {
            let r0 = (band + t) * ROWS;
            for (p, &v) in totals.0.iter().enumerate() {
                let row = r0 + K::lane_row(p);
                if row < rows {
                    // SAFETY: the contract makes `out[row]` valid for writes.
                    unsafe { *args.out.add(row) = v };
                }
            }
        }
        band += tiles;
    }
}

/// Prefetches the cache line at `p` into L1 (a hint: it never faults).
#[inline(always)]
fn prefetch(p: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address; SSE is baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
}

/// The AVX-512 tile kernel: four vectors of 16 rows.
pub(crate) struct Avx512Tile;

/// Loads 16 `i32`s.
#[inline(always)]
unsafe fn load512(v: &[i32; 16]) -> __m512i {
    // SAFETY: a plain load of 64 bytes from an array of 64 bytes; AVX-512 F
    // is the caller's guarantee.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// Rotations that bring a crumb to bits 4–5, lanes in nibble order: vector
/// `hi` (0 or 1) of a 32-row half, lanes `0..8` from the first 16-row group
/// and `8..16` from the second.
const fn crumb_rotations_nibble(hi: usize) -> [i32; 16] {
    let mut r = [0i32; 16];
    let mut l = 0;
    while l < 16 {
        r[l] = ((crumb_shift(8 * hi + l % 8) + 28) % 32) as i32;
        l += 1;
    }
    r
}

/// Right shifts that bring a crumb to bits 0–1, lanes in row order.
const fn crumb_shifts_rows() -> [i32; 16] {
    let mut r = [0i32; 16];
    let mut l = 0;
    while l < 16 {
        r[l] = crumb_shift(l) as i32;
        l += 1;
    }
    r
}

const ROT_NIBBLE_LO: [i32; 16] = crumb_rotations_nibble(0);
const ROT_NIBBLE_HI: [i32; 16] = crumb_rotations_nibble(1);
const SHIFT_ROWS: [i32; 16] = crumb_shifts_rows();
/// `permutexvar` indices: lanes `0..8` take dword 0, lanes `8..16` dword 1.
const DWORD_01: [i32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
/// `permutex2var` indices picking dword `2 i` of two vectors (block 0 of
/// eight-byte rows); add 1 for block 1.
const EVEN_DWORDS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];

/// The codes of a tile of one column, one vector per 16 rows (lane order of
/// [`Avx512Tile`]).
///
/// # Safety
/// The planes' tile bytes are readable; the CPU has AVX-512 F/BW and BMI2.
#[inline(always)]
unsafe fn codes512(bits: u32, first: *const u8, second: *const u8) -> [__m512i; 4] {
    // SAFETY: reads stay within the tile bytes of the planes (`p1`/`p2` of
    // `plane_tile_bytes`); the instructions are the caller's guarantee.
    unsafe {
        let mut c = [_mm512_setzero_si512(); 4];
        match bits {
            4..=6 => {
                for h in 0..2 {
                    let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(first.add(16 * h).cast()));
                    c[2 * h] = _mm512_and_si512(v, _mm512_set1_epi32(0xF));
                    c[2 * h + 1] = _mm512_srli_epi32::<4>(v);
                }
                if bits == 5 {
                    let mask = second.cast::<u64>().read_unaligned();
                    for h in 0..2 {
                        let w = (mask >> (32 * h)) as u32;
                        let sixteen = _mm512_set1_epi32(16);
                        let (lo, hi) = (_pext_u32(w, 0x00FF_00FF) as u16, _pext_u32(w, 0xFF00_FF00) as u16);
                        c[2 * h] = _mm512_mask_or_epi32(c[2 * h], lo, c[2 * h], sixteen);
                        c[2 * h + 1] = _mm512_mask_or_epi32(c[2 * h + 1], hi, c[2 * h + 1], sixteen);
                    }
                } else if bits == 6 {
                    let top = _mm512_set1_epi32(0x30);
                    for h in 0..2 {
                        let pair = _mm512_castsi128_si512(_mm_loadl_epi64(second.add(8 * h).cast()));
                        let v = _mm512_permutexvar_epi32(load512(&DWORD_01), pair);
                        let lo = _mm512_and_si512(_mm512_rorv_epi32(v, load512(&ROT_NIBBLE_LO)), top);
                        let hi = _mm512_and_si512(_mm512_rorv_epi32(v, load512(&ROT_NIBBLE_HI)), top);
                        c[2 * h] = _mm512_or_si512(c[2 * h], lo);
                        c[2 * h + 1] = _mm512_or_si512(c[2 * h + 1], hi);
                    }
                }
            }
            2 | 3 => {
                for (g, c) in c.iter_mut().enumerate() {
                    let v = _mm512_set1_epi32(first.add(4 * g).cast::<i32>().read_unaligned());
                    *c = _mm512_and_si512(_mm512_srlv_epi32(v, load512(&SHIFT_ROWS)), _mm512_set1_epi32(3));
                }
                if bits == 3 {
                    let mask = second.cast::<u64>().read_unaligned();
                    for (g, c) in c.iter_mut().enumerate() {
                        *c = _mm512_mask_or_epi32(*c, (mask >> (16 * g)) as u16, *c, _mm512_set1_epi32(4));
                    }
                }
            }
            _ => {
                for (g, c) in c.iter_mut().enumerate() {
                    *c = _mm512_cvtepu8_epi32(_mm_loadu_si128(first.add(16 * g).cast()));
                }
            }
        }
        c
    }
}

/// `permutex2var` indices: dwords 0 of the four 128-bit lanes of two
/// vectors, then their dwords 1.
const LANE_DWORDS_01: [i32; 16] = [0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29];

/// Scales and mins, in row order, of sub-block `j` of the 16 Q4_K/Q5_K row
/// headers (16 bytes each) at `h`; `control` is [`k4_control`]`(j)` in every
/// 128-bit lane.
///
/// # Safety
/// 256 readable bytes at `h`; the CPU has AVX-512 F/BW/DQ.
#[inline(always)]
unsafe fn k4_rows512(h: *const u8, control: __m512i, j: usize) -> (__m512, __m512) {
    // SAFETY: four loads of 64 bytes within the 256; the rest is register
    // work on AVX-512 F/BW/DQ, the caller's guarantee.
    unsafe {
        let mut v = [_mm512_setzero_si512(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            *v = _mm512_shuffle_epi8(_mm512_loadu_si512(h.add(64 * i).cast()), control);
        }
        let idx = load512(&LANE_DWORDS_01);
        let (ab, cd) = (_mm512_permutex2var_epi32(v[0], idx, v[1]), _mm512_permutex2var_epi32(v[2], idx, v[3]));
        let (d, dmin) = scale_min512(_mm512_shuffle_i64x2::<0x44>(ab, cd));
        let x = _mm512_shuffle_i64x2::<0xEE>(ab, cd);
        let (m15, m48, m63) = (_mm512_set1_epi32(15), _mm512_set1_epi32(48), _mm512_set1_epi32(63));
        let (sc, m) = if j < 4 {
            (_mm512_and_si512(x, m63), _mm512_and_si512(_mm512_srli_epi32::<8>(x), m63))
        } else {
            (
                _mm512_or_si512(_mm512_and_si512(x, m15), _mm512_and_si512(_mm512_srli_epi32::<18>(x), m48)),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi32::<12>(x), m15),
                    _mm512_and_si512(_mm512_srli_epi32::<26>(x), m48),
                ),
            )
        };
        let scale = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
        let min = _mm512_xor_ps(_mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m)), _mm512_set1_ps(-0.0));
        (scale, min)
    }
}

/// Scales and mins, in row order, of sub-block `j` of the 16 Q6_K row
/// headers (18 bytes each: i8 scales, then f16 `d`) at `h`.
///
/// # Safety
/// 288 readable bytes at `h`; the CPU has AVX-512 F.
#[inline(always)]
unsafe fn k6_rows512(h: *const u8, j: usize) -> (__m512, __m512) {
    // SAFETY: the gathers read four bytes within each 18-byte row header;
    // AVX-512 F is the caller's guarantee.
    unsafe {
        let rows = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(18),
        );
        // `d` is the high half of the dword at byte 14.
        let dv = _mm512_i32gather_epi32::<1>(_mm512_add_epi32(rows, _mm512_set1_epi32(14)), h.cast());
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(dv)));
        // The scale `h[j]` is byte `j - at` of the dword at byte `at`.
        let at = j.saturating_sub(3);
        let sv = _mm512_i32gather_epi32::<1>(_mm512_add_epi32(rows, _mm512_set1_epi32(at as i32)), h.cast());
        let up = _mm_cvtsi32_si128((24 - 8 * (j - at)) as i32);
        let sc = _mm512_srai_epi32::<24>(_mm512_sll_epi32(sv, up));
        let scale = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
        (scale, _mm512_mul_ps(scale, _mm512_set1_ps(-32.0)))
    }
}

/// f16 scale (low half) and min (high half) of 16 dwords.
///
/// # Safety
/// The CPU has AVX-512 F.
#[inline(always)]
unsafe fn scale_min512(v: __m512i) -> (__m512, __m512) {
    // SAFETY: register-only AVX-512 F, the caller's guarantee.
    unsafe {
        (_mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)), _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(v))))
    }
}

impl<F: KernelFormat> ColumnKernel<F> for Avx512Tile {
    type Scales = TileScales<__m512, 4>;
    type Acc = [__m512; 4];

    #[inline(always)]
    fn lane_row(p: usize) -> usize {
        if nibble_plane(F::CODE_BITS) {
            let (v, l) = (p / 16, p % 16);
            32 * (v / 2) + 8 * (v % 2) + if l < 8 { l } else { l + 8 }
        } else {
            p
        }
    }

    #[inline(always)]
    unsafe fn decode(h: *const u8, element: usize, out: &mut ScaleLanes) {
        // SAFETY: reads stay within the 64 rows' header bytes; stores within
        // `out`; AVX-512 F is the caller's guarantee.
        unsafe {
            let mut t = TileScales { s: [_mm512_setzero_ps(); 4], m: [_mm512_setzero_ps(); 4] };
            if headers::<F>() == Headers::Scalar {
                let (s, m) = scalar_scales::<F>(h, element);
                for g in 0..4 {
                    t.s[g] = _mm512_loadu_ps(s.as_ptr().add(16 * g));
                    t.m[g] = _mm512_loadu_ps(m.as_ptr().add(16 * g));
                }
            } else if headers::<F>() == Headers::K4 {
                let j = (element % F::BLOCK_LEN) / F::SCALE_LEN;
                let control = _mm512_broadcast_i32x4(_mm_loadu_si128(k4_control(j).as_ptr().cast()));
                for g in 0..4 {
                    (t.s[g], t.m[g]) = k4_rows512(h.add(16 * 16 * g), control, j);
                }
            } else if headers::<F>() == Headers::K6 {
                let j = (element % F::BLOCK_LEN) / F::SCALE_LEN;
                for g in 0..4 {
                    (t.s[g], t.m[g]) = k6_rows512(h.add(18 * 16 * g), j);
                }
            } else {
                for g in 0..4 {
                    (t.s[g], t.m[g]) = match headers::<F>() {
                        Headers::Scale => {
                            let s = _mm512_cvtph_ps(_mm256_loadu_si256(h.add(32 * g).cast()));
                            (s, _mm512_mul_ps(s, _mm512_set1_ps(neg_offset::<F>())))
                        }
                        Headers::ScaleMin => scale_min512(_mm512_loadu_si512(h.add(64 * g).cast())),
                        _ => {
                            let a = _mm512_loadu_si512(h.add(128 * g).cast());
                            let b = _mm512_loadu_si512(h.add(128 * g + 64).cast());
                            let block = (element / F::BLOCK_LEN) as i32;
                            let idx = _mm512_add_epi32(load512(&EVEN_DWORDS), _mm512_set1_epi32(block));
                            scale_min512(_mm512_permutex2var_epi32(a, idx, b))
                        }
                    };
                }
            }
            if nibble_plane(F::CODE_BITS) {
                // Row order to nibble order (see the module documentation).
                for v in [&mut t.s, &mut t.m] {
                    let [a, b, c, d] = *v;
                    *v = [
                        _mm512_shuffle_f32x4::<0x44>(a, b),
                        _mm512_shuffle_f32x4::<0xEE>(a, b),
                        _mm512_shuffle_f32x4::<0x44>(c, d),
                        _mm512_shuffle_f32x4::<0xEE>(c, d),
                    ];
                }
            }
            for g in 0..4 {
                _mm512_store_ps(out.s.as_mut_ptr().add(16 * g), t.s[g]);
                _mm512_store_ps(out.m.as_mut_ptr().add(16 * g), t.m[g]);
            }
        }
    }

    #[inline(always)]
    unsafe fn scan(xs: &[f32], first: usize, col_bytes: usize, list: &mut SubBlock) -> usize {
        if !xs.len().is_multiple_of(16) {
            return scan_scalar(xs, first, col_bytes, list);
        }
        // SAFETY: loads within `xs`; each compressed store writes a whole
        // vector at `n` (or `n` plus the low half's count), which `LIST`
        // leaves room for since `n` stays below `xs.len() <= MAX_SUB`;
        // AVX-512 F/DQ is the caller's guarantee.
        unsafe {
            let (zero, cb) = (_mm512_setzero_ps(), col_bytes as i64);
            let step = _mm512_set1_epi64(8 * cb);
            let iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
            let mut lo =
                _mm512_add_epi64(_mm512_set1_epi64(first as i64), _mm512_mullo_epi64(iota, _mm512_set1_epi64(cb)));
            let mut n = 0;
            for c in (0..xs.len()).step_by(16) {
                let v = _mm512_loadu_ps(xs.as_ptr().add(c));
                let mask = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, zero);
                let hi = _mm512_add_epi64(lo, step);
                if mask != 0 {
                    _mm512_storeu_ps(list.values.as_mut_ptr().add(n), _mm512_maskz_compress_ps(mask, v));
                    let (mlo, mhi) = (mask as u8, (mask >> 8) as u8);
                    let at = list.offsets.as_mut_ptr().add(n);
                    _mm512_storeu_si512(at.cast(), _mm512_maskz_compress_epi64(mlo, lo));
                    _mm512_storeu_si512(at.add(mlo.count_ones() as usize).cast(), _mm512_maskz_compress_epi64(mhi, hi));
                    n += mask.count_ones() as usize;
                }
                lo = _mm512_add_epi64(hi, step);
            }
            n
        }
    }

    #[inline(always)]
    unsafe fn scales(lanes: &ScaleLanes) -> Self::Scales {
        // SAFETY: aligned loads within `lanes`; AVX-512 F is the caller's guarantee.
        unsafe {
            let mut t = TileScales { s: [_mm512_setzero_ps(); 4], m: [_mm512_setzero_ps(); 4] };
            for g in 0..4 {
                t.s[g] = _mm512_load_ps(lanes.s.as_ptr().add(16 * g));
                t.m[g] = _mm512_load_ps(lanes.m.as_ptr().add(16 * g));
            }
            t
        }
    }

    #[inline(always)]
    unsafe fn zero() -> Self::Acc {
        // SAFETY: AVX-512 F, the caller's guarantee.
        unsafe { [_mm512_setzero_ps(); 4] }
    }

    #[inline(always)]
    unsafe fn load(lanes: &Lanes) -> Self::Acc {
        // SAFETY: aligned loads within `lanes`; AVX-512 F is the caller's guarantee.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); 4];
            for (g, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_load_ps(lanes.0.as_ptr().add(16 * g));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn store(acc: &Self::Acc, lanes: &mut Lanes) {
        // SAFETY: aligned stores within `lanes`; AVX-512 F is the caller's guarantee.
        unsafe {
            for (g, acc) in acc.iter().enumerate() {
                _mm512_store_ps(lanes.0.as_mut_ptr().add(16 * g), *acc);
            }
        }
    }

    #[inline(always)]
    unsafe fn add_into(acc: &Self::Acc, lanes: &mut Lanes) {
        // SAFETY: aligned loads and stores within `lanes`; AVX-512 F is the
        // caller's guarantee.
        unsafe {
            for (g, acc) in acc.iter().enumerate() {
                let p = lanes.0.as_mut_ptr().add(16 * g);
                _mm512_store_ps(p, _mm512_add_ps(_mm512_load_ps(p), *acc));
            }
        }
    }

    #[inline(always)]
    unsafe fn column(acc: &mut Self::Acc, sc: &Self::Scales, first: *const u8, second: *const u8, x: f32) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let codes = codes512(F::CODE_BITS, first, second);
            let x = _mm512_set1_ps(x);
            for g in 0..4 {
                // Each weight exactly as `dequantize` makes it: scale * code + min.
                let w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(codes[g]), sc.s[g], sc.m[g]);
                acc[g] = _mm512_fmadd_ps(w, x, acc[g]);
            }
        }
    }
}

/// The AVX2 tile kernel: eight vectors of 8 rows, in row order.
pub(crate) struct Avx2Tile;

/// Loads 8 `i32`s.
#[inline(always)]
unsafe fn load256(v: &[i32; 8]) -> __m256i {
    // SAFETY: a plain load of 32 bytes from an array of 32 bytes; AVX is
    // the caller's guarantee.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

/// Right shifts that bring a crumb to bits 0–1, for rows `8 hi..8 hi + 8`
/// of a 16-row group.
const fn crumb_shifts8(hi: usize) -> [i32; 8] {
    let mut r = [0i32; 8];
    let mut l = 0;
    while l < 8 {
        r[l] = crumb_shift(8 * hi + l) as i32;
        l += 1;
    }
    r
}

const SHIFT8_LO: [i32; 8] = crumb_shifts8(0);
const SHIFT8_HI: [i32; 8] = crumb_shifts8(1);
/// Right shifts that bring bit `8 q + l` of a dword to bit 0, for the
/// eight rows of vector `q` (0..4) of a 32-row half.
const BIT_SHIFTS: [[i32; 8]; 4] = [
    [0, 1, 2, 3, 4, 5, 6, 7],
    [8, 9, 10, 11, 12, 13, 14, 15],
    [16, 17, 18, 19, 20, 21, 22, 23],
    [24, 25, 26, 27, 28, 29, 30, 31],
];
/// `pshufb` control: per 128-bit lane, the low halves of four dwords, then
/// the high halves.
const SPLIT_HALVES: [i8; 32] =
    [0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15];

/// The codes of a tile of one column, one vector per 8 rows, in row order.
///
/// # Safety
/// The planes' tile bytes are readable; the CPU has AVX2.
#[inline(always)]
unsafe fn codes256(bits: u32, first: *const u8, second: *const u8) -> [__m256i; 8] {
    // SAFETY: reads stay within the tile bytes of the planes; AVX2 is the
    // caller's guarantee.
    unsafe {
        let mut c = [_mm256_setzero_si256(); 8];
        match bits {
            4..=6 => {
                for k in 0..4 {
                    let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(first.add(8 * k).cast()));
                    c[2 * k] = _mm256_and_si256(v, _mm256_set1_epi32(0xF));
                    c[2 * k + 1] = _mm256_srli_epi32::<4>(v);
                }
                if bits == 5 {
                    for h in 0..2 {
                        let v = _mm256_set1_epi32(second.add(4 * h).cast::<i32>().read_unaligned());
                        for q in 0..4 {
                            let b =
                                _mm256_and_si256(_mm256_srlv_epi32(v, load256(&BIT_SHIFTS[q])), _mm256_set1_epi32(1));
                            c[4 * h + q] = _mm256_or_si256(c[4 * h + q], _mm256_slli_epi32::<4>(b));
                        }
                    }
                } else if bits == 6 {
                    for g in 0..4 {
                        let v = _mm256_set1_epi32(second.add(4 * g).cast::<i32>().read_unaligned());
                        let three = _mm256_set1_epi32(3);
                        let lo = _mm256_and_si256(_mm256_srlv_epi32(v, load256(&SHIFT8_LO)), three);
                        let hi = _mm256_and_si256(_mm256_srlv_epi32(v, load256(&SHIFT8_HI)), three);
                        c[2 * g] = _mm256_or_si256(c[2 * g], _mm256_slli_epi32::<4>(lo));
                        c[2 * g + 1] = _mm256_or_si256(c[2 * g + 1], _mm256_slli_epi32::<4>(hi));
                    }
                }
            }
            2 | 3 => {
                let three = _mm256_set1_epi32(3);
                for g in 0..4 {
                    let v = _mm256_set1_epi32(first.add(4 * g).cast::<i32>().read_unaligned());
                    c[2 * g] = _mm256_and_si256(_mm256_srlv_epi32(v, load256(&SHIFT8_LO)), three);
                    c[2 * g + 1] = _mm256_and_si256(_mm256_srlv_epi32(v, load256(&SHIFT8_HI)), three);
                }
                if bits == 3 {
                    for h in 0..2 {
                        let v = _mm256_set1_epi32(second.add(4 * h).cast::<i32>().read_unaligned());
                        for q in 0..4 {
                            let b =
                                _mm256_and_si256(_mm256_srlv_epi32(v, load256(&BIT_SHIFTS[q])), _mm256_set1_epi32(1));
                            c[4 * h + q] = _mm256_or_si256(c[4 * h + q], _mm256_slli_epi32::<2>(b));
                        }
                    }
                }
            }
            _ => {
                for (v, c) in c.iter_mut().enumerate() {
                    *c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(first.add(8 * v).cast()));
                }
            }
        }
        c
    }
}

/// Scales and mins, in row order, of sub-block `j` of the 8 Q4_K/Q5_K row
/// headers (16 bytes each) at `h`; `control` is [`k4_control`]`(j)` in both
/// 128-bit lanes.
///
/// # Safety
/// 128 readable bytes at `h`; the CPU has AVX2 and F16C.
#[inline(always)]
unsafe fn k4_rows256(h: *const u8, control: __m256i, j: usize) -> (__m256, __m256) {
    // SAFETY: four loads of 32 bytes within the 128; the rest is register
    // work on AVX2/F16C, the caller's guarantee.
    unsafe {
        let mut v = [_mm256_setzero_si256(); 4];
        for (i, v) in v.iter_mut().enumerate() {
            *v = _mm256_shuffle_epi8(_mm256_loadu_si256(h.add(32 * i).cast()), control);
        }
        // Lane 0 holds rows 0, 2, 4, 6 and lane 1 rows 1, 3, 5, 7.
        let (ab, cd) = (_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpacklo_epi32(v[2], v[3]));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let (d, dmin) = scale_min256(_mm256_permutevar8x32_epi32(_mm256_unpacklo_epi64(ab, cd), order));
        let x = _mm256_permutevar8x32_epi32(_mm256_unpackhi_epi64(ab, cd), order);
        let (m15, m48, m63) = (_mm256_set1_epi32(15), _mm256_set1_epi32(48), _mm256_set1_epi32(63));
        let (sc, m) = if j < 4 {
            (_mm256_and_si256(x, m63), _mm256_and_si256(_mm256_srli_epi32::<8>(x), m63))
        } else {
            (
                _mm256_or_si256(_mm256_and_si256(x, m15), _mm256_and_si256(_mm256_srli_epi32::<18>(x), m48)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi32::<12>(x), m15),
                    _mm256_and_si256(_mm256_srli_epi32::<26>(x), m48),
                ),
            )
        };
        let scale = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
        let min = _mm256_xor_ps(_mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m)), _mm256_set1_ps(-0.0));
        (scale, min)
    }
}

/// Scales and mins, in row order, of sub-block `j` of the 8 Q6_K row
/// headers (18 bytes each: i8 scales, then f16 `d`) at `h`.
///
/// # Safety
/// 144 readable bytes at `h`; the CPU has AVX2 and F16C.
#[inline(always)]
unsafe fn k6_rows256(h: *const u8, j: usize) -> (__m256, __m256) {
    // SAFETY: the gathers read four bytes within each 18-byte row header;
    // AVX2 and F16C are the caller's guarantee.
    unsafe {
        let rows = _mm256_setr_epi32(0, 18, 36, 54, 72, 90, 108, 126);
        // `d` is the high half of the dword at byte 14.
        let dv = _mm256_i32gather_epi32::<1>(h.cast(), _mm256_add_epi32(rows, _mm256_set1_epi32(14)));
        let (_, d) = scale_min256(dv);
        // The scale `h[j]` is byte `j - at` of the dword at byte `at`.
        let at = j.saturating_sub(3);
        let sv = _mm256_i32gather_epi32::<1>(h.cast(), _mm256_add_epi32(rows, _mm256_set1_epi32(at as i32)));
        let up = _mm_cvtsi32_si128((24 - 8 * (j - at)) as i32);
        let sc = _mm256_srai_epi32::<24>(_mm256_sll_epi32(sv, up));
        let scale = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
        (scale, _mm256_mul_ps(scale, _mm256_set1_ps(-32.0)))
    }
}

/// f16 scale (low half) and min (high half) of 8 dwords.
///
/// # Safety
/// The CPU has AVX2 and F16C.
#[inline(always)]
unsafe fn scale_min256(v: __m256i) -> (__m256, __m256) {
    // SAFETY: register-only AVX2/F16C, the caller's guarantee.
    unsafe {
        let split = _mm256_shuffle_epi8(v, _mm256_loadu_si256(SPLIT_HALVES.as_ptr().cast()));
        let split = _mm256_permute4x64_epi64::<0b11_01_10_00>(split);
        (_mm256_cvtph_ps(_mm256_castsi256_si128(split)), _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(split)))
    }
}

impl<F: KernelFormat> ColumnKernel<F> for Avx2Tile {
    /// Scales stay in memory: sixteen vectors would fill every register.
    type Scales = *const ScaleLanes;
    type Acc = [__m256; 8];

    #[inline(always)]
    fn lane_row(p: usize) -> usize {
        p
    }

    #[inline(always)]
    unsafe fn decode(h: *const u8, element: usize, out: &mut ScaleLanes) {
        // SAFETY: reads stay within the 64 rows' header bytes; stores within
        // `out`; AVX2 and F16C are the caller's guarantee.
        unsafe {
            let (s, m) = (out.s.as_mut_ptr(), out.m.as_mut_ptr());
            match headers::<F>() {
                Headers::Scale => {
                    for v in 0..8 {
                        let sv = _mm256_cvtph_ps(_mm_loadu_si128(h.add(16 * v).cast()));
                        _mm256_store_ps(s.add(8 * v), sv);
                        _mm256_store_ps(m.add(8 * v), _mm256_mul_ps(sv, _mm256_set1_ps(neg_offset::<F>())));
                    }
                }
                Headers::ScaleMin => {
                    for v in 0..8 {
                        let (sv, mv) = scale_min256(_mm256_loadu_si256(h.add(32 * v).cast()));
                        _mm256_store_ps(s.add(8 * v), sv);
                        _mm256_store_ps(m.add(8 * v), mv);
                    }
                }
                Headers::ScaleMinPairs => {
                    let block = (element / F::BLOCK_LEN) as i32;
                    let idx = _mm256_add_epi32(_mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6), _mm256_set1_epi32(block));
                    for v in 0..8 {
                        let a = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(h.add(64 * v).cast()), idx);
                        let b = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(h.add(64 * v + 32).cast()), idx);
                        let (sv, mv) = scale_min256(_mm256_permute2x128_si256::<0x20>(a, b));
                        _mm256_store_ps(s.add(8 * v), sv);
                        _mm256_store_ps(m.add(8 * v), mv);
                    }
                }
                Headers::K4 => {
                    let j = (element % F::BLOCK_LEN) / F::SCALE_LEN;
                    let control = _mm256_broadcastsi128_si256(_mm_loadu_si128(k4_control(j).as_ptr().cast()));
                    for v in 0..8 {
                        let (sv, mv) = k4_rows256(h.add(16 * 8 * v), control, j);
                        _mm256_store_ps(s.add(8 * v), sv);
                        _mm256_store_ps(m.add(8 * v), mv);
                    }
                }
                Headers::K6 => {
                    let j = (element % F::BLOCK_LEN) / F::SCALE_LEN;
                    for v in 0..8 {
                        let (sv, mv) = k6_rows256(h.add(18 * 8 * v), j);
                        _mm256_store_ps(s.add(8 * v), sv);
                        _mm256_store_ps(m.add(8 * v), mv);
                    }
                }
                Headers::Scalar => (out.s, out.m) = scalar_scales::<F>(h, element),
            }
        }
    }

    #[inline(always)]
    unsafe fn scan(xs: &[f32], first: usize, col_bytes: usize, list: &mut SubBlock) -> usize {
        scan_scalar(xs, first, col_bytes, list)
    }

    #[inline(always)]
    unsafe fn scales(lanes: &ScaleLanes) -> Self::Scales {
        lanes
    }

    #[inline(always)]
    unsafe fn zero() -> Self::Acc {
        // SAFETY: AVX, the caller's guarantee.
        unsafe { [_mm256_setzero_ps(); 8] }
    }

    #[inline(always)]
    unsafe fn load(lanes: &Lanes) -> Self::Acc {
        // SAFETY: aligned loads within `lanes`; AVX is the caller's guarantee.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_load_ps(lanes.0.as_ptr().add(8 * v));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn store(acc: &Self::Acc, lanes: &mut Lanes) {
        // SAFETY: aligned stores within `lanes`; AVX is the caller's guarantee.
        unsafe {
            for (v, acc) in acc.iter().enumerate() {
                _mm256_store_ps(lanes.0.as_mut_ptr().add(8 * v), *acc);
            }
        }
    }

    #[inline(always)]
    unsafe fn add_into(acc: &Self::Acc, lanes: &mut Lanes) {
        // SAFETY: aligned loads and stores within `lanes`; AVX is the
        // caller's guarantee.
        unsafe {
            for (v, acc) in acc.iter().enumerate() {
                let p = lanes.0.as_mut_ptr().add(8 * v);
                _mm256_store_ps(p, _mm256_add_ps(_mm256_load_ps(p), *acc));
            }
        }
    }

    #[inline(always)]
    unsafe fn column(acc: &mut Self::Acc, sc: &Self::Scales, first: *const u8, second: *const u8, x: f32) {
        // SAFETY: forwarded from the caller; `sc` points at the tile's scales.
        unsafe {
            let codes = codes256(F::CODE_BITS, first, second);
            let x = _mm256_set1_ps(x);
            let (s, m) = ((**sc).s.as_ptr(), (**sc).m.as_ptr());
            for v in 0..8 {
                // Each weight exactly as `dequantize` makes it: scale * code + min.
                let w = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(codes[v]),
                    _mm256_load_ps(s.add(8 * v)),
                    _mm256_load_ps(m.add(8 * v)),
                );
                acc[v] = _mm256_fmadd_ps(w, x, acc[v]);
            }
        }
    }
}

/// Column-sparse, f32 activations, AVX-512.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX-512 F/BW and BMI2; the matrix is in
/// the column-major layout.
#[inline(always)]
pub(crate) unsafe fn colsparse_f32_avx512<F: KernelFormat>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { drive::<F, Avx512Tile>(args) }
}

/// Column-sparse, f32 activations, AVX2.
///
/// # Safety
/// The [`KernelArgs`] contract, with AVX2, FMA and F16C; the matrix is in
/// the column-major layout.
#[inline(always)]
pub(crate) unsafe fn colsparse_f32_avx2<F: KernelFormat>(args: &KernelArgs<'_>) {
    // SAFETY: forwarded contract.
    unsafe { drive::<F, Avx2Tile>(args) }
}
