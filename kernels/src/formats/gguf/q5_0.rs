//! STUB (to be replaced): ggml `Q5_0`.
use crate::formats::{BlockFormat, Format};

/// ggml's block (stub).
#[derive(Copy, Clone, Debug)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Raw bytes.
    pub bytes: [u8; 22],
}

/// Marker type.
#[derive(Copy, Clone, Debug, Default)]
pub struct Q5_0;

impl BlockFormat for Q5_0 {
    const FORMAT: Format = Format::Q5_0;
    const BLOCK_LEN: usize = 32;
    const BLOCK_BYTES: usize = 22;
    const CODE_BITS: u32 = 5;
    const SCALE_LEN: usize = 32;
    const HEADER_BYTES: usize = 2;
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
