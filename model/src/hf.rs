//! Hugging Face checkpoints: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`, memory-mapped; tensors converted from
//! bf16, f16 or f32 to f32 when asked for, with their shape checked.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// One memory-mapped safetensors file and its parsed header.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Offset of the data section (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

/// The tensors of a checkpoint, memory-mapped.
#[derive(Debug)]
pub struct SafetensorsFiles {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: HashMap<String, usize>,
}

/// A tensor's raw bytes and description.
#[derive(Debug, Clone, Copy)]
pub struct RawTensor<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major, outermost first).
    pub shape: &'a [usize],
    /// The little-endian bytes.
    pub data: &'a [u8],
}

impl SafetensorsFiles {
    /// Opens the checkpoint of a model folder: `model.safetensors`, or the
    /// shards named by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsFiles> {
        let index_path = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let json: Value =
                serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index_path.clone(), source })?;
            let map = json.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
                ModelError::config(&index_path, "weight_map", "missing or not an object of tensor → file")
            })?;
            let mut files: Vec<PathBuf> = Vec::new();
            for (name, file) in map {
                let file = file
                    .as_str()
                    .ok_or_else(|| ModelError::config(&index_path, format!("weight_map.{name}"), "not a file name"))?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(ModelError::config(
                        &index_path,
                        format!("weight_map.{name}"),
                        format!("`{file}` is not a plain file name in the model folder"),
                    ));
                }
                let p = dir.join(file);
                if !files.contains(&p) {
                    files.push(p);
                }
            }
            files.sort();
            files
        } else if single.is_file() {
            vec![single]
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| ModelError::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            found.sort();
            if found.len() != 1 {
                return Err(ModelError::Unsupported(format!(
                    "{}: no model.safetensors (or model.safetensors.index.json) found",
                    dir.display()
                )));
            }
            found
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (i, path) in files.into_iter().enumerate() {
            let shard = Shard::open(path)?;
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
            shards.push(shard);
        }
        Ok(SafetensorsFiles { dir: dir.to_path_buf(), shards, index })
    }

    /// Opens one safetensors file.
    pub fn open_file(path: &Path) -> Result<SafetensorsFiles> {
        let shard = Shard::open(path.to_path_buf())?;
        let index = shard.metadata.tensors().keys().map(|n| (n.clone(), 0)).collect();
        Ok(SafetensorsFiles { dir: path.to_path_buf(), shards: vec![shard], index })
    }

    /// The `__metadata__` strings of the (first) file, if it has any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.shards.first().and_then(|s| s.metadata.metadata().as_ref())
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Every tensor name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Every tensor's name and shape (row-major), in no particular order.
    pub fn shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.index.iter().filter_map(|(name, &shard)| {
            let info = self.shards.get(shard)?.metadata.info(name)?;
            Some((name.as_str(), info.shape.as_slice()))
        })
    }

    /// A tensor's raw bytes, dtype and shape.
    pub fn raw(&self, name: &str) -> Result<RawTensor<'_>> {
        let &shard_index = self
            .index
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), path: self.dir.clone() })?;
        let shard = &self.shards[shard_index];
        let info = shard
            .metadata
            .info(name)
            .ok_or_else(|| ModelError::MissingTensor { name: name.to_string(), path: shard.path.clone() })?;
        let (start, end) = info.data_offsets;
        // `read_metadata` validated that the offsets lie within the file.
        let data = shard.mmap.get(shard.data_start + start..shard.data_start + end).ok_or_else(|| {
            ModelError::Safetensors {
                path: shard.path.clone(),
                reason: format!("tensor `{name}` lies outside the file"),
            }
        })?;
        Ok(RawTensor { dtype: info.dtype, shape: &info.shape, data })
    }

    /// A tensor as f32 (converted from bf16 or f16), checked to have `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let raw = self.raw(name)?;
        if raw.shape != shape {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: raw.shape.to_vec(),
            });
        }
        to_f32(name, raw.dtype, raw.data)
    }
}

impl Shard {
    fn open(path: PathBuf) -> Result<Shard> {
        let file = File::open(&path).map_err(|e| ModelError::io(&path, e))?;
        // SAFETY: the file is opened read-only and mapped privately; we rely
        // on it not being truncated or rewritten while the model is loaded,
        // as every memory-mapping model loader does. All accesses are bounds
        // checked slices of the map.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(&path, e))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap)
            .map_err(|e| ModelError::Safetensors { path: path.clone(), reason: e.to_string() })?;
        Ok(Shard { path, mmap, data_start: 8 + header_len, metadata })
    }
}

/// Converts little-endian bf16, f16 or f32 bytes to f32. A NaN or
/// infinite weight is an error ([`ModelError::NonFiniteWeight`]): a model
/// with one would only ever produce NaN logits.
pub fn to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    let values: Vec<f32> = match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => return Err(ModelError::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
    };
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFiniteWeight { name: name.to_string(), index, value: values[index] });
    }
    Ok(values)
}
