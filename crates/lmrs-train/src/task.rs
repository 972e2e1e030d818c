//! A whole training job as a front end describes it: the task, the model reference, the
//! data files and fields, and the hyperparameters; [`run`] resolves, reads, tokenizes,
//! trains and writes the report.

use crate::args::TrainingArguments;
use crate::augment::Augment;
use crate::causal::CausalObjective;
use crate::classify::{ClassificationObjective, LabelOptions, ProblemType};
use crate::data::Dataset;
use crate::objective::Objective;
use crate::predict::PredictSettings;
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
    TextClassification,
    CausalLm,
}

impl TrainTask {
    /// Parse a task name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "summarization" => Self::Summarization,
            "translation" => Self::Translation,
            "text2text" | "text2text-generation" => Self::Text2text,
            "text-classification" | "sequence-classification" | "classification" => {
                Self::TextClassification
            }
            "causal-lm" | "text-generation" | "sft" => Self::CausalLm,
            _ => {
                return Err(TrainError::Args(format!(
                    "unknown --task '{s}' (summarization, translation, text2text, text-classification, causal-lm)"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Summarization => "summarization",
            Self::Translation => "translation",
            Self::Text2text => "text2text",
            Self::TextClassification => "text-classification",
            Self::CausalLm => "causal-lm",
        }
    }

    /// The field names a dataset uses when no flag says: `(input, target or label)`; an
    /// empty target for causal-lm means plain text (no completion field).
    pub fn default_fields(self) -> (&'static str, &'static str) {
        match self {
            Self::TextClassification => ("text", "label"),
            Self::CausalLm => ("text", ""),
            _ => ("document", "summary"),
        }
    }

    /// Input tokens kept when no flag says (`run_summarization.py`'s 1024,
    /// `run_classification.py`'s 128, `SFTConfig`'s `max_length` 1024).
    pub fn default_max_source_length(self) -> usize {
        match self {
            Self::TextClassification => 128,
            _ => 1024,
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
    /// The target text (seq2seq), the label (classification) or the completion (causal-lm;
    /// empty: plain text).
    pub target_field: String,
    pub max_source_length: usize,
    pub max_target_length: usize,
    /// `None`: the checkpoint's prefix for summarization/translation, none for text2text.
    pub source_prefix: Option<String>,
    pub dropout: Option<f64>,
    /// `--augment`: seeded augmentation of the training set's input field.
    pub augment: Option<Augment>,
    /// `--lora`: train PEFT adapters on a frozen base instead of every weight.
    pub lora: Option<crate::lora::LoraOptions>,
    /// Classification: `--labels`, in index order.
    pub labels: Option<Vec<String>>,
    /// Classification: `--problem-type`.
    pub problem_type: Option<String>,
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
    let source = lmrs_io::resolve(&job.model, None)?;
    let (mut train_set, eval_set) = read_data(job)?;
    if let Some(a) = &job.augment {
        train_set = a.dataset(train_set, &job.input_field, job.args.seed)?;
    }
    let mut run = Prepared {
        job,
        out,
        resume_from,
        warnings: Vec::new(),
        extra: common_extra(job),
    };
    // Seq2seq and classification read an HF folder; causal-lm also a GGUF file.
    let folder = || -> Result<ModelFiles> {
        match &source {
            ModelSource::HfFolder(dir) => Ok(ModelFiles::from_folder(dir)?),
            ModelSource::Gguf(p) => Err(TrainError::Unsupported(format!(
                "{}: --task {} needs a safetensors folder; GGUF files train with --task causal-lm",
                p.display(),
                job.task.name()
            ))),
        }
    };
    if job.lora.is_some() && job.task == TrainTask::TextClassification {
        return Err(TrainError::Unsupported(
            "--lora is built for causal-lm and the seq2seq tasks so far, not text-classification"
                .into(),
        ));
    }
    match job.task {
        TrainTask::CausalLm => {
            let obj =
                CausalObjective::load(&source, job.dropout, job.lora.as_ref(), job.args.seed)?;
            let completion = (!job.target_field.is_empty()).then_some(job.target_field.as_str());
            // TRL's dataset_text_field default: `text`, or a `messages` conversation.
            let input = if job.input_field == "text"
                && !train_set.has_field("text")
                && train_set.has_field("messages")
            {
                "messages"
            } else {
                job.input_field.as_str()
            };
            let chat = train_set.is_conversational(input);
            let tokenize = |d: &Dataset, what: &str| -> Result<Vec<_>> {
                let (ex, cut) = if chat {
                    let completions = completion.map(|f| d.messages(f)).transpose()?;
                    obj.tokenize_chat(
                        &d.messages(input)?,
                        completions.as_deref(),
                        job.max_source_length,
                    )?
                } else {
                    let completions = completion.map(|f| d.texts(f)).transpose()?;
                    obj.tokenize(
                        &d.texts(input)?,
                        completions.as_deref(),
                        job.max_source_length,
                    )?
                };
                run.truncated(
                    cut,
                    what,
                    "sequences",
                    "--max-source-length",
                    job.max_source_length,
                );
                Ok(ex)
            };
            let (train_ex, eval_ex) = both(&train_set, eval_set.as_ref(), tokenize)?;
            run.extra
                .insert("lmrs_completion_field".into(), json!(completion));
            run.extra.insert("lmrs_input_field".into(), json!(input));
            run.extra.insert("lmrs_chat_template".into(), json!(chat));
            if let Some(spec) = obj.lora() {
                let config = crate::lora::adapter_config(spec, "CAUSAL_LM", &job.model);
                run.extra.insert("lmrs_lora".into(), config);
            }
            run.finish(&obj, &train_ex, eval_ex.as_deref(), hooks)
        }
        TrainTask::TextClassification => {
            let opts = LabelOptions {
                labels: job.labels.clone(),
                problem_type: job
                    .problem_type
                    .as_deref()
                    .map(ProblemType::parse)
                    .transpose()?,
            };
            let mut all = vec![(&train_set, job.target_field.as_str())];
            if let Some(e) = &eval_set {
                all.push((e, job.target_field.as_str()));
            }
            let obj =
                ClassificationObjective::load(&folder()?, job.dropout, &opts, &all, job.args.seed)?;
            let tokenize = |d: &Dataset, what: &str| -> Result<Vec<_>> {
                let (ex, cut) = obj.tokenize(
                    d,
                    &job.input_field,
                    &job.target_field,
                    job.max_source_length,
                )?;
                run.truncated(
                    cut,
                    what,
                    "inputs",
                    "--max-source-length",
                    job.max_source_length,
                );
                Ok(ex)
            };
            let (train_ex, eval_ex) = both(&train_set, eval_set.as_ref(), tokenize)?;
            run.extra
                .insert("lmrs_label_field".into(), json!(job.target_field));
            run.extra.insert("lmrs_labels".into(), json!(obj.labels()));
            run.extra
                .insert("lmrs_problem_type".into(), json!(obj.problem_type().name()));
            run.extra
                .insert("lmrs_kept_head".into(), json!(obj.kept_head()));
            if !obj.kept_head() {
                run.warnings.push(format!(
                    "a new classification head for {} labels was initialized (normal, std initializer_range); train it before use",
                    obj.labels().len()
                ));
            }
            run.finish(&obj, &train_ex, eval_ex.as_deref(), hooks)
        }
        TrainTask::Summarization | TrainTask::Translation | TrainTask::Text2text => {
            let mut obj =
                Seq2SeqObjective::load(&folder()?, job.dropout, job.lora.as_ref(), job.args.seed)?;
            if let Some(spec) = obj.lora() {
                let config = crate::lora::adapter_config(spec, "SEQ_2_SEQ_LM", &job.model);
                run.extra.insert("lmrs_lora".into(), config);
            }
            if job.args.predict_with_generate {
                obj.set_predict(Some(PredictSettings::new(
                    obj.generation_config()?,
                    job.args.generation_max_length,
                    job.args.generation_num_beams,
                )));
            }
            let prefix = match &job.source_prefix {
                Some(p) => p.clone(),
                None if job.task == TrainTask::Text2text => String::new(),
                None => match obj.task_prefix(job.task.name()) {
                    Some(p) => p,
                    None => {
                        // As run_summarization.py warns for T5 without --source_prefix.
                        run.warnings.push(format!(
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
            let tokenize = |d: &Dataset, what: &str| -> Result<Vec<_>> {
                let (ex, cut_s, cut_t) = obj.tokenize(
                    &d.texts(&job.input_field)?,
                    &d.texts(&job.target_field)?,
                    &limits,
                )?;
                run.truncated(
                    cut_s,
                    what,
                    "inputs",
                    "--max-source-length",
                    job.max_source_length,
                );
                run.truncated(
                    cut_t,
                    what,
                    "targets",
                    "--max-target-length",
                    job.max_target_length,
                );
                Ok(ex)
            };
            let (train_ex, eval_ex) = both(&train_set, eval_set.as_ref(), tokenize)?;
            run.extra
                .insert("lmrs_target_field".into(), json!(job.target_field));
            run.extra.insert("lmrs_source_prefix".into(), json!(prefix));
            run.extra.insert(
                "lmrs_max_target_length".into(),
                json!(job.max_target_length),
            );
            run.finish(&obj, &train_ex, eval_ex.as_deref(), hooks)
        }
    }
}

/// The training and validation datasets a job names.
/// `tokenize` applied to the training set and to the validation set when there is one.
fn both<E>(
    train: &Dataset,
    eval: Option<&Dataset>,
    mut tokenize: impl FnMut(&Dataset, &str) -> Result<Vec<E>>,
) -> Result<(Vec<E>, Option<Vec<E>>)> {
    let train_ex = tokenize(train, "training")?;
    let eval_ex = eval.map(|d| tokenize(d, "validation")).transpose()?;
    Ok((train_ex, eval_ex))
}

fn read_data(job: &Job) -> Result<(Dataset, Option<Dataset>)> {
    let data = Dataset::read(&job.train_file)?;
    Ok(match (&job.validation_file, job.validation_split) {
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
    })
}

/// What every task records in `training_args.json` beyond `TrainingArguments`.
fn common_extra(job: &Job) -> Map<String, Value> {
    let mut extra = Map::new();
    extra.insert("lmrs_task".into(), json!(job.task.name()));
    extra.insert("lmrs_model".into(), json!(job.model));
    extra.insert("lmrs_train_file".into(), json!(job.train_file));
    extra.insert("lmrs_validation_file".into(), json!(job.validation_file));
    extra.insert("lmrs_validation_split".into(), json!(job.validation_split));
    extra.insert("lmrs_input_field".into(), json!(job.input_field));
    extra.insert(
        "lmrs_max_source_length".into(),
        json!(job.max_source_length),
    );
    extra.insert("lmrs_dropout".into(), json!(job.dropout));
    extra.insert("lmrs_no_shuffle".into(), json!(job.no_shuffle));
    extra.insert(
        "lmrs_augment".into(),
        job.augment.map_or(Value::Null, |a| a.to_json()),
    );
    if let Some(es) = job.early_stopping {
        extra.insert("early_stopping_patience".into(), json!(es.patience));
        extra.insert("early_stopping_threshold".into(), json!(es.threshold));
    }
    extra
}

/// A job with its data read, up to the training loop.
struct Prepared<'a> {
    job: &'a Job,
    out: PathBuf,
    resume_from: Option<PathBuf>,
    warnings: Vec<String>,
    extra: Map<String, Value>,
}

impl Prepared<'_> {
    /// One warning per kind of truncation, as the tokenizers warn once.
    fn truncated(&mut self, n: usize, set: &str, what: &str, flag: &str, limit: usize) {
        if n > 0 {
            self.warnings.push(format!(
                "{n} {set} {what} were longer than {flag} {limit} tokens and were truncated"
            ));
        }
    }

    /// Train, then write the loss picture and the report.
    fn finish<O: Objective>(
        self,
        obj: &O,
        train_ex: &[O::Example],
        eval_ex: Option<&[O::Example]>,
        hooks: &mut dyn Hooks,
    ) -> Result<JobReport> {
        let job = self.job;
        let opts = RunOptions {
            no_shuffle: job.no_shuffle,
            early_stopping: job.early_stopping,
            resume_from: self.resume_from,
            extra_args: self.extra,
        };
        let outcome = train(obj, &job.args, train_ex, eval_ex, &opts, hooks)?;
        let metric = job
            .args
            .metric_for_best_model
            .as_ref()
            .map(|_| job.args.best_metric_key())
            .filter(|k| k != "eval_loss");
        crate::report::plot(
            &outcome.state,
            metric.as_deref(),
            &self.out.join("loss.svg"),
        )?;
        crate::report::write_report(
            &outcome.state,
            &format!("lmrs train: {} of {}", job.task.name(), job.model),
            "loss.svg",
            &self.out.join("report.md"),
        )?;
        Ok(JobReport {
            outcome,
            warnings: self.warnings,
            output_dir: self.out,
            train_examples: train_ex.len(),
            eval_examples: eval_ex.map_or(0, |e| e.len()),
        })
    }
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
