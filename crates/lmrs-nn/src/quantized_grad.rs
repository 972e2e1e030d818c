//! A frozen quantized projection in training (QLoRA): the product runs on the GGUF blocks as
//! in inference, and the gradient to the input, `dy @ W`, dequantizes `W` in the backward pass
//! only (one matrix at a time, dropped right after), so the base never sits in memory as f32.
//!
//! Without this the quantized kernels, which have no backward pass, would silently stop the
//! gradient to every adapter below the projection.

use crate::linear::Linear;
use lmrs_core::candle::quantized::QTensor;
use lmrs_core::candle::{bail, CpuStorage, CustomOp1, Layout, Module, Result, Shape, Storage};
use lmrs_core::{Device, Tensor};
use std::sync::Arc;

/// `x @ W^T (+ b)` with `W` quantized, differentiable in `x`.
pub(crate) struct QuantizedProduct {
    /// The projection without adapter or gradient path: its quantized forward.
    pub(crate) inner: Linear,
    /// `W` `(out, in)` as stored.
    pub(crate) weight: Arc<QTensor>,
}

impl CustomOp1 for QuantizedProduct {
    fn name(&self) -> &'static str {
        "lmrs-quantized-product"
    }

    /// `x` `(rows, in)` → `(rows, out)` through the quantized kernel.
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            bail!("{}: f32 inputs only", self.name());
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{}: needs a contiguous input", self.name());
        };
        let x = Tensor::from_vec(data[start..end].to_vec(), layout.shape(), &Device::Cpu)?;
        let y = self.inner.forward(&x)?.contiguous()?;
        let (st, l) = y.storage_and_layout();
        match (&*st, l.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => {
                Ok((CpuStorage::F32(v[a..b].to_vec()), y.shape().clone()))
            }
            _ => bail!("{}: unexpected output storage", self.name()),
        }
    }

    /// `dx = dy @ W`, `dy` `(rows, out)`, `W` dequantized `(out, in)`.
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let w = self.weight.dequantize(grad.device())?;
        Ok(Some(grad.matmul(&w)?))
    }
}
