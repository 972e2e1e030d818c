//! `lmrs eval perplexity`: perplexity of a decoder-only model over a text file with strided
//! sliding windows, computed as `transformers`' guide "Perplexity of fixed-length models" does
//! (see `lmrs_pipelines::perplexity` for the arithmetic).

use crate::causal::model_reference;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lmrs_eval::readers::{self, Format};
use lmrs_pipelines::{
    AddBos, LoadOptions, PerplexityOptions, PerplexityReport, TextGenerationPipeline,
    DEFAULT_WINDOW_BATCH,
};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the text starts with before it is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BosArg {
    /// The tokenizer's own special tokens, like `tokenizer(text)` in the transformers guide
    /// (Llama 2 / Gemma: a BOS; GPT-2 / SmolLM2: none).
    Auto,
    /// The model's BOS token once at the start, nothing else.
    Always,
    /// No special tokens.
    Never,
}

/// `lmrs eval perplexity` flags.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// GGUF file, model folder or hub id of a decoder-only model (default: the default model,
    /// fetched by scripts/fetch-models.sh).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// The text: a plain text file scored whole, or JSON Lines (`.jsonl`/`.json`, --jsonl or
    /// --field) whose documents are joined with a blank line ("\n\n"), as the guide joins
    /// WikiText. `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Read --data as JSON Lines whatever its extension.
    #[arg(long)]
    pub jsonl: bool,
    /// JSON field holding each document (implies JSON Lines) [default: text].
    #[arg(long)]
    pub field: Option<String>,
    /// Window length in tokens [default: the model's context, max_position_embeddings or
    /// n_positions].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Tokens each window moves, 1..=max-length; each window scores only the tokens it adds
    /// [default: max-length / 2, the guide's 512 for GPT-2's 1024]. Equal to --max-length:
    /// disjoint windows.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Special tokens added to the text: auto (the tokenizer's own, like `tokenizer(text)`),
    /// always (the model's BOS once at the start), never.
    #[arg(long, value_enum, default_value = "auto")]
    pub add_bos: BosArg,
    /// Most windows run together in one forward pass (fewer when windows × max-length would
    /// pass 4096 tokens).
    #[arg(long, default_value_t = DEFAULT_WINDOW_BATCH, value_parser = crate::args::at_least_one)]
    pub batch_size: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What the guide's weighting is, for the output.
const METHOD: &str = "transformers docs (perplexity.md, 4.48+/5.x): \
     nll_sum += window mean NLL * (trg_len - 1); ppl = exp(nll_sum / sum(trg_len - 1))";

pub fn run(args: PerplexityArgs) -> Result<()> {
    // Flags that are wrong whatever the model: fail before loading it.
    if args.stride == Some(0) {
        bail!("--stride 0: the window must move by at least one token");
    }
    if args.max_length == Some(0) {
        bail!("--max-length 0: a window needs at least one token");
    }
    if let (Some(s), Some(m)) = (args.stride, args.max_length) {
        if s > m {
            bail!(
                "--stride {s} is larger than --max-length {m}: the tokens between windows would \
                 never be scored"
            );
        }
    }
    let text = read_text(&args)?;
    let reference = model_reference(&args.model)?;
    if !lmrs_pipelines::is_causal_model(&reference, args.revision.as_deref())
        .with_context(|| format!("cannot load {reference}"))?
    {
        bail!(
            "{reference} is not a decoder-only (causal) language model: perplexity is defined \
             for causal LMs (GGUF files, or model_type {}), not for encoder-decoder models \
             such as T5 or encoders such as BERT",
            lmrs_pipelines::catalogue::model_types(lmrs_pipelines::Role::Causal)
        );
    }
    let t0 = Instant::now();
    let pipe = TextGenerationPipeline::load(
        &reference,
        &LoadOptions {
            revision: args.revision.clone(),
            max_input_tokens: None,
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot load {reference}"))?;
    let load_s = t0.elapsed().as_secs_f64();
    let bos = match args.add_bos {
        BosArg::Auto => AddBos::Auto,
        BosArg::Always => AddBos::Always,
        BosArg::Never => AddBos::Never,
    };
    let opts = PerplexityOptions {
        max_length: args.max_length,
        stride: args.stride,
        batch_size: args.batch_size.max(1),
        ..Default::default()
    };
    let bar = progress_bar();
    let mut on_progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let t1 = Instant::now();
    let report = pipe
        .perplexity(&text, bos, &opts, Some(&mut on_progress))
        .with_context(|| format!("perplexity of {} with {reference}", args.data.display()))?;
    let eval_s = t1.elapsed().as_secs_f64();
    bar.finish_and_clear();
    print_report(&args, &reference, &report, load_s, eval_s)
}

/// The text to score: the whole plain file, or the JSON Lines documents joined with "\n\n".
fn read_text(args: &PerplexityArgs) -> Result<String> {
    let path: &Path = &args.data;
    let name = path.display().to_string();
    let jsonl = args.jsonl || args.field.is_some() || Format::from_path(path) == Format::JsonLines;
    let text = if jsonl {
        let field = args.field.as_deref().unwrap_or("text");
        let docs = readers::single(readers::read_items(path, Format::JsonLines, field)?, &name)?;
        if docs.is_empty() {
            bail!("{name} holds no documents");
        }
        docs.join("\n\n")
    } else if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin().lock()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?
    };
    if text.trim().is_empty() {
        bail!("{name} holds no text");
    }
    Ok(text)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} windows, {elapsed} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn print_report(
    args: &PerplexityArgs,
    model: &str,
    r: &PerplexityReport,
    load_s: f64,
    eval_s: f64,
) -> Result<()> {
    let bos = match args.add_bos {
        BosArg::Auto => "auto",
        BosArg::Always => "always",
        BosArg::Never => "never",
    };
    if args.json {
        let v = json!({
            "model": model,
            "data": args.data.display().to_string(),
            "ppl": r.ppl,
            "nll": r.nll,
            "nll_sum": r.nll_sum,
            "loss_tokens": r.loss_tokens,
            "method": METHOD,
            "token_ppl": r.token_ppl,
            "token_nll": r.token_nll,
            "scored_tokens": r.scored_tokens,
            "tokens": r.tokens,
            "windows": r.windows,
            "max_length": r.max_length,
            "stride": r.stride,
            "add_bos": bos,
            "load_s": load_s,
            "eval_s": eval_s,
            "tokens_per_s": r.tokens as f64 / eval_s.max(1e-9),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.6} nats over {} tokens, weighted as the transformers \
             docs do)",
            r.ppl, r.nll, r.loss_tokens
        );
        println!(
            "per-token perplexity {:.4} (mean NLL {:.6} over all {} scored tokens)",
            r.token_ppl, r.token_nll, r.scored_tokens
        );
        println!(
            "{} tokens, {} window{} of up to {} tokens, stride {}, add-bos {bos}; {:.1} s \
             ({:.0} tokens/s)",
            r.tokens,
            r.windows,
            if r.windows == 1 { "" } else { "s" },
            r.max_length,
            r.stride,
            eval_s,
            r.tokens as f64 / eval_s.max(1e-9)
        );
    }
    Ok(())
}
