//! `generate`, `chat`, and `summarize` with a decoder-only model: read prompts, run the
//! text-generation pipeline, stream or print the results.

use crate::args::{at_least_one, GenerationArgs, InputArgs, TaskArgs};
use crate::input::documents;
use anyhow::{bail, Context, Result};
use clap::Args;
use lmrs_pipelines::{
    ChatMessage, CompletionOutput, LoadOptions, RunOptions, TextGenerationPipeline,
};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// `lmrs generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A GGUF file, a folder, or a hub id in the Hugging Face cache (default:
    /// SmolLM2-135M-Instruct from lmrs's model cache).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Hub cache revision when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// Prompts, each continued separately. Without prompts and --input, stdin is read.
    #[arg(value_name = "PROMPT")]
    pub prompts: Vec<String>,
    #[command(flatten)]
    pub source: InputArgs,
    /// Print one JSON object per prompt (text, ids, finish reason, token counts, timing).
    #[arg(long)]
    pub json: bool,
    /// Prompts run together in one batch (left-padded).
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Keep the last tokens of a prompt that does not fit the context window instead of
    /// failing.
    #[arg(long)]
    pub truncate: bool,
    /// A PEFT LoRA adapter folder to apply to the model (repeatable; merged at load, as
    /// `peft`'s `merge_and_unload`). `lmrs train --lora` writes one.
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// `lmrs chat` flags.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A GGUF file, a folder, or a hub id with a chat template (default:
    /// SmolLM2-135M-Instruct from lmrs's model cache).
    #[arg(short, long)]
    pub model: Option<String>,
    /// Hub cache revision when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// System prompt placed before the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Answer these user messages in order (non-interactive); the last answer is printed.
    #[arg(long)]
    pub message: Vec<String>,
    /// Print each answer as a JSON object.
    #[arg(long)]
    pub json: bool,
    /// Drop the oldest tokens when the conversation outgrows the context window.
    #[arg(long)]
    pub truncate: bool,
    /// A PEFT LoRA adapter folder to apply to the model (repeatable; merged at load, as
    /// `peft`'s `merge_and_unload`). `lmrs train --lora` writes one.
    #[arg(long)]
    pub adapter: Vec<PathBuf>,
    #[command(flatten)]
    pub generation: GenerationArgs,
}

/// The model to load: `--model`, else the default model (fetched by scripts/fetch-models.sh).
pub fn model_reference(model: &Option<String>) -> Result<String> {
    match model {
        Some(m) => Ok(m.clone()),
        None => Ok(lmrs_pipelines::default_model()?.display().to_string()),
    }
}

fn load(
    model: &Option<String>,
    revision: &Option<String>,
    truncate: bool,
    adapters: &[PathBuf],
) -> Result<TextGenerationPipeline> {
    let reference = model_reference(model)?;
    let mut p = TextGenerationPipeline::load(
        &reference,
        &LoadOptions {
            revision: revision.clone(),
            max_input_tokens: None,
            adapters: adapters.to_vec(),
        },
    )
    .with_context(|| format!("cannot load {reference}"))?;
    p.set_truncate_prompts(truncate);
    Ok(p)
}

/// Print the outputs of a run: streamed text was already printed; `--json` prints one object
/// per prompt.
fn print_outputs(outputs: &[CompletionOutput], json: bool, streamed: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, o) in outputs.iter().enumerate() {
        if json {
            let best = o.completions.first();
            let record = serde_json::json!({
                "index": i,
                "text": best.map(|c| c.text.as_str()).unwrap_or_default(),
                "token_ids": best.map(|c| c.token_ids.clone()).unwrap_or_default(),
                "finish_reason": best.map(|c| c.finish_reason),
                "completions": o.completions,
                "prompt_tokens": o.prompt_tokens,
                "output_tokens": best.map_or(0, |c| c.token_ids.len()),
                "truncated": o.truncated,
                "batch_size": o.batch_size,
                "prefill_ms": o.prefill_ms,
                "generate_ms": o.generate_ms,
            });
            writeln!(out, "{}", serde_json::to_string(&record)?)?;
        } else if streamed {
            writeln!(out)?;
        } else {
            for c in &o.completions {
                writeln!(out, "{}", c.text)?;
            }
        }
    }
    Ok(())
}

fn warn_truncated(outputs: &[CompletionOutput]) {
    let n = outputs.iter().filter(|o| o.truncated).count();
    if n > 0 {
        eprintln!(
            "warning: {n} prompt(s) did not fit the context window and kept only their last tokens"
        );
    }
}

