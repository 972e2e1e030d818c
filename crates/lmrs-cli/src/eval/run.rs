//! `lmrs eval run`: a pipeline (seq2seq generation or classification) over a JSON Lines
//! dataset, then the task's metrics.
//!
//! Predictions are appended to `OUTPUT/predictions.jsonl` batch by batch, so an interrupted run
//! loses at most one batch; a rerun skips every example already there (matched by index and
//! input text) and finally rewrites the file in dataset order.

use super::{compute, report, Metric, MetricOptions};
use crate::args::GenerationArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lmrs_eval::chrf::{sentence_chrf, ChrfOptions};
use lmrs_eval::readers::{self, Format};
use lmrs_eval::rouge::RougeType;
use lmrs_pipelines::{
    ClassificationPipeline, ClassifyOptions, LoadOptions, RunOptions, Seq2SeqPipeline, Task,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tasks `eval run` can evaluate (perplexity of causal LMs is `lmrs eval perplexity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalTask {
    /// Seq2seq summarization; scored with ROUGE.
    Summarization,
    /// Seq2seq translation; scored with BLEU and chrF.
    Translation,
    /// Sequence classification (the top label's name is the prediction); scored with accuracy
    /// and precision/recall/F1.
    Classification,
}

/// `lmrs eval run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the model does.
    #[arg(long, value_enum)]
    pub task: EvalTask,
    /// Model folder or hub id in the Hugging Face cache.
    #[arg(short, long)]
    pub model: String,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// The dataset: JSON Lines, one example per line.
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Field holding the model input.
    #[arg(long, default_value = "text")]
    pub input_field: String,
    /// Field holding the reference (a string, or a list of strings for several).
    #[arg(long, default_value = "reference")]
    pub reference_field: String,
    /// Folder for predictions.jsonl, metrics.json and report.md (created if missing).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Metrics (default: rouge for summarization, bleu,chrf for translation).
    #[arg(long, value_delimiter = ',')]
    pub metric: Vec<Metric>,
    /// Translation source language, by name or code.
    #[arg(long, default_value = "English")]
    pub source: String,
    /// Translation target language, by name or code (required for translation).
    #[arg(long)]
    pub target: Option<String>,
    /// Inputs run together in one batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Truncate inputs to this many tokens (default: the config's n_positions, else 512).
    #[arg(long)]
    pub max_input_tokens: Option<usize>,
    /// Worst examples shown in report.md.
    #[arg(long, default_value_t = 5)]
    pub worst: usize,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub options: MetricOptions,
}

const PREDICTIONS: &str = "predictions.jsonl";

pub fn run(args: RunArgs) -> Result<()> {
    // `None`: classification, no seq2seq task.
    let task = match args.task {
        EvalTask::Summarization => Some(Task::Summarization),
        EvalTask::Translation => Some(Task::Translation {
            source: args.source.clone(),
            target: args
                .target
                .clone()
                .context("--task translation needs --target LANGUAGE")?,
        }),
        EvalTask::Classification => None,
    };
    let metrics = if !args.metric.is_empty() {
        args.metric.clone()
    } else {
        match args.task {
            EvalTask::Summarization => vec![Metric::Rouge],
            EvalTask::Translation => vec![Metric::Bleu, Metric::Chrf],
            EvalTask::Classification => vec![Metric::Accuracy, Metric::F1],
        }
    };
    let data_name = args.data.display().to_string();
    let inputs = readers::single(
        readers::read_items(&args.data, Format::JsonLines, &args.input_field)?,
        &data_name,
    )?;
    let references = readers::read_items(&args.data, Format::JsonLines, &args.reference_field)?;
    if inputs.is_empty() {
        bail!("{data_name} holds no examples");
    }
    if let Some(i) = inputs.iter().position(|t| t.trim().is_empty()) {
        bail!(
            "{data_name}: example {} has an empty '{}'",
            i + 1,
            args.input_field
        );
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let pred_path = args.output.join(PREDICTIONS);
    let mut done = load_predictions(&pred_path, &inputs)?;
    let resumed = done.len();
    let todo: Vec<usize> = (0..inputs.len())
        .filter(|i| !done.contains_key(i))
        .collect();
    if resumed > 0 {
        eprintln!(
            "resuming: {resumed} of {} predictions already in {}",
            inputs.len(),
            pred_path.display()
        );
    }
    if !todo.is_empty() {
        generate(
            &args,
            task.as_ref(),
            &inputs,
            &references,
            &todo,
            &pred_path,
            &mut done,
        )?;
    }
    // Rewrite in dataset order (atomically) now that every example has its prediction.
    let predictions: Vec<String> = (0..inputs.len()).map(|i| done[&i].clone()).collect();
    let tmp = args.output.join(format!("{PREDICTIONS}.tmp"));
    let mut body = String::new();
    for (i, p) in predictions.iter().enumerate() {
        body.push_str(&record(i, &inputs[i], p, &references[i]).to_string());
        body.push('\n');
    }
    std::fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &pred_path)?;

    let scores = compute(&metrics, &predictions, &references, &args.options)?;
    for w in &scores.warnings {
        eprintln!("warning: {w}");
    }
    let (rank_by, per_example) = if args.task == EvalTask::Classification {
        let correct = predictions
            .iter()
            .zip(&references)
            .map(|(p, r)| f64::from(u8::from(r.contains(p))))
            .collect();
        ("correct (1) / wrong (0)".to_string(), correct)
    } else {
        ranking(&scores, &predictions, &references, &args.options)?
    };
    let mut order: Vec<usize> = (0..predictions.len()).collect();
    order.sort_by(|&a, &b| per_example[a].total_cmp(&per_example[b]).then(a.cmp(&b)));
    let worst: Vec<(usize, f64)> = order
        .iter()
        .take(args.worst)
        .map(|&i| (i, per_example[i]))
        .collect();
    let task_name = match args.task {
        EvalTask::Summarization => "summarization",
        EvalTask::Translation => "translation",
        EvalTask::Classification => "classification",
    };
    let metrics_json = json!({
        "task": task_name,
        "model": args.model,
        "data": data_name,
        "examples": inputs.len(),
        "generated": todo.len(),
        "resumed": resumed,
        "metrics": scores.json,
    });
    let metrics_path = args.output.join("metrics.json");
    std::fs::write(
        &metrics_path,
        serde_json::to_string_pretty(&metrics_json)? + "\n",
    )
    .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let md = report::markdown(&report::ReportInput {
        task: task_name,
        model: &args.model,
        data: &data_name,
        examples: inputs.len(),
        generated: todo.len(),
        resumed,
        metrics: &scores.json,
        rank_by: &rank_by,
        worst: &worst,
        inputs: &inputs,
        references: &references,
        predictions: &predictions,
    });
    let report_path = args.output.join("report.md");
    std::fs::write(&report_path, md)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    print!("{}", scores.text);
    println!("wrote {}, metrics.json and report.md", pred_path.display());
    Ok(())
}

fn record(index: usize, input: &str, prediction: &str, reference: &[String]) -> serde_json::Value {
    let reference = match reference {
        [one] => json!(one),
        many => json!(many),
    };
    json!({"index": index, "input": input, "prediction": prediction, "reference": reference})
}

/// Predictions already on disk, by example index. A last line cut off mid-write is dropped;
/// anything else that does not fit this dataset is an error.
fn load_predictions(path: &Path, inputs: &[String]) -> Result<BTreeMap<usize, String>> {
    let mut done = BTreeMap::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let last = n + 1 == lines.len();
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            // Interrupted while writing the last record: drop it and redo that example.
            Err(_) if last => {
                let keep = text.len() - line.len();
                std::fs::write(path, &text[..keep])
                    .with_context(|| format!("cannot rewrite {}", path.display()))?;
                break;
            }
            Err(e) => bail!("{}, line {}: invalid JSON ({e})", path.display(), n + 1),
        };
        let (Some(index), Some(input), Some(pred)) = (
            v["index"].as_u64().map(|i| i as usize),
            v["input"].as_str(),
            v["prediction"].as_str(),
        ) else {
            bail!(
                "{}, line {}: expected index, input and prediction fields",
                path.display(),
                n + 1
            );
        };
        if inputs.get(index).map(String::as_str) != Some(input) {
            bail!(
                "{}, line {}: example {index} does not match the dataset; use another --output or remove the file",
                path.display(),
                n + 1
            );
        }
        done.insert(index, pred.to_string());
    }
    Ok(done)
}

