//! The syntax of a `variant_space!` declaration, parsed and checked.
//!
//! Syntax errors stop parsing; errors in what was parsed (unknown or
//! duplicate sections, bad axis values, prune rules naming what does not
//! exist) are collected, so one expansion reports all of them.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Expr, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Path, Token, Type, Visibility, bracketed, token,
};

use crate::space::{self, Axis};

/// A whole declaration, checked: every required section present, every axis
/// non-empty with distinct values, every prune rule documented and resolved.
pub(crate) struct SpaceInput {
    pub(crate) header: Header,
    pub(crate) body: Path,
    pub(crate) args: Path,
    pub(crate) format_trait: Path,
    pub(crate) formats: Vec<Item>,
    pub(crate) tile_rows: Vec<usize>,
    pub(crate) columns: Vec<usize>,
    pub(crate) sparsity: Vec<Item>,
    pub(crate) activation: Vec<Item>,
    pub(crate) isa: Vec<Item>,
    /// The `prune` key, if the section is present.
    pub(crate) prune_key: Option<Ident>,
    pub(crate) rules: Vec<PruneRule>,
}

/// `#[attrs] vis static NAME: [path::to::Variant];`
pub(crate) struct Header {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) static_token: Token![static],
    pub(crate) name: Ident,
    pub(crate) colon: Token![:],
    pub(crate) bracket: token::Bracket,
    pub(crate) variant: Path,
    pub(crate) semi: Token![;],
}

/// `#[cfg(..)] name => Type` or, for isa items, `name => Type : "features"`.
pub(crate) struct Item {
    /// The item's `#[cfg(...)]` attributes (doc comments are dropped).
    pub(crate) cfgs: Vec<Attribute>,
    pub(crate) name: Ident,
    pub(crate) ty: Type,
    pub(crate) features: Option<LitStr>,
}

/// A checked prune rule.
pub(crate) struct PruneRule {
    /// The conditions, normalized: `isa = avx512vnni, activation = f32`.
    pub(crate) text: String,
    /// The doc comment, lines trimmed and joined by spaces.
    pub(crate) doc: String,
    pub(crate) rule: space::Rule,
}

/// Collects errors so that one expansion reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every error pushed so far, if any.
    pub(crate) fn finish(&mut self) -> syn::Result<()> {
        self.0.take().map_or(Ok(()), Err)
    }
}

const SECTIONS: &str =
    "`body`, `args`, `format_trait`, `formats`, `tile_rows`, `columns`, `sparsity`, `activation`, `isa`, `prune`";

/// The sections as parsed, before checking that the required ones are there.
#[derive(Default)]
struct Sections {
    body: Option<Path>,
    args: Option<Path>,
    format_trait: Option<Path>,
    formats: Option<Vec<Item>>,
    tile_rows: Option<Vec<usize>>,
    columns: Option<Vec<usize>>,
    sparsity: Option<Vec<Item>>,
    activation: Option<Vec<Item>>,
    isa: Option<Vec<Item>>,
    prune: Option<(Ident, Vec<RawRule>)>,
}

