//! Errors raised while building a model from a checkpoint.

/// Errors from configuration and weight loading.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading files failed (missing file, corrupt weights, wrong tensor shape...).
    #[error(transparent)]
    Io(#[from] lmrs_io::IoError),
    /// A config value is missing, zero where it must not be, or inconsistent.
    #[error("invalid config {path}: {message}")]
    Config {
        /// The config file.
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// One config field is wrong: the wrong type, out of range, or a size the checkpoint's
    /// tensors contradict (checked before anything is allocated).
    #[error("invalid config {path}: '{field}' {message}")]
    ConfigField {
        /// The config file (or GGUF file whose metadata became the config).
        path: String,
        /// The field at fault (`num_layers`, `num_attention_heads * head_dim`...).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The checkpoint's architecture is not one lmrs implements.
    #[error("unsupported model_type '{found}' in {path}; supported: {supported}")]
    UnknownModelType {
        /// The `model_type` found (or "(missing)").
        found: String,
        /// The config file.
        path: String,
        /// Supported model types, comma separated.
        supported: String,
    },
    /// A tensor operation failed while building the model.
    #[error(transparent)]
    Core(#[from] lmrs_core::Error),
}

impl From<lmrs_core::candle::Error> for ModelError {
    fn from(e: lmrs_core::candle::Error) -> Self {
        ModelError::Core(e.into())
    }
}

/// `Result` with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// A [`ModelError::Config`] for the config file at `path`.
    pub fn config(path: &std::path::Path, message: impl Into<String>) -> Self {
        ModelError::Config {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// A [`ModelError::ConfigField`] for `field` of the config at `path`.
pub(crate) fn field_error(
    path: &std::path::Path,
    field: &str,
    message: impl Into<String>,
) -> ModelError {
    ModelError::ConfigField {
        path: path.display().to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// Deserialize a config value read from `source`; a wrong-typed field is a
/// [`ModelError::ConfigField`] naming it (serde alone says the type, not the key).
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    source: &std::path::Path,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        if field.is_empty() || field == "." {
            ModelError::config(source, message)
        } else {
            field_error(source, &field, message)
        }
    })
}

/// Token ids of `field` (`eos_token_id`...): absent, null, one id or a list of ids. Anything
/// else (a string, a negative or fractional number, an id beyond u32) is an error naming the
/// field rather than silently no ids.
pub(crate) fn check_token_ids(
    source: &std::path::Path,
    field: &str,
    value: &Option<serde_json::Value>,
) -> Result<()> {
    use serde_json::Value;
    let id = |v: &Value| v.as_u64().is_some_and(|x| x <= u32::MAX as u64);
    let ok = match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.iter().all(id),
        Some(v) => id(v),
    };
    if ok {
        Ok(())
    } else {
        Err(field_error(
            source,
            field,
            format!(
                "is {}; expected a token id (an integer below 2^32) or a list of them",
                value.as_ref().map_or(String::new(), |v| v.to_string())
            ),
        ))
    }
}

/// Fail with a config error naming the first key whose value is 0 (sizes and counts that
/// must be positive, else the model would divide by zero or build empty layers).
pub(crate) fn require_positive(path: &std::path::Path, values: &[(&str, usize)]) -> Result<()> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(field_error(path, key, "must be positive")),
        None => Ok(()),
    }
}
