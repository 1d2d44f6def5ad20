//! Instruction-set markers: the `isa` axis of the variant space. Each
//! marker supplies its drivers ([`IsaKernels`]) and names its runtime value.

use crate::kernel::{IsaKernels, KernelArgs, KernelFormat, scalar};
use crate::variant::{AxisMarker, Isa};

/// Portable Rust.
#[derive(Copy, Clone, Debug)]
pub struct Scalar;
/// AVX2 + FMA + F16C.
#[derive(Copy, Clone, Debug)]
pub struct Avx2;
/// AVX-512 F/BW/VL/DQ.
#[derive(Copy, Clone, Debug)]
pub struct Avx512;
/// AVX-512 with VNNI.
#[derive(Copy, Clone, Debug)]
pub struct Avx512Vnni;

impl AxisMarker<Isa> for Scalar {
    const VALUE: Isa = Isa::Scalar;
}
impl AxisMarker<Isa> for Avx2 {
    const VALUE: Isa = Isa::Avx2;
}
impl AxisMarker<Isa> for Avx512 {
    const VALUE: Isa = Isa::Avx512;
}
impl AxisMarker<Isa> for Avx512Vnni {
    const VALUE: Isa = Isa::Avx512Vnni;
}

impl IsaKernels for Scalar {
    #[inline(always)]
    unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
        const { assert!(R == 1, "scalar variants have one tile row") };
        // SAFETY: forwarded contract.
        unsafe { scalar::dense_f32::<F, C>(args) }
    }
    #[inline(always)]
    unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
        const { assert!(R == 1, "scalar variants have one tile row") };
        // SAFETY: forwarded contract.
        unsafe { scalar::dense_q8::<F, C>(args) }
    }
    #[inline(always)]
    unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
        // SAFETY: forwarded contract.
        unsafe { scalar::colsparse_f32::<F>(args) }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_impls {
    use super::*;
    use crate::kernel::x86::{avx2, avx512};

    impl IsaKernels for Avx2 {
        #[inline(always)]
        unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX2).
            unsafe { avx2::dense_f32::<F, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX2).
            unsafe { avx2::dense_q8::<F, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX2).
            unsafe { avx2::colsparse_f32::<F>(args) }
        }
    }

    impl IsaKernels for Avx512 {
        #[inline(always)]
        unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512).
            unsafe { avx512::dense_f32::<F, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512).
            unsafe { avx512::dense_q8::<F, avx512::MaddDot, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512).
            unsafe { avx512::colsparse_f32::<F>(args) }
        }
    }

    impl IsaKernels for Avx512Vnni {
        #[inline(always)]
        unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512).
            unsafe { avx512::dense_f32::<F, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512 VNNI).
            unsafe { avx512::dense_q8::<F, avx512::VnniDot, R, C>(args) }
        }
        #[inline(always)]
        unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>) {
            // SAFETY: forwarded contract (the CPU has AVX-512).
            unsafe { avx512::colsparse_f32::<F>(args) }
        }
    }
}