/// Stream to stdout when it is a terminal, a single prompt is run, and no JSON is asked for.
fn run_streaming<F>(json: bool, single: bool, run: F) -> Result<(Vec<CompletionOutput>, bool)>
where
    F: FnOnce(Option<&mut dyn FnMut(&str)>) -> Result<Vec<CompletionOutput>>,
{
    let mut streamed = false;
    let mut on_text = |piece: &str| {
        streamed = true;
        print!("{piece}");
        let _ = std::io::stdout().flush();
    };
    let stream = std::io::stdout().is_terminal() && !json && single;
    let outputs = run(stream.then_some(&mut on_text as &mut dyn FnMut(&str)))?;
    Ok((outputs, streamed))
}

/// `lmrs generate`: raw completion of each prompt.
pub fn generate(args: GenerateArgs) -> Result<()> {
    let prompts = documents(&args.prompts, &args.source)?;
    let pipeline = load(&args.model, &args.revision, args.truncate, &args.adapter)?;
    let overrides = args.generation.overrides_for(pipeline.defaults());
    let (outputs, streamed) = run_streaming(args.json, prompts.len() == 1, |on_text| {
        let opts = RunOptions {
            batch_size: args.batch_size,
            on_text,
            on_progress: None,
        };
        Ok(pipeline.complete(&prompts, &overrides, opts)?)
    })?;
    warn_truncated(&outputs);
    print_outputs(&outputs, args.json, streamed)
}

/// `lmrs summarize` with a decoder-only model: an instruction through the chat template.
pub fn summarize(args: TaskArgs) -> Result<()> {
    let docs = documents(&args.texts, &args.io.source)?;
    let truncate = args.io.max_input_tokens.is_some();
    let pipeline = load(&args.model, &args.revision, truncate, &args.adapter)?;
    let overrides = args.generation.overrides_for(pipeline.defaults());
    let (outputs, streamed) = run_streaming(args.io.json, docs.len() == 1, |on_text| {
        let opts = RunOptions {
            batch_size: args.io.batch_size,
            on_text,
            on_progress: None,
        };
        Ok(pipeline.summarize(&docs, &overrides, opts)?)
    })?;
    warn_truncated(&outputs);
    print_outputs(&outputs, args.io.json, streamed)
}

/// `lmrs chat`: a conversation with history, interactive on a terminal; `--message` answers
/// once (repeat it to give earlier user turns).
pub fn chat(args: ChatArgs) -> Result<()> {
    let pipeline = load(&args.model, &args.revision, args.truncate, &args.adapter)?;
    if pipeline.chat_template().is_none() {
        bail!(
            "{} has no chat template; use `lmrs generate` for plain completion",
            pipeline.source().display()
        );
    }
    let overrides = args.generation.overrides_for(pipeline.defaults());
    let mut history = Vec::new();
    if let Some(system) = &args.system {
        history.push(ChatMessage {
            role: "system".into(),
            content: system.clone(),
        });
    }
    let stdout_tty = std::io::stdout().is_terminal();
    let reply = |history: &mut Vec<ChatMessage>, stream: bool| -> Result<CompletionOutput> {
        let mut on_text = |piece: &str| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        };
        let opts = RunOptions {
            batch_size: 1,
            on_text: stream.then_some(&mut on_text as &mut dyn FnMut(&str)),
            on_progress: None,
        };
        let out = pipeline.chat(history, &overrides, opts)?;
        let text = out
            .completions
            .first()
            .map(|c| c.text.clone())
            .unwrap_or_default();
        history.push(ChatMessage {
            role: "assistant".into(),
            content: text.trim().to_string(),
        });
        Ok(out)
    };

    if let Some(i) = args.message.iter().position(|m| m.trim().is_empty()) {
        bail!("--message {} is empty", i + 1);
    }
    if !args.message.is_empty() {
        // Scripted: all messages are user turns; the model answers each in order and the
        // last answer is printed (all of them with --json).
        let mut outputs = Vec::new();
        for m in &args.message {
            history.push(ChatMessage {
                role: "user".into(),
                content: m.clone(),
            });
            let last = outputs.len() + 1 == args.message.len();
            let stream = last && stdout_tty && !args.json;
            outputs.push(reply(&mut history, stream)?);
            if stream {
                println!();
            }
        }
        if args.json {
            print_outputs(&outputs, true, false)?;
        } else if !stdout_tty {
            if let Some(last) = history.last() {
                println!("{}", last.content);
            }
        }
        return Ok(());
    }

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} — empty line or Ctrl-D to quit, /reset to forget the conversation",
            pipeline.source().display()
        );
    }
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("cannot read stdin")?;
        let line = line.trim();
        if line.is_empty() {
            if interactive {
                break;
            }
            continue;
        }
        if line == "/reset" {
            history.retain(|m| m.role == "system");
            continue;
        }
        history.push(ChatMessage {
            role: "user".into(),
            content: line.to_string(),
        });
        let out = reply(&mut history, stdout_tty && !args.json)?;
        if args.json {
            print_outputs(&[out], true, false)?;
        } else if stdout_tty {
            println!();
        } else if let Some(last) = history.last() {
            println!("{}", last.content);
        }
    }
    Ok(())
}
