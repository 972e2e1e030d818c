//! GGUF files (llama.cpp's single-file format): typed metadata access and tensors, quantized
//! or not.
//!
//! The header (metadata and tensor directory) is parsed once at open; tensor data is read one
//! tensor at a time when a layer asks for it, so a model's resident memory stays close to the
//! file size. Shapes are reported in PyTorch order (`(out, in)` for a projection), the reverse
//! of GGUF's on-disk order.

use crate::{IoError, Result};
use lmrs_core::candle::quantized::gguf_file::{Content, Value};
use lmrs_core::candle::quantized::{GgmlDType, QTensor};
use lmrs_core::Device;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: Mutex<BufReader<File>>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

/// `true` when `path` starts with the GGUF magic bytes.
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

impl GgufFile {
    /// Open `path` and parse its header. A truncated or corrupt header, or a tensor of a type
    /// lmrs cannot execute, is an [`IoError::Gguf`] naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(IoError::NotFound {
                what: "GGUF file",
                path: path.to_path_buf(),
            });
        }
        let file = File::open(path).map_err(|source| IoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| IoError::Gguf {
            path: path.to_path_buf(),
            message: describe_header_error(&without_backtrace(e).to_string()),
        })?;
        let file = Self {
            path: path.to_path_buf(),
            content,
            reader: Mutex::new(reader),
        };
        file.check_tensor_data()?;
        Ok(file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header (metadata and tensor directory).
    pub fn content(&self) -> &Content {
        &self.content
    }

    fn error(&self, message: impl Into<String>) -> IoError {
        IoError::Gguf {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Every tensor must lie inside the file: a truncated download fails at open, not halfway
    /// through loading.
    fn check_tensor_data(&self) -> Result<()> {
        let size = std::fs::metadata(&self.path)
            .map_err(|source| IoError::Read {
                path: self.path.clone(),
                source,
            })?
            .len();
        for (name, info) in &self.content.tensor_infos {
            // Sizes come from the file: multiply them checked (an overflowing product would
            // panic, or wrap to a small size that passes the bounds check below).
            let too_large = || {
                self.error(format!(
                    "tensor '{name}' with dims {:?} is too large to address",
                    info.shape.dims()
                ))
            };
            let elems = info
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(too_large)?;
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(self.error(format!(
                    "tensor '{name}' has {elems} elements, not a multiple of the {:?} block size {block}",
                    info.ggml_dtype
                )));
            }
            let bytes = (elems / block)
                .checked_mul(info.ggml_dtype.type_size())
                .ok_or_else(too_large)? as u64;
            let end = self
                .content
                .tensor_data_offset
                .saturating_add(info.offset)
                .saturating_add(bytes);
            if end > size {
                return Err(self.error(format!(
                    "tensor '{name}' ends at byte {end} but the file has {size} bytes (truncated?)"
                )));
            }
        }
        Ok(())
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<String> {
        self.str("general.architecture")
    }

    /// The metadata value at `key`, if present.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.value(key)
            .ok_or_else(|| self.error(format!("metadata key '{key}' is missing")))
    }

    /// A required unsigned integer (any integer width).
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.required(key)?;
        as_usize(v).ok_or_else(|| self.error(format!("metadata '{key}' is {v:?}, not an integer")))
    }

    /// An optional unsigned integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.value(key) {
            None => Ok(None),
            Some(_) => self.usize(key).map(Some),
        }
    }

    /// An optional float (f32 or f64).
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v as f64)),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(v) => Err(self.error(format!("metadata '{key}' is {v:?}, not a float"))),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(format!("metadata '{key}' is {v:?}, not a boolean"))),
        }
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<String> {
        match self.required(key)? {
            Value::String(s) => Ok(s.clone()),
            v => Err(self.error(format!("metadata '{key}' is {v:?}, not a string"))),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.value(key) {
            None => Ok(None),
            Some(_) => self.str(key).map(Some),
        }
    }

    /// Length of an array value (e.g. `tokenizer.ggml.tokens`).
    pub fn array_len(&self, key: &str) -> Option<usize> {
        match self.value(key) {
            Some(Value::Array(a)) => Some(a.len()),
            _ => None,
        }
    }

    /// `true` when the file holds tensor `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Shape of tensor `name` in PyTorch order.
    pub fn tensor_shape(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims())
    }

    /// Storage type of tensor `name`.
    pub fn tensor_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|i| i.ggml_dtype)
    }

    /// Read tensor `name` as stored (quantized blocks stay quantized).
    pub fn tensor(&self, name: &str, device: &Device) -> Result<QTensor> {
        if !self.has_tensor(name) {
            return Err(IoError::MissingTensor {
                name: name.to_string(),
                files: self.path.display().to_string(),
            });
        }
        let mut reader = self
            .reader
            .lock()
            .map_err(|_| self.error("the file reader was poisoned by an earlier panic"))?;
        self.content
            .tensor(&mut *reader, name, device)
            .map_err(|e| self.error(format!("tensor '{name}': {e}")))
    }

    /// Total bytes of tensor data (what resident memory should stay close to).
    pub fn tensor_bytes(&self) -> usize {
        self.content
            .tensor_infos
            .values()
            .map(|i| i.shape.elem_count() / i.ggml_dtype.block_size() * i.ggml_dtype.type_size())
            .sum()
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    match *v {
        Value::U8(x) => Some(x as usize),
        Value::U16(x) => Some(x as usize),
        Value::U32(x) => Some(x as usize),
        Value::U64(x) => usize::try_from(x).ok(),
        Value::I8(x) => usize::try_from(x).ok(),
        Value::I16(x) => usize::try_from(x).ok(),
        Value::I32(x) => usize::try_from(x).ok(),
        Value::I64(x) => usize::try_from(x).ok(),
        _ => None,
    }
}

/// Make the backend's header errors speak GGUF: an unknown type id names the supported types.
/// The backend's error without the backtrace it attaches under `RUST_BACKTRACE` (a user
/// reading why a file does not load needs the reason, not lmrs's call stack).
fn without_backtrace(e: lmrs_core::candle::Error) -> lmrs_core::candle::Error {
    match e {
        lmrs_core::candle::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        e => e,
    }
}

fn describe_header_error(msg: &str) -> String {
    if msg.contains("unknown dtype") {
        format!(
            "{msg}: unsupported tensor type (lmrs executes F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, \
             Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
        )
    } else if msg.contains("failed to fill whole buffer")
        || msg.contains("UnexpectedEof")
        || msg.contains("remaining")
    {
        format!("{msg} (the header is truncated)")
    } else {
        msg.to_string()
    }
}
