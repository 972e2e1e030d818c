//! What every handler shares: the server state ([`Shared`]), the limits requests are held
//! to, the JSON body extractor, and the steps from a validated request to a queued job and
//! its reply. Handlers (service.rs, embeddings.rs, completions.rs, task_routes.rs) build on
//! this module; the router (routes.rs) only wires them.

use crate::backend::{Backend, ModelInfo, Work};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::worker::{Job, PushError, Queue, Reply};
use crate::ServerConfig;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Most inputs one request may carry.
pub const MAX_INPUTS: usize = 2048;
/// Most beams a generation request may ask for.
pub const MAX_BEAMS: usize = 32;
/// Most proposals per mask.
pub const MAX_FILL_MASK_TOP_K: usize = 100;

/// What every handler sees.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub backend: Arc<Backend>,
    pub info: ModelInfo,
    /// Other names clients may use for the model (the reference as given).
    pub aliases: Vec<String>,
    pub queue: Arc<Queue>,
    pub metrics: Arc<Metrics>,
    pub draining: AtomicBool,
    pub created: u64,
    /// Permits for tokenizing and template rendering off the async runtime.
    pub cpu: crate::blocking::CpuSlots,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// The input limit requests are held to: `--max-input-tokens`, never more than the
    /// pipeline takes (longer inputs are refused, never silently truncated).
    pub(crate) fn input_limit(&self) -> usize {
        self.config
            .max_input_tokens
            .map_or(self.info.input_limit, |m| m.min(self.info.input_limit))
    }

    /// The longest text accepted before tokenizing: `--max-input-bytes`, by default
    /// [`BYTES_PER_TOKEN`] per token of the input limit and at least [`MIN_INPUT_BYTES`].
    /// Longer texts are refused without spending CPU or memory on them.
    pub(crate) fn input_byte_limit(&self) -> usize {
        self.config.max_input_bytes.unwrap_or_else(|| {
            self.input_limit()
                .saturating_mul(BYTES_PER_TOKEN)
                .max(MIN_INPUT_BYTES)
        })
    }

    /// Refuse `len` bytes of text over [`Shared::input_byte_limit`] (`what` names it: "input 2").
    pub(crate) fn check_bytes(&self, what: &str, len: usize, param: &str) -> Result<(), ApiError> {
        let limit = self.input_byte_limit();
        if len > limit {
            return Err(ApiError::bad_request(format!(
                "{what} is {} bytes long; this server takes at most {limit} bytes per input \
                 (--max-input-bytes), far more than its {}-token limit holds",
                len,
                self.input_limit()
            ))
            .with_param(param)
            .with_code("context_length_exceeded"));
        }
        Ok(())
    }
}

/// Default bytes allowed per token of the input limit: more than any real tokenizer's longest
/// token averages over a whole text, so only inputs that cannot fit are refused unread.
pub const BYTES_PER_TOKEN: usize = 32;
/// The least default byte limit, for models with short input limits.
pub const MIN_INPUT_BYTES: usize = 64 << 10;

/// A JSON body parsed with serde; every failure is an OpenAI-style 400 (413 over the size
/// limit) naming the field at fault.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        crate::guard::require_json(req.headers())?;
        let limit = state.config.body_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| ApiError::body_timeout(limit.as_secs_f64()))?
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large(format!(
                        "the request body is larger than the server's limit of {} bytes",
                        state.config.max_body_bytes
                    ))
                } else {
                    ApiError::bad_request(format!(
                        "cannot read the request body: {}",
                        e.body_text()
                    ))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON object",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut err = if inner.is_syntax() || inner.is_eof() {
                ApiError::bad_request(format!("the request body is not valid JSON: {inner}"))
            } else {
                ApiError::bad_request(format!("invalid request: {inner}"))
            };
            if !path.is_empty() && path != "." {
                err = err.with_param(path);
            }
            err
        })?;
        de.end().map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        Ok(JsonBody(value))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the handlers

pub(crate) fn check_model(s: &Shared, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        Some(m) if m != s.info.id && !s.aliases.iter().any(|a| a == m) => {
            Err(ApiError::not_found(format!(
                "the model '{m}' is not served here; this server serves '{}'",
                s.info.id
            ))
            .with_param("model")
            .with_code("model_not_found"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn unsupported(s: &Shared, what: &str) -> ApiError {
    ApiError::unsupported(format!(
        "the model '{}' is a {} model and does not support {what}; it serves {}",
        s.info.id,
        s.info.kind.name(),
        s.info.routes().join(", ")
    ))
}

/// Validate input texts: at least one, none blank, at most [`MAX_INPUTS`], each within the
/// byte limit and then (tokenized off the runtime) the token limit. Returns the texts and the
/// total input tokens.
pub(crate) async fn check_texts(
    s: &AppState,
    texts: Vec<String>,
    prefix: &str,
) -> Result<(Vec<String>, usize), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::bad_request("`input` must not be empty").with_param("input"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_INPUTS} inputs per request, got {}",
            texts.len()
        ))
        .with_param("input"));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(ApiError::bad_request(format!("input {i} is empty")).with_param("input"));
        }
        s.check_bytes(&format!("input {i}"), t.len(), "input")?;
    }
    let limit = s.input_limit();
    let (backend, prefix) = (s.backend.clone(), prefix.to_string());
    let bytes = texts.iter().map(String::len).sum();
    s.cpu
        .run(bytes, move || {
            let mut total = 0;
            for (i, t) in texts.iter().enumerate() {
                let n = backend.count_tokens(t, &prefix)?;
                if n > limit {
                    return Err(ApiError::bad_request(format!(
                        "input {i} is {n} tokens long; this server takes at most {limit} tokens per input"
                    ))
                    .with_param("input")
                    .with_code("context_length_exceeded"));
                }
                total += n;
            }
            Ok((texts, total))
        })
        .await
}

pub(crate) fn make_job(
    work: Work,
    exclusive: bool,
    input_tokens: usize,
) -> (Job, oneshot::Receiver<Reply>) {
    let (reply, rx) = oneshot::channel();
    (
        Job {
            work,
            exclusive,
            input_tokens,
            reply,
            enqueued: Instant::now(),
        },
        rx,
    )
}

/// Queue a job; refuse at once when the queue is full or the server is stopping.
pub(crate) fn enqueue(s: &Shared, job: Job) -> Result<(), ApiError> {
    if s.draining.load(Ordering::SeqCst) {
        s.metrics.rejected("shutting_down");
        return Err(ApiError::shutting_down());
    }
    s.queue.push(job).map_err(|why| match why {
        PushError::Full => {
            s.metrics.rejected("queue_full");
            ApiError::queue_full(s.queue.capacity())
        }
        PushError::Closed => {
            s.metrics.rejected("shutting_down");
            ApiError::shutting_down()
        }
    })
}

async fn await_reply(s: &Shared, rx: oneshot::Receiver<Reply>) -> Reply {
    match tokio::time::timeout(s.config.request_timeout, rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => Err(ApiError::internal(
            "the model thread stopped before answering",
        )),
        Err(_) => {
            s.metrics.rejected("timeout");
            Err(ApiError::timeout(s.config.request_timeout.as_secs_f64()))
        }
    }
}

/// Queue `work` and wait for its result (dropping this future cancels a queued job).
pub(crate) async fn submit(s: &Shared, work: Work, exclusive: bool, input_tokens: usize) -> Reply {
    let (job, rx) = make_job(work, exclusive, input_tokens);
    enqueue(s, job)?;
    await_reply(s, rx).await
}

pub(crate) fn unexpected() -> ApiError {
    ApiError::internal("the model returned a result of the wrong kind")
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
