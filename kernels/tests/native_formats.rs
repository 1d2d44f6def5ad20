//! asdsl's native `q{bits}g{group}` formats: for every one of them,
//!
//! - `split`/`join` are inverse on arbitrary bytes;
//! - `dequantize` is exactly `scale * code + min` from `affine`;
//! - quantizing inputs within the f16 range puts every weight within
//!   `d / 2` of its original, plus the slack of storing `d` and the min in
//!   f16 (see [`error_bound`]);
//! - `quantize_with(.., NativeQuantizer { clip_search: true })` never has a
//!   larger squared error than plain `quantize`.

use asdsl_kernels::formats::native::*;
use asdsl_kernels::formats::{BlockFormat, Quantize};
use proptest::prelude::*;

const F16_MAX: f32 = 65504.0;

/// `join(split(block)) == block` for arbitrary bytes and
/// `split(join(header, codes)) == (header, codes)` for in-range codes.
fn check_split_join<F: BlockFormat>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let block = &bytes[..F::BLOCK_BYTES];
    let mut header = vec![0u8; F::HEADER_BYTES];
    let mut codes = vec![0u8; F::BLOCK_LEN];
    F::split(block, &mut header, &mut codes);
    prop_assert!(codes.iter().all(|&c| (c as u32) < (1 << F::CODE_BITS)));
    let mut joined = vec![0x55u8; F::BLOCK_BYTES];
    F::join(&header, &codes, &mut joined);
    prop_assert_eq!(&joined[..], block);
    let mask = ((1u32 << F::CODE_BITS) - 1) as u8;
    let header2 = bytes[F::BLOCK_BYTES..F::BLOCK_BYTES + F::HEADER_BYTES].to_vec();
    let codes2: Vec<u8> = bytes[bytes.len() - F::BLOCK_LEN..].iter().map(|&c| c & mask).collect();
    F::join(&header2, &codes2, &mut joined);
    let mut header3 = vec![0u8; F::HEADER_BYTES];
    let mut codes3 = vec![0u8; F::BLOCK_LEN];
    F::split(&joined, &mut header3, &mut codes3);
    prop_assert_eq!(header3, header2);
    prop_assert_eq!(codes3, codes2);
    prop_assert_eq!(F::HEADER_BYTES * 8 + F::BLOCK_LEN * F::CODE_BITS as usize, F::BLOCK_BYTES * 8);
    Ok(())
}

/// `dequantize` equals `scale * code + min` bit for bit (any header bytes,
/// NaN compared as NaN).
fn check_affine<F: BlockFormat>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let block = &bytes[..F::BLOCK_BYTES];
    let mut header = vec![0u8; F::HEADER_BYTES];
    let mut codes = vec![0u8; F::BLOCK_LEN];
    F::split(block, &mut header, &mut codes);
    let mut y = vec![0.0f32; F::BLOCK_LEN];
    F::dequantize(block, &mut y);
    for (i, (&c, &want)) in codes.iter().zip(&y).enumerate() {
        let (scale, min) = F::affine(&header, i / F::SCALE_LEN);
        let got = scale * c as f32 + min;
        prop_assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "weight {i}: {got} vs {want}");
    }
    Ok(())
}

/// The largest error quantization may leave on a weight of `x` (all finite,
/// within the f16 range), given the stored scale `d`:
///
/// ```text
/// d / 2                                   rounding to the nearest code
/// + levels * max(2^-11 * d_exact, 2^-25)  d stored in f16 (relative 2^-11, absolute 2^-25 when subnormal)
/// + max(2^-11 * |lo|, 2^-25)              the min stored in f16
/// + 2^-20 * (max |x| + levels * d)        f32 arithmetic
/// ```
///
/// where `lo` is the smallest weight, `levels = 2^bits - 1` and
/// `d_exact = (max - min) / levels`. A weight whose code is not clamped is
/// within `d / 2`; one clamped to the top code is within `hi - (m + levels
/// d)`, one clamped to 0 within `m - lo`, both covered by the f16 terms.
fn error_bound(x: &[f32], d: f32, bits: u32) -> f64 {
    let lo = x.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let amax = x.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
    let levels = ((1u32 << bits) - 1) as f64;
    let d = d as f64;
    let d_exact = (hi - lo) / levels;
    let (rel, abs) = (2f64.powi(-11), 2f64.powi(-25));
    d / 2.0 + levels * (rel * d_exact).max(abs) + (rel * lo.abs()).max(abs) + 2f64.powi(-20) * (amax + levels * d)
}

fn squared_error(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum()
}