impl Parse for SpaceInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let header: Header = input.parse()?;
        let mut sections = Sections::default();
        let mut errors = Errors::default();
        let mut syntax_ok = true;
        while !input.is_empty() {
            if let Err(error) = parse_section(input, &mut sections, &mut errors) {
                errors.push(error);
                syntax_ok = false;
                break;
            }
        }

        let s = &sections;
        let missing: Vec<String> = [
            ("body", s.body.is_none()),
            ("args", s.args.is_none()),
            ("format_trait", s.format_trait.is_none()),
            ("formats", s.formats.is_none()),
            ("tile_rows", s.tile_rows.is_none()),
            ("columns", s.columns.is_none()),
            ("sparsity", s.sparsity.is_none()),
            ("activation", s.activation.is_none()),
            ("isa", s.isa.is_none()),
        ]
        .into_iter()
        .filter(|&(_, missing)| missing)
        .map(|(name, _)| format!("`{name}`"))
        .collect();
        // After a syntax error the rest of the input was never read, so
        // "missing" would be noise.
        if syntax_ok && !missing.is_empty() {
            let plural = if missing.len() == 1 { "" } else { "s" };
            let message = format!("missing required section{plural} {}", missing.join(", "));
            errors.push(syn::Error::new_spanned(&header, message));
        }
        if !syntax_ok || !missing.is_empty() {
            errors.finish()?;
        }
        let Sections {
            body: Some(body),
            args: Some(args),
            format_trait: Some(format_trait),
            formats: Some(formats),
            tile_rows: Some(tile_rows),
            columns: Some(columns),
            sparsity: Some(sparsity),
            activation: Some(activation),
            isa: Some(isa),
            prune,
        } = sections
        else {
            unreachable!("missing sections were reported above")
        };

        let values = |items: &[Item]| items.iter().map(|item| item.name.unraw().to_string()).collect();
        let numbers = |ints: &[usize]| ints.iter().map(usize::to_string).collect();
        let axes: [Vec<String>; space::AXES] = [
            values(&formats),
            numbers(&tile_rows),
            numbers(&columns),
            values(&sparsity),
            values(&activation),
            values(&isa),
        ];
        let (prune_key, raw_rules) = prune.map_or((None, Vec::new()), |(key, rules)| (Some(key), rules));
        let rules = raw_rules.into_iter().filter_map(|rule| rule.resolve(&axes, &mut errors)).collect();
        errors.finish()?;

        Ok(SpaceInput {
            header,
            body,
            args,
            format_trait,
            formats,
            tile_rows,
            columns,
            sparsity,
            activation,
            isa,
            prune_key,
            rules,
        })
    }
}

/// Parses one `key: value;` section into `s`.
fn parse_section(input: ParseStream, s: &mut Sections, errors: &mut Errors) -> syn::Result<()> {
    let key = input.call(Ident::parse_any)?;
    input.parse::<Token![:]>()?;
    match key.to_string().as_str() {
        "body" => set(&mut s.body, input.call(Path::parse_mod_style)?, &key, errors),
        "args" => set(&mut s.args, input.call(Path::parse_mod_style)?, &key, errors),
        "format_trait" => set(&mut s.format_trait, input.call(Path::parse_mod_style)?, &key, errors),
        "formats" => set(&mut s.formats, parse_items(input, &key, errors)?, &key, errors),
        "tile_rows" => set(&mut s.tile_rows, parse_ints(input, &key, errors)?, &key, errors),
        "columns" => set(&mut s.columns, parse_ints(input, &key, errors)?, &key, errors),
        "sparsity" => set(&mut s.sparsity, parse_items(input, &key, errors)?, &key, errors),
        "activation" => set(&mut s.activation, parse_items(input, &key, errors)?, &key, errors),
        "isa" => set(&mut s.isa, parse_items(input, &key, errors)?, &key, errors),
        "prune" => {
            let content;
            bracketed!(content in input);
            let mut rules = Vec::new();
            while !content.is_empty() {
                rules.push(content.parse()?);
            }
            set(&mut s.prune, (key.clone(), rules), &key, errors);
        }
        _ => {
            errors.push(syn::Error::new_spanned(&key, format!("unknown section `{key}`; expected one of {SECTIONS}")));
            while !input.is_empty() && !input.peek(Token![;]) {
                input.parse::<proc_macro2::TokenTree>()?;
            }
        }
    }
    input.parse::<Token![;]>()?;
    Ok(())
}

/// Stores a section's value, or reports a duplicate section.
fn set<T>(slot: &mut Option<T>, value: T, key: &Ident, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(syn::Error::new_spanned(key, format!("duplicate section `{key}` (each section appears once)")));
    } else {
        *slot = Some(value);
    }
}

