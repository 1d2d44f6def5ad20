kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    args: crate::kernel::KernelArgs;
    format_trait: crate::formats::BlockFormat;
    formats: [q4_0 => crate::formats::Q4_0, q8_0 => crate::formats::Q8_0];
    tile_rows: [1, 2];
    columns: [1];
    sparsity: [dense => crate::kernel::Dense];
    activation: [f32 => crate::kernel::F32Path];
    isa: [scalar => crate::isa::Scalar];
    prune: [
        /// Wrong axis name.
        formats = q8_0, tile_rows != 1;
        /// Another wrong axis name.
        isa = scalar, rows = 2;
    ];
}

fn main() {}
