//! Weight formats: block layouts, quantization, dequantization, and the
//! scalar reference GEMV that is the oracle for every kernel variant.
//!
//! Every format stores a matrix row as a sequence of fixed-size blocks of
//! `BLOCK_LEN` weights. A block is split into *header* bytes (scales, mins)
//! and one unsigned *code* per weight (`CODE_BITS` wide). Every format, GGUF
//! or native, is affine in its codes:
//!
//! ```text
//! weight[i] = scale(i / SCALE_LEN) * code[i] + min(i / SCALE_LEN)
//! ```
//!
//! (symmetric formats such as Q4_0 have `min = -offset * scale`). The
//! kernels rely only on this decomposition, [`BlockFormat::split`] and
//! [`BlockFormat::affine`]; the packing code moves header bytes and codes
//! into SIMD-friendly orders without changing a bit of information.

pub mod gguf;
pub mod native;
pub mod reference;

use std::fmt;
use std::str::FromStr;

use crate::error::KernelError;

pub use gguf::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0};

/// Every weight format the kernels know, as a runtime value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// ggml Q4_0: 32 weights, f16 scale, 4-bit codes, offset 8.
    Q4_0,
    /// ggml Q4_1: 32 weights, f16 scale and min, 4-bit codes.
    Q4_1,
    /// ggml Q5_0: 32 weights, f16 scale, 5-bit codes, offset 16.
    Q5_0,
    /// ggml Q5_1: 32 weights, f16 scale and min, 5-bit codes.
    Q5_1,
    /// ggml Q8_0: 32 weights, f16 scale, signed 8-bit codes.
    Q8_0,
    /// ggml Q4_K: 256-weight super-blocks of eight 32-weight sub-blocks with 6-bit scales and mins.
    Q4K,
    /// ggml Q5_K: like Q4_K with a fifth code bit.
    Q5K,
    /// ggml Q6_K: 256-weight super-blocks of sixteen 16-weight sub-blocks with 8-bit scales.
    Q6K,
    /// asdsl native `q{bits}g{group}`: asymmetric, f16 scale and min per group.
    Native(NativeFormat),
}

/// Bit width and group size of a native `q{bits}g{group}` format.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NativeFormat {
    /// Bits per code: 2, 3, 4 or 8.
    pub bits: u8,
    /// Weights per group: 16, 32, 64 or 128.
    pub group: u16,
}

/// Bits per code of the native formats.
pub const NATIVE_BITS: [u8; 4] = [2, 3, 4, 8];
/// Group sizes of the native formats.
pub const NATIVE_GROUPS: [u16; 4] = [16, 32, 64, 128];

/// Static facts about a format, the same numbers as the [`BlockFormat`] consts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    /// Weights per block.
    pub block_len: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Bits per code.
    pub code_bits: u32,
    /// Weights that share one scale and min.
    pub scale_len: usize,
}

impl FormatInfo {
    /// Bits of storage per weight, headers included.
    pub fn bits_per_weight(&self) -> f64 {
        self.block_bytes as f64 * 8.0 / self.block_len as f64
    }
}

impl Format {
    /// All formats, GGUF first, then the native ones by bits and group.
    pub fn all() -> Vec<Format> {
        let mut all = vec![
            Format::Q4_0,
            Format::Q4_1,
            Format::Q5_0,
            Format::Q5_1,
            Format::Q8_0,
            Format::Q4K,
            Format::Q5K,
            Format::Q6K,
        ];
        for bits in NATIVE_BITS {
            for group in NATIVE_GROUPS {
                all.push(Format::Native(NativeFormat { bits, group }));
            }
        }
        all
    }

    /// The block geometry of this format.
    pub fn info(self) -> FormatInfo {
        match self {
            Format::Q4_0 => info::<Q4_0>(),
            Format::Q4_1 => info::<Q4_1>(),
            Format::Q5_0 => info::<Q5_0>(),
            Format::Q5_1 => info::<Q5_1>(),
            Format::Q8_0 => info::<Q8_0>(),
            Format::Q4K => info::<Q4K>(),
            Format::Q5K => info::<Q5K>(),
            Format::Q6K => info::<Q6K>(),
            Format::Native(n) => FormatInfo {
                block_len: n.group as usize,
                block_bytes: native::header_bytes() + n.group as usize * n.bits as usize / 8,
                code_bits: n.bits as u32,
                scale_len: n.group as usize,
            },
        }
    }

    /// Whether this is one of ggml's block formats (bytes as in a GGUF file).
    pub fn is_gguf(self) -> bool {
        !matches!(self, Format::Native(_))
    }

    /// The ggml type id of a GGUF format (`GGML_TYPE_*`).
    pub fn ggml_type(self) -> Option<u32> {
        Some(match self {
            Format::Q4_0 => 2,
            Format::Q4_1 => 3,
            Format::Q5_0 => 6,
            Format::Q5_1 => 7,
            Format::Q8_0 => 8,
            Format::Q4K => 12,
            Format::Q5K => 13,
            Format::Q6K => 14,
            Format::Native(_) => return None,
        })
    }

    /// The format of a ggml type id, if the kernels run it.
    pub fn from_ggml_type(id: u32) -> Option<Format> {
        Format::all().into_iter().find(|f| f.ggml_type() == Some(id))
    }

