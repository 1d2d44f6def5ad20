//! A small GGUF v3 writer: metadata and tensors to bytes or a file, with
//! tensor data aligned as llama.cpp expects (each tensor at a multiple of
//! the alignment, in order, padded with zeros).

use std::path::Path;

use super::error::GgufError;
use super::value::{Array, GgmlType, Value};
use super::{DEFAULT_ALIGNMENT, MAX_ALIGNMENT, MAX_DIMS};

/// A tensor to write.
#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory.
///
/// ```
/// use asdsl_model::gguf::{Gguf, GgufWriter, GgmlType, Value};
/// let mut w = GgufWriter::new();
/// w.metadata("general.architecture", Value::String("llama".into())).unwrap();
/// w.tensor("t", &[4, 2], GgmlType::F32, vec![0u8; 32]).unwrap();
/// let bytes = w.to_bytes().unwrap();
/// let gguf = Gguf::parse(&bytes).unwrap();
/// assert_eq!(gguf.tensor("t").unwrap().dims, vec![4, 2]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds a metadata entry (keys must be unique; `general.alignment`, if
    /// given, must be a u32 power of two).
    pub fn metadata(&mut self, key: impl Into<String>, value: Value) -> Result<&mut Self, GgufError> {
        let key = key.into();
        if self.metadata.iter().any(|(k, _)| *k == key) {
            return Err(GgufError::Write(format!("duplicate metadata key `{key}`")));
        }
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a.is_power_of_two() && u64::from(a) <= MAX_ALIGNMENT => {}
                _ => return Err(GgufError::Write(format!("general.alignment must be a u32 power of two: {value:?}"))),
            }
        }
        self.metadata.push((key, value));
        Ok(self)
    }

    /// Adds a tensor: `dims` in ggml order (`dims[0]` contiguous), `data`
    /// exactly the bytes its type and shape take.
    pub fn tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::Write(format!("duplicate tensor `{name}`")));
        }
        if dims.len() > MAX_DIMS as usize {
            return Err(GgufError::Write(format!("tensor `{name}` has {} dims", dims.len())));
        }
        let n_elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let expected = n_elements.and_then(|n| ggml_type.bytes_for(n));
        if expected != Some(data.len() as u64) {
            return Err(GgufError::Write(format!(
                "tensor `{name}` of type {ggml_type} and dims {dims:?} takes {expected:?} bytes, got {}",
                data.len()
            )));
        }
        self.tensors.push(PendingTensor { name, dims: dims.to_vec(), ggml_type, data });
        Ok(self)
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", Value::U32(a)) => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let alignment = self.alignment() as usize;
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            write_string(&mut out, key);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            write_value(&mut out, value);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            write_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.0.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = (offset + t.data.len()).next_multiple_of(alignment);
        }
        pad_to(&mut out, alignment);
        let data_start = out.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(&t.data);
        }
        pad_to(&mut out, alignment);
        Ok(out)
    }

    /// Writes the file to `path`.
    pub fn write_file(&self, path: &Path) -> Result<(), GgufError> {
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| GgufError::Io { path: path.display().to_string(), source })
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: usize) {
    let len = out.len().next_multiple_of(alignment);
    out.resize(len, 0);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => write_string(out, s),
        Value::Array(a) => write_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn write_array(out: &mut Vec<u8>, array: &Array) {
    out.extend_from_slice(&array.element_type().id().to_le_bytes());
    out.extend_from_slice(&(array.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match array {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => {
            for s in v {
                write_string(out, s);
            }
        }
        Array::Array(v) => {
            for a in v {
                write_array(out, a);
            }
        }
    }
}
