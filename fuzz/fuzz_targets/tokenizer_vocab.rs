//! Fuzz target `tokenizer_vocab`: a thin call to [`asdsl_tests::fuzz::tokenizer_vocab`], which the
//! stable test `tests/tests/fuzz_seeds.rs` runs over the committed seeds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| asdsl_tests::fuzz::tokenizer_vocab(data));
