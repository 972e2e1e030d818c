//! lmrs-models: one module per architecture, and [`registry`] mapping a checkpoint's
//! `model_type` to the code that builds it. Models hold weights only; decoding state lives in
//! explicit cache values and generation lives in `lmrs-generate`.

pub mod bert;
mod causal;
mod common;
mod error;
pub mod gemma3;
pub mod gpt2;
pub mod llama;
pub mod registry;
mod sizes;
pub mod t5;

pub use causal::{load_causal, load_causal_gguf, CausalModel, CAUSAL_MODEL_TYPES};
pub use error::{ModelError, Result};
