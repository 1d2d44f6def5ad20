//! ggml `Q4_K`: 256-weight super-blocks of eight 32-weight sub-blocks. The
//! super-block has f16 `d` and `dmin`; sub-block `s` has a 6-bit scale
//! `sc[s]` and a 6-bit min `m[s]` (packed in 12 bytes, see
//! [`get_scale_min_k4`](super::k_quants::get_scale_min_k4)); codes are 4-bit:
//! weight = `(d * sc[s]) * code - (dmin * m[s])`.
//!
//! Code order: the 128 code bytes are four 32-byte chunks; chunk `c` holds
//! weights `64c..64c+32` in its low nibbles and `64c+32..64c+64` in its high
//! nibbles.
//!
//! Header bytes: `d`, `dmin`, `scales[12]` (16 bytes, the block's first 16).

use half::f16;

use super::k_quants::{Qkx2Search, get_scale_min_k4, quantize_k_super_block};
use super::{K_SCALE_SIZE, QK_K};
use crate::formats::{BlockFormat, Format, Quantize, f16_at};

/// ggml's `block_q4_K`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Sub-block scales and mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// Codes, 4 bits each.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// Marker type of the Q4_K format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q4K;

/// Offset of `qs` in the block.
const QS: usize = 4 + K_SCALE_SIZE;

impl BlockFormat for Q4K {
    const FORMAT: Format = Format::Q4K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4K>();
    const CODE_BITS: u32 = 4;
    const SCALE_LEN: usize = 32;
    const HEADER_BYTES: usize = QS;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..QS].copy_from_slice(&block[..QS]);
        for c in 0..4 {
            for l in 0..32 {
                let q = block[QS + 32 * c + l];
                codes[64 * c + l] = q & 0x0F;
                codes[64 * c + 32 + l] = q >> 4;
            }
        }
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..QS].copy_from_slice(&header[..QS]);
        for c in 0..4 {
            for l in 0..32 {
                block[QS + 32 * c + l] = (codes[64 * c + l] & 0x0F) | (codes[64 * c + 32 + l] << 4);
            }
        }
    }

    fn affine(header: &[u8], sub: usize) -> (f32, f32) {
        let (sc, m) = get_scale_min_k4(sub, &header[4..QS]);
        (f16_at(header, 0) * sc as f32, -(f16_at(header, 2) * m as f32))
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let min = f16_at(block, 2);
        let scales = &block[4..QS];
        for c in 0..4 {
            let (sc, m) = get_scale_min_k4(2 * c, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let q = &block[QS + 32 * c..QS + 32 * c + 32];
            let y = &mut out[64 * c..64 * c + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                y[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

impl Quantize for Q4K {
    /// ggml's `quantize_row_q4_K_ref` (no importance matrix).
    fn quantize(x: &[f32], block: &mut [u8]) {
        let search = Qkx2Search { nmax: 15, rmin: -1.0, rdelta: 0.1, nstep: 20 };
        let mut l = [0u8; QK_K];
        let (d, dmin, scales) = quantize_k_super_block(&x[..QK_K], search, &mut l);
        block[0..2].copy_from_slice(&d.to_le_bytes());
        block[2..4].copy_from_slice(&dmin.to_le_bytes());
        block[4..QS].copy_from_slice(&scales);
        for c in 0..4 {
            for i in 0..32 {
                block[QS + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}
