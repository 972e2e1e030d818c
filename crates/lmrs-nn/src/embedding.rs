//! Token embedding lookup, from a dense table or quantized GGUF rows.

use crate::Result;
use lmrs_core::candle::quantized::QTensor;
use lmrs_core::{Module, Tensor};
use lmrs_io::{MatrixWeight, Weights};
use std::sync::Arc;

/// A `(vocab, dim)` lookup table.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Table,
    dim: usize,
}

#[derive(Debug, Clone)]
enum Table {
    Dense(Tensor),
    /// Rows are dequantized as they are looked up.
    Quantized(Arc<QTensor>),
}

impl Embedding {
    /// Load `weight` `(vocab, dim)` under `w`'s prefix (quantized GGUF tables stay quantized).
    pub fn load(w: &Weights, vocab: usize, dim: usize) -> Result<Self> {
        Ok(Self::from_matrix(w.get_matrix("weight", &[vocab, dim])?))
    }

    /// A table over a dense or quantized `(vocab, dim)` weight.
    pub fn from_matrix(weight: MatrixWeight) -> Self {
        match weight {
            MatrixWeight::Dense(t) => {
                let dim = t.dims().get(1).copied().unwrap_or(0);
                Self {
                    table: Table::Dense(t),
                    dim,
                }
            }
            MatrixWeight::Quantized(q) => {
                let dim = q.shape().dims().get(1).copied().unwrap_or(0);
                Self {
                    table: Table::Quantized(q),
                    dim,
                }
            }
        }
    }

    /// The dense `(vocab, dim)` table (`None` when quantized).
    pub fn weight(&self) -> Option<&Tensor> {
        match &self.table {
            Table::Dense(t) => Some(t),
            Table::Quantized(_) => None,
        }
    }

    /// The table as a projection weight, for output layers tied to the embedding.
    pub fn matrix(&self) -> MatrixWeight {
        match &self.table {
            Table::Dense(t) => MatrixWeight::Dense(t.clone()),
            Table::Quantized(q) => MatrixWeight::Quantized(q.clone()),
        }
    }

    /// The device the table lives on.
    pub fn device(&self) -> lmrs_core::Device {
        match &self.table {
            Table::Dense(t) => t.device().clone(),
            Table::Quantized(q) => q.device(),
        }
    }

    /// Width of each embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

impl Module for Embedding {
    /// `ids`: `(b, t)` u32 → `(b, t, dim)`. Ids must be `< vocab` (checked by the backend).
    fn forward(&self, ids: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        match &self.table {
            Table::Dense(w) => w
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, self.dim)),
            Table::Quantized(q) => {
                let vocab = q.shape().dims()[0];
                let flat = ids.flatten_all()?.to_vec1::<u32>()?;
                if let Some(bad) = flat.iter().find(|&&i| i as usize >= vocab) {
                    lmrs_core::candle::bail!("token id {bad} is outside the vocabulary of {vocab}");
                }
                q.embedding(ids)
            }
        }
    }
}
