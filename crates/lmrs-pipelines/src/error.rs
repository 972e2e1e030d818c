//! Errors a pipeline reports to its front end.

/// Everything that can go wrong running a task.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Finding or reading the model's files failed.
    #[error(transparent)]
    Io(#[from] lmrs_io::IoError),
    /// Building the model failed (config, weights, unsupported architecture).
    #[error(transparent)]
    Model(#[from] lmrs_models::ModelError),
    /// Running the model or the decoding loop failed.
    #[error(transparent)]
    Core(#[from] lmrs_core::Error),
    /// A generation option is invalid.
    #[error(transparent)]
    GenerationConfig(#[from] lmrs_generate::ConfigError),
    /// An input text is empty (or only whitespace).
    #[error("input {index} is empty")]
    EmptyInput {
        /// 0-based position of the input.
        index: usize,
    },
    /// The tokenizer failed on an input.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The model folder has no tokenizer.
    #[error("no tokenizer.json in {0}")]
    NoTokenizer(String),
    /// A chat template does not compile or fails while rendering.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// A chat template rejected the conversation with `raise_exception(message)`.
    #[error("chat template rejected the conversation: {0}")]
    ChatTemplateRaised(String),
    /// The task cannot run with this model (e.g. unknown language pair).
    #[error("{0}")]
    Task(String),
}

impl From<lmrs_core::candle::Error> for PipelineError {
    fn from(e: lmrs_core::candle::Error) -> Self {
        PipelineError::Core(e.into())
    }
}

/// `Result` with [`PipelineError`].
pub type Result<T> = std::result::Result<T, PipelineError>;
