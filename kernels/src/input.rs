//! Prepared activations: the input of a GEMV, padded and (for the q8 path)
//! quantized once, then shared by every matrix that multiplies it (for
//! example the q, k and v projections of one token).
//!
//! int8 activations are quantized per 32 values as ggml's Q8_0 does
//! (`d = max|x| / 127`, `q = round(x / d)`), and their sums are kept so that
//! a weight format's min (or offset) term costs one multiply per sub-block:
//! `sum_i (s*c_i + m) * d*q_i = s*d * sum_i c_i*q_i + m * (d * sum_i q_i)`.
//! The q8 path therefore computes exactly `W x̂` where `x̂ = d*q` is the
//! dequantized activation; its difference from `W x` is bounded by
//! `sum_b d_b/2 * sum_{i in b} |w_i|`.

use crate::error::KernelError;

/// Extra zeroed floats (and bytes) after each column, so that SIMD kernels
/// may load whole vectors past the last sub-block.
const TAIL: usize = 128;

/// Activations prepared for the kernels. Reuse one `Input` across calls: it
/// keeps its buffers, so preparing allocates nothing once it has grown.
#[derive(Clone, Debug, Default)]
pub struct Input {
    k: usize,
    columns: usize,
    /// Floats (and int8 values) per column, a multiple of 256 plus [`TAIL`].
    stride: usize,
    /// Sub-blocks (of 32) per column, rounded up, plus a tail.
    sub_stride: usize,
    has_q8: bool,
    x: Vec<f32>,
    sum32: Vec<f32>,
    sum16: Vec<f32>,
    q: Vec<i8>,
    d: Vec<f32>,
    qsum32: Vec<f32>,
    qsum16: Vec<f32>,
    isum32: Vec<i32>,
    isum16: Vec<i32>,
}

impl Input {
    /// An empty input; call [`prepare`](Self::prepare).
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepares `columns` input columns of `k` floats each (`x[c * k + i]`),
    /// with int8 activations if `q8` is set.
    pub fn prepare(&mut self, x: &[f32], k: usize, columns: usize, q8: bool) -> Result<(), KernelError> {
        if k == 0 || columns == 0 {
            return Err(KernelError::Shape(format!("input of {columns} columns of {k} values")));
        }
        if x.len() != k * columns {
            return Err(KernelError::Shape(format!("input has {} values, expected {columns} columns of {k}", x.len())));
        }
        self.k = k;
        self.columns = columns;
        self.stride = k.div_ceil(256) * 256 + TAIL;
        self.sub_stride = self.stride / 32;
        self.has_q8 = q8;
        let stride = self.stride;
        let subs = self.sub_stride;
        resize_zeroed(&mut self.x, columns * stride);
        resize_zeroed(&mut self.sum32, columns * subs);
        resize_zeroed(&mut self.sum16, columns * subs * 2);
        for c in 0..columns {
            let src = &x[c * k..(c + 1) * k];
            let dst = &mut self.x[c * stride..(c + 1) * stride];
            dst[..k].copy_from_slice(src);
            dst[k..].fill(0.0);
            for (s, v) in dst.chunks_exact(16).enumerate().take(subs * 2) {
                self.sum16[c * subs * 2 + s] = v.iter().sum();
            }
            for s in 0..subs {
                self.sum32[c * subs + s] = self.sum16[c * subs * 2 + 2 * s] + self.sum16[c * subs * 2 + 2 * s + 1];
            }
        }
        if q8 {
            resize_zeroed(&mut self.q, columns * stride);
            resize_zeroed(&mut self.d, columns * subs);
            resize_zeroed(&mut self.qsum32, columns * subs);
            resize_zeroed(&mut self.qsum16, columns * subs * 2);
            resize_zeroed(&mut self.isum32, columns * subs);
            resize_zeroed(&mut self.isum16, columns * subs * 2);
            for c in 0..columns {
                for s in 0..subs {
                    let xs = &self.x[c * stride + 32 * s..c * stride + 32 * s + 32];
                    let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                    let d = amax / 127.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    let q = &mut self.q[c * stride + 32 * s..c * stride + 32 * s + 32];
                    let (mut lo, mut hi) = (0i32, 0i32);
                    for (i, (q, &v)) in q.iter_mut().zip(xs).enumerate() {
                        // Non-finite inputs become 0, as a NaN cannot be an int8.
                        let r = if v.is_finite() { (v * id).round().clamp(-127.0, 127.0) } else { 0.0 };
                        *q = r as i8;
                        if i < 16 {
                            lo += r as i32;
                        } else {
                            hi += r as i32;
                        }
                    }
                    self.d[c * subs + s] = d;
                    self.qsum16[c * subs * 2 + 2 * s] = d * lo as f32;
                    self.qsum16[c * subs * 2 + 2 * s + 1] = d * hi as f32;
                    self.qsum32[c * subs + s] = d * (lo + hi) as f32;
                    self.isum16[c * subs * 2 + 2 * s] = lo;
                    self.isum16[c * subs * 2 + 2 * s + 1] = hi;
                    self.isum32[c * subs + s] = lo + hi;
                }
            }
        }
        Ok(())
    }

    /// Values per column.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Whether int8 activations were prepared.
    pub fn has_q8(&self) -> bool {
        self.has_q8
    }

    /// Column `c`, zero-padded (f32).
    pub fn x(&self, c: usize) -> &[f32] {
        &self.x[c * self.stride..(c + 1) * self.stride]
    }

    /// The int8 activations of column `c`, zero-padded.
    pub fn q(&self, c: usize) -> &[i8] {
        &self.q[c * self.stride..(c + 1) * self.stride]
    }

    /// The int8 scale of each 32-value sub-block of column `c`.
    pub fn d(&self, c: usize) -> &[f32] {
        &self.d[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 32-value sub-block of column `c`: the sum of the dequantized int8 activations.
    pub fn qsum32(&self, c: usize) -> &[f32] {
        &self.qsum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the dequantized int8 activations.
    pub fn qsum16(&self, c: usize) -> &[f32] {
        &self.qsum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }

    /// Per 32-value sub-block of column `c`: the sum of the int8 activations.
    pub fn isum32(&self, c: usize) -> &[i32] {
        &self.isum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the int8 activations.
    pub fn isum16(&self, c: usize) -> &[i32] {
        &self.isum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }

    /// Per 32-value sub-block of column `c`: the sum of the f32 activations.
    pub fn sum32(&self, c: usize) -> &[f32] {
        &self.sum32[c * self.sub_stride..(c + 1) * self.sub_stride]
    }

    /// Per 16-value half sub-block of column `c`: the sum of the f32 activations.
    pub fn sum16(&self, c: usize) -> &[f32] {
        &self.sum16[2 * c * self.sub_stride..2 * (c + 1) * self.sub_stride]
    }

    /// The activations the q8 path actually multiplies: `d * q` (f32).
    pub fn dequantized(&self, c: usize) -> Vec<f32> {
        let (q, d) = (self.q(c), self.d(c));
        (0..self.k).map(|i| d[i / 32] * q[i] as f32).collect()
    }
}

fn resize_zeroed<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}
