//! Expands a small variant space against dummy types (mirroring the shapes of
//! `asdsl-kernels`) and checks the registry at run time.

use std::cell::RefCell;

mod variant {
    use crate::formats::Format;
    use crate::kernel::KernelArgs;

    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub enum Isa {
        Scalar,
        Avx2,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub enum Sparsity {
        Dense,
        ColumnSparse,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub enum Activation {
        F32,
        Q8,
    }

    pub type KernelFn = unsafe fn(&KernelArgs<'_>);

    #[derive(Copy, Clone)]
    pub struct Variant {
        pub name: &'static str,
        pub format: Format,
        pub tile_rows: usize,
        pub columns: usize,
        pub sparsity: Sparsity,
        pub activation: Activation,
        pub isa: Isa,
        pub kernel: KernelFn,
    }

    pub trait AxisMarker<T>: 'static {
        const VALUE: T;
    }
}

mod formats {
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub enum Format {
        A,
        B4,
    }

    pub trait BlockFormat: 'static {
        const FORMAT: Format;
    }

    pub struct FmtA;
    impl BlockFormat for FmtA {
        const FORMAT: Format = Format::A;
    }

    /// A generic format type, to check that items take types, not only paths.
    pub struct Native<const BITS: u32>;
    impl BlockFormat for Native<4> {
        const FORMAT: Format = Format::B4;
    }
}

mod kernel {
    use std::cell::RefCell;

    use crate::formats::{BlockFormat, Format};
    use crate::variant::{Activation, AxisMarker, Isa, Sparsity};

    /// One recorded call of `body`: its type and const parameters.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    pub struct Call {
        pub format: Format,
        pub isa: Isa,
        pub sparsity: Sparsity,
        pub activation: Activation,
        pub rows: usize,
        pub columns: usize,
    }

    pub struct KernelArgs<'a> {
        pub calls: &'a RefCell<Vec<Call>>,
    }

    /// # Safety
    /// None needed: it only records its parameters.
    pub unsafe fn body<F, I, S, A, const R: usize, const C: usize>(args: &KernelArgs<'_>)
    where
        F: BlockFormat,
        I: AxisMarker<Isa>,
        S: AxisMarker<Sparsity>,
        A: AxisMarker<Activation>,
    {
        args.calls.borrow_mut().push(Call {
            format: F::FORMAT,
            isa: I::VALUE,
            sparsity: S::VALUE,
            activation: A::VALUE,
            rows: R,
            columns: C,
        });
    }

    pub struct Dense;
    pub struct ColSparse;
    pub struct F32Path;
    pub struct Q8Path;

    impl AxisMarker<Sparsity> for Dense {
        const VALUE: Sparsity = Sparsity::Dense;
    }
    impl AxisMarker<Sparsity> for ColSparse {
        const VALUE: Sparsity = Sparsity::ColumnSparse;
    }
    impl AxisMarker<Activation> for F32Path {
        const VALUE: Activation = Activation::F32;
    }
    impl AxisMarker<Activation> for Q8Path {
        const VALUE: Activation = Activation::Q8;
    }
}

mod isa {
    use crate::variant::{AxisMarker, Isa};

    pub struct Scalar;
    pub struct Avx2;

    impl AxisMarker<Isa> for Scalar {
        const VALUE: Isa = Isa::Scalar;
    }
    impl AxisMarker<Isa> for Avx2 {
        const VALUE: Isa = Isa::Avx2;
    }
}

mod registry {
    // A name imported here is visible inside the generated module too.
    use crate::kernel::Q8Path;

    kernel_macros::variant_space! {
        /// The test registry.
        #[allow(dead_code)]
        pub(crate) static VARIANTS: [crate::variant::Variant];
        formats: [
            a => crate::formats::FmtA,
            /// Doc comments on values are allowed (and dropped).
            #[cfg(all())] b4 => crate::formats::Native<4>,
        ];
        body: crate::kernel::body;
        args: crate::kernel::KernelArgs;
        format_trait: crate::formats::BlockFormat;
        tile_rows: [1, 2];
        columns: [1, 3];
        sparsity: [dense => crate::kernel::Dense, colsparse => crate::kernel::ColSparse];
        activation: [f32 => crate::kernel::F32Path, q8 => Q8Path];
        isa: [
            scalar => crate::isa::Scalar,
            #[cfg(target_arch = "x86_64")] avx2 => crate::isa::Avx2 : "avx2,fma",
            // Compiled out: the type does not even exist.
            #[cfg(any())] never => crate::isa::DoesNotExist : "avx512f",
        ];
        prune: [
            /// Scalar code has no registers
            /// to tile rows across.
            isa = scalar, tile_rows != 1;
            /// Column-sparse is f32 only.
            sparsity = colsparse, activation = q8;
            /// Never has no column blocks.
            isa = never, columns = 3;
        ];
    }
}

