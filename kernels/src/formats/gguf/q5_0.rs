//! ggml `Q5_0`: 32 weights, an f16 scale `d`, 5-bit codes with offset 16:
//! weight = `d * (code - 16)`.
//!
//! A code is the nibble in `qs` (as in Q4_0) with its fifth bit from `qh`
//! (bit `i` of the little-endian `u32` is bit 4 of code `i`). Header bytes:
//! `d` only (2 bytes); the `qh` bits are code bits.

use half::f16;

use super::QK;
use crate::formats::{BlockFormat, Format, Quantize, f16_at, put_f16};

/// ggml's `block_q5_0`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bits: bit `i` of this little-endian `u32` is bit 4 of code `i`.
    pub qh: [u8; 4],
    /// Low four bits: low nibble of byte `j` is code `j`, high nibble code `j + 16`.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Marker type of the Q5_0 format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q5_0;

/// Unpacks the 32 five-bit codes of a Q5_0 / Q5_1 block from `qh` (4 bytes)
/// and `qs` (16 bytes).
#[inline(always)]
pub(super) fn unpack5(qh: &[u8], qs: &[u8], codes: &mut [u8]) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + QK / 2)) & 1) as u8;
        codes[j] = (qs[j] & 0x0F) | (h0 << 4);
        codes[j + QK / 2] = (qs[j] >> 4) | (h1 << 4);
    }
}

/// Packs 32 five-bit codes into `qh` (4 bytes) and `qs` (16 bytes), the
/// inverse of [`unpack5`].
#[inline(always)]
pub(super) fn pack5(codes: &[u8], qh: &mut [u8], qs: &mut [u8]) {
    let mut h = 0u32;
    for j in 0..QK / 2 {
        let (c0, c1) = (codes[j], codes[j + QK / 2]);
        qs[j] = (c0 & 0x0F) | ((c1 & 0x0F) << 4);
        h |= (((c0 >> 4) & 1) as u32) << j;
        h |= (((c1 >> 4) & 1) as u32) << (j + QK / 2);
    }
    qh[..4].copy_from_slice(&h.to_le_bytes());
}

impl BlockFormat for Q5_0 {
    const FORMAT: Format = Format::Q5_0;
    const BLOCK_LEN: usize = QK;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ5_0>();
    const CODE_BITS: u32 = 5;
    const SCALE_LEN: usize = QK;
    const HEADER_BYTES: usize = 2;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..2].copy_from_slice(&block[..2]);
        unpack5(&block[2..6], &block[6..22], codes);
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..2].copy_from_slice(&header[..2]);
        let (qh, qs) = block[2..22].split_at_mut(4);
        pack5(codes, qh, qs);
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        let d = f16_at(header, 0);
        (d, -16.0 * d)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let mut codes = [0u8; QK];
        unpack5(&block[2..6], &block[6..22], &mut codes);
        for (o, &c) in out[..QK].iter_mut().zip(&codes) {
            *o = (c as i32 - 16) as f32 * d;
        }
    }
}

impl Quantize for Q5_0 {
    /// ggml's `quantize_row_q5_0_ref`.
    fn quantize(x: &[f32], block: &mut [u8]) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in &x[..QK] {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        let mut codes = [0u8; QK];
        for (c, &v) in codes.iter_mut().zip(&x[..QK]) {
            *c = ((v * id + 16.5) as i8).min(31) as u8;
        }
        let (qh, qs) = block[2..22].split_at_mut(4);
        pack5(&codes, qh, qs);
    }
}
