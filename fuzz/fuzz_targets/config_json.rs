//! Fuzz target `config_json`: a thin call to [`asdsl_tests::fuzz::config_json`], which the
//! stable test `tests/tests/fuzz_seeds.rs` runs over the committed seeds.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| asdsl_tests::fuzz::config_json(data));
