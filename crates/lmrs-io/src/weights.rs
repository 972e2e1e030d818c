//! Memory-mapped safetensors with a prefix builder.
//!
//! Model code walks the checkpoint's key tree (`weights.pp("encoder").pp("block").pp(0)`) and
//! asks for each tensor with the shape its config implies; a missing tensor or a wrong shape is
//! an error naming the tensor (and both shapes). Tensors are converted to the compute dtype as
//! they are loaded, so bf16/f16 checkpoints run in f32 on the CPU.

use crate::{IoError, Result};
use lmrs_core::candle::safetensors::MmapedSafetensors;
use lmrs_core::{DType, Device, Tensor};
use std::path::PathBuf;
use std::sync::Arc;

/// A view of a checkpoint's tensors under a key prefix.
#[derive(Clone)]
pub struct Weights {
    inner: Arc<MmapedSafetensors>,
    files: Arc<Vec<PathBuf>>,
    prefix: String,
    device: Device,
    dtype: DType,
}

impl Weights {
    /// Memory-map the given safetensors files (one, or all shards). Each file's header is
    /// validated; a corrupt or truncated file is an error naming it.
    pub fn from_files(files: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        for f in files {
            if !f.is_file() {
                return Err(IoError::NotFound {
                    what: "weight file",
                    path: f.clone(),
                });
            }
            // Validate each file on its own first so the error can name it.
            // SAFETY: the file is mapped read-only; lmrs never writes model files, and a file
            // changed underneath a running process is outside what any mmap loader can guard.
            unsafe { MmapedSafetensors::new(f) }.map_err(|e| IoError::Safetensors {
                path: f.clone(),
                message: root_message(&e),
            })?;
        }
        // SAFETY: as above.
        let inner =
            unsafe { MmapedSafetensors::multi(files) }.map_err(|e| IoError::Safetensors {
                path: files.first().cloned().unwrap_or_default(),
                message: root_message(&e),
            })?;
        Ok(Self {
            inner: Arc::new(inner),
            files: Arc::new(files.to_vec()),
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
        self.inner.get(&self.key(name)).is_ok()
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
        let view = self.inner.get(&key).map_err(|_| IoError::MissingTensor {
            name: key.clone(),
            files: self.files_list(),
        })?;
        if view.shape() != shape {
            return Err(IoError::ShapeMismatch {
                name: key,
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        use lmrs_core::candle::safetensors::Load;
        let t = view.load(&self.device).map_err(|e| match view.dtype() {
            safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16 => {
                IoError::Safetensors {
                    path: PathBuf::from(self.files_list()),
                    message: format!("tensor '{key}': {}", root_message(&e)),
                }
            }
            other => IoError::UnsupportedDtype {
                name: key.clone(),
                dtype: format!("{other:?}"),
            },
        })?;
        Ok(t.to_dtype(self.dtype)?)
    }

    fn files_list(&self) -> String {
        self.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// candle wraps errors in context layers; users want the innermost sentence. The path layer is
/// dropped too: our own error already names the file.
fn root_message(e: &lmrs_core::candle::Error) -> String {
    use lmrs_core::candle::Error;
    match e {
        Error::WithPath { inner, .. } | Error::WithBacktrace { inner, .. } => root_message(inner),
        _ => e.to_string().lines().next().unwrap_or_default().to_string(),
    }
}
