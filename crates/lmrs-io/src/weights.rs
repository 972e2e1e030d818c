//! Checkpoint tensors behind a prefix builder: memory-mapped safetensors, or a GGUF file read
//! through its architecture's HF-name table ([`crate::gguf_arch`]).
//!
//! Model code walks the checkpoint's key tree (`weights.pp("encoder").pp("block").pp(0)`) and
//! asks for each tensor with the shape its config implies; a missing tensor or a wrong shape is
//! an error naming the tensor (and both shapes). Tensors are converted to the compute dtype as
//! they are loaded, so bf16/f16 checkpoints run in f32 on the CPU.
//!
//! Memory: files are mapped, never read whole. Once a tensor has been copied into the backend's
//! storage its pages are released from the mapping, so loading peaks near one copy of the
//! weights rather than two.

use crate::gguf::GgufFile;
use crate::gguf_arch::{GgufNameMap, GgufTransform};
use crate::params::ParamStore;
use crate::{IoError, Result};
use lmrs_core::candle::quantized::{GgmlDType, QStorage, QTensor};
use lmrs_core::{DType, Device, Tensor};
use memmap2::{Mmap, UncheckedAdvice};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
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

/// Where the tensors live.
enum Store {
    Safetensors(Vec<Shard>),
    Gguf {
        file: Arc<GgufFile>,
        names: GgufNameMap,
    },
}

/// A 2-D weight as a projection uses it: dense values, or quantized blocks executed as they are.
#[derive(Debug, Clone)]
pub enum MatrixWeight {
    /// `(out, in)` values in the compute dtype.
    Dense(Tensor),
    /// `(out, in)` GGUF blocks (Q4_0, Q8_0, Q4_K...).
    Quantized(Arc<QTensor>),
}

/// A view of a checkpoint's tensors under a key prefix.
#[derive(Clone)]
pub struct Weights {
    store: Arc<Store>,
    prefix: String,
    device: Device,
    dtype: DType,
    /// Set for training: every tensor loaded becomes a variable recorded here.
    params: Option<Arc<ParamStore>>,
    /// LoRA adapters merged into the weights they adapt as they are read (inference).
    adapters: Vec<Arc<crate::Adapter>>,
}

impl Weights {
    /// Memory-map the given safetensors files (one, or all shards). Each file's header is
    /// validated; a corrupt or truncated file is an error naming it.
    pub fn from_files(files: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        let shards = files
            .iter()
            .map(|f| {
                crate::path_kind::require_file(f, "weight file")?;
                Shard::open(f)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            store: Arc::new(Store::Safetensors(shards)),
            prefix: String::new(),
            device: device.clone(),
            dtype,
            params: None,
            adapters: Vec::new(),
        })
    }

    /// The tensors of a GGUF file, addressed by HF names through `names` (see
    /// [`crate::GgufModel`]).
    pub fn from_gguf(
        file: Arc<GgufFile>,
        names: GgufNameMap,
        device: &Device,
        dtype: DType,
    ) -> Self {
        Self {
            store: Arc::new(Store::Gguf { file, names }),
            prefix: String::new(),
            device: device.clone(),
            dtype,
            params: None,
            adapters: Vec::new(),
        }
    }

    /// The same checkpoint for training: every tensor a model loads from it (GGUF blocks
    /// dequantized) becomes an autograd variable recorded in `params` under its full key.
    pub fn trainable(mut self, params: Arc<ParamStore>) -> Self {
        self.params = Some(params);
        self
    }

    /// Record, for a training run, that tensor `name` is a `LayerNorm` layer's (exempt from
    /// weight decay, as `transformers` exempts `nn.LayerNorm` parameters). A no-op otherwise.
    pub fn mark_layer_norm(&self, name: &str) {
        if let Some(params) = &self.params {
            params.mark_layer_norm(&self.key(name));
        }
    }

    /// The same checkpoint with LoRA adapters merged in: a projection weight an adapter
    /// covers is read as `W + scaling * B @ A` (dense, also from GGUF blocks). Call
    /// [`crate::Adapter::check_all_used`] once the model is built.
    pub fn with_adapters(mut self, adapters: Vec<Arc<crate::Adapter>>) -> Self {
        self.adapters = adapters;
        self
    }