/// `[item, item, ...]` of the axis `key`.
fn parse_items(input: ParseStream, key: &Ident, errors: &mut Errors) -> syn::Result<Vec<Item>> {
    let content;
    let bracket = bracketed!(content in input);
    let items = Punctuated::<Item, Token![,]>::parse_terminated(&content)?;
    if items.is_empty() {
        errors.push(syn::Error::new(bracket.span.join(), format!("`{key}` needs at least one value")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for mut item in items {
        item.cfgs.retain(|attr| {
            if attr.path().is_ident("cfg") {
                true
            } else {
                if doc_text(attr).is_none() {
                    let message = "only `#[cfg(...)]` attributes and doc comments are allowed on axis values";
                    errors.push(syn::Error::new_spanned(attr, message));
                }
                false
            }
        });
        if let Some(features) = &item.features
            && key != "isa"
        {
            let message = format!("target features are only meaningful for `isa` values, not `{key}`");
            errors.push(syn::Error::new_spanned(features, message));
        }
        if !seen.insert(item.name.unraw().to_string()) {
            let message = format!("duplicate value `{}` in `{key}`", item.name.unraw());
            errors.push(syn::Error::new_spanned(&item.name, message));
        }
        out.push(item);
    }
    Ok(out)
}

/// `[1, 2, ...]` of the axis `key`: positive integers.
fn parse_ints(input: ParseStream, key: &Ident, errors: &mut Errors) -> syn::Result<Vec<usize>> {
    let content;
    let bracket = bracketed!(content in input);
    let lits = Punctuated::<LitInt, Token![,]>::parse_terminated_with(&content, |input| {
        input.parse().map_err(|error| syn::Error::new(error.span(), "expected a positive integer literal"))
    })?;
    if lits.is_empty() {
        errors.push(syn::Error::new(bracket.span.join(), format!("`{key}` needs at least one value")));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(lits.len());
    for lit in lits {
        match lit.base10_parse::<usize>() {
            Ok(0) => errors.push(syn::Error::new_spanned(&lit, format!("`{key}` values must be positive"))),
            Ok(value) if !seen.insert(value) => {
                errors.push(syn::Error::new_spanned(&lit, format!("duplicate value `{value}` in `{key}`")));
            }
            Ok(value) => out.push(value),
            Err(error) => errors.push(error),
        }
    }
    Ok(out)
}

/// The text of a `///` doc comment (`#[doc = "..."]`), if `attr` is one.
fn doc_text(attr: &Attribute) -> Option<String> {
    if let Meta::NameValue(meta) = &attr.meta
        && meta.path.is_ident("doc")
        && let Expr::Lit(ExprLit { lit: Lit::Str(text), .. }) = &meta.value
    {
        Some(text.value())
    } else {
        None
    }
}

impl Parse for Header {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let parse = || -> syn::Result<Header> {
            let content;
            Ok(Header {
                attrs: input.call(Attribute::parse_outer)?,
                vis: input.parse()?,
                static_token: input.parse()?,
                name: input.parse()?,
                colon: input.parse()?,
                bracket: bracketed!(content in input),
                variant: content
                    .call(Path::parse_mod_style)
                    .and_then(|path| if content.is_empty() { Ok(path) } else { Err(content.error("expected `]`")) })?,
                semi: input.parse()?,
            })
        };
        parse().map_err(|error| {
            let message = format!("expected the header `static NAME: [path::to::Variant];` ({error})");
            syn::Error::new(error.span(), message)
        })
    }
}

/// The header without its attributes (to span errors about the whole declaration).
impl ToTokens for Header {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.vis.to_tokens(tokens);
        self.static_token.to_tokens(tokens);
        self.name.to_tokens(tokens);
        self.colon.to_tokens(tokens);
        self.bracket.surround(tokens, |tokens| self.variant.to_tokens(tokens));
        self.semi.to_tokens(tokens);
    }
}

impl Parse for Item {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let cfgs = input.call(Attribute::parse_outer)?;
        let name = input.parse()?;
        input.parse::<Token![=>]>()?;
        let ty = input.parse()?;
        let features = if input.peek(Token![:]) {
            input.parse::<Token![:]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Item { cfgs, name, ty, features })
    }
}

/// A prune rule as written: `/// why` then `axis = value, axis != value;`.
struct RawRule {
    attrs: Vec<Attribute>,
    conditions: Punctuated<RawCondition, Token![,]>,
    semi: Token![;],
}

struct RawCondition {
    axis: Ident,
    op: Op,
    value: Value,
}

enum Op {
    Equal(Token![=]),
    NotEqual(Token![!=]),
}

enum Value {
    Name(Ident),
    Int(LitInt),
}

impl Parse for RawRule {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Ok(RawRule {
            attrs: input.call(Attribute::parse_outer)?,
            conditions: Punctuated::parse_separated_nonempty(input)?,
            semi: input.parse()?,
        })
    }
}

