//! The files of one Hugging Face layout model folder.

use crate::{read_json, IoError, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Paths of a model folder's files. Only `config.json` and the weights are required.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The folder itself.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `generation_config.json`, when present.
    pub generation_config: Option<PathBuf>,
    /// `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
    /// Safetensors weight files: `model.safetensors`, or every shard listed by
    /// `model.safetensors.index.json`.
    pub weights: Vec<PathBuf>,
}

#[derive(serde::Deserialize)]
struct ShardIndex {
    weight_map: std::collections::HashMap<String, String>,
}

impl ModelFiles {
    /// Inspect a model folder. Errors name the missing file.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        crate::path_kind::require_dir(dir, "model folder")?;
        let config = dir.join("config.json");
        crate::path_kind::require_file(&config, "config.json")?;
        let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let weights = weight_files(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            generation_config: optional("generation_config.json"),
            tokenizer: optional("tokenizer.json"),
            weights,
        })
    }
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    // A FIFO or device under a weight file's name is refused by name, never opened.
    for path in [&single, &index] {
        if let Some(kind) = crate::path_kind::special_kind(path) {
            return Err(IoError::NotRegular {
                what: "weight file",
                path: path.clone(),
                kind,
                expected: "a regular file",
            });
        }
    }
    if single.is_file() {
        return Ok(vec![single]);
    }
    if index.is_file() {
        let idx: ShardIndex = read_json(&index)?;
        let names: BTreeSet<&String> = idx.weight_map.values().collect();
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        for file in &files {
            crate::path_kind::require_file(
                file,
                "weight shard listed in model.safetensors.index.json",
            )?;
        }
        return Ok(files);
    }
    let what = if dir.join("pytorch_model.bin").is_file() {
        "model.safetensors (this folder only has PyTorch .bin weights; convert them to safetensors)"
    } else {
        "model weights (model.safetensors or model.safetensors.index.json)"
    };
    Err(IoError::NotFound { what, path: single })
}
