//! `lmrs eval`: score predictions against references (`eval metrics`), run a model over a
//! dataset and score it (`eval run`), or measure a causal LM's perplexity over a text
//! (`eval perplexity`). The metrics live in `lmrs-eval`; this module reads files, prints, and
//! wires a pipeline in.

mod perplexity;
mod report;
mod run;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use lmrs_eval::bleu::{Smooth, Tokenizer};
use lmrs_eval::readers::{self, Format};
use lmrs_eval::rouge::{RougeOptions, RougeReport, RougeType};
use lmrs_eval::{BleuOptions, BootstrapOptions, ChrfOptions, ZeroDivision};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `lmrs eval` flags.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: EvalCommand,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score predictions against references (files with one item per line, or JSON Lines).
    ///
    /// Example: lmrs eval metrics --metric rouge,bleu --predictions pred.txt --references ref.txt
    Metrics(Box<MetricsArgs>),
    /// Run a model over a JSON Lines dataset, write predictions.jsonl, metrics.json and
    /// report.md into --output, and resume from predictions.jsonl when interrupted.
    ///
    /// Example: lmrs eval run --task summarization --model t5-small --data cnn.jsonl
    /// --input-field article --reference-field highlights --output out/
    Run(Box<run::RunArgs>),
    /// Perplexity of a decoder-only model over a text with strided sliding windows, as the
    /// transformers guide "Perplexity of fixed-length models" computes it.
    ///
    /// Example: lmrs eval perplexity --model gpt2 --data wiki.test.txt --max-length 1024
    /// --stride 512
    Perplexity(Box<perplexity::PerplexityArgs>),
}

/// A metric by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Metric {
    /// ROUGE-1/2/L/Lsum (rouge-score), with bootstrap intervals.
    Rouge,
    /// Corpus BLEU (sacreBLEU defaults).
    Bleu,
    /// chrF (sacreBLEU defaults).
    Chrf,
    /// Fraction of labels equal to the reference.
    Accuracy,
    /// Per-class and averaged precision (with recall and F1; scikit-learn).
    Precision,
    /// Per-class and averaged recall (with precision and F1).
    Recall,
    /// Per-class and averaged F1 (with precision and recall).
    F1,
    /// Fraction of predictions identical to a reference.
    ExactMatch,
}

/// Options of the individual metrics.
#[derive(Debug, Args, Clone)]
pub struct MetricOptions {
    /// ROUGE types, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rouge1,rouge2,rougeL,rougeLsum",
        help_heading = "ROUGE"
    )]
    pub rouge_types: Vec<String>,
    /// Porter-stem words longer than 3 letters (rouge-score's use_stemmer).
    #[arg(long, help_heading = "ROUGE")]
    pub use_stemmer: bool,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000, help_heading = "ROUGE")]
    pub bootstrap_samples: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95, help_heading = "ROUGE")]
    pub confidence: f64,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0, help_heading = "ROUGE")]
    pub bootstrap_seed: u64,
    /// BLEU tokenizer: 13a or none.
    #[arg(long, default_value = "13a", help_heading = "BLEU and chrF")]
    pub bleu_tokenize: String,
    /// BLEU smoothing: exp, floor, add-k or none.
    #[arg(long, default_value = "exp", help_heading = "BLEU and chrF")]
    pub bleu_smooth: String,
    /// Lowercase before BLEU and chrF.
    #[arg(long, help_heading = "BLEU and chrF")]
    pub lowercase: bool,
    /// chrF word n-gram order (2: chrF++).
    #[arg(long, default_value_t = 0, help_heading = "BLEU and chrF")]
    pub chrf_word_order: usize,
    /// Value of an undefined precision/recall/F1 (0/0): warn (0 and a warning), 0, 1 or nan.
    #[arg(long, default_value = "warn", help_heading = "Classification")]
    pub zero_division: String,
    /// Classes to score, comma separated (default: every label seen, sorted).
    #[arg(long, value_delimiter = ',', help_heading = "Classification")]
    pub labels: Option<Vec<String>>,
    /// exact_match: compare case-insensitively.
    #[arg(long, help_heading = "Classification")]
    pub ignore_case: bool,
}

