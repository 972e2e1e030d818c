//! `Linear`: `y = x W^T + b`, with `W` stored `(out, in)` as in PyTorch checkpoints. The weight
//! is dense (lmrs's own f32 kernels) or quantized GGUF blocks, multiplied as stored (never
//! dequantized whole): Q4_1 / Q5_0 and Q4_K / Q6_K by lmrs's own kernels, every other format
//! by the backend's quantized mat-vec/mat-mat.

use crate::kernels::block_quant::{BlockFormat, BlockMatrix};
use crate::kernels::k_quant::{KFormat, KQuantMatrix};
use crate::kernels::{gemm, small_matmul};
use crate::Result;
use lmrs_core::candle::quantized::{GgmlDType, QMatMul, QTensor};
use lmrs_core::{Module, Tensor};
use lmrs_io::{LoraPair, MatrixWeight, Weights};
use std::sync::Arc;

/// How quantized weights are multiplied.
#[derive(Debug, Clone)]
enum Quantized {
    /// The backend's quantized matmul (SIMD for Q4_0, Q8_0 and the other K-quants).
    Backend(QMatMul),
    /// lmrs's Q4_1 / Q5_0 kernels (the backend has no SIMD path for them).
    Blocks(Arc<BlockMatrix>),
    /// lmrs's Q4_K / Q6_K kernels: a row's result does not depend on how many rows are
    /// multiplied with it (the backend's single-row and multi-row kernels sum in different
    /// orders, so batched decoding drifted from decoding alone).
    KQuants(Arc<KQuantMatrix>),
}

/// A projection, dense or quantized behind one type.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    /// Set for quantized weights; `weight` is then unused (an empty placeholder).
    quantized: Option<Quantized>,
    out_dim: usize,
    bias: Option<Tensor>,
    /// A LoRA adapter trained beside the frozen weight (`lmrs_io::LoraSpec`).
    lora: Option<LoraPair>,
    /// The quantized weight as stored, kept for a frozen quantized base in training: the
    /// gradient to the input dequantizes it in the backward pass (QLoRA).
    grad_weight: Option<Arc<QTensor>>,
}

