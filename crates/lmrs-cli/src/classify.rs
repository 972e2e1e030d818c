//! `classify`: text classification (sentiment, topics...) with a sequence-classification model.

use crate::args::InputArgs;
use crate::input::documents;
use anyhow::{bail, Result};
use clap::Args;
use lmrs_pipelines::{ClassificationPipeline, ClassifyOptions, ScoreFunction};
use std::io::Write;

/// `lmrs classify` flags.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Model folder (a *ForSequenceClassification checkpoint) or hub id in the Hugging Face
    /// cache.
    #[arg(short, long)]
    pub model: String,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Texts to classify. Without texts and --input, stdin is read (one text per line).
    pub texts: Vec<String>,
    #[command(flatten)]
    pub source: InputArgs,
    /// Labels printed per text, best first (0: all).
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Score function: softmax, sigmoid or none (default: sigmoid for
    /// multi_label_classification or a single label, none for regression, else softmax).
    #[arg(long, value_parser = parse_function)]
    pub function: Option<ScoreFunction>,
    /// Truncate inputs to this many tokens (default: the model's limit).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Inputs run together in one batch.
    #[arg(long, default_value_t = 32, value_parser = crate::args::at_least_one)]
    pub batch_size: usize,
    /// Print one JSON object per input (index, labels with scores, tokens, truncated).
    #[arg(long)]
    pub json: bool,
}

fn parse_function(s: &str) -> Result<ScoreFunction, String> {
    ScoreFunction::from_name(s)
        .ok_or_else(|| format!("'{s}' is not a score function (softmax, sigmoid, none)"))
}

pub fn classify(args: ClassifyArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let docs = documents(&args.texts, &args.source)?;
    let pipeline = ClassificationPipeline::load(
        &args.model,
        &ClassifyOptions {
            revision: args.revision.clone(),
            function: args.function,
            max_seq_length: args.max_seq_length,
        },
    )?;
    let top_k = (args.top_k > 0).then_some(args.top_k);
    let results = pipeline.classify(&docs, args.batch_size, top_k)?;
    let truncated = results.iter().filter(|r| r.truncated).count();
    if truncated > 0 {
        eprintln!(
            "warning: {truncated} input(s) longer than {} tokens were truncated (see --max-seq-length)",
            pipeline.max_seq_length()
        );
    }
    let mut out = std::io::stdout().lock();
    for (index, r) in results.iter().enumerate() {
        if args.json {
            #[derive(serde::Serialize)]
            struct Record<'a> {
                index: usize,
                labels: &'a [lmrs_pipelines::LabelScore],
                tokens: usize,
                truncated: bool,
            }
            let record = Record {
                index,
                labels: &r.labels,
                tokens: r.tokens,
                truncated: r.truncated,
            };
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
        } else {
            let line: Vec<String> = r
                .labels
                .iter()
                .map(|l| format!("{}\t{:.4}", l.label, l.score))
                .collect();
            writeln!(out, "{}", line.join("\t"))?;
        }
    }
    Ok(())
}
