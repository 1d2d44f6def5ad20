//! Code generation: one `unsafe fn` per surviving variant, the registry
//! static, and the prune-rule and declared-count items.

use std::collections::HashMap;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use syn::Path;
use syn::ext::IdentExt;

use crate::parse::{Errors, SpaceInput};
use crate::space;

pub(crate) fn expand(input: &SpaceInput) -> syn::Result<TokenStream> {
    let SpaceInput { header, body, args, format_trait, formats, tile_rows, columns, sparsity, activation, isa, .. } =
        input;
    let lens = [formats.len(), tile_rows.len(), columns.len(), sparsity.len(), activation.len(), isa.len()];
    let rules: Vec<space::Rule> = input.rules.iter().map(|rule| rule.rule.clone()).collect();
    let points = space::enumerate(lens, &rules);
    if points.is_empty() {
        let message = "the prune rules remove every variant";
        return Err(match &input.prune_key {
            Some(key) => syn::Error::new_spanned(key, message),
            None => syn::Error::new_spanned(header, message),
        });
    }

    let name = &header.name;
    let variant = &header.variant;
    let axis_marker = sibling(variant, "AxisMarker");
    let [sparsity_ty, activation_ty, isa_ty] = ["Sparsity", "Activation", "Isa"].map(|ty| sibling(variant, ty));
    let fns_mod = format_ident!("{}_fns", snake_case(&name.to_string()));

    // Functions are grouped in one module per format: rustc partitions code
    // generation by module, so this lets the variants compile in parallel.
    let mut fns: Vec<(Ident, Vec<TokenStream>)> = Vec::new();
    let mut entries = Vec::with_capacity(points.len());
    let mut fn_names: HashMap<String, String> = HashMap::with_capacity(points.len());
    let mut errors = Errors::default();
    for [f, r, c, s, a, i] in points {
        let (format, sparsity, activation, isa) = (&formats[f], &sparsity[s], &activation[a], &isa[i]);
        let (rows, cols) = (tile_rows[r], columns[c]);
        let [fv, sv, av, iv] = [format, sparsity, activation, isa].map(|item| item.name.unraw().to_string());
        let variant_name = format!("{fv}.r{rows}.c{cols}.{sv}.{av}.{iv}");
        let fn_name = format!("{fv}_r{rows}_c{cols}_{sv}_{av}_{iv}");
        // Distinct axis values give distinct dotted names, but `_` may also
        // occur inside values, so function names can collide.
        if let Some(other) = fn_names.insert(fn_name.clone(), variant_name.clone()) {
            let message = format!(
                "variants `{other}` and `{variant_name}` would both be named `{fn_name}`; rename an axis value"
            );
            errors.push(syn::Error::new_spanned(name, message));
            continue;
        }
        let fn_name = Ident::new(&fn_name, Span::call_site());

        let cfgs: Vec<_> = [format, sparsity, activation, isa].iter().flat_map(|item| &item.cfgs).collect();
        let target_feature = isa.features.as_ref().map(|features| quote!(#[target_feature(enable = #features)]));
        let (fty, sty, aty, ity) = (&format.ty, &sparsity.ty, &activation.ty, &isa.ty);
        let (rows, cols) = (Literal::usize_unsuffixed(rows), Literal::usize_unsuffixed(cols));
        let group = format_ident!("{}", fv);
        if fns.last().is_none_or(|(g, _)| *g != group) {
            fns.push((group.clone(), Vec::new()));
        }
        fns.last_mut().expect("pushed above").1.push(quote! {
            #(#cfgs)*
            #target_feature
            pub unsafe fn #fn_name(args: &#args<'_>) {
                unsafe { #body::<#fty, #ity, #sty, #aty, #rows, #cols>(args) }
            }
        });
        entries.push(quote! {
            #(#cfgs)*
            #variant {
                name: #variant_name,
                format: <#fty as #format_trait>::FORMAT,
                tile_rows: #rows,
                columns: #cols,
                sparsity: <#sty as #axis_marker<#sparsity_ty>>::VALUE,
                activation: <#aty as #axis_marker<#activation_ty>>::VALUE,
                isa: <#ity as #axis_marker<#isa_ty>>::VALUE,
                kernel: #fns_mod::#group::#fn_name,
            },
        });
    }
    errors.finish()?;

    let vis = &header.vis;
    let attrs = &header.attrs;
    let rules_name = format_ident!("{name}_PRUNE_RULES");
    let declared_name = format_ident!("{name}_DECLARED");
    let rule_texts = input.rules.iter().map(|rule| &rule.text);
    let rule_docs = input.rules.iter().map(|rule| &rule.doc);
    let declared = Literal::usize_unsuffixed(space::declared(lens));
    let (groups, group_fns): (Vec<Ident>, Vec<Vec<TokenStream>>) = fns.into_iter().unzip();
    let fns_doc = format!(
        "The kernel functions of [`{name}`].\n\n\
         # Safety\n\n\
         Each function calls the kernel body for its variant: the caller upholds the contract of \
         the argument type and has checked that the CPU supports the variant's ISA."
    );
    let rules_doc = format!("The prune rules of [`{name}`]: `(conditions, reason)`, as declared.");
    let declared_doc = format!("The size of the cross product of [`{name}`]'s axes, before pruning.");

    Ok(quote! {
        #[doc = #fns_doc]
        #[doc(hidden)]
        #[allow(non_snake_case)]
        #vis mod #fns_mod {
            #[allow(unused_imports)]
            use super::*;
            #(
                pub mod #groups {
                    #[allow(unused_imports)]
                    use super::*;
                    #(#group_fns)*
                }
            )*
        }

        #(#attrs)*
        #vis static #name: &[#variant] = &[#(#entries)*];

        #[doc = #rules_doc]
        #vis static #rules_name: &[(&str, &str)] = &[#((#rule_texts, #rule_docs)),*];

        #[doc = #declared_doc]
        #vis const #declared_name: usize = #declared;
    })
}

