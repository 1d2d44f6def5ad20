//! ggml's block formats held to an independent implementation: the `gguf`
//! package from PyPI (llama.cpp's numpy gguf-py), through the fixtures of
//! `tests/fixtures/gguf` (see its README), and, for the K quantizers that
//! gguf-py lacks, to ggml's own `quantize_row_*_ref` where those fixtures
//! were made with `--ggml`.
//!
//! - Dequantization is bit-exact against gguf-py for all eight types.
//! - Quantization is bit-exact against gguf-py (Q4_0, Q4_1, Q5_0, Q5_1,
//!   Q8_0) and against ggml (Q4_K, Q5_K, Q6_K) on the fixture inputs.
//! - K quantizers keep a stated error bound on random inputs.
//! - `split`/`join` are inverse on arbitrary bytes; `affine` reproduces
//!   `dequantize` exactly (as f32 values) for finite headers.

use std::path::PathBuf;

use asdsl_kernels::formats::{BlockFormat, Format, Q4_0, Q4_1, Q4K, Q5_0, Q5_1, Q5K, Q6K, Q8_0, Quantize};
use proptest::prelude::*;

fn fixture(name: &str) -> Option<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "gguf", name].iter().collect();
    std::fs::read(path).ok()
}

fn required(name: &str) -> Vec<u8> {
    fixture(name).unwrap_or_else(|| panic!("missing fixture {name}; see tests/fixtures/gguf/README.md"))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn name<F: BlockFormat>() -> String {
    F::FORMAT.to_string()
}

/// Dequantizes every fixture block and compares the f32 bits with gguf-py's.
fn check_dequantize<F: BlockFormat>() {
    let blocks = required(&format!("{}.blocks.bin", name::<F>()));
    let expected = f32s(&required(&format!("{}.dequant.f32.bin", name::<F>())));
    assert_eq!(blocks.len() % F::BLOCK_BYTES, 0);
    let n = blocks.len() / F::BLOCK_BYTES;
    assert!(n >= 32, "too few fixture blocks");
    assert_eq!(expected.len(), n * F::BLOCK_LEN);
    let mut out = vec![0.0f32; F::BLOCK_LEN];
    for (b, (block, want)) in blocks.chunks_exact(F::BLOCK_BYTES).zip(expected.chunks_exact(F::BLOCK_LEN)).enumerate() {
        F::dequantize(block, &mut out);
        for (i, (&got, &want)) in out.iter().zip(want).enumerate() {
            let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
            assert!(same, "{}: block {b} weight {i}: got {got:e}, gguf-py {want:e}", name::<F>());
        }
    }
}

/// Quantizes the fixture inputs and compares the bytes with the reference
/// blocks (the first blocks of `<t>.blocks.bin`). Returns whether the
/// fixture had inputs.
fn check_quantize<F: Quantize>() -> bool {
    let Some(input) = fixture(&format!("{}.input.f32.bin", name::<F>())) else {
        return false;
    };
    let input = f32s(&input);
    let blocks = required(&format!("{}.blocks.bin", name::<F>()));
    assert_eq!(input.len() % F::BLOCK_LEN, 0);
    let n = input.len() / F::BLOCK_LEN;
    assert!(blocks.len() >= n * F::BLOCK_BYTES);
    let mut got = vec![0u8; F::BLOCK_BYTES];
    let mut mismatches = Vec::new();
    for (b, (x, want)) in input.chunks_exact(F::BLOCK_LEN).zip(blocks.chunks_exact(F::BLOCK_BYTES)).enumerate() {
        got.fill(0xAA);
        F::quantize(x, &mut got);
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap();
            mismatches.push(format!("block {b} byte {first}: {:#04x} vs {:#04x}", got[first], want[first]));
        }
    }
    assert!(mismatches.is_empty(), "{}: {} of {n} blocks differ: {:?}", name::<F>(), mismatches.len(), mismatches);
    true
}

