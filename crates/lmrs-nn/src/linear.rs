//! `Linear`: `y = x W^T + b`, with `W` stored `(out, in)` as in PyTorch checkpoints.

use crate::Result;
use lmrs_core::{Module, Tensor};
use lmrs_io::Weights;

/// A dense projection.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wrap existing tensors: `weight` is `(out, in)`, `bias` is `(out,)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Load `weight` (and `bias` when `with_bias`) under `w`'s prefix.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, with_bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out_dim, in_dim])?;
        let bias = if with_bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// The `(out, in)` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Linear {
    /// `x`: `(..., in)` → `(..., out)`.
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        // (rows, in) x (in, out): one GEMM whatever the leading dims.
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        let last = out_dims.len() - 1;
        out_dims[last] = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}
