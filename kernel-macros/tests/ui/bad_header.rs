kernel_macros::variant_space! {
    pub const VARIANTS: [crate::variant::Variant];
    body: crate::kernel::body;
}

kernel_macros::variant_space! {
    pub static VARIANTS: crate::variant::Variant;
    body: crate::kernel::body;
}

kernel_macros::variant_space! {
    pub static VARIANTS: [crate::variant::Variant<u8>];
    body: crate::kernel::body;
}

fn main() {}
