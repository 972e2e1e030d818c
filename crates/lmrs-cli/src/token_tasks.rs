//! `ner` (token classification) and `fill-mask`.

use crate::args::InputArgs;
use crate::input::documents;
use anyhow::{bail, Result};
use clap::Args;
use lmrs_pipelines::{Aggregation, FillMaskPipeline, TokenClassificationPipeline};
use std::io::Write;

/// Texts and model, shared by `ner` and `fill-mask`.
#[derive(Debug, Args)]
pub struct TokenTaskInput {
    /// Model folder or hub id in the Hugging Face cache.
    #[arg(short, long)]
    pub model: String,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Texts. Without texts and --input, stdin is read (one text per line).
    pub texts: Vec<String>,
    #[command(flatten)]
    pub source: InputArgs,
    /// Inputs run together in one batch.
    #[arg(long, default_value_t = 32, value_parser = crate::args::at_least_one)]
    pub batch_size: usize,
    /// Print one JSON object per input.
    #[arg(long)]
    pub json: bool,
}

impl TokenTaskInput {
    fn documents(&self) -> Result<Vec<String>> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        documents(&self.texts, &self.source)
    }
}

/// `lmrs ner` flags.
#[derive(Debug, Args)]
pub struct NerArgs {
    #[command(flatten)]
    pub input: TokenTaskInput,
    /// How tokens become entities: none (one result per token), simple (adjacent tokens of one
    /// type), first / average / max (whole words, label from the first token, the averaged
    /// scores or the most confident token) — transformers' aggregation_strategy.
    #[arg(long, default_value = "simple", value_parser = parse_aggregation)]
    pub aggregation: Aggregation,
}

/// `lmrs fill-mask` flags.
#[derive(Debug, Args)]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub input: TokenTaskInput,
    /// Proposals per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
}

fn parse_aggregation(s: &str) -> Result<Aggregation, String> {
    Aggregation::from_name(s).ok_or_else(|| {
        format!("'{s}' is not an aggregation strategy (none, simple, first, average, max)")
    })
}

pub fn ner(args: NerArgs) -> Result<()> {
    let docs = args.input.documents()?;
    let p = TokenClassificationPipeline::load(&args.input.model, args.input.revision.as_deref())?;
    let results = p.run(&docs, args.aggregation, args.input.batch_size)?;
    let mut out = std::io::stdout().lock();
    for (index, entities) in results.iter().enumerate() {
        if args.input.json {
            #[derive(serde::Serialize)]
            struct Record<'a> {
                index: usize,
                entities: &'a [lmrs_pipelines::Entity],
            }
            let record = Record { index, entities };
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
        } else {
            let line: Vec<String> = entities
                .iter()
                .map(|e| {
                    let label = e.entity_group.as_ref().or(e.entity.as_ref());
                    format!(
                        "{}/{} [{}..{}] {:.3}",
                        e.word,
                        label.map_or("", |l| l.as_str()),
                        e.start,
                        e.end,
                        e.score
                    )
                })
                .collect();
            writeln!(out, "{}", line.join("\t"))?;
        }
    }
    Ok(())
}

pub fn fill_mask(args: FillMaskArgs) -> Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let docs = args.input.documents()?;
    let p = FillMaskPipeline::load(&args.input.model, args.input.revision.as_deref())?;
    let results = p.run(&docs, args.top_k, args.input.batch_size)?;
    let mut out = std::io::stdout().lock();
    for (index, masks) in results.iter().enumerate() {
        if args.input.json {
            #[derive(serde::Serialize)]
            struct Record<'a> {
                index: usize,
                masks: &'a [Vec<lmrs_pipelines::MaskFill>],
            }
            let record = Record { index, masks };
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
        } else {
            for fills in masks {
                let line: Vec<String> = fills
                    .iter()
                    .map(|f| format!("{}\t{:.4}", f.token_str, f.score))
                    .collect();
                writeln!(out, "{}", line.join("\t"))?;
            }
        }
    }
    Ok(())
}
