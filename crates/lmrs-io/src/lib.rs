//! lmrs-io: everything between a model reference the user types and tensors in memory.
//!
//! - [`resolve`]: a local folder or a hub id found in the standard Hugging Face cache.
//! - [`ModelFiles`]: the files of one HF-layout model folder (config, weights, tokenizer...).
//! - [`Weights`]: memory-mapped safetensors (single or sharded) with a prefix builder that checks
//!   every tensor's shape.
//! - [`load_tokenizer`] and [`read_json`]: typed loading with errors naming the file at fault.

mod error;
mod files;
mod json;
mod resolve;
mod tokenizer;
mod weights;

pub use error::{IoError, Result};
pub use files::ModelFiles;
pub use json::{model_type, read_json};
pub use resolve::{hub_cache_dirs, resolve, ModelSource};
pub use tokenizer::load_tokenizer;
pub use weights::Weights;
