//! Variant descriptors: what one generated kernel computes, and how it is named.
//!
//! A variant's name is systematic and stable:
//! `{format}.r{tile_rows}.c{columns}.{sparsity}.{activation}.{isa}`, for
//! example `q4_0.r4.c1.dense.q8.avx512vnni`.

use std::fmt;
use std::str::FromStr;

use crate::error::KernelError;
use crate::formats::Format;
use crate::kernel::KernelArgs;

/// The instruction set a variant is compiled for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, no explicit SIMD.
    Scalar,
    /// AVX2 with FMA and F16C.
    Avx2,
    /// AVX-512 F, BW, VL (and DQ) — integer dot products with `vpmaddubsw`.
    Avx512,
    /// AVX-512 plus VNNI — integer dot products with `vpdpbusd`.
    Avx512Vnni,
}

/// How the weights are laid out and which input columns are read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sparsity {
    /// Every weight is read; rows are packed in interleaved tiles.
    Dense,
    /// Columns are packed column-major; input columns whose activation is
    /// zero are skipped, and their weights never read.
    ColumnSparse,
}

/// How activations meet the weights.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    /// Weights are dequantized to f32 and multiplied with f32 activations.
    F32,
    /// Activations are quantized per 32 to int8 and multiplied with integer
    /// dot products (as llama.cpp does).
    Q8,
}

/// A kernel entry point. The caller upholds the contract of
/// [`KernelArgs`]: buffers sized for the variant's layout, the tile range in
/// bounds, and the CPU supporting the variant's ISA.
pub type KernelFn = unsafe fn(&KernelArgs<'_>);

/// One generated kernel variant.
#[derive(Copy, Clone)]
pub struct Variant {
    /// Stable systematic name.
    pub name: &'static str,
    /// Weight format (never changed by the tuner: that would change results).
    pub format: Format,
    /// Output rows computed together; weights are packed row-interleaved to match.
    pub tile_rows: usize,
    /// Input columns processed per pass over the weights (1 for decode).
    pub columns: usize,
    /// Dense or column-sparse.
    pub sparsity: Sparsity,
    /// f32 or int8 activations.
    pub activation: Activation,
    /// Instruction set.
    pub isa: Isa,
    /// The function.
    pub kernel: KernelFn,
}

impl fmt::Debug for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Variant {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Variant {}

/// Connects a marker type named in the variant space to its runtime value
/// (implemented by the ISA, sparsity and activation marker types).
pub trait AxisMarker<T>: 'static {
    /// The runtime value.
    const VALUE: T;
}

macro_rules! named_enum {
    ($ty:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The name used in variant names and on the command line.
            pub const fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = KernelError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)*
                    _ => Err(KernelError::Invalid(format!(
                        concat!("unknown ", stringify!($ty), " `{}` (one of: {})"),
                        s,
                        [$($name),*].join(", ")
                    ))),
                }
            }
        }
    };
}

named_enum!(Isa { Scalar = "scalar", Avx2 = "avx2", Avx512 = "avx512", Avx512Vnni = "avx512vnni" });
named_enum!(Sparsity { Dense = "dense", ColumnSparse = "colsparse" });
named_enum!(Activation { F32 = "f32", Q8 = "q8" });

/// The parts of a variant name, parsed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct VariantKey {
    /// Weight format.
    pub format: Format,
    /// Tile rows.
    pub tile_rows: usize,
    /// Columns per pass.
    pub columns: usize,
    /// Sparsity.
    pub sparsity: Sparsity,
    /// Activation path.
    pub activation: Activation,
    /// ISA.
    pub isa: Isa,
}

impl fmt::Display for VariantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.r{}.c{}.{}.{}.{}",
            self.format, self.tile_rows, self.columns, self.sparsity, self.activation, self.isa
        )
    }
}

impl FromStr for VariantKey {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KernelError::UnknownVariant(s.to_string());
        let parts: Vec<&str> = s.split('.').collect();
        let [format, rows, cols, sparsity, activation, isa] = parts[..] else {
            return Err(bad());
        };
        let number =
            |p: &str, prefix: char| p.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok()).ok_or_else(bad);
        Ok(VariantKey {
            format: format.parse()?,
            tile_rows: number(rows, 'r')?,
            columns: number(cols, 'c')?,
            sparsity: sparsity.parse()?,
            activation: activation.parse()?,
            isa: isa.parse()?,
        })
    }
}

impl Variant {
    /// The parsed parts of this variant's name.
    pub fn key(&self) -> VariantKey {
        VariantKey {
            format: self.format,
            tile_rows: self.tile_rows,
            columns: self.columns,
            sparsity: self.sparsity,
            activation: self.activation,
            isa: self.isa,
        }
    }
}