/// `lmrs eval metrics` flags.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Metrics to compute, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub metric: Vec<Metric>,
    /// Predictions: one per line, or JSON Lines (`.jsonl`/`.json` or --jsonl). `-` is stdin.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// References, laid out like the predictions; a JSON list gives several references.
    #[arg(long, value_name = "FILE")]
    pub references: PathBuf,
    /// Read both files as JSON Lines whatever their extension.
    #[arg(long)]
    pub jsonl: bool,
    /// JSON field of both files (default: prediction and reference).
    #[arg(long)]
    pub field: Option<String>,
    /// JSON field holding the prediction (wins over --field).
    #[arg(long)]
    pub prediction_field: Option<String>,
    /// JSON field holding the reference(s) (wins over --field).
    #[arg(long)]
    pub reference_field: Option<String>,
    /// Print the scores as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: MetricOptions,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        EvalCommand::Metrics(a) => metrics(*a),
        EvalCommand::Run(a) => run::run(*a),
        EvalCommand::Perplexity(a) => perplexity::run(*a),
    }
}

fn metrics(args: MetricsArgs) -> Result<()> {
    let read = |path: &Path, field: Option<&String>, default: &str| {
        let format = if args.jsonl {
            Format::JsonLines
        } else {
            Format::from_path(path)
        };
        let field = field
            .or(args.field.as_ref())
            .map_or(default, String::as_str);
        readers::read_items(path, format, field)
    };
    let preds = read(
        &args.predictions,
        args.prediction_field.as_ref(),
        "prediction",
    )?;
    let preds = readers::single(preds, &args.predictions.display().to_string())?;
    let refs = read(&args.references, args.reference_field.as_ref(), "reference")?;
    if preds.len() != refs.len() {
        bail!(
            "{} has {} items but {} has {}: predictions and references must pair up line by line",
            args.predictions.display(),
            preds.len(),
            args.references.display(),
            refs.len()
        );
    }
    let scores = compute(&args.metric, &preds, &refs, &args.options)?;
    for w in &scores.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores.json)?);
    } else {
        print!("{}", scores.text);
    }
    Ok(())
}

/// Computed metrics: JSON (`{"rouge": …, "bleu": …}`), readable text, warnings.
pub struct Scores {
    pub json: Value,
    pub text: String,
    pub warnings: Vec<String>,
    /// The ROUGE report, kept for ranking examples.
    pub rouge: Option<RougeReport>,
}

