//! Merging LoRA adapters into their base: `peft`'s `merge_and_unload()` + `save_pretrained`,
//! as an HF folder every command (and `transformers`) loads without the adapter.

use crate::{Result, TrainError};
use lmrs_core::{DType, Device};
use lmrs_io::{Adapter, ModelFiles, ModelSource, Weights};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What [`merge_adapters`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    pub output: String,
    pub tensors: usize,
    pub merged_projections: usize,
    pub adapters: Vec<String>,
}

/// Write `model` (an HF folder or hub-cache name) with `adapters` merged in
/// (`W + scaling * B @ A`, in order) to `output`: every tensor as f32 `model.safetensors`,
/// the other files of the folder (config, tokenizer, generation config) copied. Every module
/// of every adapter must match a weight of the model.
pub fn merge_adapters(model: &str, adapters: &[PathBuf], output: &Path) -> Result<MergeReport> {
    let dir = match lmrs_io::resolve(model, None)? {
        ModelSource::HfFolder(dir) => dir,
        ModelSource::Gguf(p) => {
            return Err(TrainError::Unsupported(format!(
                "{}: merging into a GGUF file is not built yet; use the model's HF folder, or apply the adapter at load with --adapter",
                p.display()
            )))
        }
    };
    if adapters.is_empty() {
        return Err(TrainError::Args("give at least one --adapter".into()));
    }
    let occupied = std::fs::read_dir(output).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        return Err(TrainError::Args(format!(
            "{} exists and is not empty",
            output.display()
        )));
    }
    let files = ModelFiles::from_folder(&dir)?;
    let opened = Adapter::open_all(adapters)?;
    let base = Weights::from_files(&files.weights, &Device::Cpu, DType::F32)?;
    let merged = base.clone().with_adapters(opened.clone());
    let mut tensors = HashMap::new();
    let mut projections = 0usize;
    for key in base.keys() {
        let shape = base
            .shape(&key)
            .ok_or_else(|| TrainError::Unsupported(format!("tensor {key} has no shape")))?;
        // A projection's weight is read through its module's prefix, where adapters apply.
        let t = match key.strip_suffix(".weight") {
            Some(module) => {
                projections += usize::from(opened.iter().any(|a| a.covers(module)));
                merged.pp(module).get("weight", &shape)?
            }
            None => base.get(&key, &shape)?,
        };
        tensors.insert(key, t);
    }
    opened.iter().try_for_each(|a| a.check_all_used())?;
    std::fs::create_dir_all(output).map_err(crate::error::file_err(output))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    crate::checkpoint::write_safetensors(&tensors, Some(meta), &output.join("model.safetensors"))?;
    for entry in std::fs::read_dir(&dir).map_err(crate::error::file_err(&dir))? {
        let path = entry.map_err(crate::error::file_err(&dir))?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let weights = name.ends_with(".safetensors")
            || name.ends_with(".safetensors.index.json")
            || name.ends_with(".bin");
        if path.is_file() && !weights {
            let to = output.join(&name);
            std::fs::copy(&path, &to).map_err(crate::error::file_err(&to))?;
        }
    }
    Ok(MergeReport {
        output: output.display().to_string(),
        tensors: tensors.len(),
        merged_projections: projections,
        adapters: adapters.iter().map(|a| a.display().to_string()).collect(),
    })
}