impl Linear {
    /// Wrap existing tensors: `weight` is `(out, in)`, `bias` is `(out,)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        let out_dim = weight.dims().first().copied().unwrap_or(0);
        Self {
            weight,
            quantized: None,
            out_dim,
            bias,
            lora: None,
            grad_weight: None,
        }
    }

    /// A projection over a dense or quantized `(out, in)` weight.
    pub fn from_matrix(weight: MatrixWeight, bias: Option<Tensor>) -> Result<Self> {
        match weight {
            MatrixWeight::Dense(t) => Ok(Self::new(t, bias)),
            MatrixWeight::Quantized(q) => {
                let (out_dim, in_dim) = q.shape().dims2()?;
                let placeholder = Tensor::zeros(0, lmrs_core::DType::F32, &q.device())?;
                let own = if q.device().is_cpu() {
                    own_kernels(&q, out_dim, in_dim)
                } else {
                    None
                };
                let quantized = match own {
                    Some(own) => own,
                    None => Quantized::Backend(QMatMul::from_arc(q)?),
                };
                Ok(Self {
                    weight: placeholder,
                    quantized: Some(quantized),
                    out_dim,
                    bias,
                    lora: None,
                    grad_weight: None,
                })
            }
        }
    }

    /// Load `weight` (and `bias` when `with_bias`) under `w`'s prefix. Quantized GGUF weights
    /// stay quantized. In a LoRA training run that targets this projection, it also gets its
    /// adapter.
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize, with_bias: bool) -> Result<Self> {
        let weight = w.get_projection("weight", &[out_dim, in_dim])?;
        let grad_weight = match (&weight, w.is_trainable()) {
            (MatrixWeight::Quantized(q), true) => Some(q.clone()),
            _ => None,
        };
        let bias = if with_bias {
            Some(w.get("bias", &[out_dim])?)
        } else {
            None
        };
        let mut linear = Self::from_matrix(weight, bias)?;
        linear.lora = w.lora(in_dim, out_dim)?;
        linear.grad_weight = grad_weight;
        Ok(linear)
    }

    /// The `(out, in)` weight when it is dense.
    pub fn weight(&self) -> Option<&Tensor> {
        self.quantized.is_none().then_some(&self.weight)
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The `(out,)` bias, when the projection has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// lmrs's own kernels for a CPU tensor, where they apply: Q4_1 / Q5_0 blocks, and Q4_K / Q6_K
/// rows of whole 256-value super-blocks. `None` leaves the tensor to the backend.
fn own_kernels(q: &QTensor, rows: usize, cols: usize) -> Option<Quantized> {
    let data = || Some(q.data().ok()?.into_owned());
    let blocks = |f| BlockMatrix::new(f, data()?, rows, cols);
    let k_quants = |f| KQuantMatrix::new(f, data()?, rows, cols);
    match q.dtype() {
        GgmlDType::Q4_1 => blocks(BlockFormat::Q4_1).map(|m| Quantized::Blocks(Arc::new(m))),
        GgmlDType::Q5_0 => blocks(BlockFormat::Q5_0).map(|m| Quantized::Blocks(Arc::new(m))),
        GgmlDType::Q4K => k_quants(KFormat::Q4K).map(|m| Quantized::KQuants(Arc::new(m))),
        GgmlDType::Q6K => k_quants(KFormat::Q6K).map(|m| Quantized::KQuants(Arc::new(m))),
        _ => None,
    }
}

/// `x2d` `(rows, in)` through one of lmrs's quantized kernels (`f32` rows in, `(rows, out)` out).
fn own_matmul(
    x2d: &Tensor,
    out: usize,
    matmul: impl FnOnce(&[f32]) -> Vec<f32>,
) -> lmrs_core::candle::Result<Tensor> {
    let rows = x2d.dim(0)?;
    let xs = x2d
        .to_dtype(lmrs_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Tensor::from_vec(matmul(&xs), (rows, out), x2d.device())
}

impl Linear {
    /// The backend's GEMM path, whatever the shapes (the reference for the small-row kernel).
    pub fn forward_gemm(&self, x2d: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let y = x2d.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// lmrs's own kernels, when they apply (f32 on the CPU): the small-row kernel up to
    /// [`small_matmul::MAX_ROWS`] rows, the packed GEMM beyond. `None` otherwise.
    pub fn forward_small(&self, x2d: &Tensor) -> lmrs_core::candle::Result<Option<Tensor>> {
        use lmrs_core::candle::{CpuStorage, DType, Storage};
        let (rows, k) = x2d.dims2()?;
        if self.quantized.is_some() {
            return Ok(None);
        }
        let n = self.weight.dim(0)?;
        if x2d.dtype() != DType::F32 || self.weight.dtype() != DType::F32 || !x2d.device().is_cpu()
        {
            return Ok(None);
        }
        // Borrow the rows in place: copying them out cost a pass over the activations on
        // every projection.
        let x2d = x2d.contiguous()?;
        let (x_storage, x_layout) = x2d.storage_and_layout();
        let xs = match (&*x_storage, x_layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => &v[start..end],
            _ => return Ok(None),
        };
        let bias = match &self.bias {
            Some(b) => Some(b.to_vec1::<f32>()?),
            None => None,
        };
        let (storage, layout) = self.weight.storage_and_layout();
        let y = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(w)), Some((start, end))) => {
                let w = &w[start..end];
                if rows <= small_matmul::MAX_ROWS {
                    small_matmul::matmul_xwt(xs, rows, k, w, n, bias.as_deref())
                } else {
                    match gemm::matmul_xwt(xs, rows, k, w, n, bias.as_deref()) {
                        Some(y) => y,
                        None => return Ok(None),
                    }
                }
            }
            _ => return Ok(None),
        };
        drop((storage, x_storage));
        Ok(Some(Tensor::from_vec(y, (rows, n), x2d.device())?))
    }
}

