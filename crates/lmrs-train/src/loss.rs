//! Token losses as `transformers` computes them.
//!
//! Labels use `-100` for positions that do not count (padding, the prompt of a
//! prompt/completion pair). [`token_loss`] returns the *sum* over counted tokens; the trainer
//! divides by the number of counted tokens of the whole optimizer step (every
//! gradient-accumulation micro-batch together), which is the Trainer's `num_items_in_batch`
//! normalization; with one micro-batch per step it is the usual per-token mean.

use lmrs_core::{DType, Tensor, D};

use crate::Result;

/// Label value of positions that carry no loss.
pub const IGNORE_INDEX: i64 = -100;

/// `log_softmax` over the last dimension from differentiable ops, in f32.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let x = logits.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Summed token loss and how many tokens it counts.
pub struct TokenLoss {
    /// Scalar: `(1 - eps) * nll + eps * smoothed / vocab`, summed over counted tokens.
    pub sum: Tensor,
    /// Counted (non-ignored) tokens.
    pub count: usize,
}

/// Cross-entropy of `logits` `(n, vocab)` against `labels` (`n` values, [`IGNORE_INDEX`]
/// ignored), with `transformers`' `LabelSmoother` when `smoothing > 0`: the smoothed term is
/// the negative log-probability summed over the vocabulary, divided by the vocabulary size
/// (the Trainer divides the two sums by `count` and `count * vocab`).
pub fn token_loss(logits: &Tensor, labels: &[i64], smoothing: f64) -> Result<TokenLoss> {
    let (n, vocab) = logits.dims2()?;
    if labels.len() != n {
        return Err(crate::TrainError::Args(format!(
            "{} labels for {n} positions",
            labels.len()
        )));
    }
    let dev = logits.device();
    let mask: Vec<f32> = labels
        .iter()
        .map(|&l| if l == IGNORE_INDEX { 0.0 } else { 1.0 })
        .collect();
    let count = mask.iter().filter(|&&m| m > 0.0).count();
    let ids: Vec<u32> = labels.iter().map(|&l| l.max(0) as u32).collect();
    if let Some(bad) = ids
        .iter()
        .zip(labels)
        .find(|(&i, &l)| l != IGNORE_INDEX && i as usize >= vocab)
    {
        return Err(crate::TrainError::Args(format!(
            "label {} is outside the vocabulary of {vocab}",
            bad.1
        )));
    }
    if dev.is_cpu() {
        // One autograd node that keeps no vocabulary-wide intermediates (see `fused_ce`).
        let op = crate::fused_ce::CrossEntropyRows {
            labels: ids,
            mask,
            smoothing: smoothing as f32,
        };
        let logits = logits.to_dtype(DType::F32)?.contiguous()?;
        let sum = logits.apply_op1(op)?.sum_all()?;
        return Ok(TokenLoss { sum, count });
    }
    let mask = Tensor::from_vec(mask, n, dev)?;
    let ids = Tensor::from_vec(ids, (n, 1), dev)?;
    let logp = log_softmax(logits)?;
    let nll = logp.gather(&ids, 1)?.squeeze(1)?.neg()?;
    let nll = (nll * &mask)?.sum_all()?;
    let sum = if smoothing > 0.0 {
        let smoothed = (logp.sum(1)?.neg()? * &mask)?.sum_all()?;
        ((nll * (1.0 - smoothing))? + (smoothed * (smoothing / vocab as f64))?)?
    } else {
        nll
    };
    Ok(TokenLoss { sum, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;

    #[test]
    fn cross_entropy_with_ignored_positions_and_smoothing() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(
            &[[2.0f32, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, 3.0, 0.0]],
            &dev,
        )?;
        let labels = [0i64, IGNORE_INDEX, 1];
        let l = token_loss(&logits, &labels, 0.0)?;
        assert_eq!(l.count, 2);
        let lse = |r: [f64; 3]| r.iter().map(|x| x.exp()).sum::<f64>().ln();
        let (a, c) = (lse([2.0, 0.0, -1.0]), lse([1.0, 3.0, 0.0]));
        let want = (a - 2.0) + (c - 3.0);
        let got = l.sum.to_scalar::<f32>()? as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let s = token_loss(&logits, &labels, 0.1)?.sum.to_scalar::<f32>()? as f64;
        let smooth = (3.0 * a - 1.0) + (3.0 * c - 4.0);
        let want = 0.9 * want + 0.1 * smooth / 3.0;
        assert!((s - want).abs() < 1e-5, "{s} vs {want}");
        assert!(token_loss(&logits, &[0, 5, 1], 0.0).is_err());
        Ok(())
    }

    /// The fused node's gradient equals autograd through the op-by-op form.
    #[test]
    fn fused_cross_entropy_gradient_equals_the_op_by_op_one() -> Result<()> {
        use lmrs_core::candle::Var;
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (5, 11), &dev)?)?;
        let labels = [3i64, IGNORE_INDEX, 0, 10, 7];
        for eps in [0.0, 0.1] {
            let fused = token_loss(x.as_tensor(), &labels, eps)?.sum;
            let gf = fused.backward()?;
            let gf = gf.get(x.as_tensor()).expect("gradient");
            // The reference: log_softmax, gather, mask from tensor ops.
            let logp = log_softmax(x.as_tensor())?;
            let mut total = Tensor::zeros((), DType::F32, &dev)?;
            for (i, &l) in labels.iter().enumerate() {
                if l == IGNORE_INDEX {
                    continue;
                }
                let row = logp.get(i)?;
                let nll = row.get(l as usize)?.neg()?;
                let smooth = (row.sum_all()?.neg()? / 11.0)?;
                total = (total + ((nll * (1.0 - eps))? + (smooth * eps)?)?)?;
            }
            let d = (fused.to_scalar::<f32>()? - total.to_scalar::<f32>()?).abs();
            assert!(d < 1e-4, "loss differs by {d}");
            let gr = total.backward()?;
            let gr = gr.get(x.as_tensor()).expect("gradient");
            let d = (gf - gr)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "eps {eps}: gradient differs by {d}");
        }
        Ok(())
    }
}