/// Compute `metrics` over paired predictions and references.
pub fn compute(
    metrics: &[Metric],
    preds: &[String],
    refs: &[Vec<String>],
    o: &MetricOptions,
) -> Result<Scores> {
    let mut json = Map::new();
    let mut text = String::new();
    let mut warnings = Vec::new();
    let mut rouge = None;
    let mut classification_done = false;
    let mut seen = Vec::new();
    for &m in metrics {
        if seen.contains(&m) {
            continue;
        }
        seen.push(m);
        match m {
            Metric::Rouge => {
                let types = o
                    .rouge_types
                    .iter()
                    .map(|t| RougeType::parse(t))
                    .collect::<Result<Vec<_>, _>>()?;
                let opts = RougeOptions {
                    types,
                    use_stemmer: o.use_stemmer,
                    bootstrap: BootstrapOptions {
                        samples: o.bootstrap_samples,
                        confidence: o.confidence,
                        seed: o.bootstrap_seed,
                    },
                };
                let r = lmrs_eval::rouge(preds, refs, &opts)?;
                json.insert("rouge".into(), rouge_json(&r, &opts));
                text.push_str(&rouge_text(&r, &opts));
                rouge = Some(r);
            }
            Metric::Bleu => {
                let opts = BleuOptions {
                    lowercase: o.lowercase,
                    tokenizer: Tokenizer::parse(&o.bleu_tokenize)?,
                    smooth: Smooth::parse(&o.bleu_smooth, None)?,
                    ..Default::default()
                };
                let s = lmrs_eval::corpus_bleu(preds, refs, &opts)?;
                writeln!(text, "{}", s.format())?;
                json.insert("bleu".into(), serde_json::to_value(&s)?);
            }
            Metric::Chrf => {
                let opts = ChrfOptions {
                    lowercase: o.lowercase,
                    word_order: o.chrf_word_order,
                    ..Default::default()
                };
                let s = lmrs_eval::corpus_chrf(preds, refs, &opts)?;
                writeln!(text, "{}", s.format())?;
                json.insert("chrf".into(), serde_json::to_value(&s)?);
            }
            Metric::ExactMatch => {
                let v = lmrs_eval::exact_match(preds, refs, o.ignore_case, false)?;
                writeln!(text, "exact_match = {v:.4} ({} examples)", preds.len())?;
                json.insert("exact_match".into(), json!(v));
            }
            Metric::Accuracy => {
                let labels = single_refs(refs, "accuracy")?;
                let v = lmrs_eval::accuracy(&labels, preds)?;
                writeln!(text, "accuracy = {v:.4} ({} examples)", preds.len())?;
                json.insert("accuracy".into(), json!(v));
            }
            Metric::Precision | Metric::Recall | Metric::F1 => {
                if classification_done {
                    continue;
                }
                classification_done = true;
                let labels = single_refs(refs, "precision/recall/f1")?;
                let zd = ZeroDivision::parse(&o.zero_division)?;
                let r = lmrs_eval::classification_report(&labels, preds, o.labels.as_deref(), zd)?;
                if !r.unseen.is_empty() {
                    warnings.push(format!(
                        "predicted label(s) {} never occur in the references: each is scored as a class with no true examples, its recall set by --zero-division ({})",
                        r.unseen.join(", "),
                        o.zero_division
                    ));
                }
                if r.ill_defined {
                    warnings.push("some precision, recall or F1 is 0/0 and was set to 0 (see --zero-division)".into());
                }
                text.push_str(&report::classification_table(&r));
                json.insert("classification".into(), serde_json::to_value(&r)?);
            }
        }
    }
    Ok(Scores {
        json: Value::Object(json),
        text,
        warnings,
        rouge,
    })
}

fn single_refs(refs: &[Vec<String>], metric: &str) -> Result<Vec<String>> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| match r.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(anyhow::anyhow!(
                "reference {} has {} labels; {metric} takes exactly one",
                i + 1,
                r.len()
            )),
        })
        .collect::<Result<_>>()
        .context("reading the reference labels")
}

fn rouge_json(r: &RougeReport, o: &RougeOptions) -> Value {
    let mut scores = Map::new();
    for (t, a) in r.types.iter().zip(&r.aggregate) {
        scores.insert(
            t.to_string(),
            serde_json::to_value(a).unwrap_or(Value::Null),
        );
    }
    json!({
        "examples": r.per_example.len(),
        "use_stemmer": o.use_stemmer,
        "bootstrap": {"samples": o.bootstrap.samples, "confidence": o.bootstrap.confidence, "seed": o.bootstrap.seed},
        "scores": scores,
    })
}

fn rouge_text(r: &RougeReport, o: &RougeOptions) -> String {
    let mut s = format!(
        "ROUGE, {} examples (stemmer {}; mean [{:.0}% bootstrap interval, {} resamples])\n",
        r.per_example.len(),
        if o.use_stemmer { "on" } else { "off" },
        100.0 * o.bootstrap.confidence,
        o.bootstrap.samples
    );
    let _ = writeln!(
        s,
        "{:<10} {:<26} {:<26} {:<26}",
        "", "precision", "recall", "F1"
    );
    for (t, a) in r.types.iter().zip(&r.aggregate) {
        let cell = |i: &lmrs_eval::Interval| format!("{:.4} [{:.4}, {:.4}]", i.mean, i.low, i.high);
        let _ = writeln!(
            s,
            "{:<10} {:<26} {:<26} {:<26}",
            t.to_string(),
            cell(&a.precision),
            cell(&a.recall),
            cell(&a.fmeasure)
        );
    }
    s
}
