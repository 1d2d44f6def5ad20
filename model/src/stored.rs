//! Matrices as stored: f32 weights or their format's blocks, row after row,
//! not yet packed for a kernel variant. Loaders read or quantize into this
//! form, `asdsl quantize` writes it to a file, and [`StoredMatrix::into_linear`]
//! packs it for the variant the [`Resolver`] chooses.

use asdsl_kernels::Format;
use asdsl_kernels::pack::quantize_matrix;
use rayon::prelude::*;

use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::resolve::Resolver;

/// The weights of a stored matrix.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredWeights {
    /// Row-major f32 weights.
    F32(Vec<f32>),
    /// Rows of blocks of `format`; a native format's rows are padded with
    /// zeros to whole groups.
    Blocks {
        /// The format.
        format: Format,
        /// The blocks.
        bytes: Vec<u8>,
    },
}

/// A `rows x cols` matrix with an optional bias, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMatrix {
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// The weights.
    pub weights: StoredWeights,
    /// A bias of `rows` values.
    pub bias: Option<Vec<f32>>,
}

/// Rows quantized by one parallel job.
const ROWS_PER_JOB: usize = 64;

impl StoredMatrix {
    /// Row-major f32 weights, quantized to `format` (rows in parallel) or
    /// kept as f32 when `format` is `None`.
    pub fn quantize(rows: usize, cols: usize, weights: Vec<f32>, format: Option<Format>) -> Result<StoredMatrix> {
        if weights.len() != rows * cols || rows == 0 || cols == 0 {
            return Err(ModelError::Invalid(format!("{} weights for a {rows}x{cols} matrix", weights.len())));
        }
        let Some(format) = format else {
            return Ok(StoredMatrix { rows, cols, weights: StoredWeights::F32(weights), bias: None });
        };
        let parts: Vec<Result<Vec<u8>>> = weights
            .par_chunks(ROWS_PER_JOB * cols)
            .map(|w| quantize_matrix(format, w.len() / cols, cols, w).map_err(ModelError::from))
            .collect();
        let mut bytes = Vec::with_capacity(rows * padded_row_bytes(format, cols));
        for part in parts {
            bytes.extend_from_slice(&part?);
        }
        Ok(StoredMatrix { rows, cols, weights: StoredWeights::Blocks { format, bytes }, bias: None })
    }

    /// Adds a bias of `rows` values.
    pub fn with_bias(mut self, bias: Vec<f32>) -> Result<StoredMatrix> {
        if bias.len() != self.rows {
            return Err(ModelError::Invalid(format!("bias of {} for {} rows", bias.len(), self.rows)));
        }
        self.bias = Some(bias);
        Ok(self)
    }

    /// The format (`None` for f32).
    pub fn format(&self) -> Option<Format> {
        match &self.weights {
            StoredWeights::F32(_) => None,
            StoredWeights::Blocks { format, .. } => Some(*format),
        }
    }

    /// Packs the matrix for the variants `resolver` chooses for its shape.
    pub fn into_linear(self, resolver: &Resolver<'_>) -> Result<Linear> {
        let linear = match self.weights {
            StoredWeights::F32(w) => Linear::f32(self.rows, self.cols, w)?,
            StoredWeights::Blocks { format, bytes } => {
                Linear::from_blocks(self.rows, self.cols, &bytes, format, resolver)?
            }
        };
        match self.bias {
            Some(bias) => linear.with_bias(bias),
            None => Ok(linear),
        }
    }
}

/// Bytes of one row of `cols` weights in `format`, padded to whole blocks.
pub fn padded_row_bytes(format: Format, cols: usize) -> usize {
    let info = format.info();
    cols.div_ceil(info.block_len) * info.block_bytes
}
