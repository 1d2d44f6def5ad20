//! A minimal declaration: the variant type named without a module path (so
//! `AxisMarker`, `Sparsity`, ... resolve at the call site), sections in another
//! order, no prune section, no target features, a private registry.
#![deny(warnings)]

mod variant {
    pub struct Variant {
        pub name: &'static str,
        pub format: u8,
        pub tile_rows: usize,
        pub columns: usize,
        pub sparsity: Sparsity,
        pub activation: Activation,
        pub isa: Isa,
        pub kernel: unsafe fn(&Args<'_>),
    }
    #[derive(Debug, PartialEq)]
    pub struct Sparsity;
    #[derive(Debug, PartialEq)]
    pub struct Activation;
    #[derive(Debug, PartialEq)]
    pub struct Isa(pub u8);
    pub trait AxisMarker<T> {
        const VALUE: T;
    }
    pub trait Format {
        const FORMAT: u8;
    }
    pub struct Args<'a>(pub &'a std::cell::Cell<usize>);

    /// # Safety
    /// None.
    pub unsafe fn run<F: Format, I, S, A, const R: usize, const C: usize>(args: &Args<'_>) {
        args.0.set(args.0.get() + 100 * F::FORMAT as usize + 10 * R + C);
    }

    pub struct Plain;
    impl AxisMarker<Sparsity> for Plain {
        const VALUE: Sparsity = Sparsity;
    }
    impl AxisMarker<Activation> for Plain {
        const VALUE: Activation = Activation;
    }
    impl AxisMarker<Isa> for Plain {
        const VALUE: Isa = Isa(0);
    }
    pub struct Portable;
    impl AxisMarker<Isa> for Portable {
        const VALUE: Isa = Isa(1);
    }
    pub struct F3;
    impl Format for F3 {
        const FORMAT: u8 = 3;
    }
}

use variant::*;

kernel_macros::variant_space! {
    static KERNELS: [Variant];
    isa: [plain => Plain, portable => Portable,];
    activation: [a => Plain];
    sparsity: [s => Plain];
    columns: [2];
    tile_rows: [5];
    formats: [f3 => F3];
    format_trait: Format;
    args: Args;
    body: run;
}

fn main() {
    let names: Vec<&str> = KERNELS.iter().map(|v| v.name).collect();
    assert_eq!(names, ["f3.r5.c2.s.a.plain", "f3.r5.c2.s.a.portable"]);
    assert_eq!(KERNELS_DECLARED, 2);
    assert!(KERNELS_PRUNE_RULES.is_empty());
    let total = std::cell::Cell::new(0);
    for v in KERNELS {
        assert_eq!((v.format, v.tile_rows, v.columns), (3, 5, 2));
        assert_eq!((&v.sparsity, &v.activation), (&Sparsity, &Activation));
        // SAFETY: `run` has no contract.
        unsafe { (v.kernel)(&Args(&total)) };
    }
    assert_eq!(total.get(), 2 * 352);
    assert_eq!(KERNELS[1].isa, Isa(1));
    // SAFETY: as above.
    unsafe { kernels_fns::f3::f3_r5_c2_s_a_plain(&Args(&total)) };
}