use formats::Format;
use kernel::{Call, KernelArgs};
use registry::{VARIANTS, VARIANTS_DECLARED, VARIANTS_PRUNE_RULES};
use variant::{Activation, Isa, Sparsity};

/// The expected names, by brute force over the declared axes.
fn expected_names() -> Vec<String> {
    let isas: &[&str] = if cfg!(target_arch = "x86_64") { &["scalar", "avx2"] } else { &["scalar"] };
    let mut names = Vec::new();
    for format in ["a", "b4"] {
        for rows in [1, 2] {
            for cols in [1, 3] {
                for sparsity in ["dense", "colsparse"] {
                    for activation in ["f32", "q8"] {
                        for &isa in isas {
                            let pruned =
                                (isa == "scalar" && rows != 1) || (sparsity == "colsparse" && activation == "q8");
                            if !pruned {
                                names.push(format!("{format}.r{rows}.c{cols}.{sparsity}.{activation}.{isa}"));
                            }
                        }
                    }
                }
            }
        }
    }
    names
}

#[test]
fn registry_has_the_surviving_variants_in_order() {
    let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    assert_eq!(names, expected_names());
    // Per format: scalar keeps r1 (2 columns x 3 sparsity/activation pairs),
    // avx2 keeps both row counts.
    let per_format = if cfg!(target_arch = "x86_64") { 6 + 12 } else { 6 };
    assert_eq!(VARIANTS.len(), 2 * per_format);
    assert!(!names.iter().any(|name| name.contains("never")));
}

#[test]
fn declared_count_and_prune_rules() {
    assert_eq!(VARIANTS_DECLARED, 2 * 2 * 2 * 2 * 2 * 3);
    assert_eq!(
        VARIANTS_PRUNE_RULES,
        &[
            ("isa = scalar, tile_rows != 1", "Scalar code has no registers to tile rows across."),
            ("sparsity = colsparse, activation = q8", "Column-sparse is f32 only."),
            ("isa = never, columns = 3", "Never has no column blocks."),
        ]
    );
}

#[test]
fn descriptors_match_names() {
    for v in VARIANTS {
        let parts: Vec<&str> = v.name.split('.').collect();
        let format = match parts[0] {
            "a" => Format::A,
            "b4" => Format::B4,
            other => panic!("unexpected format {other}"),
        };
        assert_eq!(v.format, format, "{}", v.name);
        assert_eq!(format!("r{}", v.tile_rows), parts[1]);
        assert_eq!(format!("c{}", v.columns), parts[2]);
        let sparsity = if parts[3] == "dense" { Sparsity::Dense } else { Sparsity::ColumnSparse };
        assert_eq!(v.sparsity, sparsity, "{}", v.name);
        let activation = if parts[4] == "f32" { Activation::F32 } else { Activation::Q8 };
        assert_eq!(v.activation, activation, "{}", v.name);
        let isa = if parts[5] == "scalar" { Isa::Scalar } else { Isa::Avx2 };
        assert_eq!(v.isa, isa, "{}", v.name);
    }
}

fn supported(isa: Isa) -> bool {
    match isa {
        Isa::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 => false,
    }
}

#[test]
fn kernels_call_the_body_with_their_parameters() {
    let calls = RefCell::new(Vec::new());
    let args = KernelArgs { calls: &calls };
    let mut called = 0;
    for v in VARIANTS.iter().filter(|v| supported(v.isa)) {
        // SAFETY: the dummy body has no contract, and the ISA is supported.
        unsafe { (v.kernel)(&args) };
        let call = calls.borrow_mut().pop().expect("the body was called");
        let expected = Call {
            format: v.format,
            isa: v.isa,
            sparsity: v.sparsity,
            activation: v.activation,
            rows: v.tile_rows,
            columns: v.columns,
        };
        assert_eq!(call, expected, "{}", v.name);
        called += 1;
    }
    assert!(called >= 12);
}

#[test]
fn functions_have_readable_names() {
    let calls = RefCell::new(Vec::new());
    // SAFETY: the dummy body has no contract; scalar needs no CPU feature.
    unsafe { registry::variants_fns::b4::b4_r1_c3_colsparse_f32_scalar(&KernelArgs { calls: &calls }) };
    let call = calls.borrow()[0];
    assert_eq!((call.format, call.rows, call.columns), (Format::B4, 1, 3));
    #[cfg(target_arch = "x86_64")]
    {
        let f: variant::KernelFn = registry::variants_fns::a::a_r2_c1_dense_q8_avx2;
        assert!(VARIANTS.iter().any(|v| v.name == "a.r2.c1.dense.q8.avx2" && std::ptr::fn_addr_eq(v.kernel, f)));
    }
}
