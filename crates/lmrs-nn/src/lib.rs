//! lmrs-nn: the layers every model is built from, written once.
//!
//! Layers load themselves from [`lmrs_io::Weights`] given the shapes their model's config
//! implies; none of them knows a checkpoint's key names beyond its own leaf names
//! (`weight`, `bias`).

mod activation;
mod attention;
mod causal_cache;
mod embedding;
mod gated_mlp;
pub mod kernels;
mod kv_cache;
mod linear;
pub mod memory;
pub mod mode;
mod norm;
mod pooling;
mod position;
mod quantized_grad;
mod rope;

pub use activation::Activation;
pub use attention::{
    attend, attend_grouped, attend_with_dropout, causal_mask_bias, merge_heads, padding_mask_bias,
    split_heads, MASKED,
};
pub use causal_cache::{CacheShape, CausalCache};
pub use embedding::Embedding;
pub use gated_mlp::GatedMlp;
pub use kv_cache::KvCache;
pub use linear::Linear;
pub use norm::{LayerNorm, RmsNorm};
pub use pooling::{l2_normalize, pool, Pooling};
pub use position::relative_position_bucket;
pub use rope::{apply_rope, RopeScaling, RotaryEmbedding};

/// Errors of layer construction are loading errors.
pub type Result<T> = lmrs_io::Result<T>;
