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

use crate::{IoError, Result};
use lmrs_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The settings of a PEFT adapter folder, refusing what lmrs does not build (other PEFT
/// types, DoRA, per-layer ranks, `fan_in_fan_out`, trained biases).
pub fn read_adapter_config(dir: &Path) -> Result<LoraSpec> {
    let path = dir.join("adapter_config.json");
    let cfg: Value = crate::read_json(&path)?;
    let bad = |message: String| IoError::Adapter {
        path: path.clone(),
        message,
    };
    let peft_type = cfg.get("peft_type").and_then(Value::as_str).unwrap_or("");
    if peft_type != "LORA" {
        return Err(bad(format!(
            "peft_type '{peft_type}' is not supported (LORA only)"
        )));
    }
    let truthy = |k: &str| cfg.get(k).and_then(Value::as_bool).unwrap_or(false);
    let non_empty = |k: &str| {
        cfg.get(k)
            .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    };
    if truthy("use_dora") {
        return Err(bad("DoRA (use_dora) is not supported".into()));
    }
    if truthy("fan_in_fan_out") {
        return Err(bad(
            "fan_in_fan_out (GPT-2 Conv1D) is not supported yet".into()
        ));
    }
    if non_empty("rank_pattern") || non_empty("alpha_pattern") {
        return Err(bad(
            "rank_pattern/alpha_pattern are not supported yet".into()
        ));
    }
    if cfg.get("bias").and_then(Value::as_str).unwrap_or("none") != "none" {
        return Err(bad("only bias \"none\" is supported".into()));
    }
    // Options that change which weights exist or how they combine: refused, not ignored.
    for key in [
        "lora_bias",
        "use_qalora",
        "exclude_modules",
        "layers_to_transform",
        "layer_replication",
        "target_parameters",
        "trainable_token_indices",
        "alora_invocation_tokens",
        "modules_to_save",
    ] {
        let set = match cfg.get(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            return Err(bad(format!("{key} is not supported yet")));
        }
    }
    let targets = match cfg.get("target_modules") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("target_modules holds a non-string".into()))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "target_modules as a regular expression ('{s}') is not supported; list the names"
            )))
        }
        _ => return Err(bad("no target_modules".into())),
    };
    let r = cfg.get("r").and_then(Value::as_u64).unwrap_or(8) as usize;
    Ok(LoraSpec {
        r,
        alpha: cfg.get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0),
        dropout: cfg
            .get("lora_dropout")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        target_modules: targets,
        use_rslora: truthy("use_rslora"),
        modules_to_save: Vec::new(),
        seed: 0,
    })
}

/// A PEFT LoRA adapter applied at load: its settings and tensors, merged into the base
/// weights they adapt (`W + scaling * B @ A`) as [`crate::Weights`] reads them.
pub struct Adapter {
    /// The folder it came from.
    pub dir: PathBuf,
    /// Its settings.
    pub spec: LoraSpec,
    tensors: crate::Weights,
    /// Modules whose weights were merged so far.
    used: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("dir", &self.dir)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Adapter {
    /// Open an adapter folder (`adapter_config.json` + `adapter_model.safetensors`).
    pub fn open(dir: &Path) -> Result<Self> {
        let spec = read_adapter_config(dir)?;
        let file = dir.join("adapter_model.safetensors");
        let tensors = crate::Weights::from_files(&[file], &Device::Cpu, lmrs_core::DType::F32)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            spec,
            tensors,
            used: Mutex::new(HashSet::new()),
        })
    }

    /// Open every folder of `dirs`, in order.
    pub fn open_all(dirs: &[PathBuf]) -> Result<Vec<std::sync::Arc<Self>>> {
        dirs.iter()
            .map(|d| Ok(std::sync::Arc::new(Self::open(d)?)))
            .collect()
    }

    /// The modules this adapter holds A/B pairs for (`base_model.model.` stripped).
    pub fn modules(&self) -> Vec<String> {
        self.tensors
            .keys()
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix(PEFT_KEY_PREFIX)?
                    .strip_suffix(".lora_A.weight")
                    .map(str::to_string)
            })
            .collect()
    }

    /// `true` when the adapter adapts `module` (a key such as `model.layers.0.self_attn.q_proj`).
    pub fn covers(&self, module: &str) -> bool {
        self.holds(&format!("{PEFT_KEY_PREFIX}{module}.lora_A.weight"))
    }

    /// `true` when the adapter file holds tensor `key`.
    pub fn holds(&self, key: &str) -> bool {
        self.tensors.contains(key)
    }

    /// `w` `(out, in)` of `module` with this adapter's update added, when it adapts
    /// `module`; shapes are checked against the base.
    pub fn merge(&self, module: &str, w: &Tensor) -> Result<Option<Tensor>> {
        let a_key = format!("{PEFT_KEY_PREFIX}{module}.lora_A.weight");
        if !self.tensors.contains(&a_key) {
            return Ok(None);
        }
        let bad = |message: String| IoError::Adapter {
            path: self.dir.clone(),
            message,
        };
        let (out_dim, in_dim) = w.dims2()?;
        let r = self.spec.r;
        let a = self
            .tensors
            .get(&a_key, &[r, in_dim])
            .map_err(|e| bad(format!("{e} (an adapter for another base model?)")))?;
        let b_key = format!("{PEFT_KEY_PREFIX}{module}.lora_B.weight");
        let b = self
            .tensors
            .get(&b_key, &[out_dim, r])
            .map_err(|e| bad(format!("{e} (an adapter for another base model?)")))?;
        let delta = (b.matmul(&a)? * self.spec.scaling())?.to_dtype(w.dtype())?;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.insert(module.to_string());
        Ok(Some((w + delta)?))
    }

    /// After a model is built: every module of the adapter was merged into some weight
    /// (otherwise it was made for another architecture or module layout).
    pub fn check_all_used(&self) -> Result<()> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let mut unused: Vec<String> = self
            .modules()
            .into_iter()
            .filter(|m| !used.contains(m))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(IoError::Adapter {
            path: self.dir.clone(),
            message: format!(
                "{} of its modules match no projection of the model ({}{}): an adapter for another base model?",
                unused.len(),
                unused[..unused.len().min(3)].join(", "),
                if unused.len() > 3 { ", ..." } else { "" }
            ),
        })
    }
}

/// The prefix of PEFT's saved keys.
pub const PEFT_KEY_PREFIX: &str = "base_model.model.";

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