    /// Every tensor key of a safetensors checkpoint (empty for GGUF).
    pub fn keys(&self) -> Vec<String> {
        match &*self.store {
            Store::Safetensors(shards) => shards
                .iter()
                .flat_map(|s| s.tensors.keys().cloned())
                .collect(),
            Store::Gguf { .. } => Vec::new(),
        }
    }

    /// `w` with every adapter that covers this prefix's module merged in (only for a
    /// projection's `weight`).
    fn merged(&self, name: &str, w: Tensor) -> Result<Tensor> {
        if name != "weight" {
            return Ok(w);
        }
        let mut w = w;
        for a in &self.adapters {
            if let Some(m) = a.merge(&self.prefix, &w)? {
                w = m;
            }
        }
        Ok(w)
    }

    /// `true` when an adapter covers this prefix's module.
    fn adapted(&self) -> bool {
        let key = format!("{}{}.lora_A.weight", crate::PEFT_KEY_PREFIX, self.prefix);
        self.adapters.iter().any(|a| a.holds(&key))
    }

    /// `true` when loaded tensors become trainable variables.
    pub fn is_trainable(&self) -> bool {
        self.params.is_some()
    }

    /// `true` when the tensors come from a GGUF file.
    pub fn is_gguf(&self) -> bool {
        matches!(*self.store, Store::Gguf { .. })
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

    /// `true` when the checkpoint holds `name` under the current prefix (for training, also a
    /// parameter added with [`ParamStore::insert`]).
    pub fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// `true` when the file itself (not a parameter added for training) holds `name`.
    pub fn file_contains(&self, name: &str) -> bool {
        let key = self.key(name);
        match &*self.store {
            Store::Safetensors(shards) => shards.iter().any(|s| s.tensors.contains_key(&key)),
            Store::Gguf { file, names } => names(&key).is_some_and(|g| file.has_tensor(&g.name)),
        }
    }

    /// The stored shape of `name` under the current prefix (PyTorch order), read from the
    /// tensor directory without touching the data; `None` when the checkpoint lacks it. Model
    /// code checks config sizes against these before allocating anything they imply.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let key = self.key(name);
        if let Some(shape) = self.params.as_ref().and_then(|p| p.shape(&key)) {
            return Some(shape);
        }
        match &*self.store {
            Store::Safetensors(shards) => shards
                .iter()
                .find_map(|s| s.tensors.get(&key).map(|i| i.shape.clone())),
            Store::Gguf { file, names } => {
                names(&key).and_then(|g| file.tensor_shape(&g.name).map(<[usize]>::to_vec))
            }
        }
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
        if let Some(params) = &self.params {
            let key = self.key(name);
            if !params.frozen(&key) {
                return params.get_or_insert(&key, || self.load(name, shape));
            }
        }
        let t = self.load(name, shape)?;
        self.merged(name, t)
    }

    /// The LoRA adapter of the projection at this prefix, `(in, out)` wide, when the run is a
    /// LoRA run that targets it: `lora_A` `(r, in)` (Kaiming-uniform) and `lora_B` `(out, r)`
    /// (zero) variables, created once under `<prefix>.lora_A.weight` / `.lora_B.weight`.
    pub fn lora(&self, in_dim: usize, out_dim: usize) -> Result<Option<crate::LoraPair>> {
        let Some((params, spec)) = self.params.as_ref().and_then(|p| Some((p, p.lora()?))) else {
            return Ok(None);
        };
        let Some(target) = spec.target_of(&self.prefix) else {
            return Ok(None);
        };
        params.lora_hit(target);
        let a = params.get_or_insert(&self.key("lora_A.weight"), || {
            Ok::<_, IoError>(spec.init_a(&self.prefix, in_dim, &self.device)?)
        })?;
        let b = params.get_or_insert(&self.key("lora_B.weight"), || {
            Ok::<_, IoError>(Tensor::zeros((out_dim, spec.r), DType::F32, &self.device)?)
        })?;
        Ok(Some(crate::LoraPair {
            a,
            b,
            scaling: spec.scaling(),
            dropout: spec.dropout,
        }))
    }

