//! STUB (to be replaced): ggml `Q5K`.
use crate::formats::{BlockFormat, Format};

/// ggml's block (stub).
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ5K {
    /// Raw bytes.
    pub bytes: [u8; 176],
}

/// Marker type.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q5K;

impl BlockFormat for Q5K {
    const FORMAT: Format = Format::Q5K;
    const BLOCK_LEN: usize = 256;
    const BLOCK_BYTES: usize = 176;
    const CODE_BITS: u32 = 5;
    const SCALE_LEN: usize = 32;
    const HEADER_BYTES: usize = 16;
    fn split(_block: &[u8], _header: &mut [u8], _codes: &mut [u8]) {
        todo!()
    }
    fn join(_header: &[u8], _codes: &[u8], _block: &mut [u8]) {
        todo!()
    }
    fn affine(_header: &[u8], _sub: usize) -> (f32, f32) {
        todo!()
    }
    fn dequantize(_block: &[u8], _out: &mut [f32]) {
        todo!()
    }
}