impl Parse for RawCondition {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let axis = input.parse()?;
        if input.peek(Token![==]) {
            return Err(input.error("conditions compare with `=` or `!=`"));
        }
        let lookahead = input.lookahead1();
        let op = if lookahead.peek(Token![!=]) {
            Op::NotEqual(input.parse()?)
        } else if lookahead.peek(Token![=]) {
            Op::Equal(input.parse()?)
        } else {
            return Err(lookahead.error());
        };
        let lookahead = input.lookahead1();
        let value = if lookahead.peek(Ident) {
            Value::Name(input.parse()?)
        } else if lookahead.peek(LitInt) {
            Value::Int(input.parse()?)
        } else {
            return Err(lookahead.error());
        };
        Ok(RawCondition { axis, op, value })
    }
}

impl ToTokens for RawRule {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.conditions.to_tokens(tokens);
        self.semi.to_tokens(tokens);
    }
}

impl ToTokens for RawCondition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.axis.to_tokens(tokens);
        match &self.op {
            Op::Equal(op) => op.to_tokens(tokens),
            Op::NotEqual(op) => op.to_tokens(tokens),
        }
        match &self.value {
            Value::Name(name) => name.to_tokens(tokens),
            Value::Int(int) => int.to_tokens(tokens),
        }
    }
}

impl Value {
    /// The value as it appears in variant names.
    fn text(&self) -> String {
        match self {
            Value::Name(name) => name.unraw().to_string(),
            Value::Int(int) => int.base10_parse::<usize>().map_or_else(|_| int.to_string(), |v| v.to_string()),
        }
    }
}

impl RawRule {
    /// Checks the rule against the declared axis values (`axes`, in
    /// [`Axis::ALL`] order); reports what is wrong to `errors`.
    fn resolve(self, axes: &[Vec<String>; space::AXES], errors: &mut Errors) -> Option<PruneRule> {
        let mut ok = true;
        let mut doc_lines = Vec::new();
        for attr in &self.attrs {
            match doc_text(attr) {
                Some(line) => doc_lines.push(line.trim().to_string()),
                None => {
                    errors.push(syn::Error::new_spanned(attr, "only doc comments are allowed on prune rules"));
                    ok = false;
                }
            }
        }
        doc_lines.retain(|line| !line.is_empty());
        if doc_lines.is_empty() {
            errors.push(syn::Error::new_spanned(&self, "every prune rule needs a `///` doc comment saying why"));
            ok = false;
        }

        let mut conditions = Vec::new();
        let mut text = Vec::new();
        for condition in &self.conditions {
            let axis_name = condition.axis.unraw().to_string();
            let Some(axis) = Axis::from_name(&axis_name) else {
                let names: Vec<_> = Axis::ALL.iter().map(|axis| format!("`{}`", axis.name())).collect();
                let hint = if axis_name == "formats" { " (the axis of `formats` is `format`)" } else { "" };
                let message = format!("unknown axis `{axis_name}`{hint}; expected one of {}", names.join(", "));
                errors.push(syn::Error::new_spanned(&condition.axis, message));
                ok = false;
                continue;
            };
            let value = condition.value.text();
            let values = &axes[axis as usize];
            let Some(index) = values.iter().position(|v| *v == value) else {
                let message = format!("`{value}` is not a value of `{axis_name}` (declared: {})", values.join(", "));
                let error = match &condition.value {
                    Value::Name(name) => syn::Error::new_spanned(name, message),
                    Value::Int(int) => syn::Error::new_spanned(int, message),
                };
                errors.push(error);
                ok = false;
                continue;
            };
            let equal = matches!(condition.op, Op::Equal(_));
            text.push(format!("{axis_name} {} {value}", if equal { "=" } else { "!=" }));
            conditions.push(space::Condition { axis, value: index, equal });
        }

        ok.then(|| PruneRule { text: text.join(", "), doc: doc_lines.join(" "), rule: space::Rule { conditions } })
    }
}
