//! The column-major layout of the column-sparse variants.
//!
//! Rows are padded to a multiple of 64. For each unit of columns (see
//! [`KernelFormat`]): the unit's header bytes for every row, in row order;
//! then, for each of the unit's columns, that column's codes for every row
//! as bit planes, each plane covering all rows before the next begins:
//!
//! | plane | bytes per 16 rows | content |
//! |---|---|---|
//! | nibble | 8 | byte `i` = code of row `i` (bits 0–3) \| code of row `i + 8` << 4 |
//! | byte | 16 | the codes |
//! | crumb | 4 | byte `i`, bits `2j..2j+2` = two bits of the code of row `4j + i` |
//! | bit | 2 | u16, bit `i` = one bit of the code of row `i` |
//!
//! with the same planes per code width as the row-slot layout
//! ([`super::slots`]). A column of a zero activation is never read.

use super::{Plane, SplitRow, planes};
use crate::kernel::KernelFormat;

/// Bytes of one column's codes for `rows` rows (a multiple of 16).
pub(crate) const fn column_bytes(bits: u32, rows: usize) -> usize {
    bits as usize * rows / 8
}

/// Packs all (padded) rows.
pub(crate) fn pack<F: KernelFormat>(rows: &[SplitRow], units: usize) -> Vec<u8> {
    let bits = F::CODE_BITS;
    let mut out = Vec::with_capacity(units * rows.len() * (F::UNIT_HEADER + F::UNIT * bits as usize / 8));
    let mut column = vec![0u8; rows.len()];
    for u in 0..units {
        for row in rows {
            out.extend_from_slice(&row.headers[u * F::UNIT_HEADER..(u + 1) * F::UNIT_HEADER]);
        }
        for j in 0..F::UNIT {
            for (c, row) in column.iter_mut().zip(rows) {
                *c = row.codes[u * F::UNIT + j];
            }
            write_column(bits, &column, &mut out);
        }
    }
    out
}

fn write_column(bits: u32, codes: &[u8], out: &mut Vec<u8>) {
    for plane in planes(bits) {
        match *plane {
            Plane::Nibbles => {
                for g in codes.chunks_exact(16) {
                    out.extend((0..8).map(|i| (g[i] & 0xF) | ((g[i + 8] & 0xF) << 4)));
                }
            }
            Plane::Crumbs { shift } => {
                for g in codes.chunks_exact(16) {
                    out.extend((0..4).map(|i| (0..4).fold(0u8, |b, j| b | (((g[4 * j + i] >> shift) & 3) << (2 * j)))));
                }
            }
            Plane::Bits { shift } => {
                for g in codes.chunks_exact(16) {
                    let mask = (0..16).fold(0u16, |m, i| m | ((((g[i] >> shift) & 1) as u16) << i));
                    out.extend_from_slice(&mask.to_le_bytes());
                }
            }
            Plane::Bytes => out.extend_from_slice(codes),
        }
    }
}
