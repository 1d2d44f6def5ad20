//! asdsl's native formats `q{bits}g{group}`: asymmetric, an f16 scale and an
//! f16 min per group of `GROUP` weights, `BITS`-bit codes.
//!
//! Block layout (`4 + GROUP * BITS / 8` bytes):
//!
//! | bytes | content |
//! |---|---|
//! | 0..2 | scale `d`, f16 little-endian |
//! | 2..4 | min `m`, f16 little-endian |
//! | 4.. | codes; weight `i` = `d * code[i] + m` |
//!
//! Code order (so that SIMD unpacking is a shift and a mask, as in ggml):
//! - 8 bits: one byte per code.
//! - 4 bits: `GROUP / 2` bytes; byte `i` holds code `i` in its low nibble and
//!   code `i + GROUP / 2` in its high nibble (for `GROUP = 32` this is exactly
//!   ggml's Q4_1, which therefore is `q4g32`).
//! - 2 bits: `GROUP / 4` bytes; bits `2j..2j+2` of byte `i` hold code
//!   `i + j * GROUP / 4`.
//! - 3 bits: the low two bits of every code as the 2-bit layout, followed by
//!   `GROUP / 8` bytes whose bit `b` of byte `i` is bit 2 of code `8i + b`.

use super::{BlockFormat, Format, NativeFormat, Quantize, f16_at, put_f16};

/// The native format with `BITS`-bit codes and groups of `GROUP` weights.
#[derive(Copy, Clone, Debug, Default)]
pub struct Native<const BITS: u8, const GROUP: usize>;

/// Header bytes of every native block: f16 scale and f16 min.
pub const fn header_bytes() -> usize {
    4
}

macro_rules! native_aliases {
    ($($name:ident = $bits:literal, $group:literal;)*) => {
        $(
            #[doc = concat!("`q", $bits, "g", $group, "`: ", $bits, "-bit codes, groups of ", $group, ".")]
            pub type $name = Native<$bits, $group>;
        )*
    };
}

native_aliases! {
    Q2G16 = 2, 16; Q2G32 = 2, 32; Q2G64 = 2, 64; Q2G128 = 2, 128;
    Q3G16 = 3, 16; Q3G32 = 3, 32; Q3G64 = 3, 64; Q3G128 = 3, 128;
    Q4G16 = 4, 16; Q4G32 = 4, 32; Q4G64 = 4, 64; Q4G128 = 4, 128;
    Q8G16 = 8, 16; Q8G32 = 8, 32; Q8G64 = 8, 64; Q8G128 = 8, 128;
}

impl<const BITS: u8, const GROUP: usize> BlockFormat for Native<BITS, GROUP> {
    const FORMAT: Format = Format::Native(NativeFormat { bits: BITS, group: GROUP as u16 });
    const BLOCK_LEN: usize = GROUP;
    const BLOCK_BYTES: usize = header_bytes() + GROUP * BITS as usize / 8;
    const CODE_BITS: u32 = BITS as u32;
    const SCALE_LEN: usize = GROUP;
    const HEADER_BYTES: usize = header_bytes();

    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]) {
        header[..4].copy_from_slice(&block[..4]);
        unpack_codes(BITS, &block[4..Self::BLOCK_BYTES], &mut codes[..GROUP]);
    }

    fn join(header: &[u8], codes: &[u8], block: &mut [u8]) {
        block[..4].copy_from_slice(&header[..4]);
        pack_codes(BITS, &codes[..GROUP], &mut block[4..Self::BLOCK_BYTES]);
    }

    fn affine(header: &[u8], _sub: usize) -> (f32, f32) {
        (f16_at(header, 0), f16_at(header, 2))
    }

    fn dequantize(block: &[u8], out: &mut [f32]) {
        let (d, m) = Self::affine(block, 0);
        let mut codes = [0u8; 128];
        unpack_codes(BITS, &block[4..Self::BLOCK_BYTES], &mut codes[..GROUP]);
        for (o, &c) in out[..GROUP].iter_mut().zip(&codes[..GROUP]) {
            *o = d * c as f32 + m;
        }
    }
}

/// How to quantize f32 weights into a native format.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct NativeQuantizer {
    /// Search, per group, for a clipped range `[lo, hi]` inside `[min, max]`
    /// that minimizes the squared error (slower, usually 5–20 % less error).
    pub clip_search: bool,
}

impl<const BITS: u8, const GROUP: usize> Quantize for Native<BITS, GROUP> {
    fn quantize(weights: &[f32], block: &mut [u8]) {
        quantize_native::<BITS, GROUP>(weights, block, NativeQuantizer { clip_search: false })
    }
}

impl<const BITS: u8, const GROUP: usize> Native<BITS, GROUP> {
    /// Quantizes one group with the given options.
    pub fn quantize_with(weights: &[f32], block: &mut [u8], options: NativeQuantizer) {
        quantize_native::<BITS, GROUP>(weights, block, options)
    }
}

