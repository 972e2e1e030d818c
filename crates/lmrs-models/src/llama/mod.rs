//! The Llama family of decoder-only models (Touvron et al. 2023): Llama 1/2/3, SmolLM2,
//! TinyLlama, Mistral-style and Qwen2 checkpoints. Pre-norm blocks with RMSNorm, rotary
//! positions, grouped-query attention and a SwiGLU MLP (`transformers`' `LlamaForCausalLM`,
//! `Qwen2ForCausalLM`).

mod config;
mod model;

pub use config::LlamaConfig;
pub use model::Llama;
