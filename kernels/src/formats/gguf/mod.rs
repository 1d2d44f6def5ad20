//! ggml's block formats, byte-identical to `ggml-common.h`, so that a GGUF
//! tensor's bytes are used as they are.
//!
//! Each format is a zero-sized marker implementing
//! [`BlockFormat`](super::BlockFormat), with a `#[repr(C)]` block struct
//! whose size is asserted at compile time to match ggml.
//!
//! Every format also implements [`Quantize`](super::Quantize) as an exact
//! port of ggml's `quantize_row_*_ref` (the quantizers without importance
//! matrix), and its `dequantize` repeats ggml's `dequantize_row_*` float
//! for float. `tests/gguf_formats.rs` holds both bit-exact to gguf-py (the
//! `gguf` package on PyPI) and, for the K quantizers, to ggml itself.

mod k_quants;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;

pub use q4_0::{BlockQ4_0, Q4_0};
pub use q4_1::{BlockQ4_1, Q4_1};
pub use q4_k::{BlockQ4K, Q4K};
pub use q5_0::{BlockQ5_0, Q5_0};
pub use q5_1::{BlockQ5_1, Q5_1};
pub use q5_k::{BlockQ5K, Q5K};
pub use q6_k::{BlockQ6K, Q6K};
pub use q8_0::{BlockQ8_0, Q8_0};

/// Weights per block of the 32-weight formats (ggml's `QK4_0`, `QK8_0`, ...).
pub const QK: usize = 32;
/// Weights per super-block of the K formats (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K (`K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// ggml's `nearest_int`, bit for bit: adds `1.5 * 2^23` and reads the low
/// mantissa bits, which rounds half to even for `|v| <= 4194303` (the only
/// range ggml calls it with meaningfully). Outside that range (and for
/// non-finite `v`) it returns the same deterministic garbage as ggml, which
/// every caller then clamps, so the port stays byte-identical there too.
///
/// Not `f32::round`: that is C's `roundf` (half away from zero), which ggml
/// uses only for Q8_0.
#[inline(always)]
pub(crate) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007F_FFFF) - 0x0040_0000
}
