//! lmrs-io: everything between a model reference the user types and tensors in memory.
//!
//! - [`resolve`]: a local folder or a hub id found in the standard Hugging Face cache.
//! - [`ModelFiles`]: the files of one HF-layout model folder (config, weights, tokenizer...).
//! - [`Weights`]: memory-mapped safetensors (single or sharded) with a prefix builder that checks
//!   every tensor's shape.
//! - [`GgufFile`] and [`GgufModel`]: GGUF files, their metadata read as an HF config and their
//!   tensors addressed by HF names (quantized blocks kept as they are, [`MatrixWeight`]).
//! - [`load_tokenizer`] and [`read_json`]: typed loading with errors naming the file at fault.
//! - [`read_gguf_header`]: lmrs's validating GGUF header reader (from a file or bytes).
//! - [`tokenizer_from_gguf`]: the tokenizer a GGUF file describes in its metadata.

mod charsmap;
mod error;
mod files;
mod gguf;
mod gguf_arch;
mod gguf_header;
mod gguf_tokenizer;
mod json;
mod lora;
mod params;
mod path_kind;
mod resolve;
mod tokenizer;
mod weights;

pub use error::{IoError, Result};
pub use files::ModelFiles;
pub use gguf::{is_gguf, GgufFile};
pub use gguf_arch::{GgufModel, GgufName, GgufNameMap, GgufTransform, GGUF_ARCHITECTURES};
pub use gguf_header::read_gguf_header;
pub use gguf_tokenizer::tokenizer_from_gguf;
pub use json::{from_str_naming_field, model_type, read_json};
pub use lora::{read_adapter_config, Adapter, LoraPair, LoraSpec, PEFT_KEY_PREFIX};
pub use params::ParamStore;
pub use resolve::{hub_cache_dirs, resolve, resolve_in, ModelSource};
pub use tokenizer::load_tokenizer;
pub use weights::{MatrixWeight, Weights};
