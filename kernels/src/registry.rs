//! The registry: every generated GEMV variant, declared once.
//!
//! The declaration below is the whole variant space. `variant_space!`
//! (crate `kernel-macros`) expands its cross product, minus the prune rules,
//! into one `#[target_feature]` function per variant over the shared body
//! [`crate::kernel::body`], and the static [`VARIANTS`] that the tuner, the
//! tests and the benches iterate.
//!
//! # Size
//!
//! 24 formats x 5 tile rows x 2 column blocks x 2 sparsities x 2 activation
//! paths x 4 ISAs = 3,840 declared combinations; the prune rules keep 1,158:
//! per format, 40 SIMD dense variants of the row-slot layout (AVX2 and
//! AVX-512 with both activation paths, VNNI with int8 only, each at tile rows
//! 1, 2, 4, 8 x 2 column blocks), 4 scalar dense variants (one tile row, f32
//! or int8, 1 or 4 columns) and 3 column-sparse ones (f32 on scalar, AVX2 and
//! AVX-512): 47 per format; and for Q4_0, Q4_1, Q4_K, Q6_K and q4g32 6 more
//! of the interleaved 16-row layout (int8, AVX2 and AVX-512 with and without
//! VNNI, 1 or 4 columns).
//! [`VARIANTS_DECLARED`] and `VARIANTS.len()` give the numbers of the build.
//! Every variant shares one body per ISA and activation path, so the code
//! that is written by hand is a few drivers, and the compile time is that of
//! LLVM optimizing the 1,158 instantiations.

//!
//! The unit tests inside this crate (CPU detection, roofline) never touch the
//! variants, which the integration tests in `kernels/tests/` exercise; so the
//! crate's own test build leaves the space out, which halves the time of
//! `cargo test`.

#[cfg(not(test))]
use crate::formats::{Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0, native::*};

/// Empty in the crate's own unit-test build (see the module docs).
#[cfg(test)]
pub static VARIANTS: &[crate::variant::Variant] = &[];

/// Zero in the crate's own unit-test build (see the module docs).
#[cfg(test)]
pub const VARIANTS_DECLARED: usize = 0;

#[cfg(not(test))]
kernel_macros::variant_space! {
    /// Every generated variant, in declaration order (format outermost).
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    args: crate::kernel::KernelArgs;
    format_trait: crate::formats::BlockFormat;
    formats: [
        q4_0 => Q4_0, q4_1 => Q4_1, q5_0 => Q5_0, q5_1 => Q5_1, q8_0 => Q8_0,
        q4_k => Q4K, q5_k => Q5K, q6_k => Q6K,
        q2g16 => Q2G16, q2g32 => Q2G32, q2g64 => Q2G64, q2g128 => Q2G128,
        q3g16 => Q3G16, q3g32 => Q3G32, q3g64 => Q3G64, q3g128 => Q3G128,
        q4g16 => Q4G16, q4g32 => Q4G32, q4g64 => Q4G64, q4g128 => Q4G128,
        q8g16 => Q8G16, q8g32 => Q8G32, q8g64 => Q8G64, q8g128 => Q8G128,
    ];
    tile_rows: [1, 2, 4, 8, 16];
    columns: [1, 4];
    sparsity: [dense => crate::kernel::Dense, colsparse => crate::kernel::ColSparse];
    activation: [f32 => crate::kernel::F32Path, q8 => crate::kernel::Q8Path];
    isa: [
        scalar => crate::isa::Scalar,
        #[cfg(target_arch = "x86_64")]
        avx2 => crate::isa::Avx2 : "avx2,fma,f16c,bmi2",
        #[cfg(target_arch = "x86_64")]
        avx512 => crate::isa::Avx512 : "avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq",
        #[cfg(target_arch = "x86_64")]
        avx512vnni => crate::isa::Avx512Vnni : "avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni",
    ];
    prune: [
        /// VNNI adds only an integer dot product: the f32 path is the avx512 one.
        isa = avx512vnni, activation = f32;
        /// Scalar code has no vector registers to tile rows across; it reads the
        /// format's own blocks.
        isa = scalar, tile_rows != 1;
        /// Integer dot products sum four adjacent input columns per lane, while
        /// column-sparse skips single columns: it runs the f32 path.
        sparsity = colsparse, activation = q8;
        /// The column-major layout has no row tiles (it works in 64-row blocks).
        sparsity = colsparse, tile_rows != 1;
        /// Activation columns differ in which entries are zero, so column-sparse
        /// takes one input column at a time.
        sparsity = colsparse, columns != 1;
        /// Sixteen tile rows are the interleaved layout (one row per 32-bit lane
        /// of a 512-bit vector, or of two 256-bit ones), written for llama.cpp's
        /// most common formats, Q4_0, Q4_1, and Q4_K and Q6_K of the Q4_K_M mix,
        /// and for q4g32, whose blocks are Q4_1's.
        tile_rows = 16, format != q4_0, format != q4_1, format != q4_k, format != q6_k, format != q4g32;
        /// The interleaved kernels are integer dot products.
        tile_rows = 16, activation = f32;
    ];
}

/// Looks a variant up by its name.
pub fn find(name: &str) -> Option<&'static crate::variant::Variant> {
    VARIANTS.iter().find(|v| v.name == name)
}