/// A loaded model that turns a batch of inputs into predictions `(text, truncated)`.
enum Predictor {
    Seq2Seq(Box<Seq2SeqPipeline>, Task),
    Classifier(Box<ClassificationPipeline>),
}

impl Predictor {
    fn load(args: &RunArgs, task: Option<&Task>) -> Result<Self> {
        Ok(match task {
            Some(task) => Self::Seq2Seq(
                Box::new(Seq2SeqPipeline::load(
                    &args.model,
                    &LoadOptions {
                        revision: args.revision.clone(),
                        max_input_tokens: args.max_input_tokens,
                        ..Default::default()
                    },
                )?),
                task.clone(),
            ),
            None => Self::Classifier(Box::new(ClassificationPipeline::load(
                &args.model,
                &ClassifyOptions {
                    revision: args.revision.clone(),
                    max_seq_length: args.max_input_tokens,
                    ..Default::default()
                },
            )?)),
        })
    }

    fn predict(&self, texts: &[String], args: &RunArgs) -> Result<Vec<(String, bool)>> {
        let batch = args.batch_size.max(1);
        Ok(match self {
            Self::Seq2Seq(p, task) => p
                .run(
                    texts,
                    task,
                    &args.generation.to_config(),
                    RunOptions {
                        batch_size: batch,
                        ..Default::default()
                    },
                )?
                .into_iter()
                .map(|o| {
                    let text = o.sequences.first().map(|s| s.text.clone());
                    (text.unwrap_or_default(), o.truncated)
                })
                .collect(),
            Self::Classifier(p) => p
                .classify(texts, batch, Some(1))?
                .into_iter()
                .map(|c| {
                    let label = c.labels.first().map(|l| l.label.clone());
                    (label.unwrap_or_default(), c.truncated)
                })
                .collect(),
        })
    }

