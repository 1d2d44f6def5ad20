//! The GGUF parser: a cursor over untrusted bytes that checks every length
//! against what remains before it allocates anything.

use std::collections::HashMap;

use super::error::GgufError;
use super::value::{Array, GgmlType, Value, ValueType};
use super::{DEFAULT_ALIGNMENT, GgufHeader, MAX_ALIGNMENT, MAX_ARRAY_NESTING, MAX_DIMS, TensorInfo};

/// A read position in the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let available = self.remaining();
        let n_usize = usize::try_from(n).ok().filter(|&n| n <= available);
        let Some(n_usize) = n_usize else {
            return Err(GgufError::Truncated { what: what(), offset: self.pos, needed: n, available });
        };
        let start = self.pos;
        self.pos += n_usize;
        Ok(&self.bytes[start..start + n_usize])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit
    /// in the rest of the file, before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize, GgufError> {
        let available = self.remaining();
        let max = available as u64 / min_size.max(1);
        if count > max {
            return Err(GgufError::CountTooLarge {
                what: what(),
                offset: self.pos.saturating_sub(8),
                count,
                max,
                min_size,
                available,
            });
        }
        // count <= available bytes, so it fits in usize
        usize::try_from(count).map_err(|_| GgufError::CountTooLarge {
            what: what(),
            offset: self.pos,
            count,
            max,
            min_size,
            available,
        })
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let start = self.pos;
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { what: what(), offset: start }),
        }
    }

    fn value_type(&mut self, key: &str) -> Result<ValueType, GgufError> {
        let offset = self.pos;
        let id = self.u32(&|| format!("value type of `{key}`"))?;
        ValueType::from_id(id).ok_or_else(|| GgufError::UnknownValueType { key: key.to_owned(), type_id: id, offset })
    }

    fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<Value, GgufError> {
        let what = || format!("value of `{key}`");
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.array(&what)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array(&what)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => Value::Array(self.array_value(key, depth)?),
        })
    }

    fn bool(&mut self, key: &str) -> Result<bool, GgufError> {
        let offset = self.pos;
        let [byte] = self.array::<1>(&|| format!("bool of `{key}`"))?;
        match byte {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool { key: key.to_owned(), value, offset }),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array, GgufError> {
        let start = self.pos;
        if depth >= MAX_ARRAY_NESTING {
            return Err(GgufError::NestingTooDeep { key: key.to_owned(), max: MAX_ARRAY_NESTING, offset: start });
        }
        let element_type = self.value_type(key)?;
        let len = self.u64(&|| format!("array length of `{key}`"))?;
        let count =
            self.check_count(len, element_type.min_size(), &|| format!("array length of `{key}` ({element_type})"))?;
        let what = || format!("array element of `{key}`");
        macro_rules! fixed {
            ($variant:ident, $ty:ty) => {{
                let size = std::mem::size_of::<$ty>();
                // count * size <= remaining bytes, checked above
                let bytes = self.take((count * size) as u64, &what)?;
                Array::$variant(
                    bytes
                        .chunks_exact(size)
                        .map(|chunk| {
                            let mut raw = [0u8; std::mem::size_of::<$ty>()];
                            raw.copy_from_slice(chunk);
                            <$ty>::from_le_bytes(raw)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match element_type {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    out.push(self.bool(key)?);
                }
                Array::Bool(out)
            }
            ValueType::String => {
                let mut out = Vec::with_capacity(count);
                for index in 0..count {
                    out.push(self.string(&|| format!("string {index} of `{key}`"))?);
                }
                Array::String(out)
            }
            ValueType::Array => {
                let mut out = Vec::with_capacity(count);
                for _ in 0..count {
                    out.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(out)
            }
        })
    }
}

/// Fewest bytes of one metadata entry: key length, an empty key, type, one byte.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: name length, n_dims, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 4 + 8;

pub(super) fn parse_header(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    let mut cur = Cursor { bytes, pos: 0 };
    let magic = cur.take(4, &|| "magic".to_owned())?;
    if magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic.to_vec() });
    }
    let version = cur.u32(&|| "version".to_owned())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let tensor_count = cur.u64(&|| "tensor count".to_owned())?;
    let kv_count = cur.u64(&|| "metadata count".to_owned())?;
    cur.check_count(tensor_count, MIN_TENSOR_INFO_SIZE, &|| "tensor count".to_owned())?;
    let kv_count = cur.check_count(kv_count, MIN_KV_SIZE, &|| "metadata count".to_owned())?;

    let mut metadata: Vec<(String, Value)> = Vec::new();
    let mut key_index: HashMap<String, usize> = HashMap::new();
    for index in 0..kv_count {
        let offset = cur.pos;
        let key = cur.string(&|| format!("key of metadata entry {index}"))?;
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key, offset });
        }
        let ty = cur.value_type(&key)?;
        let value = cur.value(&key, ty, 0)?;
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) => {
            let a = u64::from(*a);
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(GgufError::BadAlignment {
                    reason: format!("{a} is not a power of two between 1 and {MAX_ALIGNMENT}"),
                });
            }
            a
        }
        Some(other) => {
            return Err(GgufError::BadAlignment { reason: format!("type {} (must be u32)", other.type_description()) });
        }
    };

    // Tensor infos: the count was checked against the remaining bytes above.
    let tensor_count = cur.check_count(tensor_count, MIN_TENSOR_INFO_SIZE, &|| "tensor count".to_owned())?;
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut tensor_index: HashMap<String, usize> = HashMap::new();
    for index in 0..tensor_count {
        let name = cur.string(&|| format!("name of tensor {index}"))?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        let n_dims = cur.u32(&|| format!("n_dims of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { tensor: name, n_dims, max: MAX_DIMS });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(cur.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let type_id = cur.u32(&|| format!("type of tensor `{name}`"))?;
        let offset = cur.u64(&|| format!("data offset of tensor `{name}`"))?;
        let ggml_type = GgmlType(type_id);
        let Some((block_len, _)) = ggml_type.block() else {
            return Err(GgufError::UnknownTensorType { tensor: name, type_id, type_name: ggml_type.name().to_owned() });
        };
        let overflow = || GgufError::DimsOverflow { tensor: name.clone(), dims: dims.clone() };
        // ggml keeps element counts in int64_t: the product must fit there,
        // also of the non-zero dims alone (as llama.cpp checks), so that no
        // partial product (`rows()`) overflows when another dim is 0.
        let fits = |product: Option<u64>| product.filter(|&n| n <= i64::MAX as u64);
        fits(dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d.max(1)))).ok_or_else(overflow)?;
        let n_elements = fits(dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))).ok_or_else(overflow)?;
        let cols = dims.first().copied().unwrap_or(1);
        if !cols.is_multiple_of(block_len) {
            return Err(GgufError::PartialBlock {
                tensor: name,
                cols,
                type_name: ggml_type.name().to_owned(),
                block_len,
            });
        }
        let n_bytes = ggml_type.bytes_for(n_elements).ok_or_else(overflow)?;
        if !offset.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor { tensor: name, offset, alignment });
        }
        tensor_index.insert(name.clone(), tensors.len());
        tensors.push(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes, data_start: 0 });
    }

    // The data section starts at the next multiple of the alignment.
    let header_end = cur.pos as u64;
    let data_start = header_end.div_ceil(alignment).saturating_mul(alignment);
    let data_start = usize::try_from(data_start).unwrap_or(usize::MAX).min(bytes.len());
    let data_len = bytes.len() - data_start;

    for t in &mut tensors {
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|end| end > data_len as u64) {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                offset: t.offset,
                size: t.n_bytes,
                data_start,
                data_len,
            });
        }
        t.data_start = data_start;
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        // offsets + sizes were checked to fit in the data section
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(GgufError::OverlappingTensors { first: pair[0].name.clone(), second: pair[1].name.clone() });
        }
    }

    Ok(GgufHeader { version, alignment, metadata, key_index, tensors, tensor_index, data_start })
}
