//! Activation functions by their Hugging Face names.

use lmrs_core::Tensor;

/// An activation, parsed from a config's `hidden_act` / `dense_act_fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `relu`.
    Relu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `gelu`: the exact erf form.
    GeluErf,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    /// Parse a Hugging Face activation name; `None` when unknown.
    pub fn from_hf_name(name: &str) -> Option<Self> {
        Some(match name {
            "relu" => Self::Relu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "gelu" => Self::GeluErf,
            "silu" | "swish" => Self::Silu,
            _ => return None,
        })
    }

    /// The same function for the fused kernels ([`crate::kernels::gemm::PackedMatrix::matmul`]).
    pub fn kernel_act(&self) -> crate::kernels::vmath::Act {
        use crate::kernels::vmath::Act;
        match self {
            Self::Relu => Act::Relu,
            Self::GeluTanh => Act::GeluTanh,
            Self::GeluErf => Act::GeluErf,
            Self::Silu => Act::Silu,
        }
    }

    /// Apply element-wise.
    pub fn apply(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        match self {
            Self::Relu => x.relu(),
            Self::GeluTanh => x.gelu(),
            // The kernel has no backward pass; the backend's erf form does.
            Self::GeluErf if x.track_op() => x.gelu_erf(),
            Self::GeluErf => crate::kernels::gelu::gelu_erf(x),
            Self::Silu => x.silu(),
        }
    }
}
