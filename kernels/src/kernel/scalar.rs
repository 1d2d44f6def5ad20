//! Portable kernels: no explicit SIMD. They read the [`Blocks`] layout
//! (dense) and the column-major layout (column-sparse), and serve CPUs
//! without AVX2 as well as `ASDSL_FORCE_ISA=scalar`.
//!
//! [`Blocks`]: crate::pack::Layout::Blocks

use super::{KernelArgs, KernelFormat};
use crate::pack::columns::column_bytes;

/// Largest header and block lengths of any format (for stack buffers).
const MAX_HEADER: usize = 32;
const MAX_BLOCK: usize = 256;

/// Dense, f32 activations, over the block layout.
///
/// # Safety
/// The [`KernelArgs`] contract.
#[inline(always)]
pub(crate) unsafe fn dense_f32<F: KernelFormat, const C: usize>(args: &KernelArgs<'_>) {
    dense::<F, C>(args, |header, codes, c, col0, acc| {
        let x = &args.input.x(c)[col0..col0 + F::BLOCK_LEN];
        for s in 0..F::BLOCK_LEN / F::SCALE_LEN {
            let (scale, min) = F::affine(header, s);
            let mut dot = 0.0f32;
            for i in s * F::SCALE_LEN..(s + 1) * F::SCALE_LEN {
                dot += (scale * codes[i] as f32 + min) * x[i];
            }
            *acc += dot as f64;
        }
    });
}

/// Dense, int8 activations, over the block layout.
///
/// # Safety
/// The [`KernelArgs`] contract.
#[inline(always)]
pub(crate) unsafe fn dense_q8<F: KernelFormat, const C: usize>(args: &KernelArgs<'_>) {
    dense::<F, C>(args, |header, codes, c, col0, acc| {
        let int8 = args.int8::<F>();
        let q = &int8.q(c)[col0..col0 + F::BLOCK_LEN];
        let (d, qsum16) = (int8.d(c), int8.qsum16(c));
        // 16 weights share a scale in every format and an int8 scale too.
        for p in 0..F::BLOCK_LEN / 16 {
            let (scale, min) = F::affine(header, p * 16 / F::SCALE_LEN);
            let e = col0 + p * 16;
            let offset = F::OFFSET.unwrap_or(0);
            // Symmetric formats subtract their offset exactly, in integers.
            let dot: i32 = (p * 16..p * 16 + 16).map(|i| (codes[i] as i32 - offset) * q[i] as i32).sum();
            let min_term = if F::OFFSET.is_some() { 0.0 } else { min * qsum16[e / 16] };
            *acc += (scale * d[e / 32] * dot as f32 + min_term) as f64;
        }
    });
}

#[inline(always)]
fn dense<F: KernelFormat, const C: usize>(
    args: &KernelArgs<'_>,
    mut block: impl FnMut(&[u8], &[u8], usize, usize, &mut f64),
) {
    let m = args.matrix;
    let row_bytes = m.tile_bytes();
    let columns = args.input.columns();
    let mut header = [0u8; MAX_HEADER];
    let mut codes = [0u8; MAX_BLOCK];
    for row in args.tiles.clone() {
        if row >= m.rows() {
            break;
        }
        let bytes = &m.data()[row * row_bytes..(row + 1) * row_bytes];
        // Columns in groups of C: each block is decoded once per group.
        for c0 in (0..columns).step_by(C) {
            let group = (columns - c0).min(C);
            let mut acc = [0.0f64; C];
            for (b, blk) in bytes.chunks_exact(F::BLOCK_BYTES).enumerate() {
                F::split(blk, &mut header[..F::HEADER_BYTES], &mut codes[..F::BLOCK_LEN]);
                for (j, acc) in acc.iter_mut().enumerate().take(group) {
                    block(&header[..F::HEADER_BYTES], &codes[..F::BLOCK_LEN], c0 + j, b * F::BLOCK_LEN, acc);
                }
            }
            for (j, acc) in acc.iter().enumerate().take(group) {
                // SAFETY: the contract makes `out[c * out_stride + row]` valid for writes.
                unsafe { *args.out.add((c0 + j) * args.out_stride + row) = *acc as f32 };
            }
        }
    }
}

