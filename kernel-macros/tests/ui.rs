//! Compile-fail tests: every error `variant_space!` reports, with its span;
//! and compile-and-run tests of declarations that must expand.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
