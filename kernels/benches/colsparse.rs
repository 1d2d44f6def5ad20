//! Column-sparse GEMV against dense, by activation density.
//!
//! A down projection of an 8B-class model: 4096 rows x 14336 input columns,
//! in Q4_0 and q4g32. For activation densities of 100 %, 50 % and 10 %
//! (zeros at random positions), it times the column-sparse variants
//! (`*.r1.c1.colsparse.f32.{scalar,avx2,avx512}`) and the fastest dense
//! one-column variant of the format (picked by a short pre-run among the
//! dense variants of the best ISAs; `ASDSL_BENCH_DENSE=<name>` names one
//! instead). Dense does not depend on the density; it is timed at each one
//! for a side-by-side reading.
//!
//! Weights are DRAM-resident as in decode: each call uses the next of
//! enough packed copies to exceed 1 GiB (the last-level cache of the machine
//! this was written on is 260 MiB). Threads: `ASDSL_BENCH_THREADS` (default
//! 1). Criterion reports the time per call; `Throughput::Bytes` is the size
//! of the whole packed matrix, so its GB/s is dense-equivalent.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use asdsl_kernels::cpu;
use asdsl_kernels::formats::Format;
use asdsl_kernels::input::Input;
use asdsl_kernels::pack::quantize_matrix;
use asdsl_kernels::registry::VARIANTS;
use asdsl_kernels::run::{Gemv, Partition, Threads};
use asdsl_kernels::variant::{Activation, Isa, Sparsity, Variant};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 4096;
const COLS: usize = 14336;
/// Bytes of packed copies to rotate over.
const ROTATION_BYTES: usize = 1100 << 20;
const DENSITIES: [f64; 3] = [1.0, 0.5, 0.1];

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

/// Copies of one variant's packed matrix, called in rotation.
struct Rotation {
    copies: Vec<Gemv>,
    next: Cell<usize>,
}

impl Rotation {
    fn new(variant: &'static Variant, blocks: &[u8]) -> Rotation {
        let first = Gemv::from_blocks(variant, ROWS, COLS, blocks).expect("packing");
        let n = ROTATION_BYTES.div_ceil(first.matrix().weight_bytes()).max(2);
        let mut copies = Vec::with_capacity(n);
        copies.push(first);
        while copies.len() < n {
            copies.push(copies[0].clone());
        }
        Rotation { copies, next: Cell::new(0) }
    }

    fn bytes(&self) -> usize {
        self.copies[0].matrix().weight_bytes()
    }

    /// Runs `iters` calls, each on the next copy; returns the elapsed time.
    fn run(&self, iters: u64, input: &Input, out: &mut [f32], threads: &Threads) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            let i = self.next.get();
            self.next.set((i + 1) % self.copies.len());
            self.copies[i].run(input, out, threads, Partition::default()).expect("run");
            black_box(&mut *out);
        }
        start.elapsed()
    }
}

fn input_for(x: &[f32], q8: bool) -> Input {
    let mut input = Input::new();
    input.prepare(x, COLS, 1, q8).expect("input");
    input
}

fn allowed(v: &Variant) -> bool {
    cpu::available(v.isa).unwrap_or(false)
}

/// The fastest dense one-column variant of `format` (best ISAs only), by a
/// short DRAM-resident pre-run at full density.
fn best_dense(format: Format, blocks: &[u8], x: &[f32], threads: &Threads) -> &'static Variant {
    if let Ok(name) = std::env::var("ASDSL_BENCH_DENSE") {
        return asdsl_kernels::registry::find(&name).expect("ASDSL_BENCH_DENSE names no variant");
    }
    // For each activation path, the best ISA that runs it here.
    let best_isa = |a: Activation| {
        [Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2, Isa::Scalar]
            .into_iter()
            .find(|&i| cpu::available(i).unwrap_or(false) && (i != Isa::Avx512Vnni || a == Activation::Q8))
    };
    let candidates: Vec<&'static Variant> = VARIANTS
        .iter()
        .filter(|v| v.format == format && v.sparsity == Sparsity::Dense && v.columns == 1)
        .filter(|v| best_isa(v.activation) == Some(v.isa))
        .collect();
    let mut out = vec![0.0f32; ROWS];
    let mut best: Option<(&'static Variant, Duration)> = None;
    for v in candidates {
        let rotation = Rotation::new(v, blocks);
        let input = input_for(x, v.activation == Activation::Q8);
        rotation.run(rotation.copies.len() as u64, &input, &mut out, threads);
        let mut times: Vec<Duration> = (0..15).map(|_| rotation.run(4, &input, &mut out, threads)).collect();
        times.sort();
        let median = times[times.len() / 2] / 4;
        eprintln!("dense pre-run: {} {:?}", v.name, median);
        if best.is_none_or(|(_, t)| median < t) {
            best = Some((v, median));
        }
    }
    best.expect("no dense variant runs here").0
}

fn bench(c: &mut Criterion) {
    let threads: usize = std::env::var("ASDSL_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let pool = Threads::new(threads).expect("threads");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let weights: Vec<f32> = (0..ROWS * COLS).map(|_| rng.normal() * 0.02).collect();
    let xs: Vec<(f64, Vec<f32>)> = DENSITIES
        .iter()
        .map(|&d| (d, (0..COLS).map(|_| if rng.unit() < d { rng.normal() } else { 0.0 }).collect()))
        .collect();
    for format in [Format::Q4_0, "q4g32".parse().expect("format")] {
        let blocks = quantize_matrix(format, ROWS, COLS, &weights).expect("quantize");
        let dense = best_dense(format, &blocks, &xs[0].1, &pool);
        let mut variants: Vec<&'static Variant> = VARIANTS
            .iter()
            .filter(|v| v.format == format && v.sparsity == Sparsity::ColumnSparse && allowed(v))
            .collect();
        variants.push(dense);
        let mut group = c.benchmark_group(format!("colsparse/{format}/{ROWS}x{COLS}/t{threads}"));
        group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        for v in variants {
            let rotation = Rotation::new(v, &blocks);
            group.throughput(Throughput::Bytes(rotation.bytes() as u64));
            let mut out = vec![0.0f32; ROWS];
            for (density, x) in &xs {
                let input = input_for(x, v.activation == Activation::Q8);
                let id = BenchmarkId::new(v.name, format!("density{:.0}", density * 100.0));
                group.bench_function(id, |b| b.iter_custom(|iters| rotation.run(iters, &input, &mut out, &pool)));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
