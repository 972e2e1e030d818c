//! T5 (Raffel et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
//! Transformer", 2020): v1.0 (`t5-small`...), v1.1, FLAN-T5 and mT5 checkpoints.
//!
//! Matches `transformers`' `T5ForConditionalGeneration`.

mod attention;
mod cache;
mod config;
mod model;

pub use cache::T5Cache;
pub use config::{FeedForwardKind, T5Config};
pub use model::T5ForConditionalGeneration;
