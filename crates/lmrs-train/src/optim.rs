//! AdamW with PyTorch's update, `transformers`' parameter groups, and clipping by global norm.
//!
//! The update of `torch.optim.AdamW` (decoupled weight decay, bias correction, `eps` added
//! after the square root is bias-corrected), per element, in f32:
//! ```text
//! p   *= 1 - lr * wd                      (decay group only)
//! m    = b1 * m + (1 - b1) * g
//! v    = b2 * v + (1 - b2) * g * g
//! p   -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//! Moments exist only for trainable parameters; frozen tensors are never given any.

use lmrs_core::candle::Var;
use lmrs_core::Tensor;

use crate::Result;

/// AdamW hyperparameters (`TrainingArguments` names and defaults).
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    /// `adam_beta1` (0.9).
    pub beta1: f64,
    /// `adam_beta2` (0.999).
    pub beta2: f64,
    /// `adam_epsilon` (1e-8).
    pub eps: f64,
    /// `weight_decay` (0), applied to the decay group only.
    pub weight_decay: f64,
}

/// One parameter under optimization.
#[derive(Debug)]
pub struct Param {
    /// Checkpoint key.
    pub name: String,
    pub var: Var,
    /// In the weight-decay group.
    pub decay: bool,
    /// First and second moments, as long as the parameter.
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// `transformers`' `get_decay_parameter_names`: no decay for biases and normalization weights,
/// recognized by name (`bias`, `layernorm`, `rmsnorm`, a `norm` component, `_norm`), matched
/// case-insensitively, plus `nn.LayerNorm` modules (which BERT-family checkpoints name
/// `LayerNorm`, already covered by the name rule).
pub fn decays(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let parts: Vec<&str> = n.split('.').collect();
    let norm_part = parts.contains(&"norm");
    let underscore_norm = parts.iter().any(|p| p.ends_with("_norm"));
    !(n.contains("bias")
        || n.contains("layernorm")
        || n.contains("rmsnorm")
        || norm_part
        || underscore_norm)
}

/// The optimizer: parameters with their moments and the step count.
#[derive(Debug)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub params: Vec<Param>,
    /// Optimizer steps taken (PyTorch's per-parameter `step`, shared here).
    pub step: u64,
}

impl AdamW {
    /// Moments at zero for every variable in `vars` (checkpoint key, variable); weight decay
    /// for those [`decays`] names and `in_layer_norm` does not claim.
    pub fn new(
        cfg: AdamWConfig,
        vars: Vec<(String, Var)>,
        in_layer_norm: impl Fn(&str) -> bool,
    ) -> Self {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let n = var.as_tensor().elem_count();
                Param {
                    decay: decays(&name) && !in_layer_norm(&name),
                    name,
                    var,
                    exp_avg: vec![0.0; n],
                    exp_avg_sq: vec![0.0; n],
                }
            })
            .collect();
        Self {
            cfg,
            params,
            step: 0,
        }
    }

    /// One update at learning rate `lr` with `grads[i]` the gradient of `params[i]` (`None`:
    /// the parameter got no gradient this step and is left as it is, as PyTorch skips
    /// parameters whose `.grad` is `None`).
    pub fn step(&mut self, lr: f64, grads: &[Option<Tensor>]) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let step_size = (lr / bc1) as f32;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let bc2_sqrt = bc2_sqrt as f32;
        for (p, g) in self.params.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            let g = g.flatten_all()?.to_vec1::<f32>()?;
            let t = p.var.as_tensor();
            let mut w = t.flatten_all()?.to_vec1::<f32>()?;
            let decay = if p.decay {
                (1.0 - lr * c.weight_decay) as f32
            } else {
                1.0
            };
            for i in 0..w.len() {
                w[i] *= decay;
                let m = b1 * p.exp_avg[i] + (1.0 - b1) * g[i];
                let v = b2 * p.exp_avg_sq[i] + (1.0 - b2) * g[i] * g[i];
                p.exp_avg[i] = m;
                p.exp_avg_sq[i] = v;
                w[i] -= step_size * m / (v.sqrt() / bc2_sqrt + eps);
            }
            let new = Tensor::from_vec(w, t.shape(), t.device())?;
            p.var.set(&new)?;
        }
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_`: the global L2 norm over every gradient (returned, as the
/// Trainer logs it: the norm before clipping), and every gradient scaled by
/// `min(1, max_norm / (norm + 1e-6))`. `max_norm <= 0` leaves gradients alone.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter().flatten() {
        let n = g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        sq += n;
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 {
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        if coef < 1.0 {
            for g in grads.iter_mut().flatten() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmrs_core::Device;

    #[test]
    fn decay_groups_follow_transformers_names() {
        for name in [
            "encoder.block.0.layer.0.SelfAttention.q.weight",
            "bert.embeddings.word_embeddings.weight",
            "model.layers.0.mlp.up_proj.weight",
            "classifier.weight",
        ] {
            assert!(decays(name), "{name}");
        }
        for name in [
            "encoder.block.0.layer.0.layer_norm.weight",
            "encoder.final_layer_norm.weight",
            "bert.encoder.layer.0.output.LayerNorm.weight",
            "classifier.bias",
            "model.norm.weight",
            "model.layers.0.input_layernorm.weight",
            "transformer.ln_f.bias",
        ] {
            assert!(!decays(name), "{name}");
        }
    }

    #[test]
    fn adamw_first_steps_match_the_closed_form() -> Result<()> {
        // With a constant gradient g, Adam's first update is -lr * sign(g) (m/sqrt(v) = 1
        // after bias correction, up to eps), whatever the betas.
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &Device::Cpu)?)?;
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut opt = AdamW::new(cfg, vec![("w".into(), var.clone())], |_| false);
        let g = Tensor::new(&[0.5f32, -0.25, 2.0], &Device::Cpu)?;
        opt.step(0.1, &[Some(g)])?;
        let w = var.as_tensor().to_vec1::<f32>()?;
        // decayed by (1 - 0.1 * 0.5) first, then -0.1 * sign(g)
        let want = [0.95 - 0.1, -1.9 + 0.1, 2.85 - 0.1];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
        Ok(())
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_returns_the_norm_before() -> Result<()> {
        let dev = Device::Cpu;
        let mut grads = vec![
            Some(Tensor::new(&[3.0f32], &dev)?),
            None,
            Some(Tensor::new(&[4.0f32], &dev)?),
        ];
        let norm = clip_grad_norm(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-9);
        let a = grads[0].as_ref().map(|g| g.to_vec1::<f32>()).transpose()?;
        assert!((a.unwrap_or_default()[0] - 0.6).abs() < 1e-6);
        Ok(())
    }
}
