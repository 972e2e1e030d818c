//! Root-mean-square layer norm: `x / sqrt(mean(x^2) + eps) * weight`, no mean subtraction and
//! no bias. This is T5's `T5LayerNorm` and Llama's `RMSNorm`.

use crate::Result;
use lmrs_core::{Module, Tensor};
use lmrs_io::Weights;

/// RMS norm over the last dimension.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// The scale the product uses; for Gemma's variant with a trainable weight, the raw
    /// `weight` (see `offset`).
    weight: Tensor,
    eps: f32,
    /// Gemma's `1 + weight` is taken at every forward pass (not folded in at load): set when
    /// the weight is a training variable, which the optimizer updates in place.
    offset: bool,
}

impl RmsNorm {
    /// Load `weight` `(dim,)` under `w`'s prefix.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[dim])?,
            eps: eps as f32,
            offset: false,
        })
    }

    /// Gemma's variant, `x_norm * (1 + weight)`: load `weight` and fold the `1 +` in once
    /// (for a training variable, at every forward pass, so updates to it are seen).
    pub fn load_offset(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        let weight = w.get("weight", &[dim])?;
        let offset = weight.track_op();
        Ok(Self {
            weight: if offset { weight } else { (weight + 1.0)? },
            eps: eps as f32,
            offset,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        if self.offset {
            return candle_nn::ops::rms_norm_slow(x, &(&self.weight + 1.0)?, self.eps);
        }
        if crate::mode::tracks_grad(&[x, &self.weight]) {
            // The fused kernel has no backward pass.
            return candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps);
        }
        // The fused kernel needs a contiguous input; it computes in f32.
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// Standard layer norm with a learned scale and shift:
/// `(x - mean(x)) / sqrt(var(x) + eps) * weight + bias` over the last dimension (PyTorch's
/// `nn.LayerNorm`, as in BERT, RoBERTa, DistilBERT).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Load `weight` and `bias` `(dim,)` under `w`'s prefix. Checkpoints converted from
    /// TensorFlow name them `gamma` and `beta`; those names are accepted too, as `transformers`
    /// does.
    pub fn load(w: &Weights, dim: usize, eps: f64) -> Result<Self> {
        let (scale, shift) = if !w.contains("weight") && w.contains("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        w.mark_layer_norm(scale);
        w.mark_layer_norm(shift);
        Ok(Self {
            weight: w.get(scale, &[dim])?,
            bias: w.get(shift, &[dim])?,
            eps: eps as f32,
        })
    }

    /// Wrap existing tensors (`(dim,)` each).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self {
            weight,
            bias,
            eps: eps as f32,
        }
    }

    /// The scale `(dim,)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift `(dim,)`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The epsilon added to the variance.
    pub fn eps(&self) -> f32 {
        self.eps
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        if crate::mode::tracks_grad(&[x, &self.weight, &self.bias]) {
            // The fused kernel has no backward pass.
            return candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps);
        }
        // The fused kernel needs a contiguous input; it computes in f32.
        candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;

    #[test]
    fn layer_norm_matches_the_definition() -> lmrs_core::candle::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (2, 3, 8), &dev)?;
        let w = Tensor::randn(1f32, 0.5, 8, &dev)?;
        let b = Tensor::randn(0f32, 0.5, 8, &dev)?;
        let ln = LayerNorm::new(w.clone(), b.clone(), 1e-12);
        let got = ln.forward(&x)?;
        let want = candle_nn::ops::layer_norm_slow(&x, &w, &b, 1e-12)?;
        let d = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "{d}");
        Ok(())
    }
}
