//! ggml `Q5_1`: 32 weights, an f16 scale `d` and an f16 min `m`, 5-bit
//! codes: weight = `d * code + m`.
//!
//! Codes are stored as in Q5_0 (nibbles in `qs`, fifth bits in `qh`).
//! Header bytes: `d`, `m` (4 bytes); the `qh` bits are code bits.

use half::f16;

use super::QK;
use super::q4_1::min_max;
use super::q5_0::{pack5, unpack5};
use crate::formats::{BlockFormat, Format, Quantize, f16_at, put_f16};

/// ggml's `block_q5_1`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Min (the weight of code 0).
    pub m: f16,
    /// Fifth bits: bit `i` of this little-endian `u32` is bit 4 of code `i`.
    pub qh: [u8; 4],
    /// Low four bits: low nibble of byte `j` is code `j`, high nibble code `j + 16`.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// Marker type of the Q5_1 format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q5_1;

impl BlockFormat for Q5_1 {
    const FORMAT: Format = Format::Q5_1;
    const BLOCK_LEN: usize = QK;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ5_1>();
    const CODE_BITS: u32 = 5;
    const SCALE_LEN: usize = QK;
    const HEADER_BYTES: usize = 4;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..4].copy_from_slice(&block[..4]);
        unpack5(&block[4..8], &block[8..24], codes);
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..4].copy_from_slice(&header[..4]);
        let (qh, qs) = block[4..24].split_at_mut(4);
        pack5(codes, qh, qs);
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        (f16_at(header, 0), f16_at(header, 2))
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let m = f16_at(block, 2);
        let mut codes = [0u8; QK];
        unpack5(&block[4..8], &block[8..24], &mut codes);
        for (o, &c) in out[..QK].iter_mut().zip(&codes) {
            *o = c as f32 * d + m;
        }
    }
}

impl Quantize for Q5_1 {
    /// ggml's `quantize_row_q5_1_ref`.
    fn quantize(x: &[f32], block: &mut [u8]) {
        let (min, max) = min_max(&x[..QK]);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        put_f16(block, 2, min);
        let mut codes = [0u8; QK];
        for (c, &v) in codes.iter_mut().zip(&x[..QK]) {
            // ggml casts straight to uint8_t here (no clamp to 31); the
            // value never exceeds 31.5, and `pack5` keeps five bits as ggml does.
            *c = ((v - min) * id + 0.5) as u8;
        }
        let (qh, qs) = block[4..24].split_at_mut(4);
        pack5(&codes, qh, qs);
    }
}