impl Module for Linear {
    /// `x`: `(..., in)` → `(..., out)`.
    fn forward(&self, x: &Tensor) -> lmrs_core::candle::Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        // (rows, in) x (in, out): one product whatever the leading dims.
        let x2d = x.reshape((rows, in_dim))?;
        let y = if let (Some(w), true) = (&self.grad_weight, x2d.track_op()) {
            // A frozen quantized base under adapters: differentiable in the input.
            let inner = Linear {
                lora: None,
                grad_weight: None,
                ..self.clone()
            };
            x2d.contiguous()?
                .apply_op1(crate::quantized_grad::QuantizedProduct {
                    inner,
                    weight: w.clone(),
                })?
        } else if let Some(q) = &self.quantized {
            let y = match q {
                Quantized::Backend(q) => q.forward(&x2d.contiguous()?)?,
                Quantized::Blocks(q) => own_matmul(&x2d, q.rows(), |xs| q.matmul_xwt(xs, rows))?,
                Quantized::KQuants(q) => own_matmul(&x2d, q.rows(), |xs| q.matmul_xwt(xs, rows))?,
            };
            match &self.bias {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            }
        } else if crate::mode::tracks_grad(&[&x2d, &self.weight]) {
            // Training: lmrs's kernels have no backward pass.
            self.forward_gemm(&x2d)?
        } else {
            match self.forward_small(&x2d)? {
                Some(y) => y,
                None => self.forward_gemm(&x2d)?,
            }
        };
        let y = match &self.lora {
            // PEFT's `base(x) + lora_B(lora_A(dropout(x))) * scaling`.
            Some(l) => {
                let a = crate::mode::dropout(&x2d, l.dropout)?.matmul(&l.a.t()?)?;
                (y + (a.matmul(&l.b.t()?)? * l.scaling)?)?
            }
            None => y,
        };
        let mut out_dims = dims.to_vec();
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim;
        y.reshape(out_dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::{Device, Tensor};

    #[test]
    fn own_kernels_agree_with_backend_gemm() -> lmrs_core::candle::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (70, 33), &dev)?;
        let b = Tensor::randn(0f32, 1.0, 70, &dev)?;
        for bias in [None, Some(b)] {
            let lin = Linear::new(w.clone(), bias);
            for rows in [1, 4, 7, 16, 33, 64] {
                let x = Tensor::randn(0f32, 1.0, (rows, 33), &dev)?;
                let small = lin
                    .forward_small(&x)?
                    .expect("kernel applies to f32 CPU rows");
                let gemm = lin.forward_gemm(&x)?;
                let d = (small - gemm)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-4, "rows {rows}: {d}");
            }
            // Beyond MAX_ROWS the packed GEMM takes over (where the CPU has AVX2/FMA).
            let many = Tensor::randn(0f32, 1.0, (131, 33), &dev)?;
            if let Some(packed) = lin.forward_small(&many)? {
                let gemm = lin.forward_gemm(&many)?;
                let d = (packed - gemm)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d < 1e-4, "packed GEMM: {d}");
            }
        }
        Ok(())
    }

    /// A frozen quantized projection in training passes the exact gradient `dy @ W` (W
    /// dequantized) to its input, and its output is the quantized kernel's.
    #[test]
    fn quantized_projection_is_differentiable_in_its_input() -> lmrs_core::candle::Result<()> {
        use lmrs_core::candle::quantized::{GgmlDType, QTensor};
        use lmrs_core::candle::Var;
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (48, 64), &dev)?;
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?);
        let mut lin = Linear::from_matrix(MatrixWeight::Quantized(q.clone()), None)
            .map_err(|e| lmrs_core::candle::Error::Msg(e.to_string()))?;
        let plain = lin.clone();
        lin.grad_weight = Some(q.clone());
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 64), &dev)?)?;
        let y = lin.forward(x.as_tensor())?;
        let untracked = plain.forward(&x.as_tensor().detach())?;
        let d = (&y - &untracked)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(d, 0.0, "the forward is the quantized kernel's");
        let r = Tensor::randn(0f32, 1.0, (5, 48), &dev)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let g = grads
            .get(x.as_tensor())
            .expect("a gradient reaches the input");
        let want = r.matmul(&q.dequantize(&dev)?)?;
        let d = (g - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-5, "dx differs by {d}");
        Ok(())
    }
}
