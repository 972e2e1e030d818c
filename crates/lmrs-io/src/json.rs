//! Typed JSON reading with errors that name the file.

use crate::{IoError, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Read and deserialize a JSON file; the error names the file and the line/column at fault.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    // Never read a FIFO or device (`/dev/zero` would fill memory); a missing file falls
    // through to the read's own NotFound below.
    if let Some(kind) = crate::path_kind::special_kind(path) {
        return Err(IoError::NotRegular {
            what: "JSON file",
            path: path.to_path_buf(),
            kind,
            expected: "a regular file",
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            IoError::NotFound {
                what: "file",
                path: path.to_path_buf(),
            }
        } else {
            IoError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    from_str_naming_field(&text).map_err(|(field, source)| IoError::Json {
        path: path.to_path_buf(),
        field,
        source,
    })
}

/// Deserialize `text`, saying which key a type error is about: serde's own message ("invalid
/// type: string \"six\", expected usize") names the type but not the key.
pub fn from_str_naming_field<T: DeserializeOwned>(
    text: &str,
) -> std::result::Result<T, (String, serde_json::Error)> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))?;
    // Trailing characters after the value are an error, as with `serde_json::from_str`.
    de.end().map_err(|e| (String::new(), e))?;
    Ok(value)
}

#[derive(serde::Deserialize)]
struct ModelTypeOnly {
    model_type: Option<String>,
}

/// The `model_type` key of a `config.json` (`None` when absent).
pub fn model_type(config_path: &Path) -> Result<Option<String>> {
    Ok(read_json::<ModelTypeOnly>(config_path)?.model_type)
}
