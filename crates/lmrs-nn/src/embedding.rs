//! Token embedding lookup.

use crate::Result;
use lmrs_core::{Module, Tensor};
use lmrs_io::Weights;

/// A `(vocab, dim)` lookup table.
#[derive(Debug, Clone)]
pub struct Embedding {
    weight: Tensor,
}

impl Embedding {
    /// Load `weight` `(vocab, dim)` under `w`'s prefix.
    pub fn load(w: &Weights, vocab: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[vocab, dim])?,
        })
    }

    /// The `(vocab, dim)` table (tied output layers reuse it).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Embedding {
    /// `ids`: `(b, t)` u32 → `(b, t, dim)`. Ids must be `< vocab` (checked by the backend).
    fn forward(&self, ids: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dim = self.weight.dim(1)?;
        self.weight
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, dim))
    }
}
