//! The error type shared by model code and generation.

/// Errors raised while running a model or a decoding loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the tensor backend (shape mismatch, dtype, device...).
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The caller handed in something the model cannot take (empty batch, bad token id...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A NaN or infinity appeared where a finite number is required.
    #[error("non-finite values (NaN or Inf) in {0}")]
    NonFinite(String),
    /// A generation option is out of its valid range.
    #[error("invalid generation option: {0}")]
    InvalidOption(String),
    /// An allocation was refused before it was made: it would not fit the memory available.
    #[error("{what} would need {needed_mib} MiB but {available_mib} MiB of memory are available; lower the batch size, the number of beams or the output length")]
    TooLarge {
        /// What was to be allocated.
        what: String,
        /// Size asked for, in MiB.
        needed_mib: u128,
        /// Memory available (MemAvailable), in MiB.
        available_mib: u128,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
