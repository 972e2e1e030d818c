//! LoRA runs in PEFT's format: the settings (`--lora`, `--lora-r`...), the adapter folder a
//! run leaves (`adapter_config.json` + `adapter_model.safetensors`, keys
//! `base_model.model.<module>.lora_A.weight` `(r, in)` / `lora_B.weight` `(out, r)`, which
//! `peft.PeftModel.from_pretrained` loads), and starting from an existing adapter
//! (`--adapter DIR`, PEFT's `is_trainable=True`).
//!
//! The layers' side (frozen base, adapters on targeted projections, PEFT's math) is
//! `lmrs_io::LoraSpec` and `lmrs_nn::Linear`.

use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_io::{LoraSpec, ParamStore};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The prefix PEFT's saved keys carry (`PeftModel` → `LoraModel` → the base model).
pub const PEFT_PREFIX: &str = "base_model.model.";

/// What the user asked for (`None` fields: the model's defaults or the adapter's).
#[derive(Debug, Clone, Default)]
pub struct LoraOptions {
    pub r: Option<usize>,
    pub alpha: Option<f64>,
    pub dropout: Option<f64>,
    pub target_modules: Option<Vec<String>>,
    pub use_rslora: bool,
    /// Start from this PEFT adapter folder (its settings and weights).
    pub adapter: Option<PathBuf>,
}

/// PEFT's default `target_modules` for a `model_type` (its
/// `TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`).
pub fn default_targets(model_type: &str) -> Option<&'static [&'static str]> {
    Some(match model_type {
        "t5" | "mt5" => &["q", "v"],
        "llama" | "mistral" | "qwen2" | "gemma3" | "gemma3_text" => &["q_proj", "v_proj"],
        _ => return None,
    })
}

impl LoraOptions {
    /// The run's spec for a model of `model_type`: flags over the adapter's config over
    /// PEFT's defaults (r 8, alpha 8, dropout 0).
    pub fn spec(&self, model_type: &str, seed: u64) -> Result<LoraSpec> {
        let from = self.adapter.as_deref().map(read_config).transpose()?;
        let targets = match (&self.target_modules, &from) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => f.target_modules.clone(),
            (None, None) => default_targets(model_type)
                .ok_or_else(|| {
                    TrainError::Unsupported(format!(
                        "--lora: no default --lora-target-modules for model type '{model_type}' (LoRA is built for T5, the Llama family and Gemma 3); name the projections"
                    ))
                })?
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let spec = LoraSpec {
            r: self.r.or(from.as_ref().map(|f| f.r)).unwrap_or(8),
            alpha: self.alpha.or(from.as_ref().map(|f| f.alpha)).unwrap_or(8.0),
            dropout: self
                .dropout
                .or(from.as_ref().map(|f| f.dropout))
                .unwrap_or(0.0),
            target_modules: targets,
            use_rslora: self.use_rslora || from.as_ref().is_some_and(|f| f.use_rslora),
            modules_to_save: Vec::new(),
            seed,
        };
        if spec.r == 0 {
            return Err(TrainError::Args("--lora-r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(TrainError::Args(format!(
                "--lora-dropout {} is not in [0, 1)",
                spec.dropout
            )));
        }
        if spec.target_modules.is_empty() {
            return Err(TrainError::Args("--lora-target-modules is empty".into()));
        }
        Ok(spec)
    }
}

/// After the model is built: every target matched a projection, and an `--adapter` to start
/// from has weights of the shapes the model made (copied into the variables).
pub fn check_and_init(params: &ParamStore, adapter: Option<&Path>) -> Result<()> {
    let misses = params.lora_misses();
    if !misses.is_empty() {
        return Err(TrainError::Args(format!(
            "--lora-target-modules: {} matched no projection lmrs can adapt (PEFT's suffix match on module names such as model.layers.0.self_attn.q_proj; GPT-2's Conv1D and the BERT family are not built yet)",
            misses.join(", ")
        )));
    }
    if let Some(dir) = adapter {
        load_adapter_weights(&params.vars(), dir)?;
    }
    Ok(())
}

/// Load what a run's `save` wrote into `dir` back into its variables: the adapter file of a
/// LoRA run (`lora`), `model.safetensors` otherwise (`--resume`, `--load-best-model-at-end`).
pub fn load_trained(vars: &[(String, Var)], lora: bool, dir: &Path) -> Result<()> {
    if lora {
        load_adapter_weights(vars, dir)
    } else {
        crate::checkpoint::load_weights(vars, &dir.join("model.safetensors"))
    }
}

/// Copy `adapter_model.safetensors` of `dir` into the adapter variables (PEFT's names).
pub fn load_adapter_weights(vars: &[(String, Var)], dir: &Path) -> Result<()> {
    let path = dir.join("adapter_model.safetensors");
    let w = lmrs_io::Weights::from_files(
        std::slice::from_ref(&path),
        &lmrs_core::Device::Cpu,
        lmrs_core::DType::F32,
    )?;
    for (name, var) in vars {
        let key = format!("{PEFT_PREFIX}{name}");
        let shape = var.as_tensor().dims().to_vec();
        let t = w.get(&key, &shape).map_err(|e| {
            TrainError::Unsupported(format!(
                "{}: {e} (an adapter for another base model, or other target modules?)",
                path.display()
            ))
        })?;
        var.set(&t)?;
    }
    Ok(())
}

/// Write the adapter folder: `adapter_model.safetensors` (every variable under PEFT's key)
/// and `adapter_config.json` (PEFT's `LoraConfig` fields).
pub fn save_adapter(
    vars: &[(String, Var)],
    spec: &LoraSpec,
    task_type: &str,
    base_model: &str,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(crate::error::file_err(dir))?;
    let tensors = vars
        .iter()
        .map(|(k, v)| Ok((format!("{PEFT_PREFIX}{k}"), v.as_tensor().contiguous()?)))
        .collect::<Result<HashMap<_, _>>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    crate::checkpoint::write_safetensors(
        &tensors,
        Some(meta),
        &dir.join("adapter_model.safetensors"),
    )?;
    crate::state::write_json(
        &adapter_config(spec, task_type, base_model),
        &dir.join("adapter_config.json"),
    )
}

/// PEFT's `adapter_config.json` for `spec`.
pub fn adapter_config(spec: &LoraSpec, task_type: &str, base_model: &str) -> Value {
    json!({
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": spec.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": spec.use_rslora,
        "use_dora": false,
        "modules_to_save": Value::Null,
        "init_lora_weights": true,
        "inference_mode": true,
        "rank_pattern": {},
        "alpha_pattern": {},
        "layers_to_transform": Value::Null,
        "layers_pattern": Value::Null,
    })
}

/// The settings of a PEFT adapter folder (see [`lmrs_io::read_adapter_config`]).
pub fn read_config(dir: &Path) -> Result<LoraSpec> {
    Ok(lmrs_io::read_adapter_config(dir)?)
}
