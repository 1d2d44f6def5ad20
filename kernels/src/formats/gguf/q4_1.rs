//! ggml `Q4_1`: 32 weights, an f16 scale `d` and an f16 min `m`, 4-bit
//! codes: weight = `d * code + m`.
//!
//! Header bytes: `d`, `m` (4 bytes, as in the block).

use half::f16;

use super::QK;
use crate::formats::{BlockFormat, Format, Quantize, f16_at, put_f16};

/// ggml's `block_q4_1`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Min (the weight of code 0).
    pub m: f16,
    /// Codes: low nibble of byte `j` is weight `j`, high nibble weight `j + 16`.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Marker type of the Q4_1 format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q4_1;

impl BlockFormat for Q4_1 {
    const FORMAT: Format = Format::Q4_1;
    const BLOCK_LEN: usize = QK;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4_1>();
    const CODE_BITS: u32 = 4;
    const SCALE_LEN: usize = QK;
    const HEADER_BYTES: usize = 4;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..4].copy_from_slice(&block[..4]);
        for j in 0..QK / 2 {
            codes[j] = block[4 + j] & 0x0F;
            codes[j + QK / 2] = block[4 + j] >> 4;
        }
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..4].copy_from_slice(&header[..4]);
        for j in 0..QK / 2 {
            block[4 + j] = (codes[j] & 0x0F) | (codes[j + QK / 2] << 4);
        }
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        (f16_at(header, 0), f16_at(header, 2))
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let m = f16_at(block, 2);
        for j in 0..QK / 2 {
            let x0 = (block[4 + j] & 0x0F) as f32;
            let x1 = (block[4 + j] >> 4) as f32;
            out[j] = x0 * d + m;
            out[j + QK / 2] = x1 * d + m;
        }
    }
}

impl Quantize for Q4_1 {
    /// ggml's `quantize_row_q4_1_ref`.
    fn quantize(x: &[f32], block: &mut [u8]) {
        let (min, max) = min_max(&x[..QK]);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        put_f16(block, 2, min);
        for j in 0..QK / 2 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[QK / 2 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            block[4 + j] = xi0 | (xi1 << 4);
        }
    }
}

/// The min and max of `x` as ggml's `_1` quantizers find them (strict
/// comparisons from `FLT_MAX` / `-FLT_MAX`).
pub(super) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}