/// `path::to::Variant` with its last segment replaced: `path::to::{name}`.
fn sibling(variant: &Path, name: &str) -> Path {
    let mut path = variant.clone();
    let last = path.segments.last_mut().expect("a parsed path has a segment");
    last.ident = Ident::new(name, last.ident.span());
    path
}

/// `VARIANTS` -> `variants`, `MyVariants` -> `my_variants`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for ch in name.chars() {
        if ch.is_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = ch.is_lowercase() || ch.is_ascii_digit();
        out.extend(ch.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(declaration: &str) -> syn::Result<syn::File> {
        let input: SpaceInput = syn::parse_str(declaration)?;
        syn::parse2(expand(&input)?)
    }

    #[test]
    fn one_variant_per_isa() {
        let out = expand_str(
            r#"
            /// Docs.
            pub static VARIANTS: [crate::variant::Variant];
            body: crate::kernel::body;
            args: crate::kernel::KernelArgs;
            format_trait: crate::formats::BlockFormat;
            formats: [q4_0 => crate::formats::Q4_0];
            tile_rows: [4];
            columns: [1];
            sparsity: [dense => crate::kernel::Dense];
            activation: [q8 => crate::kernel::Q8Path];
            isa: [scalar => crate::isa::Scalar, #[cfg(x)] avx2 => crate::isa::Avx2 : "avx2,fma"];
            "#,
        )
        .unwrap();
        let expected = quote! {
            #[doc = "The kernel functions of [`VARIANTS`].\n\n# Safety\n\nEach function calls the kernel body for its variant: the caller upholds the contract of the argument type and has checked that the CPU supports the variant's ISA."]
            #[doc(hidden)]
            #[allow(non_snake_case)]
            pub mod variants_fns {
                #[allow(unused_imports)]
                use super::*;
                pub mod q4_0 {
                #[allow(unused_imports)]
                use super::*;
                pub unsafe fn q4_0_r4_c1_dense_q8_scalar(args: &crate::kernel::KernelArgs<'_>) {
                    unsafe {
                        crate::kernel::body::<
                            crate::formats::Q4_0, crate::isa::Scalar, crate::kernel::Dense, crate::kernel::Q8Path, 4, 1
                        >(args)
                    }
                }
                #[cfg(x)]
                #[target_feature(enable = "avx2,fma")]
                pub unsafe fn q4_0_r4_c1_dense_q8_avx2(args: &crate::kernel::KernelArgs<'_>) {
                    unsafe {
                        crate::kernel::body::<
                            crate::formats::Q4_0, crate::isa::Avx2, crate::kernel::Dense, crate::kernel::Q8Path, 4, 1
                        >(args)
                    }
                }
                }
            }
            #[doc = " Docs."]
            pub static VARIANTS: &[crate::variant::Variant] = &[
                crate::variant::Variant {
                    name: "q4_0.r4.c1.dense.q8.scalar",
                    format: <crate::formats::Q4_0 as crate::formats::BlockFormat>::FORMAT,
                    tile_rows: 4,
                    columns: 1,
                    sparsity: <crate::kernel::Dense as crate::variant::AxisMarker<crate::variant::Sparsity> >::VALUE,
                    activation: <crate::kernel::Q8Path as crate::variant::AxisMarker<crate::variant::Activation> >::VALUE,
                    isa: <crate::isa::Scalar as crate::variant::AxisMarker<crate::variant::Isa> >::VALUE,
                    kernel: variants_fns::q4_0::q4_0_r4_c1_dense_q8_scalar,
                },
                #[cfg(x)]
                crate::variant::Variant {
                    name: "q4_0.r4.c1.dense.q8.avx2",
                    format: <crate::formats::Q4_0 as crate::formats::BlockFormat>::FORMAT,
                    tile_rows: 4,
                    columns: 1,
                    sparsity: <crate::kernel::Dense as crate::variant::AxisMarker<crate::variant::Sparsity> >::VALUE,
                    activation: <crate::kernel::Q8Path as crate::variant::AxisMarker<crate::variant::Activation> >::VALUE,
                    isa: <crate::isa::Avx2 as crate::variant::AxisMarker<crate::variant::Isa> >::VALUE,
                    kernel: variants_fns::q4_0::q4_0_r4_c1_dense_q8_avx2,
                },
            ];
            #[doc = "The prune rules of [`VARIANTS`]: `(conditions, reason)`, as declared."]
            pub static VARIANTS_PRUNE_RULES: &[(&str, &str)] = &[];
            #[doc = "The size of the cross product of [`VARIANTS`]'s axes, before pruning."]
            pub const VARIANTS_DECLARED: usize = 2;
        };
        assert_eq!(out, syn::parse2(expected).unwrap());
    }

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("VARIANTS"), "variants");
        assert_eq!(snake_case("GEMV_VARIANTS"), "gemv_variants");
        assert_eq!(snake_case("MyVariants"), "my_variants");
        assert_eq!(snake_case("V2Kernels"), "v2_kernels");
    }

    #[test]
    fn sibling_paths() {
        let path: Path = syn::parse_quote!(crate::variant::Variant);
        let expected: Path = syn::parse_quote!(crate::variant::AxisMarker);
        assert_eq!(sibling(&path, "AxisMarker"), expected);
        let path: Path = syn::parse_quote!(Variant);
        let expected: Path = syn::parse_quote!(Isa);
        assert_eq!(sibling(&path, "Isa"), expected);
    }
}
