//! Samples a few variants of one matrix the way the tuner's finals do
//! (interleaved batches of about 4 ms, each variant rotating over its own
//! copies of at least the roofline's DRAM buffer), with a DRAM read probe
//! between rounds, and writes every sample as CSV to stdout:
//! `round,seconds,probe_before_gbs,probe_after_gbs,variant,us_per_call`.
//!
//! `scripts/tuner-states.py` reads it: which statistic of a window of
//! rounds picks the kernel that is fastest when the bandwidth is high (the
//! evidence for `tune::FINAL_KEPT`).
//!
//! ```sh
//! cargo run --release -p asdsl-kernels --example tuner_states -- 16384x3072 2 400 \
//!     q4_0.r1.c1.dense.q8.avx512vnni q4_0.r4.c1.dense.q8.avx512vnni q4_0.r16.c1.dense.q8.avx512vnni > rounds.csv
//! scripts/tuner-states.py rounds.csv --split 48
//! ```

use std::error::Error;
use std::time::Instant;

use asdsl_kernels::input::Input;
use asdsl_kernels::pack::{Layout, PackedMatrix, quantize_matrix};
use asdsl_kernels::roofline::{self, DramOptions, DramProbe};
use asdsl_kernels::run::{Gemv, Partition, Threads};
use asdsl_kernels::tune::SAMPLE_SECS;
use asdsl_kernels::variant::Activation;
use asdsl_kernels::{cpu, registry};

/// One variant with its rotated copies.
struct Candidate {
    name: String,
    copies: Vec<Gemv>,
    input: Input,
    bytes: usize,
    next: usize,
    calls: usize,
}

impl Candidate {
    fn call(&mut self, out: &mut [f32], pool: &Threads) -> Result<(), Box<dyn Error>> {
        let n = self.copies.len();
        self.copies[self.next % n].run(&self.input, out, pool, Partition::default())?;
        self.next += 1;
        Ok(())
    }
}

/// Weights or activations in [-0.5, 0.5) (their values do not change the time).
fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i * 7919 % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: tuner_states ROWSxCOLS THREADS ROUNDS VARIANT... (CSV to stdout)".into());
    }
    let (rows, cols) = roofline::parse_shape(&args[0])?;
    let threads: usize = args[1].parse()?;
    let rounds: usize = args[2].parse()?;
    let pool = Threads::new(threads)?;
    let rotation = roofline::default_dram_bytes(cpu::detect()) as usize;
    let mut cands = Vec::new();
    for name in &args[3..] {
        let variant = registry::find(name).ok_or_else(|| format!("{name}: no such variant"))?;
        let weights = values(rows * cols);
        let blocks = quantize_matrix(variant.format, rows, cols, &weights)?;
        let packed = PackedMatrix::from_blocks(variant.format, rows, cols, &blocks, Layout::for_variant(variant))?;
        let bytes = packed.weight_bytes();
        let n = rotation.div_ceil(bytes).max(2);
        let copies = (0..n).map(|_| Gemv::new(variant, packed.clone())).collect::<Result<Vec<_>, _>>()?;
        let mut input = Input::new();
        input.prepare(&values(cols), cols, 1, variant.activation == Activation::Q8)?;
        cands.push(Candidate { name: name.clone(), copies, input, bytes, next: 0, calls: 1 });
    }
    let mut out = vec![0.0f32; rows];
    let probe = DramProbe::dram(threads, &DramOptions::default())?;
    // Two passes over every variant's copies, then the calls per sample.
    for c in &mut cands {
        for _ in 0..2 * c.copies.len() {
            c.call(&mut out, &pool)?;
        }
        let start = Instant::now();
        c.call(&mut out, &pool)?;
        c.calls = ((SAMPLE_SECS / start.elapsed().as_secs_f64()).ceil() as usize).max(1);
        eprintln!("{}: {} bytes, {} copies, {} calls per sample", c.name, c.bytes, c.copies.len(), c.calls);
    }
    println!("round,seconds,probe_before_gbs,probe_after_gbs,variant,us_per_call");
    let t0 = Instant::now();
    let mut before = probe.measure(1);
    for round in 0..rounds {
        let t = t0.elapsed().as_secs_f64();
        let mut row = Vec::with_capacity(cands.len());
        for c in &mut cands {
            let start = Instant::now();
            for _ in 0..c.calls {
                c.call(&mut out, &pool)?;
            }
            row.push(start.elapsed().as_secs_f64() / c.calls as f64 * 1e6);
        }
        let after = probe.measure(1);
        for (c, us) in cands.iter().zip(row) {
            println!("{round},{t:.3},{before:.2},{after:.2},{},{us:.2}", c.name);
        }
        before = after;
    }
    Ok(())
}