/// Reads the codes of rows `16g..16g+16` of one column from its planes
/// (`column` is the column's bytes, `rows` the padded row count).
#[inline(always)]
pub(crate) fn column_codes(bits: u32, column: &[u8], rows: usize, g: usize) -> [u8; 16] {
    let mut c = [0u8; 16];
    let nibbles = |c: &mut [u8; 16], plane: &[u8]| {
        for i in 0..8 {
            let b = plane[8 * g + i];
            c[i] = b & 0xF;
            c[i + 8] = b >> 4;
        }
    };
    let crumbs = |c: &mut [u8; 16], plane: &[u8], shift: u32| {
        for j in 0..4 {
            for i in 0..4 {
                c[4 * j + i] |= ((plane[4 * g + i] >> (2 * j)) & 3) << shift;
            }
        }
    };
    let bits_of = |c: &mut [u8; 16], plane: &[u8], shift: u32| {
        let mask = u16::from_le_bytes([plane[2 * g], plane[2 * g + 1]]);
        for (i, c) in c.iter_mut().enumerate() {
            *c |= (((mask >> i) & 1) as u8) << shift;
        }
    };
    match bits {
        2 => crumbs(&mut c, column, 0),
        3 => {
            crumbs(&mut c, column, 0);
            bits_of(&mut c, &column[rows / 4..], 2);
        }
        4 => nibbles(&mut c, column),
        5 => {
            nibbles(&mut c, column);
            bits_of(&mut c, &column[rows / 2..], 4);
        }
        6 => {
            nibbles(&mut c, column);
            crumbs(&mut c, &column[rows / 2..], 4);
        }
        _ => c.copy_from_slice(&column[16 * g..16 * g + 16]),
    }
    c
}

/// Column-sparse, f32 activations, over the column-major layout: input
/// columns whose activation is zero are skipped.
///
/// # Safety
/// The [`KernelArgs`] contract.
#[inline(always)]
pub(crate) unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
    const ROWS: usize = crate::pack::COLUMN_MAJOR_ROWS;
    let m = args.matrix;
    let padded_rows = m.tiles() * ROWS;
    let col_bytes = column_bytes(F::CODE_BITS, padded_rows);
    let unit_bytes = padded_rows * F::UNIT_HEADER + F::UNIT * col_bytes;
    let units = m.padded_cols() / F::UNIT;
    let scale_len = F::SCALE_LEN.min(F::UNIT);
    let x = args.input.x(0);
    let data = m.data();
    for tile in args.tiles.clone() {
        let r0 = tile * ROWS;
        let mut acc = [0.0f64; ROWS];
        for u in 0..units {
            let unit = &data[u * unit_bytes..(u + 1) * unit_bytes];
            for s in 0..F::UNIT / scale_len {
                let first = u * F::UNIT + s * scale_len;
                let xs = &x[first..first + scale_len];
                if xs.iter().all(|&v| v == 0.0) {
                    continue;
                }
                let mut scale = [0.0f32; ROWS];
                let mut min = [0.0f32; ROWS];
                for r in 0..ROWS {
                    let header = &unit[(r0 + r) * F::UNIT_HEADER..(r0 + r + 1) * F::UNIT_HEADER];
                    (scale[r], min[r]) = super::unit_affine_scaled::<F>(header, s * scale_len);
                }
                let mut t = [0.0f32; ROWS];
                for (j, &xj) in xs.iter().enumerate() {
                    if xj == 0.0 {
                        continue;
                    }
                    let col = &unit[padded_rows * F::UNIT_HEADER + (s * scale_len + j) * col_bytes..][..col_bytes];
                    for g in 0..ROWS / 16 {
                        let codes = column_codes(F::CODE_BITS, col, padded_rows, r0 / 16 + g);
                        for (i, &code) in codes.iter().enumerate() {
                            let r = 16 * g + i;
                            t[r] += scale[r].mul_add(code as f32, min[r]) * xj;
                        }
                    }
                }
                for (a, t) in acc.iter_mut().zip(&t) {
                    *a += *t as f64;
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            if r0 + r < m.rows() {
                // SAFETY: the contract makes `out[row]` valid for writes.
                unsafe { *args.out.add(r0 + r) = *acc as f32 };
            }
        }
    }
}
