//! A whole training job as a front end describes it: the task, the model reference, the
//! data files and fields, and the hyperparameters; [`run`] resolves, reads, tokenizes,
//! trains and writes the report.

use crate::args::TrainingArguments;
use crate::data::Dataset;
use crate::seq2seq::{Seq2SeqLimits, Seq2SeqObjective};
use crate::trainer::{train, EarlyStopping, Hooks, Outcome, RunOptions};
use crate::{Result, TrainError};
use lmrs_io::{ModelFiles, ModelSource};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainTask {
    Summarization,
    Translation,
    Text2text,
}

impl TrainTask {
    /// Parse a task name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "summarization" => Self::Summarization,
            "translation" => Self::Translation,
            "text2text" | "text2text-generation" => Self::Text2text,
            "text-classification" | "causal-lm" => {
                return Err(TrainError::Unsupported(format!(
                    "--task {s} is not built yet; summarization, translation and text2text are"
                )))
            }
            _ => {
                return Err(TrainError::Args(format!(
                    "unknown --task '{s}' (summarization, translation, text2text)"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Summarization => "summarization",
            Self::Translation => "translation",
            Self::Text2text => "text2text",
        }
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Job {
    pub task: TrainTask,
    pub model: String,
    pub train_file: PathBuf,
    pub validation_file: Option<PathBuf>,
    pub validation_split: Option<f64>,
    pub input_field: String,
    pub target_field: String,
    pub max_source_length: usize,
    pub max_target_length: usize,
    /// `None`: the checkpoint's prefix for summarization/translation, none for text2text.
    pub source_prefix: Option<String>,
    pub dropout: Option<f64>,
    pub no_shuffle: bool,
    pub early_stopping: Option<EarlyStopping>,
    /// Continue from the last checkpoint in the output folder (`true`) or this one.
    pub resume: Option<Option<PathBuf>>,
    pub args: TrainingArguments,
}

/// What [`run`] reports besides the trainer's outcome.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub outcome: Outcome,
    pub warnings: Vec<String>,
    pub output_dir: PathBuf,
    pub train_examples: usize,
    pub eval_examples: usize,
}

/// Resolve a model reference (folder or hub-cache name) to its files.
pub fn resolve_model(reference: &str) -> Result<ModelFiles> {
    match lmrs_io::resolve(reference, None)? {
        ModelSource::HfFolder(dir) => Ok(ModelFiles::from_folder(&dir)?),
        ModelSource::Gguf(p) => Err(TrainError::Unsupported(format!(
            "{}: seq2seq training needs a safetensors folder, not a GGUF file",
            p.display()
        ))),
    }
}

/// Run a job end to end.
pub fn run(job: &Job, hooks: &mut dyn Hooks) -> Result<JobReport> {
    job.args.validate()?;
    let out = PathBuf::from(&job.args.output_dir);
    let resume_from = prepare_output(&out, job)?;
    let files = resolve_model(&job.model)?;
    let obj = Seq2SeqObjective::load(&files, job.dropout)?;
    let mut warnings = Vec::new();
    let prefix = match &job.source_prefix {
        Some(p) => p.clone(),
        None if job.task == TrainTask::Text2text => String::new(),
        None => match obj.task_prefix(job.task.name()) {
            Some(p) => p,
            None => {
                // As run_summarization.py warns for T5 without --source_prefix.
                warnings.push(format!(
                    "the checkpoint has no '{}' prefix in task_specific_params and no --source-prefix was given: inputs get none",
                    job.task.name()
                ));
                String::new()
            }
        },
    };
    let limits = Seq2SeqLimits {
        source_prefix: prefix.clone(),
        max_source_length: job.max_source_length,
        max_target_length: job.max_target_length,
    };
    let data = Dataset::read(&job.train_file)?;
    let (train_set, eval_set) = match (&job.validation_file, job.validation_split) {
        (Some(_), Some(_)) => {
            return Err(TrainError::Args(
                "give --validation or --validation-split, not both".into(),
            ))
        }
        (Some(v), None) => (data, Some(Dataset::read(v)?)),
        (None, Some(r)) => {
            let (t, v) = data.split(r, job.args.seed)?;
            (t, Some(v))
        }
        (None, None) => (data, None),
    };
    let mut tokenize = |d: &Dataset, what: &str| -> Result<Vec<_>> {
        let (ex, cut_s, cut_t) = obj.tokenize(
            &d.texts(&job.input_field)?,
            &d.texts(&job.target_field)?,
            &limits,
        )?;
        if cut_s > 0 {
            warnings.push(format!(
                "{cut_s} {what} inputs were longer than --max-source-length {} tokens and were truncated",
                job.max_source_length
            ));
        }
        if cut_t > 0 {
            warnings.push(format!(
                "{cut_t} {what} targets were longer than --max-target-length {} tokens and were truncated",
                job.max_target_length
            ));
        }
        Ok(ex)
    };
    let train_ex = tokenize(&train_set, "training")?;
    let eval_ex = match &eval_set {
        Some(d) => Some(tokenize(d, "validation")?),
        None => None,
    };
    let mut extra = Map::new();
    extra.insert("lmrs_task".into(), json!(job.task.name()));
    extra.insert("lmrs_model".into(), json!(job.model));
    extra.insert("lmrs_train_file".into(), json!(job.train_file));
    extra.insert("lmrs_validation_file".into(), json!(job.validation_file));
    extra.insert("lmrs_validation_split".into(), json!(job.validation_split));
    extra.insert("lmrs_input_field".into(), json!(job.input_field));
    extra.insert("lmrs_target_field".into(), json!(job.target_field));
    extra.insert("lmrs_source_prefix".into(), json!(prefix));
    extra.insert(
        "lmrs_max_source_length".into(),
        json!(job.max_source_length),
    );
    extra.insert(
        "lmrs_max_target_length".into(),
        json!(job.max_target_length),
    );
    extra.insert("lmrs_dropout".into(), json!(job.dropout));
    extra.insert("lmrs_no_shuffle".into(), json!(job.no_shuffle));
    if let Some(es) = job.early_stopping {
        extra.insert("early_stopping_patience".into(), json!(es.patience));
        extra.insert("early_stopping_threshold".into(), json!(es.threshold));
    }
    let opts = RunOptions {
        no_shuffle: job.no_shuffle,
        early_stopping: job.early_stopping,
        resume_from,
        extra_args: extra,
    };
    let outcome = train(&obj, &job.args, &train_ex, eval_ex.as_deref(), &opts, hooks)?;
    let metric = job
        .args
        .metric_for_best_model
        .as_ref()
        .map(|_| job.args.best_metric_key())
        .filter(|k| k != "eval_loss");
    crate::report::plot(&outcome.state, metric.as_deref(), &out.join("loss.svg"))?;
    crate::report::write_report(
        &outcome.state,
        &format!("lmrs train: {} of {}", job.task.name(), job.model),
        "loss.svg",
        &out.join("report.md"),
    )?;
    Ok(JobReport {
        outcome,
        warnings,
        output_dir: out,
        train_examples: train_ex.len(),
        eval_examples: eval_ex.map_or(0, |e| e.len()),
    })
}

/// Refuse to write into a non-empty output folder unless asked; find the checkpoint to
/// resume from.
fn prepare_output(out: &Path, job: &Job) -> Result<Option<PathBuf>> {
    let non_empty = out.is_dir()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
    match &job.resume {
        Some(Some(dir)) => Ok(Some(dir.clone())),
        Some(None) => {
            let last = crate::checkpoint::checkpoints(out).pop().map(|(_, p)| p);
            last.map(Some).ok_or_else(|| TrainError::Resume {
                path: out.to_path_buf(),
                message: "no checkpoint-STEP folder to resume from".into(),
            })
        }
        None if non_empty && !job.args.overwrite_output_dir => Err(TrainError::Args(format!(
            "the output folder {} exists and is not empty: pass --overwrite-output-dir, or --resume to continue its last checkpoint",
            out.display()
        ))),
        None => Ok(None),
    }
}

/// The JSON summary front ends print.
pub fn summary_json(r: &JobReport) -> Value {
    let last = r
        .outcome
        .state
        .log_history
        .last()
        .cloned()
        .unwrap_or_default();
    json!({
        "output_dir": r.output_dir,
        "global_step": r.outcome.state.global_step,
        "epoch": r.outcome.state.epoch,
        "stopped_by": r.outcome.stopped_by,
        "best_metric": r.outcome.state.best_metric,
        "best_model_checkpoint": r.outcome.state.best_model_checkpoint,
        "train_examples": r.train_examples,
        "eval_examples": r.eval_examples,
        "summary": last,
        "warnings": r.warnings,
    })
}
