//! Token cross-entropy as one autograd node: `(n, vocab)` logits → `(n,)` per-row losses
//! (masked, label-smoothed), with a hand-written backward.
//!
//! Built from tensor ops, the loss kept four vocabulary-wide tensors of every row alive for
//! the backward pass (the f32 copy, the shifted logits, their exponentials, the log-softmax):
//! for a 32k or 49k vocabulary that was the largest activation of a step. This node keeps
//! none: its backward recomputes each row's softmax from the logits, which the graph holds
//! anyway, and returns `mask * (softmax - (1 - eps) * onehot(label) - eps / vocab)`.

use lmrs_core::candle::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Storage};
use lmrs_core::Tensor;

/// Per-row `mask * ((1 - eps) * nll + eps / vocab * sum_j(-log p_j))`.
pub(crate) struct CrossEntropyRows {
    /// Label of each row (any valid id where the mask is 0).
    pub(crate) labels: Vec<u32>,
    /// 1 for counted rows, 0 for ignored ones.
    pub(crate) mask: Vec<f32>,
    /// Label smoothing `eps`.
    pub(crate) smoothing: f32,
}

/// `(max, log-sum-exp)` of one row.
fn row_lse(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    (max, max + sum.ln())
}

/// The f32 rows of a contiguous `(n, vocab)` CPU storage.
fn rows<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<(&'a [f32], usize)> {
    let CpuStorage::F32(data) = storage else {
        bail!("{what}: f32 logits only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{what}: needs contiguous logits");
    };
    let dims = layout.shape().dims();
    if dims.len() != 2 {
        bail!("{what}: logits of shape {dims:?}, not (n, vocab)");
    }
    Ok((&data[start..end], dims[1]))
}

impl CustomOp1 for CrossEntropyRows {
    fn name(&self) -> &'static str {
        "lmrs-cross-entropy-rows"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (data, vocab) = rows(storage, layout, self.name())?;
        let eps = self.smoothing;
        let out: Vec<f32> = data
            .chunks_exact(vocab)
            .zip(self.labels.iter().zip(&self.mask))
            .map(|(row, (&label, &m))| {
                if m == 0.0 {
                    return 0.0;
                }
                let (_, lse) = row_lse(row);
                let nll = lse - row[label as usize];
                if eps > 0.0 {
                    // sum_j -log p_j = vocab * lse - sum_j x_j
                    let smoothed = vocab as f32 * lse - row.iter().sum::<f32>();
                    m * ((1.0 - eps) * nll + eps / vocab as f32 * smoothed)
                } else {
                    m * nll
                }
            })
            .collect();
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let arg = arg.contiguous()?;
        let g: Vec<f32> = grad.to_vec1()?;
        let (st, layout) = arg.storage_and_layout();
        let Storage::Cpu(cpu) = &*st else {
            bail!("{}: CPU tensors only", self.name());
        };
        let (data, vocab) = rows(cpu, layout, self.name())?;
        let eps = self.smoothing;
        let mut out = vec![0f32; data.len()];
        for (i, (row, dst)) in data
            .chunks_exact(vocab)
            .zip(out.chunks_exact_mut(vocab))
            .enumerate()
        {
            let scale = g[i] * self.mask[i];
            if scale == 0.0 {
                continue;
            }
            let (max, lse) = row_lse(row);
            let shift = lse - max;
            for (d, &x) in dst.iter_mut().zip(row) {
                *d = scale * (((x - max) - shift).exp() - eps / vocab as f32);
            }
            dst[self.labels[i] as usize] -= scale * (1.0 - eps);
        }
        let shape = arg.shape().clone();
        drop(st);
        Ok(Some(Tensor::from_vec(out, shape, arg.device())?))
    }
}
