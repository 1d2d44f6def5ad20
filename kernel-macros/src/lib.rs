//! (stub) variant_space! — to be written.
use proc_macro::TokenStream;

/// Expands a declared variant space (stub).
#[proc_macro]
pub fn variant_space(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
