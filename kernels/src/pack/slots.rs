//! The row-slot layout of the SIMD dense variants.
//!
//! A tile of `R` rows is a stream of slots; slot `g` holds the 32 codes of
//! row `g % R`, sub-block `g / R`. So with `R = 4` a step (4 slots) is one
//! sub-block of four rows, with `R = 1` four consecutive sub-blocks of one
//! row, and with `R = 8` two steps cover a sub-block of eight rows. Each
//! output row thus owns fixed lanes of every accumulator.
//!
//! Code planes of one step (`j` = slot 0..4, `i` = 0..16; "lo" codes are the
//! slot's weights 0..16 and "hi" codes its weights 16..32):
//!
//! | plane | bytes | content |
//! |---|---|---|
//! | nibble | 16 per slot | byte `16j + i` = lo code `i` (bits 0–3) \| hi code `i` (bits 0–3) << 4 |
//! | byte | 16 + 16 per slot | lo codes of every slot (`16j + i`), then hi codes |
//! | crumb | 16 + 16 | byte `i`, bits `2j..2j+2` = two bits of lo code `i` of slot `j`; then the same for hi codes |
//! | bit | 8 + 8 | u64, bit `16j + i` = one bit of lo code `i` of slot `j`; then hi codes |
//!
//! | code bits | planes |
//! |---|---|
//! | 2 | crumb (bits 0–1) |
//! | 3 | crumb (bits 0–1), bit (bit 2) |
//! | 4 | nibble |
//! | 5 | nibble, bit (bit 4) |
//! | 6 | nibble, crumb (bits 4–5) |
//! | 8 | byte |
//!
//! A partial last step (`R` of 1 or 2 only) stores nibble and byte planes
//! for its real slots only; crumb and bit planes whole, with zero bits.

use super::{Plane, SlotGeometry, SplitRow, planes};
use crate::kernel::KernelFormat;

/// Appends tile `rows` (already split, `R` of them) to `out`.
pub(crate) fn pack_tile<F: KernelFormat>(rows: &[SplitRow], tile_rows: usize, units: usize, out: &mut Vec<u8>) {
    let subs = units * F::SUBS_PER_UNIT;
    let total = tile_rows * subs;
    let geometry = SlotGeometry::of::<F>(tile_rows);
    let (mut g0, mut unit0) = (0, 0);
    while g0 < total {
        let g1 = (g0 + geometry.chunk_slots).min(total);
        let unit1 = (unit0 + geometry.chunk_units).min(units);
        for u in unit0..unit1 {
            for row in rows {
                out.extend_from_slice(&row.headers[u * F::UNIT_HEADER..(u + 1) * F::UNIT_HEADER]);
            }
        }
        let mut g = g0;
        while g < g1 {
            let n = (g1 - g).min(4);
            let slot = |j: usize| -> Option<&[u8]> {
                (j < n).then(|| {
                    let (row, sub) = ((g + j) % tile_rows, (g + j) / tile_rows);
                    &rows[row].codes[32 * sub..32 * sub + 32]
                })
            };
            write_step(F::CODE_BITS, [slot(0), slot(1), slot(2), slot(3)], n, out);
            g += 4;
        }
        (g0, unit0) = (g1, unit1);
    }
}

fn write_step(bits: u32, slots: [Option<&[u8]>; 4], n: usize, out: &mut Vec<u8>) {
    let code = |j: usize, i: usize| slots[j].map_or(0, |c| c[i]);
    for plane in planes(bits) {
        match *plane {
            Plane::Nibbles => {
                for j in 0..n {
                    out.extend((0..16).map(|i| (code(j, i) & 0xF) | ((code(j, i + 16) & 0xF) << 4)));
                }
            }
            Plane::Crumbs { shift } => {
                for half in [0, 16] {
                    out.extend(
                        (0..16).map(|i| (0..4).fold(0u8, |b, j| b | (((code(j, half + i) >> shift) & 3) << (2 * j)))),
                    );
                }
            }
            Plane::Bits { shift } => {
                for half in [0, 16] {
                    let mask = (0..4)
                        .flat_map(|j| (0..16).map(move |i| (j, i)))
                        .fold(0u64, |m, (j, i)| m | ((((code(j, half + i) >> shift) & 1) as u64) << (16 * j + i)));
                    out.extend_from_slice(&mask.to_le_bytes());
                }
            }
            Plane::Bytes => {
                for half in [0, 16] {
                    for j in 0..n {
                        out.extend((0..16).map(|i| code(j, half + i)));
                    }
                }
            }
        }
    }
}
