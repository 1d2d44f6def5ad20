//! `variant_space!`: expands asdsl's declared GEMV variant space into kernel
//! functions and a registry.
//!
//! One declaration names the axes of the space — weight format, tile rows,
//! columns, sparsity, activation path, ISA — and the rules that prune
//! combinations that make no sense. The macro generates one `unsafe fn` per
//! surviving combination (a thin `#[target_feature]` wrapper around the
//! shared generic body) and a `&'static [Variant]` registry of descriptors.
//!
//! # Example
//!
//! ```ignore
//! kernel_macros::variant_space! {
//!     /// Every generated kernel variant.
//!     pub static VARIANTS: [crate::variant::Variant];
//!     body: crate::kernel::body;
//!     args: crate::kernel::KernelArgs;
//!     format_trait: crate::formats::BlockFormat;
//!     formats: [q4_0 => crate::formats::Q4_0, q4g32 => crate::formats::native::Q4G32];
//!     tile_rows: [1, 2, 4, 8];
//!     columns: [1, 4];
//!     sparsity: [dense => crate::kernel::Dense, colsparse => crate::kernel::ColSparse];
//!     activation: [f32 => crate::kernel::F32Path, q8 => crate::kernel::Q8Path];
//!     isa: [
//!         scalar => crate::isa::Scalar,
//!         #[cfg(target_arch = "x86_64")] avx2 => crate::isa::Avx2 : "avx2,fma,f16c,bmi2",
//!     ];
//!     prune: [
//!         /// Scalar code has no registers to tile rows across.
//!         isa = scalar, tile_rows != 1;
//!         /// The column-major layout has no row tiles and no column blocks.
//!         sparsity = colsparse, tile_rows != 1;
//!         /// (each rule needs its own doc comment)
//!         sparsity = colsparse, columns != 1;
//!     ];
//! }
//! ```
//!
//! # Grammar
//!
//! ```text
//! space     := header section*
//! header    := outer-attr* vis `static` NAME `:` `[` path `]` `;`
//! section   := key `:` value `;`          (any order, each key at most once)
//!   body         : path                    required: the generic kernel body
//!   args         : path                    required: the argument type, used as `&Args<'_>`
//!   format_trait : path                    required: the trait with `const FORMAT`
//!   formats      : `[` item,* `]`          required
//!   tile_rows    : `[` int,* `]`           required, positive integer literals
//!   columns      : `[` int,* `]`           required, positive integer literals
//!   sparsity     : `[` item,* `]`          required
//!   activation   : `[` item,* `]`          required
//!   isa          : `[` item,* `]`          required
//!   prune        : `[` rule* `]`           optional
//! item      := (`#[cfg(..)]` | `///` doc)* ident `=>` type (`:` "target,features")?
//!              (features only on isa items; no features means no `#[target_feature]`)
//! rule      := `///` doc+ condition (`,` condition)* `;`
//! condition := axis (`=` | `!=`) value
//! axis      := `format` | `tile_rows` | `columns` | `sparsity` | `activation` | `isa`
//! ```
//!
//! Every axis needs at least one value, and its values must be distinct. A
//! variant is removed if all conditions of any rule hold; every rule must say
//! why in a doc comment, and the rules must leave at least one variant.
//!
//! # Generated items
//!
//! For the header `pub static VARIANTS: [crate::variant::Variant];`:
//!
//! - `pub mod variants_fns` (`#[doc(hidden)]`, starts with `use super::*;`)
//!   with one submodule per format (`variants_fns::q4_0`, ...: rustc splits
//!   code generation by module, so the variants compile in parallel), holding,
//!   for each surviving variant, nested format (outermost), tile rows,
//!   columns, sparsity, activation, isa (innermost), a function
//!
//!   ```ignore
//!   #[cfg(..)] // the cfgs of the variant's format, sparsity, activation and isa items
//!   #[target_feature(enable = "avx2,fma,f16c,bmi2")] // if the isa item has features
//!   pub unsafe fn q4_0_r4_c1_dense_q8_avx2(args: &crate::kernel::KernelArgs<'_>) {
//!       unsafe { crate::kernel::body::<Q4_0, Avx2, Dense, Q8Path, 4, 1>(args) }
//!   }
//!   ```
//!
//!   (type paths shortened here; the declared paths are used as written).
//! - `pub static VARIANTS: &[crate::variant::Variant]`, with the header's
//!   attributes, one entry per function under the same `#[cfg]`s:
//!
//!   ```ignore
//!   crate::variant::Variant {
//!       name: "q4_0.r4.c1.dense.q8.avx2",
//!       format: <Q4_0 as crate::formats::BlockFormat>::FORMAT,
//!       tile_rows: 4,
//!       columns: 1,
//!       sparsity: <Dense as crate::variant::AxisMarker<crate::variant::Sparsity>>::VALUE,
//!       activation: <Q8Path as crate::variant::AxisMarker<crate::variant::Activation>>::VALUE,
//!       isa: <Avx2 as crate::variant::AxisMarker<crate::variant::Isa>>::VALUE,
//!       kernel: variants_fns::q4_0::q4_0_r4_c1_dense_q8_avx2,
//!   }
//!   ```
//!
//!   `AxisMarker`, `Sparsity`, `Activation` and `Isa` are taken from the
//!   module of the variant type named in the header.
//! - `pub static VARIANTS_PRUNE_RULES: &[(&str, &str)]`: each rule's
//!   conditions (`"isa = scalar, tile_rows != 1"`) and its doc comment.
//! - `pub const VARIANTS_DECLARED: usize`: the size of the cross product
//!   before pruning (cfgs are not evaluated: they do not change this count).
//!
//! Paths in the declaration are used both at the call site and inside the
//! generated module; `crate::` paths and names imported at the call site work
//! in both, `super::` and `self::` paths do not.

mod expand;
mod parse;
mod space;

use proc_macro::TokenStream;

/// Expands a declared variant space into kernel functions and a registry;
/// see the [crate docs](crate) for the grammar and the generated items.
#[proc_macro]
pub fn variant_space(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as parse::SpaceInput);
    expand::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}
