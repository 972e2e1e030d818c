//! lmrs-pipelines: tasks as a user thinks of them. Each pipeline is tokenize → model /
//! generate → detokenize, batched, with the checkpoint's own defaults.
//!
//! - [`Seq2SeqPipeline`]: summarization, translation and plain text2text with an
//!   encoder-decoder (the behaviour of `transformers`' summarization, translation and
//!   text2text-generation pipelines).

mod error;
mod seq2seq;
mod task;
mod text;

pub use error::{PipelineError, Result};
pub use seq2seq::{GeneratedText, LoadOptions, RunOptions, Seq2SeqOutput, Seq2SeqPipeline};
pub use task::{language_code, Task, TaskSettings};
pub use text::{clean_up_tokenization, TextTokenizer};
