//! TEMPORARY scratch test (colsparse SIMD vs reference on big shapes). Deleted before hand-off.
use asdsl_kernels::cpu;
use asdsl_kernels::formats::{Format, dequantize_blocks};
use asdsl_kernels::input::Input;
use asdsl_kernels::pack::quantize_matrix;
use asdsl_kernels::registry::VARIANTS;
use asdsl_kernels::run::{Gemv, Partition, Schedule, Threads};
use asdsl_kernels::variant::Sparsity;
use asdsl_kernels::{KernelError, with_format};

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

#[test]
fn big_shapes() {
    let mut rng = Rng(12345);
    let mut worst = 0.0f64;
    for format in Format::all() {
        let block = format.info().block_len;
        for &(rows, cols) in &[(4200usize, 512usize), (130, 1024), (2049, 256), (64, 768)] {
            let cols = cols.div_ceil(block) * block;
            let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.1).collect();
            let blocks = quantize_matrix(format, rows, cols, &w).unwrap();
            let mut wd = vec![0.0f32; rows * cols];
            with_format!(format, F => { dequantize_blocks::<F>(&blocks, &mut wd); Ok::<(), KernelError>(()) }).unwrap();
            for density in [0.0, 0.03, 0.3, 1.0] {
                let x: Vec<f32> = (0..cols).map(|_| if rng.unit() < density { rng.normal() } else { 0.0 }).collect();
                let mut input = Input::new();
                input.prepare(&x, cols, 1, false).unwrap();
                for v in VARIANTS.iter().filter(|v| {
                    v.format == format && v.sparsity == Sparsity::ColumnSparse && cpu::available(v.isa).unwrap()
                }) {
                    let g = Gemv::from_blocks(v, rows, cols, &blocks).unwrap();
                    for (threads, part) in [
                        (1, Partition::default()),
                        (2, Partition { rows_per_chunk: 64, schedule: Schedule::Dynamic }),
                        (2, Partition { rows_per_chunk: 300, schedule: Schedule::Static }),
                        (3, Partition { rows_per_chunk: 1, schedule: Schedule::Dynamic }),
                    ] {
                        let pool = Threads::new(threads).unwrap();
                        let mut out = vec![f32::NAN; rows];
                        g.run(&input, &mut out, &pool, part).unwrap();
                        for r in 0..rows {
                            let (mut exact, mut mag) = (0.0f64, 0.0f64);
                            for k in 0..cols {
                                exact += wd[r * cols + k] as f64 * x[k] as f64;
                                mag += (wd[r * cols + k] as f64 * x[k] as f64).abs();
                            }
                            let err = (out[r] as f64 - exact).abs();
                            let rel = if mag > 0.0 { err / mag } else { err };
                            worst = worst.max(rel);
                            assert!(
                                out[r].is_finite() && err <= 1e-5 * mag + 1e-30,
                                "{} rows {rows} cols {cols} density {density} threads {threads} row {r}: got {} want {exact} (mag {mag})",
                                v.name,
                                out[r]
                            );
                        }
                    }
                }
            }
        }
    }
    eprintln!("worst relative error {worst:e}");
}
