//! TEMPORARY scratch timing harness. Deleted before hand-off.
//! args: format rows cols rot_mb threads variants(comma) configs(semicolon-separated "ENV=V,ENV=V" or "-") densities(comma)
use asdsl_kernels::formats::Format;
use asdsl_kernels::input::Input;
use asdsl_kernels::pack::quantize_matrix;
use asdsl_kernels::registry::find;
use asdsl_kernels::run::{Gemv, Partition, Threads};
use asdsl_kernels::variant::Activation;
use std::time::Instant;

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

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let format: Format = a[1].parse().unwrap();
    let rows: usize = a[2].parse().unwrap();
    let cols: usize = a[3].parse().unwrap();
    let rot_mb: usize = a[4].parse().unwrap();
    let threads: usize = a[5].parse().unwrap();
    let names: Vec<String> = a[6].split(',').map(|s| format!("{format}.{s}")).collect();
    let configs: Vec<Vec<(String, String)>> = a[7]
        .split(';')
        .map(|c| {
            if c == "-" {
                vec![]
            } else {
                c.split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.to_string())
                    })
                    .collect()
            }
        })
        .collect();
    let densities: Vec<f64> =
        a.get(8).map(|s| s.split(',').map(|d| d.parse().unwrap()).collect()).unwrap_or(vec![1.0, 0.5, 0.1, 0.02]);
    let reps: usize = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(21);
    let mut rng = Rng(99);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.02).collect();
    let blocks = quantize_matrix(format, rows, cols, &w).unwrap();
    drop(w);
    let pool = Threads::new(threads).unwrap();
    let sets: Vec<(String, Vec<Gemv>)> = names
        .iter()
        .map(|name| {
            let v = find(name).unwrap_or_else(|| panic!("no {name}"));
            let g = Gemv::from_blocks(v, rows, cols, &blocks).unwrap();
            let n = ((rot_mb << 20) / g.matrix().weight_bytes()).max(1);
            (name.clone(), (0..n).map(|_| g.clone()).collect())
        })
        .collect();
    let xs: Vec<Vec<f32>> = densities
        .iter()
        .map(|&d| (0..cols).map(|_| if rng.unit() < d { rng.normal() } else { 0.0 }).collect())
        .collect();
    // (variant, config) pairs; dense variants only with the first config
    let mut jobs = Vec::new();
    for (vi, (name, _)) in sets.iter().enumerate() {
        for (ci, _) in configs.iter().enumerate() {
            if name.contains("colsparse") || ci == 0 {
                jobs.push((vi, ci));
            }
        }
    }
    let mut results = vec![vec![0.0f64; densities.len()]; jobs.len()];
    for (di, x) in xs.iter().enumerate() {
        let inputs: Vec<Input> = [false, true]
            .iter()
            .map(|&q8| {
                let mut i = Input::new();
                i.prepare(x, cols, 1, q8).unwrap();
                i
            })
            .collect();
        let mut times = vec![Vec::new(); jobs.len()];
        let mut out = vec![0.0f32; rows];
        let mut idx = vec![0usize; sets.len()];
        for rep in 0..reps + 2 {
            for (j, &(vi, ci)) in jobs.iter().enumerate() {
                for (k, v) in &configs[ci] {
                    unsafe { std::env::set_var(k, v) };
                }
                let (_, copies) = &sets[vi];
                let input = &inputs[(copies[0].variant().activation == Activation::Q8) as usize];
                let n = copies.len();
                let k = n.min(8);
                let t = Instant::now();
                for _ in 0..k {
                    copies[idx[vi] % n].run(input, &mut out, &pool, Partition::default()).unwrap();
                    idx[vi] += 1;
                }
                let el = t.elapsed().as_secs_f64() * 1e3 / k as f64;
                if rep >= 2 {
                    times[j].push(el);
                }
                for (k, _) in &configs[ci] {
                    unsafe { std::env::remove_var(k) };
                }
            }
        }
        for (j, t) in times.iter_mut().enumerate() {
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            results[j][di] = t[t.len() / 2];
        }
    }
    for (j, &(vi, ci)) in jobs.iter().enumerate() {
        let cfg: Vec<String> = configs[ci].iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut line = format!("{:38} {:22}", sets[vi].0, cfg.join(","));
        for (di, d) in densities.iter().enumerate() {
            line += &format!(" d{:>3}% {:7.3}", (d * 100.0) as u32, results[j][di]);
        }
        println!("{line}");
    }
}
