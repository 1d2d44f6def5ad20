//! asdsl's quantized GEMV kernels.
//!
//! The pieces, in the order data flows through them:
//!
//! - [`formats`]: the weight formats (ggml's block formats byte for byte, and
//!   the native `q{bits}g{group}`), their quantizers, and the scalar
//!   reference GEMV that is the oracle for every variant.
//! - [`pack`]: weights rearranged (losslessly, no extra bytes per weight)
//!   into the layout a variant reads: row-interleaved tiles of bit planes,
//!   column-major planes, or the format's own blocks.
//! - [`input`]: activations prepared once per input (padded, and quantized
//!   to int8 for the q8 path: a scale per 32 values, and per 256 for the
//!   K-quants, as ggml pairs its formats with Q8_0 and Q8_K).
//! - [`registry`]: every generated variant, declared once; [`variant`]: its
//!   descriptor and name; [`kernel`] and [`isa`]: the shared bodies the
//!   variants are compiled from.
//! - [`run`]: a matrix resolved to one variant ([`run::Gemv`]), run with an
//!   explicit thread count (a team of workers that spin between jobs, so
//!   that back-to-back GEMVs start without a wake-up) and row partition.
//! - [`cpu`]: CPU detection and the `ASDSL_FORCE_ISA` cap; a variant whose
//!   ISA is not allowed is refused, never run.
//! - [`roofline`]: this machine's memory bandwidth and the GEMV ceiling it sets.
//! - [`tune`]: the autotuner, the per-machine plan it writes, and the
//!   heuristic default used where no plan fits.

pub mod cpu;
pub mod error;
pub mod formats;
pub mod input;
pub mod isa;
pub mod kernel;
pub mod pack;
pub mod registry;
pub mod roofline;
pub mod run;
mod team;
pub mod tune;
pub mod variant;

pub use error::KernelError;
pub use formats::{BlockFormat, Format, NativeFormat, Quantize};

/// Runs `$body` with the type alias `$F` bound to the [`BlockFormat`] of the
/// runtime [`Format`] `$format`.
#[macro_export]
macro_rules! with_format {
    ($format:expr, $F:ident => $body:expr) => {{
        use $crate::formats::{Format as __Format, NativeFormat as __Native, gguf as __g, native as __n};
        match $format {
            __Format::Q4_0 => {
                type $F = __g::Q4_0;
                $body
            }
            __Format::Q4_1 => {
                type $F = __g::Q4_1;
                $body
            }
            __Format::Q5_0 => {
                type $F = __g::Q5_0;
                $body
            }
            __Format::Q5_1 => {
                type $F = __g::Q5_1;
                $body
            }
            __Format::Q8_0 => {
                type $F = __g::Q8_0;
                $body
            }
            __Format::Q4K => {
                type $F = __g::Q4K;
                $body
            }
            __Format::Q5K => {
                type $F = __g::Q5K;
                $body
            }
            __Format::Q6K => {
                type $F = __g::Q6K;
                $body
            }
            __Format::Native(__Native { bits, group }) => match (bits, group) {
                (2, 16) => {
                    type $F = __n::Q2G16;
                    $body
                }
                (2, 32) => {
                    type $F = __n::Q2G32;
                    $body
                }
                (2, 64) => {
                    type $F = __n::Q2G64;
                    $body
                }
                (2, 128) => {
                    type $F = __n::Q2G128;
                    $body
                }
                (3, 16) => {
                    type $F = __n::Q3G16;
                    $body
                }
                (3, 32) => {
                    type $F = __n::Q3G32;
                    $body
                }
                (3, 64) => {
                    type $F = __n::Q3G64;
                    $body
                }
                (3, 128) => {
                    type $F = __n::Q3G128;
                    $body
                }
                (4, 16) => {
                    type $F = __n::Q4G16;
                    $body
                }
                (4, 32) => {
                    type $F = __n::Q4G32;
                    $body
                }
                (4, 64) => {
                    type $F = __n::Q4G64;
                    $body
                }
                (4, 128) => {
                    type $F = __n::Q4G128;
                    $body
                }
                (8, 16) => {
                    type $F = __n::Q8G16;
                    $body
                }
                (8, 32) => {
                    type $F = __n::Q8G32;
                    $body
                }
                (8, 64) => {
                    type $F = __n::Q8G64;
                    $body
                }
                (8, 128) => {
                    type $F = __n::Q8G128;
                    $body
                }
                (bits, group) => Err($crate::KernelError::UnknownFormat(format!(
                    "q{bits}g{group} is not a native format (bits 2, 3, 4, 8; groups 16, 32, 64, 128)"
                ))),
            },
        }
    }};
}
