//! LoRA for training: which projections get adapters, and the two matrices of each.
//!
//! A training run made with a [`LoraSpec`] ([`crate::ParamStore::with_lora`]) freezes the base:
//! every tensor a model loads stays a plain (memory-mapped or dequantized) tensor, except those
//! of `modules_to_save`, and each targeted projection gets `lora_A` `(r, in)` and `lora_B`
//! `(out, r)` variables under `<module>.lora_A.weight` / `<module>.lora_B.weight` (PEFT's names
//! without the `base_model.model.` prefix its files add). The math is PEFT's:
//! `y = base(x) + B(A(dropout(x))) * scaling`, `scaling = alpha / r` (`alpha / sqrt(r)` with
//! rsLoRA), A Kaiming-uniform (`a = sqrt(5)`, so bound `1 / sqrt(in)`) and B zero, so the
//! first step starts from the base model exactly.

use lmrs_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a LoRA run adapts (PEFT's `LoraConfig` fields lmrs supports).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub alpha: f64,
    /// `lora_dropout`, on the adapter's input in training mode.
    pub dropout: f64,
    /// `target_modules`: a module is adapted when its key is one of these or ends with
    /// `.<entry>` (PEFT's suffix match).
    pub target_modules: Vec<String>,
    /// `use_rslora`: scale by `alpha / sqrt(r)`.
    pub use_rslora: bool,
    /// `modules_to_save`: modules trained in full beside the adapters (a new head).
    pub modules_to_save: Vec<String>,
    /// Seeds the initialization of the A matrices.
    pub seed: u64,
}

impl LoraSpec {
    /// The factor on `B(A(x))`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// The `target_modules` entry that module key `module` matches, if any.
    pub fn target_of(&self, module: &str) -> Option<&str> {
        self.target_modules
            .iter()
            .find(|t| module_matches(module, t))
            .map(String::as_str)
    }

    /// `true` when tensor key `key` belongs to a module of `modules_to_save` (trained in full).
    pub fn saves(&self, key: &str) -> bool {
        self.modules_to_save.iter().any(|m| {
            key.strip_prefix(m.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
                || key.contains(&format!(".{m}."))
        })
    }

    /// A Kaiming-uniform `(r, in)` matrix for the A of `module`, from a generator seeded by
    /// the run's seed and the module key (so the draw does not depend on load order).
    pub fn init_a(
        &self,
        module: &str,
        in_dim: usize,
        device: &Device,
    ) -> lmrs_core::Result<Tensor> {
        let mut h = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in module.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut rng = StdRng::seed_from_u64(h);
        let bound = 1.0 / (in_dim as f64).sqrt();
        let data: Vec<f32> = (0..self.r * in_dim)
            .map(|_| rng.random_range(-bound..bound) as f32)
            .collect();
        Ok(Tensor::from_vec(data, (self.r, in_dim), device)?)
    }
}

/// PEFT's `target_modules` match: the whole key, or its last components.
fn module_matches(module: &str, target: &str) -> bool {
    module == target || module.ends_with(&format!(".{target}"))
}

/// The adapter of one projection as a layer uses it.
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// `(r, in)`.
    pub a: Tensor,
    /// `(out, r)`.
    pub b: Tensor,
    /// `alpha / r` (or `alpha / sqrt(r)`).
    pub scaling: f64,
    /// Dropout on the adapter's input (training mode only).
    pub dropout: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LoraSpec {
        LoraSpec {
            r: 4,
            alpha: 8.0,
            dropout: 0.0,
            target_modules: vec!["q_proj".into(), "self_attn.v_proj".into()],
            use_rslora: false,
            modules_to_save: vec!["score".into()],
            seed: 42,
        }
    }

    #[test]
    fn targets_match_by_suffix_and_scaling_follows_rslora() {
        let s = spec();
        assert_eq!(
            s.target_of("model.layers.0.self_attn.q_proj"),
            Some("q_proj")
        );
        assert_eq!(
            s.target_of("model.layers.3.self_attn.v_proj"),
            Some("self_attn.v_proj")
        );
        assert_eq!(s.target_of("model.layers.0.self_attn.qq_proj"), None);
        assert_eq!(s.target_of("model.layers.0.mlp.v_proj_x"), None);
        assert!(s.saves("score.weight"));
        assert!(!s.saves("scorer.weight"));
        assert_eq!(s.scaling(), 2.0);
        let rs = LoraSpec {
            use_rslora: true,
            ..spec()
        };
        assert_eq!(rs.scaling(), 4.0);
    }

    #[test]
    fn a_is_seeded_per_module_within_the_kaiming_bound() -> lmrs_core::Result<()> {
        let s = spec();
        let a = s.init_a("m.q_proj", 16, &Device::Cpu)?;
        assert_eq!(a.dims(), &[4, 16]);
        let v: Vec<f32> = a.flatten_all()?.to_vec1()?;
        assert!(v.iter().all(|x| x.abs() <= 0.25));
        let again: Vec<f32> = s
            .init_a("m.q_proj", 16, &Device::Cpu)?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(v, again);
        let other: Vec<f32> = s
            .init_a("m.v_proj", 16, &Device::Cpu)?
            .flatten_all()?
            .to_vec1()?;
        assert_ne!(v, other);
        Ok(())
    }
}
