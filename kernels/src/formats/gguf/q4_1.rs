//! STUB (to be replaced): ggml `Q4_1`.
use crate::formats::{BlockFormat, Format};

/// ggml's block (stub).
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Raw bytes.
    pub bytes: [u8; 20],
}

/// Marker type.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q4_1;

impl BlockFormat for Q4_1 {
    const FORMAT: Format = Format::Q4_1;
    const BLOCK_LEN: usize = 32;
    const BLOCK_BYTES: usize = 20;
    const CODE_BITS: u32 = 4;
    const SCALE_LEN: usize = 32;
    const HEADER_BYTES: usize = 4;
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
