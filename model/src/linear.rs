//! Linear layers (`y = W x + b`): plain f32 matrices, or matrices quantized
//! (at load, or as stored in a GGUF file) and run by the kernel variant that
//! [`Resolver`] chose for them, once, at load.

use asdsl_kernels::input::Input;
use asdsl_kernels::pack::Layout;
use asdsl_kernels::run::{Gemv, Partition};
use asdsl_kernels::variant::Variant;
use asdsl_kernels::{BlockFormat, Format};

use crate::error::{ModelError, Result};
use crate::exec::Exec;
use crate::resolve::Resolver;

/// Rows of the f32 GEMV handed to one thread at a time.
const F32_CHUNK_ROWS: usize = 32;

/// Prompt batches are multiplied with the multi-column variant; this is the
/// column count asked of the [`Resolver`] for them.
pub const BATCH_COLUMNS: usize = 4;

/// A weight matrix with an optional bias.
#[derive(Debug)]
pub struct Linear {
    rows: usize,
    cols: usize,
    kind: Kind,
    bias: Option<Vec<f32>>,
}

#[derive(Debug)]
enum Kind {
    /// Row-major f32 weights.
    F32(Vec<f32>),
    /// Packed quantized weights.
    Quantized(Box<Quantized>),
}

#[derive(Debug)]
struct Quantized {
    /// Runs one input column (decode). When the batch variant packs the same
    /// layout as the decode one, this is packed for the batch variant, whose
    /// single-column remainder path is the one-column tile code, so one copy
    /// of the weights serves both.
    decode: Gemv,
    decode_partition: Partition,
    /// Runs several columns, when its layout differs from `decode`'s.
    batch: Option<Gemv>,
    batch_partition: Partition,
}

impl Linear {
    /// An f32 matrix of `rows x cols` (row-major).
    pub fn f32(rows: usize, cols: usize, weights: Vec<f32>) -> Result<Linear> {
        if weights.len() != rows * cols || rows == 0 || cols == 0 {
            return Err(ModelError::Invalid(format!("{} weights for a {rows}x{cols} matrix", weights.len())));
        }
        Ok(Linear { rows, cols, kind: Kind::F32(weights), bias: None })
    }

    /// Packs `rows` rows of `cols` weights given as blocks of `format` (a
    /// GGUF tensor's bytes, or a quantizer's output: a native format's rows
    /// padded to whole groups) for the variants resolved for this shape.
    pub fn from_blocks(
        rows: usize,
        cols: usize,
        blocks: &[u8],
        format: Format,
        resolver: &Resolver<'_>,
    ) -> Result<Linear> {
        Linear::resolved(rows, cols, format, resolver, |variant| Ok(Gemv::from_blocks(variant, rows, cols, blocks)?))
    }