#[test]
fn dequantize_q4_0_matches_gguf_py() {
    check_dequantize::<Q4_0>();
}
#[test]
fn dequantize_q4_1_matches_gguf_py() {
    check_dequantize::<Q4_1>();
}
#[test]
fn dequantize_q5_0_matches_gguf_py() {
    check_dequantize::<Q5_0>();
}
#[test]
fn dequantize_q5_1_matches_gguf_py() {
    check_dequantize::<Q5_1>();
}
#[test]
fn dequantize_q8_0_matches_gguf_py() {
    check_dequantize::<Q8_0>();
}
#[test]
fn dequantize_q4_k_matches_gguf_py() {
    check_dequantize::<Q4K>();
}
#[test]
fn dequantize_q5_k_matches_gguf_py() {
    check_dequantize::<Q5K>();
}
#[test]
fn dequantize_q6_k_matches_gguf_py() {
    check_dequantize::<Q6K>();
}

#[test]
fn quantize_q4_0_matches_gguf_py() {
    assert!(check_quantize::<Q4_0>());
}
#[test]
fn quantize_q4_1_matches_gguf_py() {
    assert!(check_quantize::<Q4_1>());
}
#[test]
fn quantize_q5_0_matches_gguf_py() {
    assert!(check_quantize::<Q5_0>());
}
#[test]
fn quantize_q5_1_matches_gguf_py() {
    assert!(check_quantize::<Q5_1>());
}
#[test]
fn quantize_q8_0_matches_gguf_py() {
    assert!(check_quantize::<Q8_0>());
}
#[test]
fn quantize_q4_k_matches_ggml() {
    assert!(check_quantize::<Q4K>());
}
#[test]
fn quantize_q5_k_matches_ggml() {
    assert!(check_quantize::<Q5K>());
}
#[test]
fn quantize_q6_k_matches_ggml() {
    assert!(check_quantize::<Q6K>());
}

#[test]
fn geometry_matches_ggml() {
    // (type, ggml type id, block length, block bytes) as in gguf-py's GGML_QUANT_SIZES.
    let table = [
        (Format::Q4_0, 2, 32, 18),
        (Format::Q4_1, 3, 32, 20),
        (Format::Q5_0, 6, 32, 22),
        (Format::Q5_1, 7, 32, 24),
        (Format::Q8_0, 8, 32, 34),
        (Format::Q4K, 12, 256, 144),
        (Format::Q5K, 13, 256, 176),
        (Format::Q6K, 14, 256, 210),
    ];
    for (format, id, len, bytes) in table {
        let info = format.info();
        assert_eq!((info.block_len, info.block_bytes), (len, bytes), "{format}");
        assert_eq!(format.ggml_type(), Some(id));
        assert_eq!(Format::from_ggml_type(id), Some(format));
    }
}

