//! Which kernel variant runs a matrix: the one place where that choice is
//! made, once per matrix at load time.
//!
//! Today the body is a documented heuristic; the tuner's plan (issue 3)
//! replaces it with measured choices behind the same signature.
//!
//! # The heuristic
//!
//! - the best instruction set this CPU allows ([`cpu::try_best_isa`], which
//!   honours `ASDSL_FORCE_ISA`);
//! - the int8 activation path (`q8`), as llama.cpp runs: integer dot
//!   products read a quarter of the activation bytes and run on VNNI;
//! - dense (column-sparse variants only pay off on activations with many
//!   zeros, which a SwiGLU MLP does not produce);
//! - 4 tile rows on SIMD ISAs (1 on scalar, its only tile);
//! - one input column for decode; the 4-column variant for prompt batches
//!   (it runs remainders with the same one-column tile code);
//! - a static split of the rows over the threads.

use asdsl_kernels::cpu;
use asdsl_kernels::registry;
use asdsl_kernels::run::Partition;
use asdsl_kernels::variant::{Activation, Isa, Sparsity, Variant, VariantKey};
use asdsl_kernels::{Format, KernelError};

use crate::error::Result;

/// The variant and row partition that run a `rows x cols` matrix of
/// `format` with `sparsity`, for `columns` input columns at once, on
/// `threads` threads.
pub fn resolve(
    format: Format,
    rows: usize,
    cols: usize,
    sparsity: Sparsity,
    columns: usize,
    threads: usize,
) -> Result<(&'static Variant, Partition)> {
    let _ = (rows, cols, threads);
    let isa = cpu::try_best_isa()?;
    let tile_rows = if isa == Isa::Scalar || sparsity == Sparsity::ColumnSparse { 1 } else { 4 };
    let columns = if columns > 1 && sparsity == Sparsity::Dense { 4 } else { 1 };
    let activation = if sparsity == Sparsity::ColumnSparse { Activation::F32 } else { Activation::Q8 };
    let key = VariantKey { format, tile_rows, columns, sparsity, activation, isa };
    let name = key.to_string();
    let variant = registry::find(&name)
        // Anything of this format, sparsity and column count that may run here, best ISA first.
        .or_else(|| {
            registry::VARIANTS
                .iter()
                .filter(|v| v.format == format && v.sparsity == sparsity && v.columns == columns)
                .filter(|v| cpu::available(v.isa).unwrap_or(false))
                .max_by_key(|v| (v.isa, v.activation == Activation::Q8, v.tile_rows == 4))
        })
        .ok_or(KernelError::UnknownVariant(name))?;
    Ok((variant, Partition::default()))
}
