//! ggml `Q6_K`: 256-weight super-blocks of sixteen 16-weight sub-blocks, an
//! f16 super-block scale `d`, a signed 8-bit scale `sc[s]` per sub-block and
//! 6-bit codes with offset 32: weight = `(d * sc[s]) * (code - 32)`.
//!
//! Code order: each 128-weight half `n` uses 64 bytes of `ql` and 32 of
//! `qh`. For `l` in `0..32`, with `ql = ql[64n..]`, `qh = qh[32n..]`:
//!
//! | weight | low four bits | high two bits |
//! |---|---|---|
//! | `128n + l` | `ql[l] & 15` | `qh[l] & 3` |
//! | `128n + 32 + l` | `ql[32 + l] & 15` | `(qh[l] >> 2) & 3` |
//! | `128n + 64 + l` | `ql[l] >> 4` | `(qh[l] >> 4) & 3` |
//! | `128n + 96 + l` | `ql[32 + l] >> 4` | `qh[l] >> 6` |
//!
//! Header bytes: `scales[16]`, `d` (18 bytes, the block's last 18).

use half::f16;

use super::k_quants::{GROUP_MAX_EPS, make_qx_quants};
use super::{QK_K, nearest_int};
use crate::formats::{BlockFormat, Format, Quantize, f16_at};

/// ggml's `block_q6_K`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low four code bits.
    pub ql: [u8; QK_K / 2],
    /// High two code bits.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Marker type of the Q6_K format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q6K;

/// Offset of `qh` in the block.
const QH: usize = QK_K / 2;
/// Offset of `scales` in the block: the header starts here.
const SCALES: usize = QH + QK_K / 4;
/// Offset of `d` in the block.
const D: usize = SCALES + QK_K / 16;

/// Unpacks the 256 six-bit codes from `ql` (128 bytes) and `qh` (64 bytes).
fn unpack(ql: &[u8], qh: &[u8], codes: &mut [u8]) {
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..64 * n + 64], &qh[32 * n..32 * n + 32]);
        let codes = &mut codes[128 * n..128 * n + 128];
        for l in 0..32 {
            let h = qh[l];
            codes[l] = (ql[l] & 0x0F) | ((h & 3) << 4);
            codes[32 + l] = (ql[32 + l] & 0x0F) | (((h >> 2) & 3) << 4);
            codes[64 + l] = (ql[l] >> 4) | (((h >> 4) & 3) << 4);
            codes[96 + l] = (ql[32 + l] >> 4) | ((h >> 6) << 4);
        }
    }
}

/// Packs 256 six-bit codes into `ql` and `qh`, the inverse of [`unpack`].
fn pack(codes: &[u8], ql: &mut [u8], qh: &mut [u8]) {
    for n in 0..2 {
        let (ql, qh) = (&mut ql[64 * n..64 * n + 64], &mut qh[32 * n..32 * n + 32]);
        let c = &codes[128 * n..128 * n + 128];
        for l in 0..32 {
            let (q1, q2, q3, q4) = (c[l], c[32 + l], c[64 + l], c[96 + l]);
            ql[l] = (q1 & 0x0F) | (q3 << 4);
            ql[32 + l] = (q2 & 0x0F) | (q4 << 4);
            qh[l] = ((q1 >> 4) & 3) | (((q2 >> 4) & 3) << 2) | (((q3 >> 4) & 3) << 4) | (((q4 >> 4) & 3) << 6);
        }
    }
}

impl BlockFormat for Q6K {
    const FORMAT: Format = Format::Q6K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ6K>();
    const CODE_BITS: u32 = 6;
    const SCALE_LEN: usize = 16;
    const HEADER_BYTES: usize = Self::BLOCK_BYTES - SCALES;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..Self::HEADER_BYTES].copy_from_slice(&block[SCALES..Self::BLOCK_BYTES]);
        unpack(&block[..QH], &block[QH..SCALES], codes);
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[SCALES..Self::BLOCK_BYTES].copy_from_slice(&header[..Self::HEADER_BYTES]);
        let (ql, qh) = block[..SCALES].split_at_mut(QH);
        pack(codes, ql, qh);
    }

    fn affine(header: &[u8], sub: usize) -> (f32, f32) {
        let scale = f16_at(header, D - SCALES) * header[sub] as i8 as f32;
        (scale, -32.0 * scale)
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, D);
        let mut codes = [0u8; QK_K];
        unpack(&block[..QH], &block[QH..SCALES], &mut codes);
        for (s, (y, q)) in out[..QK_K].chunks_exact_mut(16).zip(codes.chunks_exact(16)).enumerate() {
            let ds = d * block[SCALES + s] as i8 as f32;
            for (o, &c) in y.iter_mut().zip(q) {
                *o = ds * (c as i32 - 32) as f32;
            }
        }
    }
}

impl Quantize for Q6K {
    /// ggml's `quantize_row_q6_K_ref` (no importance matrix).
    fn quantize(x: &[f32], block: &mut [u8]) {
        let x = &x[..QK_K];
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for (ib, scale_out) in scales.iter_mut().enumerate() {
            let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            *scale_out = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            block[..Self::BLOCK_BYTES].fill(0);
            return;
        }
        let iscale = -128.0f32 / max_scale;
        let d = f16::from_f32(1.0 / iscale);
        block[D..D + 2].copy_from_slice(&d.to_le_bytes());
        for (ib, &scale) in scales.iter().enumerate() {
            // C stores the int into an int8_t (wrapping) after clamping to 127.
            block[SCALES + ib] = nearest_int(iscale * scale).min(127) as i8 as u8;
        }
        for j in 0..QK_K / 16 {
            let dj = d.to_f32() * block[SCALES + j] as i8 as f32;
            if dj == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dj).clamp(-32, 31) + 32) as u8;
            }
        }
        let (ql, qh) = block[..SCALES].split_at_mut(QH);
        pack(&l, ql, qh);
    }
}
