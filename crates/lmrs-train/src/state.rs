//! `trainer_state.json` in the shape `transformers` writes it (`TrainerState.save_to_json`).

use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// The run's progress and history.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainerState {
    pub best_global_step: Option<usize>,
    pub best_metric: Option<f64>,
    pub best_model_checkpoint: Option<String>,
    pub epoch: f64,
    pub eval_steps: usize,
    pub global_step: usize,
    pub is_hyper_param_search: bool,
    pub is_local_process_zero: bool,
    pub is_world_process_zero: bool,
    /// One object per logging event: training entries (`loss`, `grad_norm`,
    /// `learning_rate`, `epoch`, `step`), evaluation entries (`eval_*`), and the final
    /// summary (`train_loss`, `train_runtime`...).
    pub log_history: Vec<Map<String, Value>>,
    pub logging_steps: usize,
    pub max_steps: usize,
    pub num_input_tokens_seen: u64,
    pub num_train_epochs: usize,
    pub save_steps: usize,
    pub stateful_callbacks: Map<String, Value>,
    pub total_flos: f64,
    pub train_batch_size: usize,
    pub trial_name: Option<String>,
    pub trial_params: Option<Value>,
    /// lmrs: evaluations without improvement, for early stopping on resume.
    #[serde(default)]
    pub early_stopping_patience_counter: usize,
}

impl TrainerState {
    /// Write as pretty JSON (sorted keys, as `transformers` does).
    pub fn save(&self, path: &Path) -> Result<()> {
        let v = serde_json::to_value(self).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_json(&v, path)
    }

    /// Read a state file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::file_err(path))?;
        serde_json::from_str(&text).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Write `v` as indented JSON with a final newline.
pub fn write_json(v: &Value, path: &Path) -> Result<()> {
    let mut text = serde_json::to_string_pretty(v).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(crate::error::file_err(path))
}
