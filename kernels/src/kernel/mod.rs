//! The kernel bodies behind every registry variant, and their calling
//! contract.
//!
//! A variant is `body::<Format, Isa, Sparsity, Activation, TILE_ROWS,
//! COLUMNS>` compiled inside a `#[target_feature]` function (see
//! [`crate::registry`]). `body` is `#[inline(always)]`, and so is every
//! function it reaches, so the whole kernel is compiled once per variant with
//! that variant's instructions: shared bodies, monomorphized variants.
//!
//! Dispatch is by marker types, so each variant instantiates only the code it
//! runs: the sparsity marker picks dense or column-sparse, the activation
//! marker picks the f32 or the int8 path, and the ISA marker
//! ([`crate::isa`]) supplies the driver for that instruction set.

pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use std::ops::Range;

use crate::formats::BlockFormat;
use crate::input::{Input, Int8, Int8Block};
use crate::pack::PackedMatrix;
use crate::variant::{Activation, AxisMarker, Sparsity};

/// The arguments of one kernel call: compute output rows of `tiles` for
/// every input column.
///
/// # Contract (what a caller of a [`KernelFn`](crate::variant::KernelFn) upholds)
///
/// - `matrix` is packed in the layout of the variant being called
///   ([`crate::pack::Layout::for_variant`]);
/// - `input` is prepared for `matrix.cols()` with `columns` columns, and
///   with int8 activations when the variant's activation path is q8;
/// - `tiles` lies within `0..matrix.tiles()`;
/// - `out` is valid for writes at `out[c * out_stride + row]` for every
///   column `c < input.columns()` and every row of `tiles` below
///   `matrix.rows()`, and no other thread writes those elements;
/// - the CPU supports the variant's ISA.
#[derive(Debug)]
pub struct KernelArgs<'a> {
    /// The packed weights.
    pub matrix: &'a PackedMatrix,
    /// The prepared activations.
    pub input: &'a Input,
    /// The tiles (groups of rows, see [`PackedMatrix::tile_rows`]) to compute.
    pub tiles: Range<usize>,
    /// Output base pointer: element `(column c, row r)` is at `out[c * out_stride + r]`.
    pub out: *mut f32,
    /// Distance between output columns, in floats.
    pub out_stride: usize,
}

impl<'a> KernelArgs<'a> {
    /// The int8 activations that `F`'s q8 path multiplies.
    #[inline(always)]
    pub(crate) fn int8<F: KernelFormat>(&self) -> Int8<'a> {
        self.input.int8(F::INT8_BLOCK)
    }
}

/// How a format's header bytes become scales, for SIMD code that decodes
/// headers without calling [`BlockFormat::affine`] per sub-block.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum HeaderKind {
    /// An f16 scale in the first two bytes; `min = -offset * scale`
    /// (Q4_0, Q5_0, Q8_0).
    Scale {
        /// The code offset.
        offset: f32,
    },
    /// An f16 scale then an f16 min (Q4_1, Q5_1, native formats).
    ScaleMin,
    /// f16 `d`, f16 `dmin`, then eight 6-bit scales and mins packed in 12
    /// bytes (Q4_K, Q5_K).
    K4,
    /// Sixteen i8 scales, then f16 `d`; offset 32 (Q6_K).
    K6,
    /// Anything else: decoded through `affine`.
    Other,
}

/// The kernel-side facts about a format, derived from its block geometry.
///
/// A *unit* is the smallest whole number of blocks that spans at least 32
/// weights (one block, or two 16-weight native blocks); a *sub-block* is 32
/// weights, the granularity of the int8 activations and of a SIMD slot.
pub trait KernelFormat: BlockFormat {
    /// How the header decodes.
    const HEADER: HeaderKind;
    /// The int8 activations the q8 path multiplies: per 256 values for the
    /// K-quants (as ggml pairs them with Q8_K), per 32 for the rest.
    const INT8_BLOCK: Int8Block;
    /// The code offset of a symmetric format (`weight = scale * (code -
    /// offset)`), which int8 kernels subtract exactly in the integer domain;
    /// `None` for formats with a min.
    const OFFSET: Option<i32>;
    /// Weights per unit.
    const UNIT: usize = if Self::BLOCK_LEN > 32 { Self::BLOCK_LEN } else { 32 };
    /// Blocks per unit.
    const BLOCKS_PER_UNIT: usize = Self::UNIT / Self::BLOCK_LEN;
    /// Header bytes per unit.
    const UNIT_HEADER: usize = Self::BLOCKS_PER_UNIT * Self::HEADER_BYTES;
    /// 32-weight sub-blocks per unit.
    const SUBS_PER_UNIT: usize = Self::UNIT / 32;
    /// Whether the two 16-weight halves of a sub-block have their own scales.
    const SPLIT: bool = Self::SCALE_LEN < 32;
}

impl crate::formats::Format {
    /// The int8 activations this format's q8 path multiplies
    /// ([`KernelFormat::INT8_BLOCK`]; per 32 values for a native format
    /// that has no kernels, as for every native format).
    pub fn int8_block(self) -> Int8Block {
        crate::with_format!(self, F => Ok::<_, crate::KernelError>(F::INT8_BLOCK)).unwrap_or(Int8Block::Of32)
    }
}

/// `(scale, min)` of half `half` (0 or 1; ignored unless split) of sub-block
/// `sub` of a unit whose header bytes are `unit_header`.
#[inline(always)]
pub(crate) fn unit_affine<F: KernelFormat>(unit_header: &[u8], sub: usize, half: usize) -> (f32, f32) {
    let element = sub * 32 + if F::SPLIT { half * 16 } else { 0 };
    let block = element / F::BLOCK_LEN;
    F::affine(&unit_header[block * F::HEADER_BYTES..], (element % F::BLOCK_LEN) / F::SCALE_LEN)
}

