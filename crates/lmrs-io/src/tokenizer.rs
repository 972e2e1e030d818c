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
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| error(format!("not valid JSON: {e}")))?;
    // Likewise it `expect`s a `Precompiled` normalizer's charsmap to decode: check each one.
    if let Some(normalizer) = value.get("normalizer") {
        check_precompiled(normalizer).map_err(error)?;
    }
    tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| error(e.to_string()))
}

/// Every `{"type": "Precompiled"}` normalizer in `v` (also inside a `Sequence`) must parse.
fn check_precompiled(v: &serde_json::Value) -> std::result::Result<(), String> {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                // From text, not from the Value: the charsmap field is a borrowed `&str`,
                // which an owned Value cannot lend (every real T5 tokenizer would fail).
                let text = v.to_string();
                serde_json::from_str::<spm_precompiled::Precompiled>(&text)
                    .map_err(|e| format!("invalid Precompiled normalizer: {e}"))?;
                // It parses; now the trie inside it must stay in bounds when walked.
                let encoded = map
                    .get("precompiled_charsmap")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default();
                let bytes = base64::decode(encoded)
                    .map_err(|e| format!("invalid Precompiled normalizer: {e}"))?;
                crate::charsmap::check(&bytes)
                    .map_err(|e| format!("invalid Precompiled normalizer: {e}"))?;
            }
            map.values().try_for_each(check_precompiled)
        }
        serde_json::Value::Array(items) => items.iter().try_for_each(check_precompiled),
        _ => Ok(()),
    }
}
