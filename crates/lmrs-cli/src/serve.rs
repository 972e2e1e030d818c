//! `serve`: an HTTP server (OpenAI-compatible and task routes) over one model.

use crate::args::at_least_one;
use anyhow::{Context, Result};
use clap::Args;
use lmrs_server::{Backend, LoadSpec, ModelKind, Server, ServerConfig};
use std::io::Write;
use std::time::Duration;

/// `lmrs serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// GGUF file, model folder or hub id in the Hugging Face cache (default: the default chat
    /// model, SmolLM2-135M-Instruct, once fetched with `scripts/fetch-models.sh`).
    #[arg(short, long)]
    pub model: Option<String>,
    /// A PEFT LoRA adapter folder merged into the served model at load (repeatable, applied
    /// in order; generation and seq2seq models). `lmrs train --lora` writes one.
    #[arg(long)]
    pub adapter: Vec<std::path::PathBuf>,
    /// Hub cache revision (branch or commit hash) when MODEL is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    /// What to serve: seq2seq, embedding, classification, token-classification, fill-mask or
    /// causal-lm (default: from the model; GGUF files are causal LMs).
    #[arg(long, value_parser = parse_kind)]
    pub task: Option<ModelKind>,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health (default: the
    /// LMRS_API_KEY environment variable; none when unset). An empty key, or one with
    /// surrounding whitespace, is refused.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Without an API key only requests whose Host is localhost or an IP address are answered
    /// (against DNS rebinding from web pages); also accept these names (comma-separated,
    /// `*.example.org` for subdomains, `*` for any).
    #[arg(long, value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Most inputs run together in one model call.
    #[arg(long, default_value_t = 8)]
    pub max_batch_size: usize,
    /// Most requests waiting for the model; more are refused at once with 429.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Longest input in tokens; longer inputs are refused with 400 (default: the model's limit).
    #[arg(long)]
    pub max_input_tokens: Option<usize>,
    /// Most tokens one request may generate.
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens_limit: usize,
    /// Seconds a request may wait and run before it is answered 504.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 4 << 20, value_parser = at_least_one)]
    pub max_body_bytes: usize,
    /// Longest input text in bytes, refused before tokenizing (default: 32 bytes per token of
    /// the input limit, at least 65536).
    #[arg(long, value_parser = at_least_one)]
    pub max_input_bytes: Option<usize>,
    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request's whole body (408 after).
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Most client connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Model threads, each running whole batches over the shared weights (at most one per
    /// core: more only share the cores).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub workers: usize,
    /// The model id clients see and pass as `model` (default: the folder name or hub id).
    #[arg(long)]
    pub served_model_name: Option<String>,
}

fn parse_kind(s: &str) -> Result<ModelKind, String> {
    ModelKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
        format!("'{s}' is not a task ({})", names.join(", "))
    })
}

fn seconds(flag: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, got {v}"))
}

/// `--api-key`, else `LMRS_API_KEY`; an empty or padded key is an error, never "no auth".
fn api_key(args: &ServeArgs) -> Result<Option<String>> {
    let (key, source) = match (&args.api_key, std::env::var("LMRS_API_KEY")) {
        (Some(k), _) => (k.clone(), "--api-key"),
        (None, Ok(k)) => (k, "LMRS_API_KEY"),
        (None, Err(std::env::VarError::NotPresent)) => return Ok(None),
        (None, Err(std::env::VarError::NotUnicode(_))) => {
            anyhow::bail!("LMRS_API_KEY is not valid UTF-8")
        }
    };
    lmrs_server::guard::check_api_key(&key, source).map_err(anyhow::Error::msg)?;
    Ok(Some(key))
}

/// More model threads than cores only share the cores (each batch already uses them all).
fn capped_workers(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if n > cores {
        eprintln!("warning: --workers {n} is more than the {cores} cores available; using {cores}");
        cores
    } else {
        n
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let model = match &args.model {
        Some(m) => m.clone(),
        None => lmrs_pipelines::default_model()?.display().to_string(),
    };
    let config = ServerConfig {
        api_key: api_key(&args)?,
        allowed_hosts: args.allowed_hosts.clone(),
        max_input_bytes: args.max_input_bytes,
        header_timeout: seconds("--header-timeout", args.header_timeout)?,
        body_timeout: seconds("--body-timeout", args.body_timeout)?,
        max_connections: args.max_connections,
        max_batch_size: args.max_batch_size,
        max_queue: args.max_queue,
        max_input_tokens: args.max_input_tokens,
        max_new_tokens_limit: args.max_new_tokens_limit,
        request_timeout: seconds("--request-timeout", args.request_timeout)?,
        max_body_bytes: args.max_body_bytes,
        shutdown_grace: seconds("--shutdown-grace", args.shutdown_grace)?,
        workers: capped_workers(args.workers),
        model_id: args.served_model_name.clone(),
    };
    let backend = Backend::load(&LoadSpec {
        reference: model.clone(),
        revision: args.revision.clone(),
        kind: args.task,
        max_input_tokens: args.max_input_tokens,
        adapters: args.adapter.clone(),
    })?;
    let server = Server::new(backend, &model, config)?;
    let info = server.info().clone();
    let max_input = args
        .max_input_tokens
        .map_or(info.input_limit, |m| m.min(info.input_limit));
    let auth = server.config().api_key.is_some();
    server.run(&args.host, args.port, |addr| {
        println!(
            "lmrs serve: model '{}' ({}, {}) listening on http://{addr}{}",
            info.id,
            info.kind.name(),
            info.dir.display(),
            if auth { " (API key required)" } else { "" }
        );
        let limits = if info.kind == ModelKind::CausalLm {
            format!(
                "prompts up to {max_input} tokens, context {} tokens",
                info.input_limit
            )
        } else {
            format!("inputs up to {max_input} tokens")
        };
        println!(
            "lmrs serve: routes {} and /v1/models, /health, /metrics, /docs; {limits}",
            info.routes().join(", "),
        );
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("lmrs serve: stopped");
    Ok(())
}
