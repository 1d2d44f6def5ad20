//! ggml `Q4_0`: 32 weights, an f16 scale `d`, 4-bit codes with offset 8:
//! weight = `d * (code - 8)`.

use half::f16;

use super::QK;
use crate::formats::{BlockFormat, Format, Quantize, f16_at, put_f16};

/// ggml's `block_q4_0`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Codes: low nibble of byte `j` is weight `j`, high nibble weight `j + 16`.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Marker type of the Q4_0 format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q4_0;

impl BlockFormat for Q4_0 {
    const FORMAT: Format = Format::Q4_0;
    const BLOCK_LEN: usize = QK;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4_0>();
    const CODE_BITS: u32 = 4;
    const SCALE_LEN: usize = QK;
    const HEADER_BYTES: usize = 2;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..2].copy_from_slice(&block[..2]);
        for j in 0..QK / 2 {
            codes[j] = block[2 + j] & 0x0F;
            codes[j + QK / 2] = block[2 + j] >> 4;
        }
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..2].copy_from_slice(&header[..2]);
        for j in 0..QK / 2 {
            block[2 + j] = (codes[j] & 0x0F) | (codes[j + QK / 2] << 4);
        }
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        let d = f16_at(header, 0);
        (d, -8.0 * d)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        for j in 0..QK / 2 {
            let x0 = (block[2 + j] & 0x0F) as i32 - 8;
            let x1 = (block[2 + j] >> 4) as i32 - 8;
            out[j] = x0 as f32 * d;
            out[j + QK / 2] = x1 as f32 * d;
        }
    }
}

impl Quantize for Q4_0 {
    /// ggml's `quantize_row_q4_0_ref`.
    fn quantize(x: &[f32], block: &mut [u8]) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[..QK] {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        for j in 0..QK / 2 {
            let x0 = x[j] * id;
            let x1 = x[QK / 2 + j] * id;
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            block[2 + j] = xi0 | (xi1 << 4);
        }
    }
}