/// Largest finite f16.
const F16_MAX: f32 = 65504.0;

fn quantize_native<const BITS: u8, const GROUP: usize>(weights: &[f32], block: &mut [u8], options: NativeQuantizer) {
    let x = &weights[..GROUP];
    let finite = |v: f32| {
        if v.is_finite() { v.clamp(-F16_MAX, F16_MAX) } else { 0.0 }
    };
    let lo = x.iter().copied().map(finite).fold(f32::INFINITY, f32::min);
    let hi = x.iter().copied().map(finite).fold(f32::NEG_INFINITY, f32::max);
    let mut codes = [0u8; 128];
    let mut best = encode_range::<BITS>(x, lo, hi, &mut codes[..GROUP], block);
    if options.clip_search && hi > lo {
        // Shrink the range from either end by up to 15 % in 2.5 % steps and
        // keep the candidate with the least squared error.
        let mut trial = [0u8; 128];
        let mut trial_block = [0u8; 4];
        let (mut best_lo, mut best_hi) = (lo, hi);
        let span = hi - lo;
        for i in 0..=6 {
            for j in 0..=6 {
                if i == 0 && j == 0 {
                    continue;
                }
                let (l, h) = (lo + span * 0.025 * i as f32, hi - span * 0.025 * j as f32);
                let err = encode_range::<BITS>(x, l, h, &mut trial[..GROUP], &mut trial_block);
                if err < best {
                    (best, best_lo, best_hi) = (err, l, h);
                }
            }
        }
        encode_range::<BITS>(x, best_lo, best_hi, &mut codes[..GROUP], block);
    }
    pack_codes(BITS, &codes[..GROUP], &mut block[4..4 + GROUP * BITS as usize / 8]);
}

/// Encodes `x` over the range `[lo, hi]`: writes the f16 header into
/// `header[..4]` and the codes, and returns the squared error.
fn encode_range<const BITS: u8>(x: &[f32], lo: f32, hi: f32, codes: &mut [u8], header: &mut [u8]) -> f32 {
    let levels = ((1u32 << BITS) - 1) as f32;
    let d = put_f16(header, 0, ((hi - lo) / levels).min(F16_MAX));
    let m = put_f16(header, 2, lo);
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut err = 0.0f32;
    for (c, &v) in codes.iter_mut().zip(x) {
        let v = if v.is_finite() { v } else { 0.0 };
        let q = ((v - m) * id).round().clamp(0.0, levels);
        *c = q as u8;
        let e = d * q + m - v;
        err += e * e;
    }
    err
}

/// Unpacks `codes.len()` codes of `bits` bits from the native code layout.
pub(crate) fn unpack_codes(bits: u8, packed: &[u8], codes: &mut [u8]) {
    let n = codes.len();
    match bits {
        8 => codes.copy_from_slice(&packed[..n]),
        4 => {
            let half = n / 2;
            for i in 0..half {
                codes[i] = packed[i] & 0x0F;
                codes[i + half] = packed[i] >> 4;
            }
        }
        2 => unpack_crumbs(&packed[..n / 4], codes),
        3 => {
            unpack_crumbs(&packed[..n / 4], codes);
            let high = &packed[n / 4..n / 4 + n / 8];
            for (i, c) in codes.iter_mut().enumerate() {
                *c |= ((high[i / 8] >> (i % 8)) & 1) << 2;
            }
        }
        _ => unreachable!("native formats have 2, 3, 4 or 8 bits"),
    }
}

/// Packs codes into the native code layout (the inverse of [`unpack_codes`]).
pub(crate) fn pack_codes(bits: u8, codes: &[u8], packed: &mut [u8]) {
    let n = codes.len();
    match bits {
        8 => packed[..n].copy_from_slice(codes),
        4 => {
            let half = n / 2;
            for i in 0..half {
                packed[i] = (codes[i] & 0x0F) | (codes[i + half] << 4);
            }
        }
        2 => pack_crumbs(codes, &mut packed[..n / 4]),
        3 => {
            pack_crumbs(codes, &mut packed[..n / 4]);
            let high = &mut packed[n / 4..n / 4 + n / 8];
            high.fill(0);
            for (i, &c) in codes.iter().enumerate() {
                high[i / 8] |= ((c >> 2) & 1) << (i % 8);
            }
        }
        _ => unreachable!("native formats have 2, 3, 4 or 8 bits"),
    }
}

fn unpack_crumbs(packed: &[u8], codes: &mut [u8]) {
    let quarter = packed.len();
    for (i, &byte) in packed.iter().enumerate() {
        for j in 0..4 {
            codes[i + j * quarter] = (byte >> (2 * j)) & 3;
        }
    }
}

fn pack_crumbs(codes: &[u8], packed: &mut [u8]) {
    let quarter = packed.len();
    for (i, byte) in packed.iter_mut().enumerate() {
        *byte = (0..4).fold(0, |acc, j| acc | ((codes[i + j * quarter] & 3) << (2 * j)));
    }
}
