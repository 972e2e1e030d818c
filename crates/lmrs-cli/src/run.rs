//! `summarize`, `translate` and `text2text`: read inputs, run the pipeline, print results.

use crate::args::TaskArgs;
use crate::input::documents;
use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lmrs_pipelines::{LoadOptions, RunOptions, Seq2SeqOutput, Seq2SeqPipeline, Task};
use std::io::{IsTerminal, Write};

/// `lmrs translate` flags.
#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// Source language, by name or code (English, en).
    #[arg(long, default_value = "English")]
    pub source: String,
    /// Target language, by name or code (German, de; French, fr; Romanian, ro).
    #[arg(long)]
    pub target: String,
    #[command(flatten)]
    pub task: TaskArgs,
}

/// Decoder-only models (GGUF files, causal-LM folders, or the default model when no --model
/// is given) summarize through their chat template; encoder-decoders through their task
/// settings.
pub fn summarize(args: TaskArgs) -> Result<()> {
    let causal = match &args.model {
        None => true,
        Some(m) => lmrs_pipelines::is_causal_model(m, args.revision.as_deref())?,
    };
    if causal {
        crate::causal::summarize(args)
    } else {
        run_task(args, Task::Summarization)
    }
}

pub fn translate(args: TranslateArgs) -> Result<()> {
    let task = Task::Translation {
        source: args.source,
        target: args.target,
    };
    run_task(args.task, task)
}

pub fn text2text(args: TaskArgs) -> Result<()> {
    run_task(args, Task::Text2Text)
}

fn run_task(args: TaskArgs, task: Task) -> Result<()> {
    let Some(model) = &args.model else {
        anyhow::bail!("--model is required (an encoder-decoder such as t5-small)");
    };
    let docs = documents(&args.texts, &args.io.source)?;
    let pipeline = Seq2SeqPipeline::load(
        model,
        &LoadOptions {
            revision: args.revision.clone(),
            max_input_tokens: args.io.max_input_tokens,
            adapters: args.adapter.clone(),
        },
    )?;
    let overrides = args
        .generation
        .overrides_for(&pipeline.task_config(&task)?.1);
    let json = args.io.json;
    let stdout_tty = std::io::stdout().is_terminal();

    // Progress bar on a terminal for more than one document; streaming for a single one.
    let bar = (docs.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(docs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} documents, {elapsed} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut streamed = false;
    let mut on_text = |piece: &str| {
        streamed = true;
        print!("{piece}");
        let _ = std::io::stdout().flush();
    };
    let mut on_progress = |n: usize| {
        if let Some(b) = &bar {
            b.set_position(n as u64);
        }
    };
    let opts = RunOptions {
        batch_size: args.io.batch_size,
        on_text: (stdout_tty && !json && docs.len() == 1)
            .then_some(&mut on_text as &mut dyn FnMut(&str)),
        on_progress: Some(&mut on_progress),
    };
    let outputs = pipeline.run(&docs, &task, &overrides, opts)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let truncated = outputs.iter().filter(|o| o.truncated).count();
    if truncated > 0 {
        eprintln!(
            "warning: {truncated} input(s) longer than {} tokens were truncated (see --max-input-tokens)",
            pipeline.max_input_tokens()
        );
    }
    let mut out = std::io::stdout().lock();
    for (i, o) in outputs.iter().enumerate() {
        if json {
            writeln!(out, "{}", serde_json::to_string(&json_record(i, o))?)?;
        } else if streamed {
            writeln!(out)?;
        } else {
            for s in &o.sequences {
                writeln!(out, "{}", s.text)?;
            }
        }
    }
    Ok(())
}

fn json_record(index: usize, o: &Seq2SeqOutput) -> serde_json::Value {
    let best = o.sequences.first();
    serde_json::json!({
        "index": index,
        "text": best.map(|s| s.text.as_str()).unwrap_or_default(),
        "token_ids": best.map(|s| s.token_ids.clone()).unwrap_or_default(),
        "sequences": o.sequences,
        "input_tokens": o.input_tokens,
        "output_tokens": best.map_or(0, |s| s.token_ids.len()),
        "truncated": o.truncated,
        "batch_size": o.batch_size,
        "encode_ms": o.encode_ms,
        "generate_ms": o.generate_ms,
    })
}
