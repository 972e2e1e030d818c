//! lmrs-pipelines: tasks as a user thinks of them. Each pipeline is tokenize → model /
//! generate → detokenize, batched, with the checkpoint's own defaults.
//!
//! - [`Seq2SeqPipeline`]: summarization, translation and plain text2text with an
//!   encoder-decoder (the behaviour of `transformers`' summarization, translation and
//!   text2text-generation pipelines).
//! - [`EmbeddingPipeline`]: sentence embeddings with an encoder (`sentence-transformers`'
//!   `encode`), and cosine similarity ranking.
//! - [`ClassificationPipeline`]: text classification with a sequence-classification encoder
//!   (`transformers`' text-classification pipeline).
//! - [`TokenClassificationPipeline`]: named entities and other token labels, with
//!   `transformers`' aggregation strategies and character offsets.
//! - [`FillMaskPipeline`]: the most likely tokens for each `[MASK]`.
//! - [`TextGenerationPipeline`]: completion, chat (through the model's chat template) and
//!   instruction summarization with a decoder-only model, from GGUF or an HF folder;
//!   [`ContinuousGeneration`] runs its requests in a batch they join and leave between steps.
//! - [`perplexity`]: perplexity of a causal LM over a long text with strided windows
//!   (`transformers`' "Perplexity of fixed-length models").
//! - [`ChatTemplate`]: a model's Jinja chat template rendered as `transformers`'
//!   `apply_chat_template` does.

mod chat_source;
mod chat_template;
mod classify;
mod continuous;
mod embed;
mod error;
mod fill_mask;
mod generation;
mod ner;
mod perplexity;
mod sentence;
mod seq2seq;
mod source;
mod task;
mod text;

pub use chat_source::{folder_chat_template, gguf_chat_template};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use classify::{
    Classification, ClassificationPipeline, ClassifyOptions, LabelScore, ScoreFunction,
};
pub use continuous::{ContinuousGeneration, RequestId, RequestTextSink};
pub use embed::{
    cosine_similarity, is_encoder_model, rank_by_similarity, EmbedOptions, EmbeddingPipeline,
    Ranked, TextEmbedding,
};
pub use error::{PipelineError, Result};
pub use fill_mask::{FillMaskPipeline, MaskFill};
pub use generation::{
    default_model, default_model_path, is_causal_model, model_cache_dir, Completion,
    CompletionOutput, FinishReason, TextGenerationPipeline, DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MODEL_FILE, SUMMARIZE_INSTRUCTION,
};
pub use lmrs_io::hub_cache_dirs;
/// What a model is, without loading it: the architecture catalogue and model cards (front ends
/// ask these rather than reading `config.json`).
pub use lmrs_models::{
    catalogue, inspect, list_cached, CachedModel, CardTokens, ModelCard, ModelFormat, ModelKind,
    Role,
};
pub use lmrs_nn::Pooling;
pub use ner::{Aggregation, Entity, TokenClassificationPipeline};
pub use perplexity::{
    perplexity, plan_windows, AddBos, PerplexityOptions, PerplexityReport, Window,
    BATCH_TOKEN_BUDGET, DEFAULT_CHUNK_TOKENS, DEFAULT_WINDOW_BATCH,
};
pub use sentence::SentenceConfig;
pub use seq2seq::{GeneratedText, LoadOptions, RunOptions, Seq2SeqOutput, Seq2SeqPipeline};
pub use task::{language_code, Task, TaskSettings};
pub use text::{clean_up_tokenization, Detailed, Encoded, TextTokenizer};
