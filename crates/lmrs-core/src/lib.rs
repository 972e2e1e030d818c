//! lmrs-core: the tensor backend re-export, the shared [`Error`] type and the small capability
//! traits that models implement ([`CausalLm`], [`Seq2SeqLm`], [`Encoder`]) and that generation drives ([`StepModel`]).
//!
//! Nothing in this crate knows a concrete model.

pub use candle_core as candle;
pub use candle_core::{DType, Device, Module, Tensor, D};

mod error;
mod traits;

pub use error::{Error, Result};
pub use traits::{
    CausalLm, DecoderCache, Encoder, JoinRows, LogitsFor, Seq2SeqLm, SpecialTokens, StepModel,
};
