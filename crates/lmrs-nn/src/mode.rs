//! Train and eval mode, and dropout.
//!
//! Layers run the same code for inference and training. What changes in training:
//! - **Differentiable paths.** A fused kernel that has no backward pass (lmrs's own GEMM and
//!   attention kernels, the backend's fused norms and softmax) would silently stop a gradient,
//!   so every layer checks [`tracks_grad`] on its inputs and weights and takes plain tensor
//!   ops when any of them is part of an autograd graph (a `Var`, or a result computed from
//!   one). That check needs no mode: it follows the data.
//! - **Dropout.** Dropout is active only inside [`train_mode`] (like `model.train()` in
//!   PyTorch), drawn from a seeded generator owned by the guard, so a run with a fixed seed
//!   repeats exactly.
//!
//! The mode is per thread: a training loop holds the guard around its forward pass, and
//! inference threads never see it.

use lmrs_core::candle::Result;
use lmrs_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;

thread_local! {
    static TRAINING: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// `true` when any of `tensors` takes part in autograd (is a variable or was computed from
/// one): layers then avoid kernels without a backward pass.
pub fn tracks_grad(tensors: &[&Tensor]) -> bool {
    tensors.iter().any(|t| t.track_op())
}

/// Training mode on this thread until the guard drops: dropout is active, with masks drawn
/// from a generator seeded by `seed`.
pub fn train_mode(seed: u64) -> TrainGuard {
    let previous = TRAINING.with(|t| t.replace(Some(StdRng::seed_from_u64(seed))));
    TrainGuard { previous }
}

/// `true` inside [`train_mode`] on this thread.
pub fn is_training() -> bool {
    TRAINING.with(|t| t.borrow().is_some())
}

/// Restores the previous mode when dropped.
#[must_use = "training mode ends when the guard drops"]
pub struct TrainGuard {
    previous: Option<StdRng>,
}

impl Drop for TrainGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        TRAINING.with(|t| *t.borrow_mut() = previous);
    }
}

/// Inverted dropout as `torch.nn.functional.dropout`: in training mode each element is zeroed
/// with probability `p` and the rest scaled by `1 / (1 - p)`; outside training mode (or with
/// `p == 0`) `x` is returned unchanged.
pub fn dropout(x: &Tensor, p: f64) -> Result<Tensor> {
    if p <= 0.0 || !is_training() {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let n = x.elem_count();
    let scale = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> = TRAINING.with(|t| {
        let mut t = t.borrow_mut();
        // Checked above; the generator cannot vanish in between on one thread.
        let rng = t.as_mut().map(|r| r as &mut StdRng);
        match rng {
            Some(rng) => (0..n)
                .map(|_| if rng.random::<f64>() < p { 0.0 } else { scale })
                .collect(),
            None => vec![1.0; n],
        }
    });
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// Softmax over the last dimension built from differentiable ops, computed in f32 (as
/// `transformers` does with `softmax(..., dtype=torch.float32)`). The running maximum is
/// detached: subtracting it changes no value and no gradient, and keeps it out of the graph.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(lmrs_core::D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(lmrs_core::D::Minus1)?;
    e.broadcast_div(&sum)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;

    #[test]
    fn dropout_is_off_outside_training_and_seeded_inside() -> Result<()> {
        let x = Tensor::ones((4, 256), DType::F32, &Device::Cpu)?;
        let same = dropout(&x, 0.5)?;
        assert_eq!(same.to_vec2::<f32>()?, x.to_vec2::<f32>()?);
        let draw = |seed| -> Result<Vec<Vec<f32>>> {
            let _g = train_mode(seed);
            dropout(&x, 0.25)?.to_vec2::<f32>()
        };
        let (a, b, c) = (draw(7)?, draw(7)?, draw(8)?);
        assert_eq!(a, b, "one seed, one mask");
        assert_ne!(a, c, "another seed, another mask");
        let flat: Vec<f32> = a.concat();
        let zeros = flat.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (150..360).contains(&zeros),
            "{zeros} of 1024 dropped at p=0.25"
        );
        assert!(flat
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        assert!(!is_training(), "the guard restores eval mode");
        Ok(())
    }

    #[test]
    fn softmax_matches_the_fused_one_and_has_a_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = lmrs_core::candle::Var::from_tensor(&Tensor::randn(0f32, 2.0, (3, 7), &dev)?)?;
        let ours = softmax_last_dim(x.as_tensor())?;
        let fused = candle_nn::ops::softmax_last_dim(x.as_tensor())?;
        let d = (&ours - fused)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6, "{d}");
        // d/dx sum(softmax(x) * w) is non-zero for a non-constant w.
        let w = Tensor::randn(0f32, 1.0, (3, 7), &dev)?;
        let grads = (ours * w)?.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).expect("a gradient for x");
        assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }
}
