//! lmrs-models: one module per architecture, and [`registry`] mapping a checkpoint's
//! `model_type` to the code that builds it. Models hold weights only; decoding state lives in
//! explicit cache values and generation lives in `lmrs-generate`.

pub mod bert;
mod card;
pub mod catalogue;
mod causal;
mod common;
mod error;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod registry;
mod sizes;
pub mod t5;

pub use card::{
    inspect, inspect_folder, inspect_gguf, inspect_source, list_cached, CachedModel, CardTokens,
    ModelCard, ModelFormat,
};
pub use catalogue::{Family, ModelKind, Role};
pub use causal::{
    load_causal, load_causal_adapted, load_causal_from, load_causal_gguf, load_causal_gguf_adapted,
    CausalModel,
};
pub use error::{ModelError, Result};
