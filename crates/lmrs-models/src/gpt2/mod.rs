//! GPT-2 (Radford et al. 2019; `transformers`' `GPT2LMHeadModel`): learned absolute
//! positions, pre-norm blocks with LayerNorm, fused QKV projection, GELU-tanh MLP, tied output.
//! Checkpoints store projections as `Conv1D` weights `(in, out)`; GGUF files store them
//! `(out, in)` like every other projection.

mod model;

pub use model::{Gpt2, Gpt2Config};
