//! lmrs-generate: text generation for any lmrs model, with `transformers` semantics.
//!
//! * [`GenerationConfig`]: `generation_config.json` with HF field names, layered with
//!   [`GenerationConfig::merge`] and resolved to HF v5 defaults by [`GenerationConfig::resolve`].
//! * [`processors`] and [`warpers`]: HF's logits processors, in HF's order.
//! * [`generate`]: greedy search, multinomial sampling, beam search and beam sampling over one
//!   step function ([`lmrs_core::StepModel`]); token ids match `model.generate()` for greedy and
//!   beam search.
//! * [`Seq2SeqSession`]: the step function of any encoder-decoder ([`lmrs_core::Seq2SeqLm`]).
//! * [`CausalSession`]: the step function of any decoder-only model ([`lmrs_core::CausalLm`]),
//!   with left-padded batches of prompts prefilled one by one.
//! * [`DecodeBatch`]: greedy search and sampling over a batch that rows join and leave between
//!   steps (continuous batching), each row with its own configuration.
//!
//! The crate names no concrete model.

mod beam;
pub mod causal;
pub mod config;
pub mod continuous;
mod generate;
pub mod processors;
mod search;
pub mod select;
pub mod seq2seq;
pub mod warpers;

pub use causal::CausalSession;
pub use config::{ConfigError, EarlyStopping, GenerationConfig, LengthLimit, ResolvedConfig};
pub use continuous::{DecodeBatch, RowPolicy, StepOutcome};
pub use generate::{
    generate, generate_hooked, generate_resolved, GeneratedSequence, Hooks, StopCheck,
    TokenCallback,
};
pub use processors::{LogitsProcessors, RowContext};
pub use seq2seq::Seq2SeqSession;
pub use warpers::LogitsWarpers;
