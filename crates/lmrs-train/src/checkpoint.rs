//! Writing what a run leaves: HF model folders and `checkpoint-STEP/` folders.
//!
//! A checkpoint holds the model (an HF folder `from_pretrained` loads), `optimizer.safetensors`
//! (AdamW's moments per parameter, under the parameter's name with `.exp_avg` /
//! `.exp_avg_sq`), `trainer_state.json` (the step, the log history, the best metric) and
//! `training_args.json`. Data order and dropout masks are functions of the seed and the step
//! (see [`crate::order`]), so the generator state needs no file: resuming at step k replays
//! exactly what an uninterrupted run does from k.
//!
//! Every folder is written under a temporary name beside its destination and renamed into
//! place once complete, so a crash or a full disk never leaves a half-written checkpoint.

use crate::optim::AdamW;
use crate::{Result, TrainError};
use lmrs_core::candle::Var;
use lmrs_core::Tensor;
use lmrs_io::ModelFiles;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::file_err;

/// Files copied from the source model folder next to the trained weights.
const CARRIED_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "spiece.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
];

/// Write `vars` as `model.safetensors` plus the source folder's config and tokenizer files
/// into `dir` (created; must not exist or be empty).
pub fn save_hf_folder(vars: &[(String, Var)], source: &ModelFiles, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let tensors: HashMap<String, Tensor> = vars
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().contiguous()?)))
        .collect::<Result<_>>()?;
    let path = dir.join("model.safetensors");
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    write_safetensors(&tensors, Some(meta), &path)?;
    for name in CARRIED_FILES {
        let from = source.dir.join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(file_err(&to))?;
        }
    }
    Ok(())
}

/// Copy the tokenizer files of `source` (those `save_hf_folder` carries, less the model's
/// config) into `dir`, as `Trainer.save_model` leaves them beside an adapter.
pub fn copy_tokenizer_files(source: &ModelFiles, dir: &Path) -> Result<()> {
    for name in CARRIED_FILES
        .iter()
        .filter(|n| !matches!(**n, "config.json" | "generation_config.json"))
    {
        let from = source.dir.join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to).map_err(file_err(&to))?;
        }
    }
    Ok(())
}

/// Write f32 tensors to a safetensors file (with `__metadata__` when given).
pub fn write_safetensors(
    tensors: &HashMap<String, Tensor>,
    meta: Option<HashMap<String, String>>,
    path: &Path,
) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tensors[name];
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), bytes, t.dims().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(n, b, s)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| TrainError::Unsupported(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, meta, path)
        .map_err(|e| TrainError::Unsupported(format!("{}: {e}", path.display())))
}

/// Write the optimizer's moments and step to `path`.
pub fn save_optimizer(opt: &AdamW, path: &Path) -> Result<()> {
    let dev = lmrs_core::Device::Cpu;
    let mut t = HashMap::new();
    for p in &opt.params {
        t.insert(
            format!("{}.exp_avg", p.name),
            Tensor::from_slice(&p.exp_avg, p.exp_avg.len(), &dev)?,
        );
        t.insert(
            format!("{}.exp_avg_sq", p.name),
            Tensor::from_slice(&p.exp_avg_sq, p.exp_avg_sq.len(), &dev)?,
        );
    }
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), opt.step.to_string());
    write_safetensors(&t, Some(meta), path)
}

/// Restore the optimizer's moments and step from `path`; every parameter must be there with
/// its size (a checkpoint of another model is refused).
pub fn load_optimizer(opt: &mut AdamW, path: &Path) -> Result<()> {
    let err = |message: String| TrainError::Resume {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(file_err(path))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(format!("unreadable optimizer state ({e})")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| err(format!("unreadable optimizer state ({e})")))?;
    let step = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("step"))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| err("the optimizer state has no step".into()))?;
    for p in &mut opt.params {
        for (suffix, dst) in [
            ("exp_avg", &mut p.exp_avg),
            ("exp_avg_sq", &mut p.exp_avg_sq),
        ] {
            let key = format!("{}.{suffix}", p.name);
            let view = st.tensor(&key).map_err(|_| {
                err(format!(
                    "no optimizer state for '{}' (a checkpoint of another model?)",
                    p.name
                ))
            })?;
            let data = view.data();
            if view.dtype() != safetensors::Dtype::F32 || data.len() != dst.len() * 4 {
                return Err(err(format!(
                    "optimizer state of '{}' has {} values, the model has {}",
                    p.name,
                    data.len() / 4,
                    dst.len()
                )));
            }
            for (d, c) in dst.iter_mut().zip(data.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    opt.step = step;
    Ok(())
}

/// Load `model.safetensors` of a checkpoint into the variables (same names and shapes).
pub fn load_weights(vars: &[(String, Var)], path: &Path) -> Result<()> {
    let err = |message: String| TrainError::Resume {
        path: path.to_path_buf(),
        message,
    };
    let w = lmrs_io::Weights::from_files(
        &[path.to_path_buf()],
        &lmrs_core::Device::Cpu,
        lmrs_core::DType::F32,
    )?;
    for (name, var) in vars {
        let shape = var.as_tensor().dims().to_vec();
        let t = w
            .get(name, &shape)
            .map_err(|e| err(format!("{e} (a checkpoint of another model?)")))?;
        var.set(&t)?;
    }
    Ok(())
}

/// Write a folder atomically: `fill` writes into a temporary sibling, which is then renamed
/// to `dest` (replacing an older folder of that name).
pub fn write_atomically(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "folder".into());
    let tmp = parent.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(file_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(file_err(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(file_err(dest))?;
    }
    std::fs::rename(&tmp, dest).map_err(file_err(dest))
}

/// `checkpoint-STEP` folders under `dir`, oldest step first.
pub fn checkpoints(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}
