//! Every registry variant against its format's scalar reference GEMV.
//!
//! For each variant the CPU allows (under `ASDSL_FORCE_ISA` too), proptest
//! draws shapes whose rows and columns are not multiples of the tile rows or
//! the group, one to six input columns, and activations with 0 % to 100 %
//! zeros; weights are either quantized from random floats or random block
//! bytes (every code pattern, finite f16 scales). Tolerances:
//!
//! - **f32 path**: `|y - y_ref| <= 1e-5 * sum_k |w_k x_k|` — float rounding only.
//! - **q8 path**: the kernel multiplies the int8-dequantized activation
//!   `x̂ = d q` (per 32 values, or per 256 for the K-quants: the format's
//!   `Int8Block`) exactly up to float rounding. Symmetric formats (Q4_0,
//!   Q5_0, Q8_0, Q6_K) subtract their code offset in integers, so
//!   `|y - W x̂| <= 1e-5 * M` with `M = sum_k |w_k x̂_k|`; formats with a
//!   min form `scale * sum(code * x̂) + min * sum(x̂)` (as llama.cpp does),
//!   whose two terms may cancel, so there `M = sum_k (|scale_k code_k| +
//!   |min_k|) |x̂_k|`, the sum of the absolute products the kernel forms.
//!   From that, the bound against the true input, derived from the
//!   activation quantization (`|x_k - x̂_k| <= d_b / 2` in block `b`):
//!   `|y - W x| <= 1e-5 * M + sum_b d_b / 2 * sum_{k in b} |w_k|` (checked).
//!
//! Variants whose ISA is not allowed must be refused, never run.
//!
//! Under Miri (`scripts/miri.sh`) the CPU reports no features, so the scalar
//! variants run, on one drawn case each and smaller matrices: Miri checks
//! their unsafe code (packing, output writes, the thread team) for undefined
//! behaviour.

use asdsl_kernels::cpu;
use asdsl_kernels::formats::{BlockFormat, Format, dequantize_blocks};
use asdsl_kernels::input::Input;
use asdsl_kernels::pack::{Layout, quantize_matrix};
use asdsl_kernels::registry::VARIANTS;
use asdsl_kernels::run::{Gemv, Partition, Schedule, Threads};
use asdsl_kernels::variant::{Activation, Sparsity, Variant};
use asdsl_kernels::{KernelError, with_format};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// One drawn problem.
#[derive(Clone, Debug)]
struct Case {
    rows: usize,
    cols: usize,
    columns: usize,
    random_bytes: bool,
    zero_fraction: f64,
    seed: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn case_strategy(format: Format, sparse: bool) -> impl Strategy<Value = Case> {
    let block = format.info().block_len;
    // Miri interprets every instruction: small matrices there.
    let (max_rows, max_cols, max_columns) = if cfg!(miri) { (9, 80, 3) } else { (37, 300, 6) };
    // GGUF rows are whole blocks; native rows may end mid-group.
    let cols = if format.is_gguf() {
        let max_blocks = if cfg!(miri) { 2 } else { (640 / block).max(2) };
        (1usize..=max_blocks).prop_map(move |b| b * block).boxed()
    } else {
        (1usize..=max_cols).boxed()
    };
    let zeros = if sparse {
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0].boxed()
    } else {
        prop_oneof![Just(0.0), 0.0f64..0.5].boxed()
    };
    let columns = if sparse { Just(1usize).boxed() } else { (1usize..=max_columns).boxed() };
    (1usize..=max_rows, cols, columns, any::<bool>(), zeros, any::<u64>()).prop_map(
        |(rows, cols, columns, random_bytes, zero_fraction, seed)| Case {
            rows,
            cols,
            columns,
            random_bytes,
            zero_fraction,
            seed: seed | 1,
        },
    )
}

/// Byte offsets of the f16 fields (scales, mins) of a block.
fn f16_fields(format: Format) -> &'static [usize] {
    match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => &[0],
        Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K | Format::Native(_) => &[0, 2],
        Format::Q6K => &[208],
    }
}