    fn input_limit(&self) -> usize {
        match self {
            Self::Seq2Seq(p, _) => p.max_input_tokens(),
            Self::Classifier(p) => p.max_seq_length(),
        }
    }
}

/// Run the pipeline over `todo` (longest inputs first, so batches pad little), appending each
/// batch's predictions to `pred_path`.
fn generate(
    args: &RunArgs,
    task: Option<&Task>,
    inputs: &[String],
    references: &[Vec<String>],
    todo: &[usize],
    pred_path: &Path,
    done: &mut BTreeMap<usize, String>,
) -> Result<()> {
    let predictor = Predictor::load(args, task)?;
    let mut order = todo.to_vec();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pred_path)
        .with_context(|| format!("cannot write {}", pred_path.display()))?;
    // A previous run may have stopped mid-line: start on a fresh line.
    if std::fs::metadata(pred_path)?.len() > 0 {
        let bytes = std::fs::read(pred_path)?;
        if bytes.last() != Some(&b'\n') {
            file.write_all(b"\n")?;
        }
    }
    let bar = ProgressBar::new(inputs.len() as u64);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} examples, {elapsed} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_position(done.len() as u64);
    let start = Instant::now();
    let mut truncated = 0;
    let batch = args.batch_size.max(1);
    for chunk in order.chunks(batch) {
        let texts: Vec<String> = chunk.iter().map(|&i| inputs[i].clone()).collect();
        let outputs = predictor.predict(&texts, args)?;
        let mut lines = String::new();
        for (&i, (text, cut)) in chunk.iter().zip(outputs) {
            truncated += usize::from(cut);
            lines.push_str(&record(i, &inputs[i], &text, &references[i]).to_string());
            lines.push('\n');
            done.insert(i, text);
        }
        file.write_all(lines.as_bytes())?;
        file.flush()?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if truncated > 0 {
        eprintln!(
            "warning: {truncated} input(s) longer than {} tokens were truncated (see --max-input-tokens)",
            predictor.input_limit()
        );
    }
    eprintln!(
        "generated {} predictions in {:.1} s",
        todo.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The per-example score that ranks examples in report.md: ROUGE-L F1 (else the first ROUGE
/// type) when ROUGE was computed, else sentence chrF.
fn ranking(
    scores: &super::Scores,
    predictions: &[String],
    references: &[Vec<String>],
    o: &MetricOptions,
) -> Result<(String, Vec<f64>)> {
    if let Some(r) = &scores.rouge {
        let k = r.types.iter().position(|t| *t == RougeType::L).unwrap_or(0);
        let name = format!("{} F1", r.types[k]);
        return Ok((name, r.per_example.iter().map(|s| s[k].fmeasure).collect()));
    }
    let opts = ChrfOptions {
        lowercase: o.lowercase,
        word_order: o.chrf_word_order,
        ..Default::default()
    };
    Ok((
        "sentence chrF".to_string(),
        sentence_chrf(predictions, references, &opts)?,
    ))
}
