//! The scalar reference GEMV: the oracle every kernel variant is held to.
//!
//! It dequantizes each block exactly as ggml does and accumulates in f64, so
//! its only error is the final rounding to f32. It is written for clarity,
//! not speed.

use super::{BlockFormat, Format};
use crate::error::KernelError;

/// The reference product of a matrix with one or more input columns.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceProduct {
    /// `y[col * rows + row]`.
    pub y: Vec<f64>,
    /// `sum_k |w[row][k] * x[col][k]|`, the scale for relative tolerances.
    pub magnitude: Vec<f64>,
}

/// `y = W x` for `W` of `rows` rows of `cols` weights in format `F` (blocks
/// row after row, as in a GGUF tensor) and `x` of `columns` columns of
/// `cols` floats each.
pub fn gemv<F: BlockFormat>(
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    columns: usize,
) -> Result<ReferenceProduct, KernelError> {
    let row_bytes = F::FORMAT.row_bytes(cols)?;
    if weights.len() != rows * row_bytes {
        return Err(KernelError::Shape(format!(
            "{}: {rows}x{cols} needs {} bytes, got {}",
            F::FORMAT,
            rows * row_bytes,
            weights.len()
        )));
    }
    if x.len() != cols * columns {
        return Err(KernelError::Shape(format!("input has {} floats, expected {columns}x{cols}", x.len())));
    }
    let mut y = vec![0.0f64; rows * columns];
    let mut magnitude = vec![0.0f64; rows * columns];
    let mut row = vec![0.0f32; cols];
    for r in 0..rows {
        let bytes = &weights[r * row_bytes..(r + 1) * row_bytes];
        for (block, out) in bytes.chunks_exact(F::BLOCK_BYTES).zip(row.chunks_exact_mut(F::BLOCK_LEN)) {
            F::dequantize(block, out);
        }
        for c in 0..columns {
            let xc = &x[c * cols..(c + 1) * cols];
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for (&w, &v) in row.iter().zip(xc) {
                let p = w as f64 * v as f64;
                s += p;
                a += p.abs();
            }
            y[c * rows + r] = s;
            magnitude[c * rows + r] = a;
        }
    }
    Ok(ReferenceProduct { y, magnitude })
}

/// [`gemv`] for a format known at run time.
pub fn gemv_format(
    format: Format,
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    columns: usize,
) -> Result<ReferenceProduct, KernelError> {
    crate::with_format!(format, F => gemv::<F>(weights, rows, cols, x, columns))
}
