//! Errors raised while finding and reading model files. Every message names the file, tensor
//! or key at fault.

use std::path::PathBuf;

/// Errors from resolving and reading model files.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A path that should exist does not.
    #[error("{what} not found: {path}")]
    NotFound {
        /// What was looked for ("model folder", "config.json"...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A path exists but is not what lmrs can read there: a device, a FIFO or a socket where a
    /// regular file or folder belongs (reading `/dev/zero` never ends; opening a FIFO blocks).
    #[error("{what} {path} is {kind}, not {expected}")]
    NotRegular {
        /// What was expected there ("model path", "GGUF file", "config.json"...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What it is instead ("a character device", "a FIFO"...).
        kind: &'static str,
        /// What belongs there ("a regular file", "a folder"...).
        expected: &'static str,
    },
    /// A model reference matched neither a local path nor the hub cache.
    #[error("model '{reference}' is neither a local path nor in the Hugging Face cache (searched: {searched})")]
    ModelNotFound {
        /// What the user asked for.
        reference: String,
        /// The cache folders searched, comma separated.
        searched: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is malformed, lacks a required key, or holds a value of the wrong type.
    #[error("invalid JSON in {path}: {}{source}", field_prefix(.field))]
    Json {
        /// The file.
        path: PathBuf,
        /// The key at fault (`num_layers`, `rope_scaling.factor`), when one is (serde's path
        /// to the value; empty for a syntax error).
        field: String,
        /// The parse error (says line and column).
        source: serde_json::Error,
    },
    /// A safetensors file is corrupt or truncated.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is absent from the checkpoint.
    #[error("tensor '{name}' not found in {files}")]
    MissingTensor {
        /// Full checkpoint name of the tensor.
        name: String,
        /// The weight files searched.
        files: String,
    },
    /// A tensor has another shape than the config implies.
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Full checkpoint name of the tensor.
        name: String,
        /// Shape the model config implies.
        expected: Vec<usize>,
        /// Shape stored in the file.
        found: Vec<usize>,
    },
    /// A tensor's dtype cannot be used.
    #[error("tensor '{name}' has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// Full checkpoint name of the tensor.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// The tokenizer file cannot be loaded.
    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What the tokenizers library said.
        message: String,
    },
    /// A GGUF file is corrupt, truncated, or holds what lmrs cannot use.
    #[error("invalid GGUF file {path}: {message}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the metadata key, tensor or type at fault).
        message: String,
    },
    /// A checkpoint's architecture is not one lmrs implements.
    #[error("{path}: unsupported architecture '{architecture}' (supported: {supported})")]
    UnsupportedArchitecture {
        /// The file declaring it.
        path: PathBuf,
        /// `general.architecture` or `model_type`.
        architecture: String,
        /// The architectures lmrs can load from this kind of file.
        supported: String,
    },
    /// A GGUF file's tokenizer metadata lacks a key, holds a value of the wrong type, or is
    /// inconsistent (an id outside the vocabulary, a malformed merge).
    #[error("GGUF tokenizer metadata '{key}': {message}")]
    GgufTokenizer {
        /// The metadata key at fault (`tokenizer.ggml.tokens`...).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor operation failed while loading.
    /// A LoRA adapter folder lmrs cannot apply.
    #[error("LoRA adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    #[error(transparent)]
    Core(#[from] lmrs_core::Error),
}

impl From<lmrs_core::candle::Error> for IoError {
    fn from(e: lmrs_core::candle::Error) -> Self {
        IoError::Core(e.into())
    }
}

/// `'field': ` before a JSON error that concerns one key, nothing for a syntax error.
fn field_prefix(field: &str) -> String {
    if field.is_empty() || field == "." {
        String::new()
    } else {
        format!("'{field}': ")
    }
}

/// `Result` with [`IoError`].
pub type Result<T> = std::result::Result<T, IoError>;