/// Quantizes `x` plainly and with the clip search, checks the error bound
/// of the plain result and that the clip search is no worse.
fn check_quantize<const BITS: u8, const GROUP: usize>(x: &[f32]) -> Result<(), TestCaseError> {
    let mut block = vec![0u8; Native::<BITS, GROUP>::BLOCK_BYTES];
    let mut y = vec![0.0f32; GROUP];
    Native::<BITS, GROUP>::quantize(x, &mut block);
    Native::<BITS, GROUP>::dequantize(&block, &mut y);
    let (d, _) = Native::<BITS, GROUP>::affine(&block, 0);
    let bound = error_bound(x, d, BITS as u32);
    for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
        let err = (a as f64 - b as f64).abs();
        prop_assert!(
            err <= bound,
            "q{BITS}g{GROUP}: weight {i}: {a} -> {b}, error {err:e} > bound {bound:e} (d = {d:e})"
        );
    }
    let plain = squared_error(x, &y);

    let mut clipped = vec![0u8; Native::<BITS, GROUP>::BLOCK_BYTES];
    Native::<BITS, GROUP>::quantize_with(x, &mut clipped, NativeQuantizer { clip_search: true });
    Native::<BITS, GROUP>::dequantize(&clipped, &mut y);
    let clip = squared_error(x, &y);
    // The quantizer compares errors summed in f32; allow that rounding.
    prop_assert!(clip <= plain * (1.0 + 1e-5) + 1e-30, "q{BITS}g{GROUP}: clip search error {clip:e} > plain {plain:e}");
    Ok(())
}

/// Weights of one group: uniform, Gaussian-like or sparse, at scales from
/// f16 subnormals to the top of the f16 range, with an offset.
fn weights(group: usize) -> impl Strategy<Value = Vec<f32>> {
    let values = prop_oneof![
        prop::collection::vec(-1.0f32..1.0, group),
        prop::collection::vec(
            (-1.0f32..1.0, -1.0f32..1.0, -1.0f32..1.0).prop_map(|(a, b, c)| (a + b + c) / 3.0),
            group
        ),
        prop::collection::vec(prop_oneof![3 => Just(0.0f32), 1 => -1.0f32..1.0], group),
    ];
    (values, -9i32..5, -1.0f32..1.0).prop_map(|(v, exponent, offset)| {
        let scale = 10f32.powi(exponent);
        v.iter().map(|&w| ((w + offset) * scale).clamp(-F16_MAX, F16_MAX)).collect()
    })
}

/// Groups that exercise the edges: zeros, constants, a lone spike, the f16
/// extremes, f16 subnormals.
fn edge_groups(group: usize) -> Vec<Vec<f32>> {
    let mut spike = vec![0.0f32; group];
    spike[group / 3] = 1234.5;
    let mut extremes = vec![0.0f32; group];
    extremes[0] = -F16_MAX;
    extremes[group - 1] = F16_MAX;
    let ramp: Vec<f32> = (0..group).map(|i| i as f32 * 1e-7).collect();
    let halves: Vec<f32> = (0..group).map(|i| i as f32 / 2.0 - 3.0).collect();
    vec![vec![0.0; group], vec![-0.75; group], vec![42.0; group], spike, extremes, ramp, halves]
}

macro_rules! native_tests {
    ($($module:ident: $bits:literal, $group:literal;)*) => {
        $(
            mod $module {
                use super::*;
                type F = Native<$bits, $group>;

                #[test]
                fn edge_groups_quantize_within_bound() {
                    for x in edge_groups($group) {
                        check_quantize::<$bits, $group>(&x).unwrap();
                    }
                }

                #[test]
                fn geometry() {
                    assert_eq!(F::BLOCK_BYTES, 4 + $group * $bits / 8);
                    assert_eq!(F::FORMAT.info().block_bytes, F::BLOCK_BYTES);
                    assert_eq!(F::FORMAT.to_string(), concat!("q", $bits, "g", $group));
                }

                proptest! {
                    #![proptest_config(ProptestConfig::with_cases(128))]

                    #[test]
                    fn split_join_round_trip(bytes in prop::collection::vec(any::<u8>(), 300)) {
                        check_split_join::<F>(&bytes)?;
                    }

                    #[test]
                    fn affine_matches_dequantize(bytes in prop::collection::vec(any::<u8>(), 140)) {
                        check_affine::<F>(&bytes)?;
                    }

                    #[test]
                    fn quantize_within_bound_and_clip_search_no_worse(x in weights($group)) {
                        check_quantize::<$bits, $group>(&x)?;
                    }
                }
            }
        )*
    };
}

native_tests! {
    q2g16: 2, 16; q2g32: 2, 32; q2g64: 2, 64; q2g128: 2, 128;
    q3g16: 3, 16; q3g32: 3, 32; q3g64: 3, 64; q3g128: 3, 128;
    q4g16: 4, 16; q4g32: 4, 32; q4g64: 4, 64; q4g128: 4, 128;
    q8g16: 8, 16; q8g32: 8, 32; q8g64: 8, 64; q8g128: 8, 128;
}

/// The aliases name the formats they say.
#[test]
fn aliases() {
    assert_eq!(Q2G16::FORMAT.to_string(), "q2g16");
    assert_eq!(Q3G64::FORMAT.to_string(), "q3g64");
    assert_eq!(Q4G32::FORMAT.to_string(), "q4g32");
    assert_eq!(Q8G128::FORMAT.to_string(), "q8g128");
}