    /// Bytes taken by `rows` rows of `cols` weights; `cols` must be a
    /// multiple of the block length.
    pub fn row_bytes(self, cols: usize) -> Result<usize, KernelError> {
        let info = self.info();
        if !cols.is_multiple_of(info.block_len) {
            return Err(KernelError::Shape(format!(
                "{self}: a row of {cols} weights is not a whole number of {}-weight blocks",
                info.block_len
            )));
        }
        Ok(cols / info.block_len * info.block_bytes)
    }
}

fn info<F: BlockFormat>() -> FormatInfo {
    FormatInfo {
        block_len: F::BLOCK_LEN,
        block_bytes: F::BLOCK_BYTES,
        code_bits: F::CODE_BITS,
        scale_len: F::SCALE_LEN,
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Q4_0 => f.write_str("q4_0"),
            Format::Q4_1 => f.write_str("q4_1"),
            Format::Q5_0 => f.write_str("q5_0"),
            Format::Q5_1 => f.write_str("q5_1"),
            Format::Q8_0 => f.write_str("q8_0"),
            Format::Q4K => f.write_str("q4_k"),
            Format::Q5K => f.write_str("q5_k"),
            Format::Q6K => f.write_str("q6_k"),
            Format::Native(n) => write!(f, "q{}g{}", n.bits, n.group),
        }
    }
}

impl FromStr for Format {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if let Some(found) = Format::all().into_iter().find(|f| f.to_string() == lower) {
            return Ok(found);
        }
        Err(KernelError::UnknownFormat(format!(
            "unknown weight format `{s}` (known: {})",
            Format::all().iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
        )))
    }
}

/// A block format as a type: the static side of [`Format`], over which the
/// kernels are monomorphized.
///
/// Implementations are zero-sized markers; the methods work on raw block
/// bytes (`&[u8]` of exactly `BLOCK_BYTES`) so that a GGUF tensor's bytes are
/// used as they are.
pub trait BlockFormat: Copy + Send + Sync + 'static {
    /// The runtime name of this format.
    const FORMAT: Format;
    /// Weights per block.
    const BLOCK_LEN: usize;
    /// Bytes per block.
    const BLOCK_BYTES: usize;
    /// Bits per code; codes are `0..(1 << CODE_BITS)`.
    const CODE_BITS: u32;
    /// Weights that share one scale and min (16, 32, 64, 128 or 256... always divides `BLOCK_LEN`).
    const SCALE_LEN: usize;
    /// Header bytes per block: everything that is not a code bit.
    const HEADER_BYTES: usize;

    /// Splits one block into its header bytes (`HEADER_BYTES`) and its codes
    /// (`BLOCK_LEN`, one per weight, in weight order).
    fn split(block: &[u8], header: &mut [u8], codes: &mut [u8]);

    /// The inverse of [`split`](Self::split).
    fn join(header: &[u8], codes: &[u8], block: &mut [u8]);

    /// `(scale, min)` of sub-block `sub` (`0..BLOCK_LEN / SCALE_LEN`) from the
    /// header bytes: weight = scale * code + min.
    fn affine(header: &[u8], sub: usize) -> (f32, f32);

    /// Dequantizes one block into `BLOCK_LEN` floats, with exactly the
    /// arithmetic of ggml's `dequantize_row_*` (bit-exact for GGUF formats).
    fn dequantize(block: &[u8], out: &mut [f32]);
}

/// A format that can be produced from f32 weights.
pub trait Quantize: BlockFormat {
    /// Quantizes `BLOCK_LEN` weights into one block of `BLOCK_BYTES` bytes.
    fn quantize(weights: &[f32], block: &mut [u8]);
}

/// Dequantizes a whole row (or several) of blocks.
pub fn dequantize_blocks<F: BlockFormat>(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len() % F::BLOCK_BYTES, 0, "not a whole number of blocks");
    assert_eq!(bytes.len() / F::BLOCK_BYTES * F::BLOCK_LEN, out.len(), "output length");
    for (block, out) in bytes.chunks_exact(F::BLOCK_BYTES).zip(out.chunks_exact_mut(F::BLOCK_LEN)) {
        F::dequantize(block, out);
    }
}

/// Quantizes weights (a whole number of blocks) into block bytes.
pub fn quantize_blocks<F: Quantize>(weights: &[f32]) -> Vec<u8> {
    assert_eq!(weights.len() % F::BLOCK_LEN, 0, "not a whole number of blocks");
    let mut bytes = vec![0u8; weights.len() / F::BLOCK_LEN * F::BLOCK_BYTES];
    for (w, block) in weights.chunks_exact(F::BLOCK_LEN).zip(bytes.chunks_exact_mut(F::BLOCK_BYTES)) {
        F::quantize(w, block);
    }
    bytes
}

/// Reads the little-endian f16 at `bytes[at..at + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Writes `value` rounded to f16 at `bytes[at..at + 2]`, returning the f16 as f32.
#[inline(always)]
pub(crate) fn put_f16(bytes: &mut [u8], at: usize, value: f32) -> f32 {
    let h = half::f16::from_f32(value);
    bytes[at..at + 2].copy_from_slice(&h.to_le_bytes());
    h.to_f32()
}
