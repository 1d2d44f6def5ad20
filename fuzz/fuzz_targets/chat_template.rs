//! Fuzz target `chat_template`: a thin call to [`asdsl_tests::fuzz::chat_template`], which the
//! stable test `tests/tests/fuzz_seeds.rs` runs over the committed seeds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| asdsl_tests::fuzz::chat_template(data));
