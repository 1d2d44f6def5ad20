kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    args: crate::kernel::KernelArgs;
    format_trait: crate::formats::BlockFormat;
    formats: [q4_0 => crate::formats::Q4_0];
    tile_rows: [1];
    columns: [1];
    sparsity: [dense => crate::kernel::Dense, dense_f32 => crate::kernel::Dense2];
    activation: [f32 => crate::kernel::F32Path, f32_q8 => crate::kernel::F32Q8];
    isa: [q8_scalar => crate::isa::Q8Scalar, scalar => crate::isa::Scalar];
}

fn main() {}
