//! The gated feed-forward block of Llama-style models: `down(act(gate(x)) * up(x))` (SwiGLU
//! with SiLU, GeGLU with GELU-tanh), with the checkpoint names `gate_proj`, `up_proj`,
//! `down_proj`.

use crate::{Activation, Linear, Result};
use lmrs_core::{Module, Tensor};
use lmrs_io::Weights;

/// `LlamaMLP` / `Gemma3MLP` / `Qwen2MLP`.
#[derive(Debug, Clone)]
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl GatedMlp {
    /// Load the three projections (`dim -> inner -> dim`) under `w`'s prefix.
    pub fn load(
        w: &Weights,
        dim: usize,
        inner: usize,
        bias: bool,
        act: Activation,
    ) -> Result<Self> {
        Ok(Self {
            gate_proj: Linear::load(&w.pp("gate_proj"), dim, inner, bias)?,
            up_proj: Linear::load(&w.pp("up_proj"), dim, inner, bias)?,
            down_proj: Linear::load(&w.pp("down_proj"), inner, dim, bias)?,
            act,
        })
    }
}

impl Module for GatedMlp {
    /// `x`: `(..., dim)` → `(..., dim)`.
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let gate = self.act.apply(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}