    /// [`Self::get`] without the trainable store.
    fn load(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let key = self.key(name);
        let shards = match &*self.store {
            Store::Safetensors(shards) => shards,
            Store::Gguf { .. } => {
                let q = self.gguf_tensor(&key, shape)?;
                return Ok(q.dequantize(&self.device)?.to_dtype(self.dtype)?);
            }
        };
        let (shard, info) = shards
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

    /// Load `name` as a projection weight `(out, in)`: quantized GGUF blocks stay quantized
    /// (they are executed as they are); everything else is dense in the compute dtype.
    pub fn get_matrix(&self, name: &str, shape: &[usize]) -> Result<MatrixWeight> {
        if self.params.is_some() {
            // Training updates every value: dense, in the compute dtype. (A frozen LoRA
            // base's projections come through `get_projection`, which may keep them
            // quantized.)
            return Ok(MatrixWeight::Dense(self.get(name, shape)?));
        }
        if let Store::Gguf { .. } = &*self.store {
            if self.adapted() {
                // Merged into dequantized values: the adapted projection runs dense.
                return Ok(MatrixWeight::Dense(self.get(name, shape)?));
            }
            let key = self.key(name);
            let q = self.gguf_tensor(&key, shape)?;
            return Ok(match q.dtype() {
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                    MatrixWeight::Dense(q.dequantize(&self.device)?.to_dtype(self.dtype)?)
                }
                _ => MatrixWeight::Quantized(Arc::new(q)),
            });
        }
        Ok(MatrixWeight::Dense(self.get(name, shape)?))
    }

    /// A projection's weight: [`Self::get_matrix`], except that the frozen base of a LoRA
    /// run on a GGUF file stays in its quantized blocks (QLoRA; the layer gives it a gradient
    /// path to its input). Embeddings and other tensors read through `get_matrix` stay dense.
    pub fn get_projection(&self, name: &str, shape: &[usize]) -> Result<MatrixWeight> {
        if let (Some(params), Store::Gguf { .. }) = (&self.params, &*self.store) {
            let key = self.key(name);
            if params.frozen(&key) && !self.adapted() {
                let q = self.gguf_tensor(&key, shape)?;
                return Ok(match q.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        MatrixWeight::Dense(q.dequantize(&self.device)?.to_dtype(self.dtype)?)
                    }
                    _ => MatrixWeight::Quantized(Arc::new(q)),
                });
            }
        }
        self.get_matrix(name, shape)
    }

    /// A GGUF tensor by HF key, shape-checked, converted to the HF layout.
    fn gguf_tensor(&self, key: &str, shape: &[usize]) -> Result<QTensor> {
        let Store::Gguf { file, names } = &*self.store else {
            unreachable!("only called for GGUF stores")
        };
        let missing = || IoError::MissingTensor {
            name: key.to_string(),
            files: file.path().display().to_string(),
        };
        let g = names(key).ok_or_else(missing)?;
        let found = file.tensor_shape(&g.name).ok_or_else(missing)?;
        if found != shape {
            return Err(IoError::ShapeMismatch {
                name: format!("{key} (GGUF '{}')", g.name),
                expected: shape.to_vec(),
                found: found.to_vec(),
            });
        }
        let q = file.tensor(&g.name, &self.device)?;
        match g.transform {
            GgufTransform::None => Ok(q),
            GgufTransform::UnpermuteRope { heads } => {
                unpermute_rows(&q, heads).map_err(|e| IoError::Gguf {
                    path: file.path().to_path_buf(),
                    message: format!("tensor '{}': {e}", g.name),
                })
            }
            GgufTransform::AddScalar(c) => {
                let t = (q.dequantize(&self.device)? + c as f64)?;
                Ok(QTensor::quantize(&t, GgmlDType::F32)?)
            }
        }
    }

    fn files_list(&self) -> String {
        match &*self.store {
            Store::Safetensors(shards) => shards
                .iter()
                .map(|s| s.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Store::Gguf { file, .. } => file.path().display().to_string(),
        }
    }
}

/// Undo llama.cpp's RoPE row permutation on the rows of `q` (quantized or not: each row is a
/// whole number of blocks, so rows move as byte ranges).
///
/// llama.cpp stores head `h`'s row `(s, i)` (`s` in 0..2 halves, `i` in 0..head_dim/2) of the
/// HF layout at row `h * head_dim + 2 * i + s`.
fn unpermute_rows(q: &QTensor, heads: usize) -> lmrs_core::candle::Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        lmrs_core::candle::bail!("{rows} rows do not split into {heads} heads of even size");
    }
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                let dst = h * head_dim + s * half + i;
                let src = h * head_dim + 2 * i + s;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    let storage = QStorage::from_data(Cow::Owned(out), &q.device(), q.dtype())?;
    QTensor::new(storage, dims)
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
