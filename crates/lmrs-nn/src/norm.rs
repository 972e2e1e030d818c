//! Root-mean-square layer norm: `x / sqrt(mean(x^2) + eps) * weight`, no mean subtraction and
//! no bias. This is T5's `T5LayerNorm` and Llama's `RMSNorm`.

use crate::Result;
use lmrs_core::{Module, Tensor};
use lmrs_io::Weights;

/// RMS norm over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Load `weight` `(dim,)` under `w`'s prefix.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[dim])?,
            eps: eps as f32,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        // The fused kernel needs a contiguous input; it computes in f32.
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}
