//! lmrs-server: an HTTP server for lmrs pipelines (axum on tokio).
//!
//! Routes: OpenAI-compatible `GET /v1/models`, `POST /v1/embeddings`, `POST /v1/completions`
//! and `POST /v1/chat/completions`, the task routes `POST /v1/summarize`, `/v1/translate`,
//! `/v1/text2text`, `/v1/classify`, `/v1/ner`, `/v1/fill-mask`, and `GET /health`,
//! `GET /metrics` (Prometheus), `GET /openapi.json`, `GET /docs`. Every error is an
//! OpenAI-style JSON body ([`ApiError`]).
//!
//! # How a request flows
//! 1. A handler parses and validates the body (unknown task-route fields, empty or too long
//!    inputs, out-of-range options answer 4xx before any model work) and builds a [`Work`].
//! 2. It pushes a job on the bounded [`worker::Queue`]; a full queue answers 429 at once.
//! 3. A model thread ([`worker`]) takes the oldest job plus every waiting job that can share a
//!    pipeline call ([`Work::can_join`]), up to `--max-batch-size` inputs, runs them through
//!    [`Backend::run`] and replies to each through a oneshot channel.
//! 4. A client that disconnects drops its handler and so the reply receiver; a queued job whose
//!    receiver is gone is skipped, and a causal LM stops a running job's rows.
//!    `--request-timeout` does the same for slow requests.
//! 5. On shutdown (SIGTERM/SIGINT, or the future given to [`Server::serve`]) the listener stops
//!    accepting, `/health` answers 503, in-flight requests finish within the grace period, the
//!    queue closes and the model threads stop.
//!
//! # Completions and chat (causal language models)
//! A GGUF file or a `*ForCausalLM` folder loads as [`Backend::CausalLm`]
//! (`lmrs_pipelines::TextGenerationPipeline`); `lmrs serve` with no `--model` serves the default
//! model. The handlers (`completions.rs`) render the chat template or tokenize the prompt,
//! refuse a prompt that with `max_tokens` does not fit the context (400
//! `context_length_exceeded`), map the sampling fields with
//! [`openai::SamplingParams::generation_config`] and queue a [`Work::Complete`] of token ids.
//! Requests with equal options that wait together run as one left-padded `generate_ids` batch
//! (greedy results equal single runs on f32 weights; quantized kernels may round a near-tie
//! differently in a batch); seeded sampling runs alone, since a row's draws depend on its place
//! in the batch. Every prompt of a batch streams its own text (`stream: true` answers OpenAI's
//! chunks), and a request whose client disconnects or times out stops its rows at the next
//! decoding step while the rest of the batch goes on (`abandoned` in the metrics).
//!
//! Batching is per request batch: a request that arrives while a batch decodes waits for the
//! next one. Letting it join the running batch needs a KV cache that takes new rows at their
//! own positions (the cache is preallocated per batch with each row's left padding).

mod backend;
mod blocking;
mod completions;
pub mod conn;
mod embeddings;
mod error;
pub mod guard;
mod metrics;
pub mod openai;
pub mod openapi;
mod routes;
mod service;
mod state;
pub mod stop;
mod task_routes;
pub mod tasks;
pub mod worker;

pub use backend::{Backend, LoadSpec, ModelInfo, ModelKind, Output, Work};
pub use error::{ApiError, ServerError};
pub use metrics::{BatchStats, Metrics};

