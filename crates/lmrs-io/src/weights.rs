//! Memory-mapped safetensors with a prefix builder.
//!
//! Model code walks the checkpoint's key tree (`weights.pp("encoder").pp("block").pp(0)`) and
//! asks for each tensor with the shape its config implies; a missing tensor or a wrong shape is
//! an error naming the tensor (and both shapes). Tensors are converted to the compute dtype as
//! they are loaded, so bf16/f16 checkpoints run in f32 on the CPU.
//!
//! Memory: files are mapped, never read whole. Once a tensor has been copied into the backend's
//! storage its pages are released from the mapping, so loading peaks near one copy of the
//! weights rather than two.

use crate::{IoError, Result};
use lmrs_core::{DType, Device, Tensor};
use memmap2::{Mmap, UncheckedAdvice};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One mapped safetensors file and its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (8-byte length + JSON header).
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| IoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the file is mapped read-only; lmrs never writes model files, and a file
        // changed underneath a running process is outside what any mmap loader can guard.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|source| IoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Validates the header and that the offsets cover the file exactly (catches
        // truncation and trailing garbage).
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| IoError::Safetensors {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            tensors,
        })
    }
}

/// A view of a checkpoint's tensors under a key prefix.
#[derive(Clone)]
pub struct Weights {
    shards: Arc<Vec<Shard>>,
    prefix: String,
    device: Device,
    dtype: DType,
}

impl Weights {
    /// Memory-map the given safetensors files (one, or all shards). Each file's header is
    /// validated; a corrupt or truncated file is an error naming it.
    pub fn from_files(files: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        let shards = files
            .iter()
            .map(|f| {
                if f.is_file() {
                    Shard::open(f)
                } else {
                    Err(IoError::NotFound {
                        what: "weight file",
                        path: f.clone(),
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            shards: Arc::new(shards),
            prefix: String::new(),
            device: device.clone(),
            dtype,
        })
    }

    /// The same checkpoint one level deeper in the key tree.
    pub fn pp(&self, part: impl std::fmt::Display) -> Self {
        let mut w = self.clone();
        w.prefix = self.key(&part.to_string());
        w
    }

    /// The full checkpoint key of `name` under the current prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    /// `true` when the checkpoint holds `name` under the current prefix.
    pub fn contains(&self, name: &str) -> bool {
        let key = self.key(name);
        self.shards.iter().any(|s| s.tensors.contains_key(&key))
    }

    /// The compute dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Load `name` (under the prefix), checking it has `shape`, converted to the compute dtype.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let key = self.key(name);
        let (shard, info) = self
            .shards
            .iter()
            .find_map(|s| s.tensors.get(&key).map(|i| (s, i)))
            .ok_or_else(|| IoError::MissingTensor {
                name: key.clone(),
                files: self.files_list(),
            })?;
        if info.shape != shape {
            return Err(IoError::ShapeMismatch {
                name: key,
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (start, end) = info.data_offsets;
        let (start, end) = (shard.data_start + start, shard.data_start + end);
        let bytes = &shard.mmap[start..end];
        let values = to_f32(bytes, info.dtype).ok_or_else(|| IoError::UnsupportedDtype {
            name: key.clone(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let tensor = Tensor::from_vec(values, shape, &self.device)?.to_dtype(self.dtype)?;
        // The copy above is what the backend keeps; drop the file pages so the mapping does
        // not hold a second copy. SAFETY: the mapping is private and read-only; pages dropped
        // with MADV_DONTNEED are re-read from the file if touched again, so no data changes.
        let _ = unsafe {
            shard
                .mmap
                .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
        };
        Ok(tensor)
    }

    fn files_list(&self) -> String {
        self.shards
            .iter()
            .map(|s| s.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Decode little-endian `bytes` of `dtype` into f32 values; `None` for unsupported dtypes.
fn to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        _ => return None,
    })
}