/// `(scale, min)` of the weights starting at `element` (a multiple of
/// `SCALE_LEN`) of a unit whose header bytes are `unit_header`.
#[inline(always)]
pub(crate) fn unit_affine_scaled<F: KernelFormat>(unit_header: &[u8], element: usize) -> (f32, f32) {
    let block = element / F::BLOCK_LEN;
    F::affine(&unit_header[block * F::HEADER_BYTES..], (element % F::BLOCK_LEN) / F::SCALE_LEN)
}

macro_rules! kernel_format {
    ($($ty:ty => $kind:expr, $offset:expr, $int8:expr;)*) => {
        $(impl KernelFormat for $ty {
            const HEADER: HeaderKind = $kind;
            const INT8_BLOCK: Int8Block = $int8;
            const OFFSET: Option<i32> = $offset;
        })*
    };
}

kernel_format! {
    crate::formats::Q4_0 => HeaderKind::Scale { offset: 8.0 }, Some(8), Int8Block::Of32;
    crate::formats::Q5_0 => HeaderKind::Scale { offset: 16.0 }, Some(16), Int8Block::Of32;
    crate::formats::Q8_0 => HeaderKind::Scale { offset: 128.0 }, Some(128), Int8Block::Of32;
    crate::formats::Q4_1 => HeaderKind::ScaleMin, None, Int8Block::Of32;
    crate::formats::Q5_1 => HeaderKind::ScaleMin, None, Int8Block::Of32;
    crate::formats::Q4K => HeaderKind::K4, None, Int8Block::Of256;
    crate::formats::Q5K => HeaderKind::K4, None, Int8Block::Of256;
    crate::formats::Q6K => HeaderKind::K6, Some(32), Int8Block::Of256;
}

impl<const BITS: u8, const GROUP: usize> KernelFormat for crate::formats::native::Native<BITS, GROUP> {
    const HEADER: HeaderKind = HeaderKind::ScaleMin;
    const INT8_BLOCK: Int8Block = Int8Block::Of32;
    const OFFSET: Option<i32> = None;
}

/// Marker: dense variants.
#[derive(Copy, Clone, Debug)]
pub struct Dense;
/// Marker: column-sparse variants.
#[derive(Copy, Clone, Debug)]
pub struct ColSparse;
/// Marker: f32 activations.
#[derive(Copy, Clone, Debug)]
pub struct F32Path;
/// Marker: int8 activations.
#[derive(Copy, Clone, Debug)]
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

/// The drivers an instruction set provides. Implemented by the markers in
/// [`crate::isa`].
pub trait IsaKernels {
    /// Dense, f32 activations.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract.
    unsafe fn dense_f32<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>);
    /// Dense, int8 activations.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract.
    unsafe fn dense_q8<F: KernelFormat, const R: usize, const C: usize>(args: &KernelArgs<'_>);
    /// Column-sparse, f32 activations.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract.
    unsafe fn colsparse_f32<F: KernelFormat>(args: &KernelArgs<'_>);
}

/// Picks the dense or column-sparse driver.
pub trait SparsityKernel: AxisMarker<Sparsity> {
    /// Runs the variant.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract.
    unsafe fn run<F: KernelFormat, I: IsaKernels, A: ActivationKernel, const R: usize, const C: usize>(
        args: &KernelArgs<'_>,
    );
}

/// Picks the f32 or int8 dense driver.
pub trait ActivationKernel: AxisMarker<Activation> {
    /// Runs the dense variant.
    ///
    /// # Safety
    /// The [`KernelArgs`] contract.
    unsafe fn dense<F: KernelFormat, I: IsaKernels, const R: usize, const C: usize>(args: &KernelArgs<'_>);
}

impl SparsityKernel for Dense {
    #[inline(always)]
    unsafe fn run<F: KernelFormat, I: IsaKernels, A: ActivationKernel, const R: usize, const C: usize>(
        args: &KernelArgs<'_>,
    ) {
        // SAFETY: forwarded contract.
        unsafe { A::dense::<F, I, R, C>(args) }
    }
}

impl SparsityKernel for ColSparse {
    #[inline(always)]
    unsafe fn run<F: KernelFormat, I: IsaKernels, A: ActivationKernel, const R: usize, const C: usize>(
        args: &KernelArgs<'_>,
    ) {
        // SAFETY: forwarded contract.
        unsafe { I::colsparse_f32::<F>(args) }
    }
}

impl ActivationKernel for F32Path {
    #[inline(always)]
    unsafe fn dense<F: KernelFormat, I: IsaKernels, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
        // SAFETY: forwarded contract.
        unsafe { I::dense_f32::<F, R, C>(args) }
    }
}

impl ActivationKernel for Q8Path {
    #[inline(always)]
    unsafe fn dense<F: KernelFormat, I: IsaKernels, const R: usize, const C: usize>(args: &KernelArgs<'_>) {
        // SAFETY: forwarded contract.
        unsafe { I::dense_q8::<F, R, C>(args) }
    }
}

/// The shared body of every variant.
///
/// # Safety
/// The [`KernelArgs`] contract; in particular the CPU must support `I`.
#[inline(always)]
pub unsafe fn body<F, I, S, A, const R: usize, const C: usize>(args: &KernelArgs<'_>)
where
    F: KernelFormat,
    I: IsaKernels,
    S: SparsityKernel,
    A: ActivationKernel,
{
    // SAFETY: forwarded contract.
    unsafe { S::run::<F, I, A, R, C>(args) }
}
