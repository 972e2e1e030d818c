//! Gemma 3 text models (Gemma Team 2025; `transformers`' `Gemma3ForCausalLM`): Llama-like
//! blocks with four RMSNorms each (`x * (1 + w)`), q/k norms, embeddings scaled by
//! `sqrt(hidden_size)`, a GELU-tanh gated MLP, and local sliding-window layers interleaved with
//! global ones, each kind with its own RoPE base.

mod config;
mod model;

pub use config::Gemma3Config;
pub use model::Gemma3;
