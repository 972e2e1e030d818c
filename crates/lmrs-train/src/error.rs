//! Errors of a training run. Every message names the file, line, field, flag or step at fault.

use std::path::PathBuf;

/// What can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A dataset line or record is unusable.
    #[error("{file}:{line}: {message}")]
    Data {
        file: String,
        line: usize,
        message: String,
    },
    /// The arguments do not make a run (a flag's value, a `--config` key, a combination).
    #[error("{0}")]
    Args(String),
    /// The model cannot be trained here (its family, its format).
    #[error("{0}")]
    Unsupported(String),
    /// The loss became NaN or infinite.
    #[error(
        "the training loss is {value} at step {step}; stopped (the last good checkpoint is kept)"
    )]
    NonFinite { step: usize, value: f32 },
    /// `--resume` found nothing usable.
    #[error("cannot resume from {path}: {message}")]
    Resume { path: PathBuf, message: String },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Loading the model or tokenizer.
    #[error(transparent)]
    Model(#[from] lmrs_models::ModelError),
    /// Reading checkpoint files.
    #[error(transparent)]
    Io(#[from] lmrs_io::IoError),
    /// A tensor operation.
    #[error(transparent)]
    Tensor(#[from] lmrs_core::Error),
    /// A backend tensor operation.
    #[error(transparent)]
    Backend(#[from] lmrs_core::candle::Error),
    /// Scoring predictions (ROUGE, BLEU).
    #[error(transparent)]
    Eval(#[from] lmrs_eval::EvalError),
    /// JSON of a state file.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Rendering a chat template.
    #[error(transparent)]
    Pipeline(#[from] lmrs_pipelines::PipelineError),
    /// The tokenizer failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The run was interrupted (Ctrl-C) after saving a checkpoint at `step`.
    #[error("interrupted at step {step}; checkpoint saved, continue with --resume")]
    Interrupted { step: usize },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

/// A file error naming `path`.
pub(crate) fn file_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::File { path, source }
}
