//! `tokenizer.json` through the `tokenizers` crate.

use crate::{IoError, Result};
use std::path::Path;

/// Load a `tokenizer.json`. The error names the file.
pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    crate::path_kind::require_file(path, "tokenizer.json")?;
    tokenizers::Tokenizer::from_file(path).map_err(|e| IoError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
