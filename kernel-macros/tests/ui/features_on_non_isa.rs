kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    args: crate::kernel::KernelArgs;
    format_trait: crate::formats::BlockFormat;
    formats: [q4_0 => crate::formats::Q4_0 : "avx2"];
    tile_rows: [1];
    columns: [1];
    sparsity: [dense => crate::kernel::Dense];
    activation: [f32 => crate::kernel::F32Path, q8 => crate::kernel::Q8Path : "avx512vnni"];
    isa: [scalar => crate::isa::Scalar];
}

fn main() {}
