kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    args: crate::kernel::KernelArgs;
    format_trait: crate::formats::BlockFormat;
    formats: [q4_0 => crate::formats::Q4_0];
    tile_rows: [1, 2];
    columns: [1];
    sparsity: [dense => crate::kernel::Dense];
    activation: [f32 => crate::kernel::F32Path];
    isa: [scalar => crate::isa::Scalar, avx2 => crate::isa::Avx2 : "avx2"];
    prune: [
        /// Single rows waste vector registers.
        tile_rows = 1, isa = avx2;
        /// Scalar code has no registers to tile rows across.
        tile_rows = 2;  // meant: `isa = scalar, tile_rows = 2`
        /// Scalar is only a reference.
        isa = scalar;
    ];
}

fn main() {}
