//! ggml `Q5_K`: Q4_K with a fifth code bit. 256-weight super-blocks of
//! eight 32-weight sub-blocks with f16 `d` and `dmin` and packed 6-bit
//! scales and mins; codes are 5-bit:
//! weight = `(d * sc[s]) * code - (dmin * m[s])`.
//!
//! Code order: the low nibbles are laid out as in Q4_K (chunk `c` of `qs`
//! holds weights `64c..64c+32` low, `64c+32..64c+64` high); bit 4 of the
//! code of weight `64c + l` is bit `2c` of `qh[l]`, and of weight
//! `64c + 32 + l` bit `2c + 1` of `qh[l]`.
//!
//! Header bytes: `d`, `dmin`, `scales[12]` (16 bytes, the block's first 16);
//! the `qh` bits are code bits.

use half::f16;

use super::k_quants::{Qkx2Search, get_scale_min_k4, quantize_k_super_block};
use super::{K_SCALE_SIZE, QK_K};
use crate::formats::{BlockFormat, Format, Quantize, f16_at};

/// ggml's `block_q5_K`.
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the sub-block scales.
    pub d: f16,
    /// Super-block scale of the sub-block mins.
    pub dmin: f16,
    /// Sub-block scales and mins, 6 bits each.
    pub scales: [u8; K_SCALE_SIZE],
    /// Fifth code bits.
    pub qh: [u8; QK_K / 8],
    /// Low four code bits.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// Marker type of the Q5_K format.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q5K;

/// Header length, and offset of `qh` in the block.
const QH: usize = 4 + K_SCALE_SIZE;
/// Offset of `qs` in the block.
const QS: usize = QH + QK_K / 8;

/// Unpacks the 256 five-bit codes from `qh` (32 bytes) and `qs` (128 bytes).
fn unpack(qh: &[u8], qs: &[u8], codes: &mut [u8]) {
    for c in 0..4 {
        for l in 0..32 {
            let q = qs[32 * c + l];
            let h = qh[l] >> (2 * c);
            codes[64 * c + l] = (q & 0x0F) | ((h & 1) << 4);
            codes[64 * c + 32 + l] = (q >> 4) | (((h >> 1) & 1) << 4);
        }
    }
}

/// Packs 256 five-bit codes into `qh` and `qs`, the inverse of [`unpack`].
fn pack(codes: &[u8], qh: &mut [u8], qs: &mut [u8]) {
    qh[..32].fill(0);
    for c in 0..4 {
        for l in 0..32 {
            let (c0, c1) = (codes[64 * c + l], codes[64 * c + 32 + l]);
            qs[32 * c + l] = (c0 & 0x0F) | ((c1 & 0x0F) << 4);
            qh[l] |= (((c0 >> 4) & 1) << (2 * c)) | (((c1 >> 4) & 1) << (2 * c + 1));
        }
    }
}

impl BlockFormat for Q5K {
    const FORMAT: Format = Format::Q5K;
    const BLOCK_LEN: usize = QK_K;
    const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ5K>();
    const CODE_BITS: u32 = 5;
    const SCALE_LEN: usize = 32;
    const HEADER_BYTES: usize = QH;

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..QH].copy_from_slice(&block[..QH]);
        unpack(&block[QH..QS], &block[QS..Self::BLOCK_BYTES], codes);
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..QH].copy_from_slice(&header[..QH]);
        let (qh, qs) = block[QH..Self::BLOCK_BYTES].split_at_mut(QK_K / 8);
        pack(codes, qh, qs);
    }

    fn affine(header: &[u8], sub: usize) -> (f32, f32) {
        let (sc, m) = get_scale_min_k4(sub, &header[4..QH]);
        (f16_at(header, 0) * sc as f32, -(f16_at(header, 2) * m as f32))
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let d = f16_at(block, 0);
        let min = f16_at(block, 2);
        let scales = &block[4..QH];
        let mut codes = [0u8; QK_K];
        unpack(&block[QH..QS], &block[QS..Self::BLOCK_BYTES], &mut codes);
        for (s, (y, q)) in out[..QK_K].chunks_exact_mut(32).zip(codes.chunks_exact(32)).enumerate() {
            let (sc, m) = get_scale_min_k4(s, scales);
            let (ds, ms) = (d * sc as f32, min * m as f32);
            for (o, &c) in y.iter_mut().zip(q) {
                *o = ds * c as f32 - ms;
            }
        }
    }
}

impl Quantize for Q5K {
    /// ggml's `quantize_row_q5_K_ref` (no importance matrix).
    fn quantize(x: &[f32], block: &mut [u8]) {
        let search = Qkx2Search { nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15 };
        let mut l = [0u8; QK_K];
        let (d, dmin, scales) = quantize_k_super_block(&x[..QK_K], search, &mut l);
        block[0..2].copy_from_slice(&d.to_le_bytes());
        block[2..4].copy_from_slice(&dmin.to_le_bytes());
        block[4..QH].copy_from_slice(&scales);
        let (qh, qs) = block[QH..Self::BLOCK_BYTES].split_at_mut(QK_K / 8);
        pack(&l, qh, qs);
    }
}