/// A deterministic generator for the error-bound tests (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Quantizes Gaussian blocks (with a scale that varies from block to block,
/// over 0.1..100, and from one 32-weight sub-block to the next, and an
/// offset in a third of the blocks) and checks the relative RMS error of
/// each block and over all of them.
///
/// The scales stay above 0.1 because below that the f16 super-block scales
/// become f16 subnormals for some formats (Q6_K's `d` is about
/// `max|w| / 4096`), whose coarse absolute precision, not the quantizer,
/// then dominates the error; that is a property of ggml's formats.
///
/// Bounds: the RMS error of a block is at most `block_bound` times the
/// block's RMS, and over all blocks at most `mean_bound` times. For
/// Gaussian data an ideal uniform b-bit quantizer over about ±3σ has a
/// relative RMS error near `6 / (2^b - 1) / sqrt(12)` (0.115 for 4 bits,
/// 0.056 for 5, 0.027 for 6); ggml's least-squares scales do a little
/// better than that on average.
fn check_error_bound<F: Quantize>(block_bound: f64, mean_bound: f64) {
    let mut rng = Rng(0x5EED_0000 + F::CODE_BITS as u64);
    let mut x = vec![0.0f32; F::BLOCK_LEN];
    let mut block = vec![0u8; F::BLOCK_BYTES];
    let mut y = vec![0.0f32; F::BLOCK_LEN];
    let (mut err2, mut sig2) = (0.0f64, 0.0f64);
    for b in 0..400 {
        let scale = 10f64.powf(rng.uniform() * 3.0 - 1.0);
        let offset = if b % 3 == 0 { rng.normal() * scale } else { 0.0 };
        for sub in x.chunks_mut(32) {
            let sub_scale = scale * (0.25 + rng.uniform());
            for v in sub {
                *v = (rng.normal() * sub_scale + offset) as f32;
            }
        }
        F::quantize(&x, &mut block);
        F::dequantize(&block, &mut y);
        let e2: f64 = x.iter().zip(&y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
        let s2: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
        let rel = (e2 / s2).sqrt();
        assert!(rel <= block_bound, "{}: block {b} relative RMS error {rel:.4} > {block_bound}", F::FORMAT);
        err2 += e2 / s2;
        sig2 += 1.0;
    }
    let mean = (err2 / sig2).sqrt();
    assert!(mean <= mean_bound, "{}: relative RMS error {mean:.4} > {mean_bound}", F::FORMAT);
}

#[test]
fn q4_k_quantize_error_is_bounded() {
    check_error_bound::<Q4K>(0.12, 0.075);
}
#[test]
fn q5_k_quantize_error_is_bounded() {
    check_error_bound::<Q5K>(0.06, 0.04);
}
#[test]
fn q6_k_quantize_error_is_bounded() {
    check_error_bound::<Q6K>(0.03, 0.02);
}
#[test]
fn q4_0_quantize_error_is_bounded() {
    check_error_bound::<Q4_0>(0.2, 0.12);
}
#[test]
fn q8_0_quantize_error_is_bounded() {
    check_error_bound::<Q8_0>(0.015, 0.007);
}

/// Zeros quantize to a block that decodes to zeros (ggml's all-zero paths).
fn check_zeros<F: Quantize>() {
    let x = vec![0.0f32; F::BLOCK_LEN];
    let mut block = vec![0xAAu8; F::BLOCK_BYTES];
    F::quantize(&x, &mut block);
    let mut y = vec![1.0f32; F::BLOCK_LEN];
    F::dequantize(&block, &mut y);
    assert!(y.iter().all(|&v| v == 0.0), "{}: {y:?}", F::FORMAT);
}

/// Non-finite and out-of-range inputs do not panic (ggml's arithmetic
/// carries on with them; what it makes of them is unspecified).
fn check_no_panic<F: Quantize>() {
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 1e-40, 0.0];
    let mut block = vec![0u8; F::BLOCK_BYTES];
    let mut y = vec![0.0f32; F::BLOCK_LEN];
    for (k, &special) in specials.iter().enumerate() {
        let x: Vec<f32> = (0..F::BLOCK_LEN).map(|i| if i % (k + 2) == 0 { special } else { i as f32 * 0.01 }).collect();
        F::quantize(&x, &mut block);
        F::dequantize(&block, &mut y);
        F::quantize(&vec![special; F::BLOCK_LEN], &mut block);
        F::dequantize(&block, &mut y);
    }
}

#[test]
fn non_finite_inputs_do_not_panic() {
    check_no_panic::<Q4_0>();
    check_no_panic::<Q4_1>();
    check_no_panic::<Q5_0>();
    check_no_panic::<Q5_1>();
    check_no_panic::<Q8_0>();
    check_no_panic::<Q4K>();
    check_no_panic::<Q5K>();
    check_no_panic::<Q6K>();
}

#[test]
fn zeros_quantize_to_zeros() {
    check_zeros::<Q4_0>();
    check_zeros::<Q4_1>();
    check_zeros::<Q5_0>();
    check_zeros::<Q5_1>();
    check_zeros::<Q8_0>();
    check_zeros::<Q4K>();
    check_zeros::<Q5K>();
    check_zeros::<Q6K>();
}

/// `join(split(block)) == block` for arbitrary bytes, codes are in range,
/// and `split(join(header, codes)) == (header, codes)`.
fn check_split_join<F: BlockFormat>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let block = &bytes[..F::BLOCK_BYTES];
    let mut header = vec![0u8; F::HEADER_BYTES];
    let mut codes = vec![0u8; F::BLOCK_LEN];
    F::split(block, &mut header, &mut codes);
    prop_assert!(codes.iter().all(|&c| (c as u32) < (1 << F::CODE_BITS)));
    let mut joined = vec![0x55u8; F::BLOCK_BYTES];
    F::join(&header, &codes, &mut joined);
    prop_assert_eq!(&joined[..], block);
    // The other way round: any header and in-range codes survive.
    let header2: Vec<u8> = bytes[F::BLOCK_BYTES..F::BLOCK_BYTES + F::HEADER_BYTES].to_vec();
    let codes2: Vec<u8> = bytes[..F::BLOCK_LEN].iter().map(|&c| c & ((1u32 << F::CODE_BITS) - 1) as u8).collect();
    F::join(&header2, &codes2, &mut joined);
    let mut header3 = vec![0u8; F::HEADER_BYTES];
    let mut codes3 = vec![0u8; F::BLOCK_LEN];
    F::split(&joined, &mut header3, &mut codes3);
    prop_assert_eq!(header3, header2);
    prop_assert_eq!(codes3, codes2);
    // HEADER_BYTES plus the code bits account for every bit of the block.
    prop_assert_eq!(F::HEADER_BYTES * 8 + F::BLOCK_LEN * F::CODE_BITS as usize, F::BLOCK_BYTES * 8);
    Ok(())
}

