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

/// Fail with a config error naming the first key whose value is 0 (sizes and counts that
/// must be positive, else the model would divide by zero or build empty layers).
pub(crate) fn require_positive(path: &std::path::Path, values: &[(&str, usize)]) -> Result<()> {
    match values.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(ModelError::config(
            path,
            format!("'{key}' must be positive"),
        )),
        None => Ok(()),
    }
}
