//! Fuzz target `tokenizer_text`: a thin call to [`asdsl_tests::fuzz::tokenizer_text`], which the
//! stable test `tests/tests/fuzz_seeds.rs` runs over the committed seeds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| asdsl_tests::fuzz::tokenizer_text(data));
