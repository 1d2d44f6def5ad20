kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
    formats: [q4_0 => crate::formats::Q4_0];
    tile_rows: [1, 2];
    columns: [1];
    sparsity: [dense => crate::kernel::Dense];
    activation: [f32 => crate::kernel::F32Path];
}

fn main() {}
