//! GGUF files: a reader for untrusted bytes and a small writer.
//!
//! [`Gguf::parse`] reads a GGUF v2 or v3 file from a byte slice (the caller
//! mmaps it). Every count, length and offset read from the file is checked
//! against the bytes that remain before anything is allocated, all size
//! arithmetic is checked, tensor data lie inside the file, aligned and
//! without overlap; any violation is a [`GgufError`] that says what and
//! where, never a panic.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bytes = std::fs::read("model.gguf")?;
//! let gguf = asdsl_model::gguf::Gguf::parse(&bytes)?;
//! let arch = gguf.get_str("general.architecture")?;
//! for tensor in gguf.tensors() {
//!     println!("{} {:?} {}", tensor.name, tensor.dims, tensor.ggml_type);
//! }
//! # Ok(()) }
//! ```

mod error;
mod read;
mod value;
pub mod write;

pub mod config;

use std::collections::HashMap;

use asdsl_kernels::Format;

pub use config::GgufModelConfig;
pub use error::GgufError;
pub use value::{Array, GgmlType, Value, ValueType};
pub use write::GgufWriter;

/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The largest `general.alignment` accepted (1 MiB).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// Most dimensions of a tensor (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted.
pub const MAX_ARRAY_NESTING: usize = 8;

/// One tensor of a GGUF file, validated: its data lie inside the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous one (columns).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Bytes of data.
    pub n_bytes: u64,
    /// Where the data section starts in the file.
    data_start: usize,
}

impl TensorInfo {
    /// Elements per row: `dims[0]` (1 for a scalar).
    pub fn cols(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Rows: the product of `dims[1..]` (1 for a vector).
    pub fn rows(&self) -> u64 {
        // the product of all dims fits in i64, so this one does too
        self.dims.iter().skip(1).product()
    }

    /// The kernel format of a quantized tensor the kernels run.
    pub fn format(&self) -> Option<Format> {
        self.ggml_type.format()
    }

    /// Byte range of the data in the file.
    pub fn file_range(&self) -> std::ops::Range<usize> {
        // validated at parse: offset + n_bytes <= data section length
        let start = self.data_start + self.offset as usize;
        start..start + self.n_bytes as usize
    }
}

/// The parsed header of a GGUF file: metadata and tensor table, owning no
/// reference to the bytes (keep it beside an mmap).
#[derive(Clone, Debug)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Alignment of tensor data.
    pub alignment: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    /// Byte offset of the data section.
    pub data_start: usize,
}

impl GgufHeader {
    /// Parses and validates the header and tensor table of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
        read::parse_header(bytes)
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data of `tensor` within `bytes`, the file this header was parsed
    /// from; `None` if `bytes` is too short (another file).
    pub fn tensor_bytes_in<'d>(&self, bytes: &'d [u8], tensor: &TensorInfo) -> Option<&'d [u8]> {
        bytes.get(tensor.file_range())
    }

    fn wrong_type(key: &str, expected: &str, found: &Value) -> GgufError {
        GgufError::WrongType { key: key.to_owned(), expected: expected.to_owned(), found: found.type_description() }
    }

    /// A string value; `Ok(None)` when absent, an error when of another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Self::wrong_type(key, "string", other)),
        }
    }

    /// An unsigned 32-bit value from any integer type whose value fits (as
    /// llama.cpp accepts), `Ok(None)` when absent.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let Some(n) = value.as_integer() else { return Err(Self::wrong_type(key, "an integer", value)) };
        u32::try_from(n).map(Some).map_err(|_| GgufError::OutOfRange {
            key: key.to_owned(),
            value: n.to_string(),
            expected: "u32".to_owned(),
        })
    }

    /// A bool value, `Ok(None)` when absent.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::wrong_type(key, "bool", other)),
        }
    }

    /// A float value from f32 or f64, `Ok(None)` when absent.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v)),
            Some(Value::F64(v)) => Ok(Some(*v as f32)),
            Some(other) => Err(Self::wrong_type(key, "f32", other)),
        }
    }

    /// An array of strings, `Ok(None)` when absent.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(v))) => Ok(Some(v)),
            Some(other) => Err(Self::wrong_type(key, "array of string", other)),
        }
    }

    /// An array of floats (f32, or f64 converted), `Ok(None)` when absent.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(v))) => Ok(Some(v.clone())),
            Some(Value::Array(Array::F64(v))) => Ok(Some(v.iter().map(|&x| x as f32).collect())),
            Some(other) => Err(Self::wrong_type(key, "array of f32", other)),
        }
    }

    /// An array of integers that all fit in i32 (any integer element type),
    /// `Ok(None)` when absent.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let Value::Array(array) = value else { return Err(Self::wrong_type(key, "array of i32", value)) };
        if let Array::I32(v) = array {
            return Ok(Some(v.clone()));
        }
        let Some(ints) = array.integers() else { return Err(Self::wrong_type(key, "array of i32", value)) };
        ints.into_iter()
            .map(|n| {
                i32::try_from(n).map_err(|_| GgufError::OutOfRange {
                    key: key.to_owned(),
                    value: n.to_string(),
                    expected: "i32".to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Like [`get_str`](Self::get_str) but a missing key is an error.
    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?.ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    /// Like [`get_u32`](Self::get_u32) but a missing key is an error.
    pub fn require_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_u32(key)?.ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }

    /// Like [`get_f32`](Self::get_f32) but a missing key is an error.
    pub fn require_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_f32(key)?.ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
    }
}

/// A parsed GGUF file borrowing its bytes: the header plus access to tensor
/// data. Dereferences to [`GgufHeader`] for metadata accessors.
#[derive(Clone, Debug)]
pub struct Gguf<'a> {
    header: GgufHeader,
    bytes: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses and validates a whole GGUF file.
    pub fn parse(bytes: &'a [u8]) -> Result<Gguf<'a>, GgufError> {
        Ok(Gguf { header: GgufHeader::parse(bytes)?, bytes })
    }

    /// The data of `tensor` (a tensor of this file).
    pub fn tensor_bytes(&self, tensor: &TensorInfo) -> &'a [u8] {
        // A TensorInfo of this file has a range inside it; for a foreign one
        // return an empty slice rather than panic.
        self.bytes.get(tensor.file_range()).unwrap_or(&[])
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The header, dropping the borrow of the bytes.
    pub fn into_header(self) -> GgufHeader {
        self.header
    }

    /// The file bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl std::ops::Deref for Gguf<'_> {
    type Target = GgufHeader;

    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}
