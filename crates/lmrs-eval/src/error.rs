//! Errors the metrics and readers report.

use std::path::PathBuf;

/// Everything that can go wrong computing a metric or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a dataset file is malformed (invalid UTF-8 or JSON, missing or mistyped field).
    #[error("{file}, line {line}: {message}")]
    Line {
        /// The file (or `stdin`).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Predictions and references do not pair up.
    #[error("{predictions} predictions but {references} references: the files must have one item per line, in the same order")]
    LengthMismatch {
        /// Number of predictions.
        predictions: usize,
        /// Number of references.
        references: usize,
    },
    /// There is nothing to score.
    #[error("no examples to score")]
    Empty,
    /// An option is out of range or unknown.
    #[error("{0}")]
    InvalidOption(String),
    /// An example has more references than the metric accepts.
    #[error("example {index} has {count} references; {metric} takes exactly one")]
    MultipleReferences {
        /// The metric.
        metric: &'static str,
        /// 0-based example index.
        index: usize,
        /// How many references it has.
        count: usize,
    },
}

/// `Result` with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;
