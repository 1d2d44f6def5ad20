//! The interleaved layout of the 16-row int8 variants (prompt processing).
//!
//! A tile holds [`INTERLEAVED_ROWS`] rows, and one 512-bit vector holds four
//! consecutive codes of each of them: byte `4l + b` belongs to row `l` (on
//! AVX2, its two 256-bit halves are rows 0–7 and 8–15). An
//! integer dot product against four activation bytes broadcast to every lane
//! thus advances all 16 rows at once, and the lanes of its accumulator are
//! the rows themselves: nothing is reduced across lanes, and one
//! int-to-float conversion and one scale product serve 16 rows of a whole
//! 32-weight sub-block (the row-slot layout needs them for every 4 rows).
//!
//! A tile is a sequence of units (one format unit of all 16 rows). Each unit
//! is its 16 headers, byte-transposed (header byte `h` of row `r` at `16h +
//! r`, so that one 16-byte load gives a header field of every row), then its
//! sub-blocks. A sub-block's 32 codes per row are eight *dwords* `k` (codes
//! `4k..4k+4`), stored as bit planes:
//!
//! | plane | vectors | byte `4l + b` of vector `v` |
//! |---|---|---|
//! | nibble | 4 | code `8v + b` of row `l` (bits 0–3) \| code `8v + 4 + b` (bits 0–3) << 4 |
//! | crumb (6-bit codes) | 2 | bits `2t..2t+2` = bits 4–5 of code `16v + 4t + b` of row `l`, `t` = 0..4 |
//!
//! So dword `k` is the low (`k` even) or high nibbles of nibble vector
//! `k / 2`, and its bits 4–5 the crumbs `k % 4` of crumb vector `k / 4`.
//! The bytes are those of the blocks, rearranged: the layout is exactly as
//! large as the GGUF tensor (plus zero rows to fill the last tile).
//!
//! Formats: 4- and 6-bit codes whose unit is one block, with the K formats'
//! super-block headers or one scale (and min) per 32 weights: Q4_0, Q4_1,
//! Q4_K and Q6_K (llama.cpp's most common files: Q4_0, and the Q4_K_M mix),
//! and q4g32.

use super::SplitRow;
use crate::kernel::{HeaderKind, KernelFormat};

/// Rows per tile of the interleaved layout: one per 32-bit lane of a 512-bit
/// vector.
pub const INTERLEAVED_ROWS: usize = 16;

/// Whether the interleaved layout and its kernels support format `F`.
pub(crate) const fn supports<F: KernelFormat>() -> bool {
    let headers = match F::HEADER {
        HeaderKind::K4 | HeaderKind::K6 => true,
        HeaderKind::Scale { .. } | HeaderKind::ScaleMin => F::UNIT == 32,
        HeaderKind::Other => false,
    };
    headers && F::BLOCKS_PER_UNIT == 1 && matches!(F::CODE_BITS, 4 | 6)
}

/// Bytes of one sub-block (the codes of 32 weights of all 16 rows).
pub(crate) const fn sub_block_bytes(bits: u32) -> usize {
    if bits == 6 { 4 * 64 + 2 * 64 } else { 4 * 64 }
}

/// Bytes of one unit of all 16 rows: headers, then sub-blocks.
pub(crate) const fn unit_bytes<F: KernelFormat>() -> usize {
    INTERLEAVED_ROWS * F::UNIT_HEADER + F::SUBS_PER_UNIT * sub_block_bytes(F::CODE_BITS)
}

/// Appends one tile (16 split rows, padded with zero rows) to `out`.
pub(crate) fn pack_tile<F: KernelFormat>(rows: &[SplitRow], units: usize, out: &mut Vec<u8>) {
    debug_assert_eq!(rows.len(), INTERLEAVED_ROWS);
    for u in 0..units {
        for h in 0..F::UNIT_HEADER {
            out.extend(rows.iter().map(|row| row.headers[u * F::UNIT_HEADER + h]));
        }
        for s in 0..F::SUBS_PER_UNIT {
            let first = u * F::UNIT + 32 * s;
            let code = |l: usize, i: usize| rows[l].codes[first + i];
            for v in 0..4 {
                for l in 0..INTERLEAVED_ROWS {
                    out.extend((0..4).map(|b| (code(l, 8 * v + b) & 0x0F) | (code(l, 8 * v + 4 + b) & 0x0F) << 4));
                }
            }
            if F::CODE_BITS == 6 {
                for v in 0..2 {
                    for l in 0..INTERLEAVED_ROWS {
                        out.extend((0..4).map(|b| {
                            (0..4).fold(0u8, |acc, t| acc | (code(l, 16 * v + 4 * t + b) >> 4 & 3) << (2 * t))
                        }));
                    }
                }
            }
        }
    }
}
