//! lmrs-models: one module per architecture, and [`registry`] mapping a checkpoint's
//! `model_type` to the code that builds it. Models hold weights only; decoding state lives in
//! explicit cache values and generation lives in `lmrs-generate`.

pub mod bert;
mod error;
pub mod registry;
pub mod t5;

pub use error::{ModelError, Result};