/// Every weight of `dequantize` equals `scale * code + min` from `affine`,
/// as f32 values (so `-0.0 == 0.0`), when the block's f16 fields are finite.
///
/// This holds exactly, not just within rounding: in every GGUF format the
/// products `scale * code` and the offsets are exact in f32 (an f16 has 11
/// significant bits, a sub-block scale at most 8 and a code at most 8, and
/// an f16 times a small integer never reaches f32's subnormal range), so
/// both forms round the same exact value once.
fn check_affine<F: BlockFormat>(block: &[u8]) -> Result<(), TestCaseError> {
    let block = &block[..F::BLOCK_BYTES];
    let mut header = vec![0u8; F::HEADER_BYTES];
    let mut codes = vec![0u8; F::BLOCK_LEN];
    F::split(block, &mut header, &mut codes);
    let mut y = vec![0.0f32; F::BLOCK_LEN];
    F::dequantize(block, &mut y);
    for (i, (&c, &want)) in codes.iter().zip(&y).enumerate() {
        let (scale, min) = F::affine(&header, i / F::SCALE_LEN);
        let got = scale * c as f32 + min;
        prop_assert!(
            got == want,
            "{}: weight {i}: affine {got:e} (scale {scale:e}, min {min:e}), dequantize {want:e}",
            F::FORMAT
        );
    }
    Ok(())
}

/// Offsets of each format's f16 fields, to make them finite in random blocks.
fn f16_offsets(format: Format) -> &'static [usize] {
    match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => &[0],
        Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K => &[0, 2],
        Format::Q6K => &[208],
        Format::Native(_) => &[0, 2],
    }
}

fn with_finite_f16<F: BlockFormat>(bytes: &[u8]) -> Vec<u8> {
    let mut block = bytes[..F::BLOCK_BYTES].to_vec();
    for &at in f16_offsets(F::FORMAT) {
        if block[at + 1] & 0x7C == 0x7C {
            block[at + 1] &= !0x40; // an all-ones exponent (inf/NaN) loses one bit
        }
    }
    block
}

/// `affine` against `dequantize` on every fixture block.
fn check_affine_fixtures<F: BlockFormat>() {
    let blocks = required(&format!("{}.blocks.bin", name::<F>()));
    for block in blocks.chunks_exact(F::BLOCK_BYTES) {
        check_affine::<F>(&with_finite_f16::<F>(block)).unwrap();
    }
}

#[test]
fn affine_matches_dequantize_on_fixtures() {
    check_affine_fixtures::<Q4_0>();
    check_affine_fixtures::<Q4_1>();
    check_affine_fixtures::<Q5_0>();
    check_affine_fixtures::<Q5_1>();
    check_affine_fixtures::<Q8_0>();
    check_affine_fixtures::<Q4K>();
    check_affine_fixtures::<Q5K>();
    check_affine_fixtures::<Q6K>();
}

macro_rules! block_properties {
    ($($module:ident: $F:ty;)*) => {
        $(
            mod $module {
                use super::*;

                proptest! {
                    #![proptest_config(ProptestConfig::with_cases(256))]

                    #[test]
                    fn split_join_round_trip(bytes in prop::collection::vec(any::<u8>(), 512)) {
                        check_split_join::<$F>(&bytes)?;
                    }

                    #[test]
                    fn affine_matches_dequantize(bytes in prop::collection::vec(any::<u8>(), 256)) {
                        check_affine::<$F>(&with_finite_f16::<$F>(&bytes))?;
                    }
                }
            }
        )*
    };
}

block_properties! {
    q4_0: Q4_0;
    q4_1: Q4_1;
    q5_0: Q5_0;
    q5_1: Q5_1;
    q8_0: Q8_0;
    q4_k: Q4K;
    q5_k: Q5K;
    q6_k: Q6K;
}