/// Weights as format blocks (rows padded to whole blocks) and the padded row length.
fn weights(format: Format, case: &Case, rng: &mut Rng) -> (Vec<u8>, usize) {
    let info = format.info();
    let padded = case.cols.div_ceil(info.block_len) * info.block_len;
    if case.random_bytes {
        let mut bytes: Vec<u8> =
            (0..case.rows * padded / info.block_len * info.block_bytes).map(|_| rng.next() as u8).collect();
        for block in bytes.chunks_exact_mut(info.block_bytes) {
            for &at in f16_fields(format) {
                let v = half::f16::from_f32((rng.unit() as f32 * 2.0 - 1.0) * 0.05);
                block[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        // Native rows ending mid-group: the padding must hold zero weights,
        // as the packer would write them from f32 input.
        if padded != case.cols {
            let w: Vec<f32> = dequantize(format, &bytes, case.rows, padded)
                .chunks_exact(padded)
                .flat_map(|r| {
                    let mut r = r.to_vec();
                    r[case.cols..].fill(0.0);
                    r
                })
                .collect();
            bytes = quantize_matrix(format, case.rows, padded, &w).unwrap();
        }
        (bytes, padded)
    } else {
        let scale = 10f32.powf(rng.unit() as f32 * 3.0 - 2.0);
        let w: Vec<f32> = (0..case.rows * case.cols).map(|_| rng.normal() * scale).collect();
        (quantize_matrix(format, case.rows, case.cols, &w).unwrap(), padded)
    }
}

fn dequantize(format: Format, bytes: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    with_format!(format, F => {
        dequantize_blocks::<F>(bytes, &mut out);
        Ok::<(), KernelError>(())
    })
    .unwrap();
    out
}

/// Formats whose weights are `scale * (code - offset)`.
fn symmetric(format: Format) -> bool {
    matches!(format, Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Q6K)
}

/// Per weight: `|scale * code| + |min|` of the affine decomposition.
fn affine_magnitudes(format: Format, bytes: &[u8]) -> Vec<f32> {
    with_format!(format, F => {
        let mut out = Vec::with_capacity(bytes.len() / F::BLOCK_BYTES * F::BLOCK_LEN);
        let (mut header, mut codes) = (vec![0u8; F::HEADER_BYTES], vec![0u8; F::BLOCK_LEN]);
        for block in bytes.chunks_exact(F::BLOCK_BYTES) {
            F::split(block, &mut header, &mut codes);
            for (i, &c) in codes.iter().enumerate() {
                let (s, m) = F::affine(&header, i / F::SCALE_LEN);
                out.push((s * c as f32).abs() + m.abs());
            }
        }
        Ok::<Vec<f32>, KernelError>(out)
    })
    .unwrap()
}

fn check(variant: &'static Variant, case: &Case) -> Result<(), TestCaseError> {
    let mut rng = Rng(case.seed);
    let format = variant.format;
    let (blocks, padded) = weights(format, case, &mut rng);
    let w = dequantize(format, &blocks, case.rows, padded);
    let affine_abs = affine_magnitudes(format, &blocks);
    let x: Vec<f32> = (0..case.cols * case.columns)
        .map(|_| if rng.unit() < case.zero_fraction { 0.0 } else { rng.normal() })
        .collect();
    let gemv = match Gemv::from_blocks(variant, case.rows, padded, &blocks) {
        Ok(g) => g,
        Err(e) => return Err(TestCaseError::fail(format!("{}: packing failed: {e}", variant.name))),
    };
    // A native matrix packed from padded blocks takes padded inputs.
    let mut xp = vec![0.0f32; padded * case.columns];
    for c in 0..case.columns {
        xp[c * padded..c * padded + case.cols].copy_from_slice(&x[c * case.cols..(c + 1) * case.cols]);
    }
    let q8 = variant.activation == Activation::Q8;
    let mut input = Input::new();
    input.prepare(&xp, padded, case.columns, q8).unwrap();
    let mut out = vec![f32::NAN; case.rows * case.columns];
    let threads = Threads::new(1).unwrap();
    gemv.run(&input, &mut out, &threads, Partition::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for c in 0..case.columns {
        let xc = &xp[c * padded..(c + 1) * padded];
        let xhat = if q8 { input.int8(format.int8_block()).dequantized(c) } else { xc.to_vec() };
        let d = if q8 { input.int8(format.int8_block()).d(c).to_vec() } else { vec![] };
        for r in 0..case.rows {
            let row = &w[r * padded..(r + 1) * padded];
            let (mut exact, mut hat, mut mag, mut quant) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for k in 0..padded {
                exact += row[k] as f64 * xc[k] as f64;
                hat += row[k] as f64 * xhat[k] as f64;
                let wk = if q8 && !symmetric(format) { affine_abs[r * padded + k] } else { row[k].abs() };
                mag += wk as f64 * (xhat[k] as f64).abs();
                if q8 {
                    quant += (d[k / 32] as f64 / 2.0) * (row[k] as f64).abs();
                }
            }
            let got = out[c * case.rows + r] as f64;
            let tol = 1e-5 * mag + 1e-30;
            prop_assert!(got.is_finite(), "{} {case:?}: row {r} col {c} is {got}", variant.name);
            prop_assert!(
                (got - hat).abs() <= tol,
                "{} {case:?}: row {r} col {c}: got {got}, reference {hat}, |diff| {} > {tol}",
                variant.name,
                (got - hat).abs()
            );
            if q8 {
                prop_assert!(
                    (got - exact).abs() <= tol + quant,
                    "{} {case:?}: row {r} col {c}: got {got}, exact {exact}, beyond the int8 bound {}",
                    variant.name,
                    tol + quant
                );
            }
        }
    }
    Ok(())
}

fn allowed(variant: &Variant) -> bool {
    cpu::available(variant.isa).unwrap_or(false)
}

/// Runs `cases` proptest cases for every allowed variant that `select` picks.
fn run_variants(select: impl Fn(&Variant) -> bool, cases: u32) {
    let cases = if cfg!(miri) { 1 } else { cases };
    let mut tested = 0;
    for variant in VARIANTS.iter().filter(|v| select(v)) {
        if !allowed(variant) {
            continue;
        }
        let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
        let sparse = variant.sparsity == Sparsity::ColumnSparse;
        if let Err(e) = runner.run(&case_strategy(variant.format, sparse), |case| check(variant, &case)) {
            panic!("{}: {e}", variant.name);
        }
        tested += 1;
    }
    eprintln!("tested {tested} variants");
}

#[test]
fn gguf_variants_match_reference() {
    run_variants(|v| v.format.is_gguf(), 24);
}

/// The 16-row interleaved variants again, with more cases: their tiles pad
/// rows to 16 and their column groups leave remainders.
#[test]
fn interleaved_variants_match_reference() {
    run_variants(|v| Layout::for_variant(v) == Layout::Interleaved, 96);
}

#[test]
fn native_variants_match_reference() {
    run_variants(|v| !v.format.is_gguf(), 12);
}

#[test]
fn every_variant_of_an_allowed_isa_is_tested_and_others_are_refused() {
    let blocks = quantize_matrix(Format::Q4_0, 4, 64, &[0.5; 256]).unwrap();
    for variant in VARIANTS.iter().filter(|v| v.format == Format::Q4_0) {
        let result = Gemv::from_blocks(variant, 4, 64, &blocks);
        if allowed(variant) {
            assert!(result.is_ok(), "{}: {:?}", variant.name, result.err());
        } else {
            let err = result.expect_err("a variant whose ISA is not allowed must be refused");
            assert!(matches!(err, KernelError::IsaUnavailable { .. }), "{}: {err}", variant.name);
        }
    }
}

#[test]
fn threads_and_partitions_give_the_same_result() {
    let (rows, cols) = if cfg!(miri) { (21, 256) } else { (203, 512) };
    let mut rng = Rng(7);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();
    let x: Vec<f32> = (0..cols * 3).map(|_| rng.normal()).collect();
    let blocks = quantize_matrix(Format::Q4K, rows, cols, &w).unwrap();
    for variant in VARIANTS.iter().filter(|v| v.format == Format::Q4K && v.sparsity == Sparsity::Dense && allowed(v)) {
        let gemv = Gemv::from_blocks(variant, rows, cols, &blocks).unwrap();
        let mut input = Input::new();
        input.prepare(&x, cols, 3, gemv.needs_q8()).unwrap();
        let mut expected = vec![0.0; rows * 3];
        gemv.run(&input, &mut expected, &Threads::new(1).unwrap(), Partition::default()).unwrap();
        let (thread_counts, chunkings): (&[usize], &[usize]) =
            if cfg!(miri) { (&[2], &[1, 1000]) } else { (&[2, 3], &[1, 8, 64, 1000]) };
        for &threads in thread_counts {
            let pool = Threads::new(threads).unwrap();
            for schedule in [Schedule::Static, Schedule::Dynamic] {
                for &rows_per_chunk in chunkings {
                    let mut out = vec![0.0; rows * 3];
                    gemv.run(&input, &mut out, &pool, Partition { rows_per_chunk, schedule }).unwrap();
                    assert_eq!(out, expected, "{} threads {threads} {schedule:?} {rows_per_chunk}", variant.name);
                }
            }
        }
    }
}

#[test]
fn bad_calls_are_errors() {
    let variant = VARIANTS.iter().find(|v| v.format == Format::Q8_0 && allowed(v)).unwrap();
    let blocks = quantize_matrix(Format::Q8_0, 3, 64, &[1.0; 192]).unwrap();
    assert!(Gemv::from_blocks(variant, 3, 64, &blocks[1..]).is_err(), "truncated weights");
    assert!(Gemv::from_blocks(variant, 3, 48, &blocks).is_err(), "columns not whole blocks");
    assert!(Gemv::from_blocks(variant, 0, 64, &[]).is_err(), "empty matrix");
    let gemv = Gemv::from_blocks(variant, 3, 64, &blocks).unwrap();
    let mut input = Input::new();
    input.prepare(&[1.0; 32], 32, 1, true).unwrap();
    let mut out = vec![0.0; 3];
    assert!(gemv.run(&input, &mut out, &Threads::new(1).unwrap(), Partition::default()).is_err(), "wrong input length");
    input.prepare(&[1.0; 64], 64, 1, true).unwrap();
    assert!(gemv.run(&input, &mut out[..2], &Threads::new(1).unwrap(), Partition::default()).is_err(), "short output");
    let zero = Partition { rows_per_chunk: 0, schedule: Schedule::Dynamic };
    assert!(gemv.run(&input, &mut out, &Threads::new(1).unwrap(), zero).is_err(), "zero rows per chunk");
    assert!(Threads::new(0).is_err(), "zero threads");
    assert!(Threads::new(70_000).is_err(), "more threads than a job can have pieces");
    assert!(Input::new().prepare(&[1.0; 10], 3, 3, false).is_err(), "input length");
}

#[test]
#[cfg_attr(miri, ignore = "no unsafe code; two minutes under Miri")]
fn registry_names_are_unique_and_parse() {
    let mut names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), VARIANTS.len());
    for v in VARIANTS {
        let key: asdsl_kernels::variant::VariantKey = v.name.parse().unwrap();
        assert_eq!(key, v.key(), "{}", v.name);
        assert_eq!(key.to_string(), v.name);
    }
    assert_eq!(VARIANTS.len(), 1158);
}

#[test]
fn format_geometry_is_supported() {
    for f in Format::all() {
        asdsl_kernels::pack::check_format_geometry(f).unwrap();
        let _ = with_format!(f, F => Ok::<usize, KernelError>(F::BLOCK_LEN));
    }
}

/// Codes at their largest against activations at their largest, in every
/// dense int8 variant of the 4- and 6-bit formats: the AVX2 interleaved
/// kernels add the eight `vpmaddubsw` results of a sub-block of 4-bit codes
/// in 16-bit lanes (at most `8 * 2 * 15 * 128 = 30,720`), so a sum that
/// wrapped would show here. One weight in 32 is -1 and the rest 0.875, so
/// that nearly every code is the format's largest.
#[test]
fn largest_codes_against_largest_activations_do_not_overflow() {
    let (rows, cols) = (35, 512);
    let w: Vec<f32> = (0..rows * cols).map(|i| if i % 32 == 0 { -1.0 } else { 0.875 }).collect();
    let q4g32 = Format::Native(asdsl_kernels::formats::NativeFormat { bits: 4, group: 32 });
    let formats = [Format::Q4_0, Format::Q4_1, Format::Q4K, Format::Q6K, q4g32];
    let mut tested = 0;
    for variant in VARIANTS.iter().filter(|v| {
        formats.contains(&v.format)
            && v.activation == Activation::Q8
            && v.sparsity == Sparsity::Dense
            && v.columns == 1
            && allowed(v)
    }) {
        let format = variant.format;
        let blocks = quantize_matrix(format, rows, cols, &w).unwrap();
        let dense = dequantize(format, &blocks, rows, cols);
        let affine_abs = affine_magnitudes(format, &blocks);
        let gemv = Gemv::from_blocks(variant, rows, cols, &blocks).unwrap();
        let threads = Threads::new(1).unwrap();
        for sign in [1.0f32, -1.0] {
            let x = vec![sign; cols];
            let mut input = Input::new();
            input.prepare(&x, cols, 1, true).unwrap();
            let xhat = input.int8(format.int8_block()).dequantized(0);
            let mut out = vec![f32::NAN; rows];
            gemv.run(&input, &mut out, &threads, Partition::default()).unwrap();
            for (r, &got) in out.iter().enumerate() {
                let (mut hat, mut mag) = (0.0f64, 0.0f64);
                for k in 0..cols {
                    let wk = dense[r * cols + k];
                    hat += wk as f64 * xhat[k] as f64;
                    let m = if symmetric(format) { wk.abs() } else { affine_abs[r * cols + k] };
                    mag += m as f64 * (xhat[k] as f64).abs();
                }
                let tol = 1e-5 * mag;
                assert!(
                    (got as f64 - hat).abs() <= tol,
                    "{} (x = {sign}): row {r}: got {got}, reference {hat}, tolerance {tol}",
                    variant.name
                );
            }
        }
        tested += 1;
    }
    eprintln!("tested {tested} variants");
}
