//! `TrainingArguments`: the hyperparameters of a run, with `transformers`' names and defaults
//! (`TrainingArguments` / `Seq2SeqTrainingArguments` v5), read from flags or from a
//! `--config FILE.json` holding the same keys. Unknown keys are an error, not ignored.

use crate::schedule::SchedulerType;
use crate::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `no`, `steps` or `epoch` (`eval_strategy`, `save_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntervalStrategy {
    No,
    Steps,
    Epoch,
}

impl std::str::FromStr for IntervalStrategy {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(s.into()))
            .map_err(|_| TrainError::Args(format!("'{s}' is not one of no, steps, epoch")))
    }
}

/// The run's hyperparameters. Field names are `TrainingArguments`'; the doc of each gives
/// its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingArguments {
    /// Where checkpoints and the final model go.
    pub output_dir: String,
    /// Allow writing into an existing, non-empty `output_dir` (false).
    pub overwrite_output_dir: bool,
    /// Peak learning rate (5e-5).
    pub learning_rate: f64,
    /// AdamW decoupled weight decay, not on biases and norms (0).
    pub weight_decay: f64,
    /// AdamW beta1 (0.9).
    pub adam_beta1: f64,
    /// AdamW beta2 (0.999).
    pub adam_beta2: f64,
    /// AdamW epsilon (1e-8).
    pub adam_epsilon: f64,
    /// Clip gradients to this global L2 norm; 0 turns clipping off (1.0).
    pub max_grad_norm: f64,
    /// Epochs, fractional allowed (3).
    pub num_train_epochs: f64,
    /// Optimizer steps; overrides `num_train_epochs` when positive (-1).
    pub max_steps: i64,
    /// Examples per micro-batch (8).
    pub per_device_train_batch_size: usize,
    /// Examples per evaluation batch (8).
    pub per_device_eval_batch_size: usize,
    /// Micro-batches per optimizer step (1).
    pub gradient_accumulation_steps: usize,
    /// `linear`, `cosine`, `constant`, `constant_with_warmup` (linear).
    pub lr_scheduler_type: SchedulerType,
    /// Warmup: a step count when >= 1, else a ratio of the total steps (0).
    pub warmup_steps: f64,
    /// `LabelSmoother` epsilon (0).
    pub label_smoothing_factor: f64,
    /// Seed of data order, dropout, new heads and the validation split (42).
    pub seed: u64,
    /// When to evaluate (no).
    pub eval_strategy: IntervalStrategy,
    /// Evaluate once before the first step, to log where training starts (false).
    pub eval_on_start: bool,
    /// Evaluate every N steps with `eval_strategy = steps` (default: `logging_steps`).
    pub eval_steps: Option<usize>,
    /// When to save checkpoints (steps).
    pub save_strategy: IntervalStrategy,
    /// Save every N steps with `save_strategy = steps` (500).
    pub save_steps: usize,
    /// Keep at most this many checkpoints (the best one is never deleted) (unlimited).
    pub save_total_limit: Option<usize>,
    /// Put the best checkpoint's weights at the root at the end (false).
    pub load_best_model_at_end: bool,
    /// `loss`, or a metric name; `eval_` is implied (default `loss` with
    /// `load_best_model_at_end` or early stopping).
    pub metric_for_best_model: Option<String>,
    /// Default: true unless the metric is a loss.
    pub greater_is_better: Option<bool>,
    /// A `log_history` entry every N optimizer steps (500).
    pub logging_steps: usize,
    /// Batch examples of similar length together (false).
    pub group_by_length: bool,
    /// Evaluate generated text (ROUGE, BLEU) instead of only the loss (false).
    pub predict_with_generate: bool,
    /// Beams for `predict_with_generate` (default: the model's generation config).
    pub generation_num_beams: Option<usize>,
    /// Length limit for `predict_with_generate` (default: the model's generation config).
    pub generation_max_length: Option<usize>,
}

impl Default for TrainingArguments {
    fn default() -> Self {
        Self {
            output_dir: "trainer_output".into(),
            overwrite_output_dir: false,
            learning_rate: 5e-5,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            num_train_epochs: 3.0,
            max_steps: -1,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            lr_scheduler_type: SchedulerType::Linear,
            warmup_steps: 0.0,
            label_smoothing_factor: 0.0,
            seed: 42,
            eval_strategy: IntervalStrategy::No,
            eval_on_start: false,
            eval_steps: None,
            save_strategy: IntervalStrategy::Steps,
            save_steps: 500,
            save_total_limit: None,
            load_best_model_at_end: false,
            metric_for_best_model: None,
            greater_is_better: None,
            logging_steps: 500,
            group_by_length: false,
            predict_with_generate: false,
            generation_num_beams: None,
            generation_max_length: None,
        }
    }
}

impl TrainingArguments {
    /// Read a `TrainingArguments` JSON file (keys as `TrainingArguments.to_json_string`
    /// writes them; keys lmrs does not know are refused with their name).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::file_err(path))?;
        serde_json::from_str(&text)
            .map_err(|e| TrainError::Args(format!("{}: {e}", path.display())))
    }

    /// Check values that would make a run meaningless, naming the argument.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Args(m));
        let positive = [
            (
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
            ),
            (
                "per_device_eval_batch_size",
                self.per_device_eval_batch_size,
            ),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
            ("logging_steps", self.logging_steps),
            ("save_steps", self.save_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return bad(format!(
                "learning_rate {} is not a rate",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing_factor) {
            return bad(format!(
                "label_smoothing_factor {} is not in [0, 1)",
                self.label_smoothing_factor
            ));
        }
        for (name, b) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} {b} is not in [0, 1)"));
            }
        }
        if self.max_steps <= 0
            && !(self.num_train_epochs > 0.0 && self.num_train_epochs.is_finite())
        {
            return bad("give num_train_epochs > 0 or max_steps > 0".into());
        }
        let key = self.best_metric_key();
        let generated = ["eval_rouge", "eval_bleu", "eval_gen_len"];
        if !self.predict_with_generate && generated.iter().any(|g| key.starts_with(g)) {
            return bad(format!(
                "metric_for_best_model {key} is computed from generated text: add predict_with_generate"
            ));
        }
        if self.generation_num_beams == Some(0) || self.generation_max_length == Some(0) {
            return bad("generation_num_beams and generation_max_length must be at least 1".into());
        }
        if self.eval_steps == Some(0) {
            return bad("eval_steps must be at least 1".into());
        }
        if self.load_best_model_at_end {
            if self.eval_strategy == IntervalStrategy::No {
                return bad("load_best_model_at_end needs an eval_strategy".into());
            }
            if self.save_strategy != self.eval_strategy {
                return bad(format!(
                    "load_best_model_at_end needs save_strategy ({:?}) to match eval_strategy ({:?})",
                    self.save_strategy, self.eval_strategy
                ));
            }
            if self.save_strategy == IntervalStrategy::Steps
                && !self.save_steps.is_multiple_of(self.eval_every())
            {
                return bad(format!(
                    "load_best_model_at_end needs save_steps ({}) to be a multiple of eval_steps ({})",
                    self.save_steps,
                    self.eval_every()
                ));
            }
        }
        Ok(())
    }

    /// Steps between evaluations with the `steps` strategy.
    pub fn eval_every(&self) -> usize {
        self.eval_steps.unwrap_or(self.logging_steps).max(1)
    }

    /// The metric that picks the best checkpoint, as logged (`eval_loss`, `eval_rouge1`...).
    pub fn best_metric_key(&self) -> String {
        let m = self.metric_for_best_model.as_deref().unwrap_or("loss");
        if m.starts_with("eval_") {
            m.to_string()
        } else {
            format!("eval_{m}")
        }
    }

    /// Whether a larger value of the best-model metric is better.
    pub fn greater_is_better(&self) -> bool {
        self.greater_is_better
            .unwrap_or_else(|| !self.best_metric_key().ends_with("loss"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_take_transformers_keys_and_refuse_unknown_ones() -> Result<()> {
        let dir = tempfile::tempdir().map_err(crate::error::file_err("tmp"))?;
        let p = dir.path().join("args.json");
        std::fs::write(
            &p,
            r#"{"learning_rate": 0.001, "lr_scheduler_type": "cosine", "eval_strategy": "epoch"}"#,
        )
        .map_err(crate::error::file_err(&p))?;
        let a = TrainingArguments::from_json_file(&p)?;
        assert_eq!(a.learning_rate, 0.001);
        assert_eq!(a.lr_scheduler_type, SchedulerType::Cosine);
        assert_eq!(a.per_device_train_batch_size, 8);
        std::fs::write(&p, r#"{"learning_rat": 0.001}"#).map_err(crate::error::file_err(&p))?;
        let e = TrainingArguments::from_json_file(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown field `learning_rat`"), "{e}");
        Ok(())
    }

    #[test]
    fn best_model_needs_matching_strategies() {
        let mut a = TrainingArguments {
            load_best_model_at_end: true,
            eval_strategy: IntervalStrategy::Steps,
            eval_steps: Some(3),
            save_steps: 4,
            ..Default::default()
        };
        assert!(a.validate().is_err());
        a.save_steps = 6;
        assert!(a.validate().is_ok());
        assert_eq!(a.best_metric_key(), "eval_loss");
        assert!(!a.greater_is_better());
        a.metric_for_best_model = Some("rouge1".into());
        assert!(a.greater_is_better());
    }
}
