//! ggml `Q8_0`: 32 weights, an f16 scale `d`, signed 8-bit values `q`:
//! weight = `d * q`. As unsigned codes, `code = q + 128` (the byte with its
//! top bit flipped), so weight = `d * code - 128 d`.

use half::f16;

use super::QK;
use crate::formats::{BlockFormat, Format, Quantize, f16_at, put_f16};

/// ggml's `block_q8_0`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Signed values.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Marker type of the Q8_0 format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q8_0;

impl BlockFormat for Q8_0 {
    const FORMAT: Format = Format::Q8_0;
    const BLOCK_LEN: usize = QK;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ8_0>();
    const CODE_BITS: u32 = 8;
    const SCALE_LEN: usize = QK;
    const HEADER_BYTES: usize = 2;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..2].copy_from_slice(&block[..2]);
        for j in 0..QK {
            codes[j] = block[2 + j] ^ 0x80;
        }
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..2].copy_from_slice(&header[..2]);
        for j in 0..QK {
            block[2 + j] = codes[j] ^ 0x80;
        }
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        let d = f16_at(header, 0);
        (d, -128.0 * d)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        for j in 0..QK {
            out[j] = block[2 + j] as i8 as f32 * d;
        }
    }
}

impl Quantize for Q8_0 {
    /// ggml's `quantize_row_q8_0_ref`.
    fn quantize(x: &[f32], block: &mut [u8]) {
        let amax = x[..QK].iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        for j in 0..QK {
            // `roundf`: half away from zero (not ggml's `nearest_int`).
            block[2 + j] = (x[j] * id).round() as i8 as u8;
        }
    }
}