use state::Shared;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Server options (the `lmrs serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer key required on every route but `/health` (default: none).
    pub api_key: Option<String>,
    /// Most inputs per model call (default 8).
    pub max_batch_size: usize,
    /// Most requests waiting for the model; more are refused with 429 (default 64).
    pub max_queue: usize,
    /// Longest input in tokens; longer inputs are refused with 400 (default: the model's
    /// limit).
    pub max_input_tokens: Option<usize>,
    /// Most tokens a request may generate (default 512).
    pub max_new_tokens_limit: usize,
    /// Longest time a request may wait and run (default 120 s).
    pub request_timeout: Duration,
    /// Largest request body in bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests (default 30 s).
    pub shutdown_grace: Duration,
    /// Model threads (default 1; each runs whole batches, sharing the weights).
    pub workers: usize,
    /// The model id clients see (default: the folder name of a local model, else the hub id).
    pub model_id: Option<String>,
    /// Longest wait for a request's headers, also on an idle keep-alive connection
    /// (default 10 s).
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body (default 30 s).
    pub body_timeout: Duration,
    /// Most connections served at once; more wait in the backlog (default 512).
    pub max_connections: usize,
    /// Host names accepted besides localhost and IP addresses when no API key is set (`*`:
    /// any); see [`guard`].
    pub allowed_hosts: Vec<String>,
    /// Longest input text in bytes, refused before it is tokenized (default: 32 bytes per
    /// token of the input limit, at least 64 KiB).
    pub max_input_bytes: Option<usize>,
}

/// Most connections `--max-connections` may ask for.
pub const MAX_CONNECTIONS: usize = 1 << 20;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            max_batch_size: 8,
            max_queue: 64,
            max_input_tokens: None,
            max_new_tokens_limit: 512,
            request_timeout: Duration::from_secs(120),
            max_body_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(30),
            workers: 1,
            model_id: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            allowed_hosts: Vec::new(),
            max_input_bytes: None,
        }
    }
}

/// A loaded model with its queue and model threads, ready to serve.
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Start the model threads for `backend`, loaded from `reference`.
    pub fn new(
        backend: Backend,
        reference: &str,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        if config.max_batch_size == 0 {
            return Err(ServerError::Config(
                "--max-batch-size must be at least 1".into(),
            ));
        }
        if config.max_queue == 0 {
            return Err(ServerError::Config("--max-queue must be at least 1".into()));
        }
        if config.max_new_tokens_limit == 0 {
            return Err(ServerError::Config(
                "--max-new-tokens-limit must be at least 1".into(),
            ));
        }
        if config.max_input_tokens == Some(0) {
            return Err(ServerError::Config(
                "--max-input-tokens must be at least 1".into(),
            ));
        }
        if config.request_timeout.is_zero() {
            return Err(ServerError::Config(
                "--request-timeout must be positive".into(),
            ));
        }
        if config.max_body_bytes == 0 {
            return Err(ServerError::Config(
                "--max-body-bytes must be at least 1 (0 would refuse every POST)".into(),
            ));
        }
        if config.header_timeout.is_zero() || config.body_timeout.is_zero() {
            return Err(ServerError::Config(
                "--header-timeout and --body-timeout must be positive".into(),
            ));
        }
        if config.max_connections == 0 || config.max_connections > MAX_CONNECTIONS {
            return Err(ServerError::Config(format!(
                "--max-connections must be between 1 and {MAX_CONNECTIONS}"
            )));
        }
        if config.max_input_bytes == Some(0) {
            return Err(ServerError::Config(
                "--max-input-bytes must be at least 1".into(),
            ));
        }
        if let Some(key) = &config.api_key {
            guard::check_api_key(key, "the API key").map_err(ServerError::Config)?;
        }
        if config.workers == 0 {
            return Err(ServerError::Config("--workers must be at least 1".into()));
        }
        let id = config
            .model_id
            .clone()
            .unwrap_or_else(|| default_id(reference));
        let info = ModelInfo {
            id: id.clone(),
            kind: backend.kind(),
            dir: backend.model_dir().to_path_buf(),
            input_limit: backend.input_limit(),
            chat: match &backend {
                Backend::CausalLm(p) => p.chat_template().is_some(),
                _ => false,
            },
        };
        let backend = Arc::new(backend);
        let queue = Arc::new(worker::Queue::new(config.max_queue));
        let metrics = Arc::new(Metrics::new());
        let workers = worker::spawn_workers(
            config.workers,
            backend.clone(),
            queue.clone(),
            metrics.clone(),
            config.max_batch_size,
        )?;
        let aliases = [reference.to_string(), info.dir.display().to_string()]
            .into_iter()
            .filter(|a| *a != id)
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                backend,
                info,
                aliases,
                queue,
                metrics,
                draining: AtomicBool::new(false),
                created: state::unix_now(),
                cpu: blocking::CpuSlots::new(),
            }),
            workers,
        })
    }

    /// The served model.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// The options in force.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The metrics (also at `GET /metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The HTTP routes.
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// Serve on `listener` until `shutdown` completes, then stop gracefully: stop accepting,
    /// let in-flight requests finish (at most `shutdown_grace`), stop the model threads.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = self.shared.clone();
        let on_signal = async move {
            shutdown.await;
            shared.draining.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        };
        let (fitted, why) =
            conn::fit_connections(self.shared.config.max_connections, conn::raise_fd_limit());
        if let Some(why) = why {
            eprintln!("lmrs serve: {why}");
        }
        let limits = conn::ConnLimits {
            header_timeout: self.shared.config.header_timeout,
            max_connections: fitted,
        };
        let grace = self.shared.config.shutdown_grace;
        let mut grace_rx = stop_rx.clone();
        let grace_expired = async move {
            let _ = grace_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        };
        let server = conn::serve(listener, self.router(), limits, stop_rx);
        tokio::spawn(on_signal);
        let started = std::time::Instant::now();
        tokio::select! {
            _ = server => {}
            _ = grace_expired => {
                eprintln!("lmrs serve: shutdown grace of {grace:?} expired with requests in flight");
            }
        }
        self.shared.queue.close();
        let left = grace
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || worker::join_workers(workers, left)).await;
        Ok(())
    }
}

impl Server {
    /// Bind `host:port` (port 0: any free port), call `on_ready` with the bound address, and
    /// serve until SIGTERM or SIGINT, then stop gracefully. Blocks; runs its own tokio runtime.
    pub fn run(
        self,
        host: &str,
        port: u16,
        on_ready: impl FnOnce(std::net::SocketAddr),
    ) -> Result<(), ServerError> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("lmrs-http")
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind((host, port))
                .await
                .map_err(|source| ServerError::Bind {
                    addr: format!("{host}:{port}"),
                    source,
                })?;
            let shutdown = shutdown_signal()?;
            on_ready(listener.local_addr()?);
            self.serve(listener, shutdown).await
        })?;
        rt.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }
}

/// The default model id: a local folder's name, else the reference itself (a hub id).
fn default_id(reference: &str) -> String {
    let path = std::path::Path::new(reference);
    if path.exists() {
        if let Some(name) = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        {
            return name;
        }
    }
    reference.to_string()
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed by this
/// call (inside a tokio runtime), so a signal that arrives before the future is polled is not
/// lost and does not kill the process.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