    /// Resolves the decode and batch variants and packs with `pack`, once
    /// when both read the same layout.
    fn resolved(
        rows: usize,
        cols: usize,
        format: Format,
        resolver: &Resolver<'_>,
        pack: impl Fn(&'static Variant) -> Result<Gemv>,
    ) -> Result<Linear> {
        let (decode_variant, decode_partition) = resolver.resolve(format, rows, cols, 1)?;
        let (batch_variant, batch_partition) = resolver.resolve(format, rows, cols, BATCH_COLUMNS)?;
        let quantized = if Layout::for_variant(decode_variant) == Layout::for_variant(batch_variant) {
            Quantized { decode: pack(batch_variant)?, decode_partition, batch: None, batch_partition }
        } else {
            Quantized {
                decode: pack(decode_variant)?,
                decode_partition,
                batch: Some(pack(batch_variant)?),
                batch_partition,
            }
        };
        Ok(Linear { rows, cols, kind: Kind::Quantized(Box::new(quantized)), bias: None })
    }

    /// Adds a bias of `rows` values.
    pub fn with_bias(mut self, bias: Vec<f32>) -> Result<Linear> {
        if bias.len() != self.rows {
            return Err(ModelError::Invalid(format!("bias of {} for {} rows", bias.len(), self.rows)));
        }
        self.bias = Some(bias);
        Ok(self)
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns (the length of an input vector).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the input must be prepared with int8 activations.
    pub fn needs_q8(&self) -> bool {
        match &self.kind {
            Kind::F32(_) => false,
            Kind::Quantized(q) => q.decode.needs_q8() || q.batch.as_ref().is_some_and(Gemv::needs_q8),
        }
    }

    /// The weight format (`None` for f32).
    pub fn format(&self) -> Option<Format> {
        match &self.kind {
            Kind::F32(_) => None,
            Kind::Quantized(q) => Some(q.decode.variant().format),
        }
    }

    /// The variant names this matrix runs with (decode, then batch if different).
    pub fn variant_names(&self) -> Vec<&'static str> {
        match &self.kind {
            Kind::F32(_) => vec!["f32"],
            Kind::Quantized(q) => {
                std::iter::once(q.decode.variant().name).chain(q.batch.as_ref().map(|g| g.variant().name)).collect()
            }
        }
    }

    /// Bytes of weights read by one product.
    pub fn weight_bytes(&self) -> usize {
        match &self.kind {
            Kind::F32(w) => w.len() * 4,
            Kind::Quantized(q) => q.decode.matrix().weight_bytes(),
        }
    }

    /// `out[c * rows + r] = sum_k W[r][k] x_c[k] + b[r]` for every column of
    /// `input`. `out` holds at least `columns * rows` floats.
    pub fn forward(&self, input: &Input, out: &mut [f32], exec: &Exec) -> Result<()> {
        let columns = input.columns();
        let have = out.len();
        let out = out
            .get_mut(..columns * self.rows)
            .ok_or_else(|| ModelError::Invalid(format!("output of {have} for {columns}x{} values", self.rows)))?;
        match &self.kind {
            Kind::Quantized(q) => match (&q.batch, columns > 1) {
                (Some(batch), true) => batch.run(input, out, exec.threads(), q.batch_partition)?,
                (_, true) => q.decode.run(input, out, exec.threads(), q.batch_partition)?,
                (_, false) => q.decode.run(input, out, exec.threads(), q.decode_partition)?,
            },
            Kind::F32(w) => f32_gemv(w, self.rows, self.cols, input, out, exec)?,
        }
        if let Some(bias) = &self.bias {
            for col in out.chunks_exact_mut(self.rows) {
                for (o, b) in col.iter_mut().zip(bias) {
                    *o += b;
                }
            }
        }
        Ok(())
    }
}

/// The f32 product: rows in chunks over the threads; for several columns,
/// each weight row is used for every column while it is in L1.
fn f32_gemv(w: &[f32], rows: usize, cols: usize, input: &Input, out: &mut [f32], exec: &Exec) -> Result<()> {
    if input.k() != cols {
        return Err(ModelError::Invalid(format!("input of {} values for a matrix of {cols} columns", input.k())));
    }
    let columns = input.columns();
    if columns == 1 {
        let x = &input.x(0)[..cols];
        exec.for_each_chunk(out, F32_CHUNK_ROWS, |chunk, o| {
            let r0 = chunk * F32_CHUNK_ROWS;
            for (i, o) in o.iter_mut().enumerate() {
                let r = r0 + i;
                *o = dot(&w[r * cols..(r + 1) * cols], x);
            }
        });
        return Ok(());
    }
    // Row-major scratch (row r, column c at r * columns + c), then transposed
    // into the kernels' column-major output. Prompt batches only.
    let mut scratch = vec![0.0f32; rows * columns];
    exec.for_each_chunk(&mut scratch, F32_CHUNK_ROWS * columns, |chunk, o| {
        let r0 = chunk * F32_CHUNK_ROWS;
        for (i, o) in o.chunks_exact_mut(columns).enumerate() {
            let r = r0 + i;
            let wr = &w[r * cols..(r + 1) * cols];
            for (c, o) in o.iter_mut().enumerate() {
                *o = dot(wr, &input.x(c)[..cols]);
            }
        }
    });
    for r in 0..rows {
        for c in 0..columns {
            out[c * rows + r] = scratch[r * columns + c];
        }
    }
    Ok(())
}

/// A dot product with 16 independent accumulators (vectorizes without
/// `-ffast-math`-style reassociation of one accumulator).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with::<false>(a, b)
}

/// `a * b + c`, fused when `FMA` (only where the CPU has FMA: it is a
/// library call otherwise).
#[inline(always)]
pub(crate) fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// [`dot`] with fused multiply-adds when `FMA`, for callers compiled with
/// FMA enabled (the attention loops).
#[inline(always)]
pub(crate) fn dot_with<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let mut tail = 0.0;
    for (x, y) in ac.remainder().iter().zip(bc.remainder()) {
        tail = fma::<FMA>(*x, *y, tail);
    }
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            acc[i] = fma::<FMA>(x[i], y[i], acc[i]);
        }
    }
    let mut s8 = [0.0f32; 8];
    for i in 0..8 {
        s8[i] = acc[i] + acc[i + 8];
    }
    (s8[0] + s8[4]) + (s8[1] + s8[5]) + (s8[2] + s8[6]) + (s8[3] + s8[7]) + tail
}

/// Dequantizes `rows` rows of blocks of `format` into f32 (for embedding
/// rows stored quantized).
pub fn dequantize_row(format: Format, row: &[u8], out: &mut [f32]) -> Result<()> {
    let info = format.info();
    if !row.len().is_multiple_of(info.block_bytes) || row.len() / info.block_bytes * info.block_len != out.len() {
        return Err(ModelError::Invalid(format!("{format}: {} bytes do not hold {} weights", row.len(), out.len())));
    }
    let result: std::result::Result<(), asdsl_kernels::KernelError> = asdsl_kernels::with_format!(format, F => {
        for (b, o) in row.chunks_exact(F::BLOCK_BYTES).zip(out.chunks_exact_mut(F::BLOCK_LEN)) {
            <F as BlockFormat>::dequantize(b, o);
        }
        Ok(())
    });
    Ok(result?)
}
