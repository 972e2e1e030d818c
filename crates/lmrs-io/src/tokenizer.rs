//! `tokenizer.json` through the `tokenizers` crate.

use crate::{IoError, Result};
use std::path::Path;

/// Load a `tokenizer.json`. The error names the file.
pub fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    crate::path_kind::require_file(path, "tokenizer.json")?;
    let bytes = std::fs::read(path).map_err(|source| IoError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let error = |message: String| IoError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    // `tokenizers` 0.23 panics ("Helper") on a JSON syntax error inside a `decoder` value
    // (its untagged helper `expect`s the buffered parse): check the syntax first, so a
    // malformed file is an error, not an abort. Found by the tokenizer_json fuzz target.
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        .map_err(|e| error(format!("not valid JSON: {e}")))?;
    tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| error(e.to_string()))
}
