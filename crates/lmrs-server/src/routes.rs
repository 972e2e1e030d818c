//! The HTTP surface: router, middleware (metrics, bearer auth), JSON body extraction with
//! OpenAI-style errors, the helpers every handler shares, and the service and embedding
//! handlers (completions and chat: completions.rs; task routes: task_routes.rs).

use crate::backend::{Backend, ModelInfo, Output, Work};
use crate::completions::{chat_completions, completions};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{
    base64_f32, EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
    EncodingFormat, Input, Model, ModelList, Usage,
};
use crate::task_routes::{classify, fill_mask, ner, summarize, text2text, translate};
use crate::worker::{Job, PushError, Queue, Reply};
use crate::ServerConfig;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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

    /// Refuse a text longer than [`Shared::input_byte_limit`] (`what` names it: "input 2").
    pub(crate) fn check_bytes(&self, what: &str, text: &str, param: &str) -> Result<(), ApiError> {
        let limit = self.input_byte_limit();
        if text.len() > limit {
            return Err(ApiError::bad_request(format!(
                "{what} is {} bytes long; this server takes at most {limit} bytes per input \
                 (--max-input-bytes), far more than its {}-token limit holds",
                text.len(),
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

/// The router over `state`.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/summarize", post(summarize))
        .route("/v1/translate", post(translate))
        .route("/v1/text2text", post(text2text))
        .route("/v1/classify", post(classify))
        .route("/v1/ner", post(ner))
        .route("/v1/fill-mask", post(fill_mask))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::check_host,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Middleware and extraction

/// Count and time every request by matched route.
async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    s.metrics
        .request(&route, &method, res.status().as_u16(), start.elapsed());
    res
}

/// `Authorization: Bearer KEY` on every route but `/health` when `--api-key` is set.
async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.config.api_key {
        if req.uri().path() != "/health" {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                });
            match given {
                None => {
                    return ApiError::unauthorized(
                        "missing API key: send the header 'Authorization: Bearer KEY'",
                    )
                    .into_response()
                }
                Some(token) if !constant_time_eq(token.as_bytes(), key.as_bytes()) => {
                    return ApiError::unauthorized("incorrect API key").into_response()
                }
                Some(_) => {}
            }
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

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

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; see GET /openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} does not take {method}; see GET /openapi.json",
        uri.path()
    ))
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
        s.check_bytes(&format!("input {i}"), t, "input")?;
    }
    let limit = s.input_limit();
    let (backend, prefix) = (s.backend.clone(), prefix.to_string());
    s.cpu
        .run(move || {
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

// ---------------------------------------------------------------------------------------------
// Service routes

async fn health(State(s): State<AppState>) -> Response {
    let draining = s.draining.load(Ordering::SeqCst);
    let body = Json(serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "model": s.info.id,
        "kind": s.info.kind.name(),
        "queue_depth": s.queue.depth(),
    }));
    if draining {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        body.into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = s
        .metrics
        .render(s.queue.depth(), s.queue.capacity(), &s.info.id);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::openapi::spec(&s.info, &s.config))
}

async fn docs(State(s): State<AppState>) -> Html<String> {
    Html(crate::openapi::docs_html(&s.info))
}

fn model_entry(s: &Shared) -> Model {
    Model {
        id: s.info.id.clone(),
        object: "model".into(),
        created: s.created,
        owned_by: "lmrs".into(),
    }
}

async fn list_models(State(s): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![model_entry(&s)],
    })
}

async fn get_model(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    check_model(&s, Some(&id))?;
    Ok(Json(model_entry(&s)))
}

// ---------------------------------------------------------------------------------------------
// OpenAI routes

async fn embeddings(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    check_model(&s, Some(&req.model))?;
    let Backend::Embedding(p) = &*s.backend else {
        return Err(unsupported(&s, "/v1/embeddings"));
    };
    let texts = match req.input {
        Input::Texts(t) => t,
        Input::Tokens(_) => {
            return Err(
                ApiError::bad_request("token-id input is not supported; send text")
                    .with_param("input"),
            )
        }
    };
    if let Some(d) = req.dimensions {
        if d != p.dimension() {
            return Err(ApiError::bad_request(format!(
                "this model's embeddings have {} dimensions; `dimensions` cannot change that",
                p.dimension()
            ))
            .with_param("dimensions"));
        }
    }
    let (texts, tokens) = check_texts(&s, texts, "").await?;
    let Output::Embed(embs) = submit(&s, Work::Embed { texts }, false, tokens).await? else {
        return Err(unexpected());
    };
    let format = req.encoding_format.unwrap_or_default();
    let prompt_tokens = embs.iter().map(|e| e.tokens).sum();
    Ok(Json(EmbeddingResponse {
        object: "list",
        data: embs
            .into_iter()
            .enumerate()
            .map(|(index, e)| EmbeddingData {
                object: "embedding",
                index,
                embedding: match format {
                    EncodingFormat::Float => EmbeddingVector::Float(e.embedding),
                    EncodingFormat::Base64 => EmbeddingVector::Base64(base64_f32(&e.embedding)),
                },
            })
            .collect(),
        model: s.info.id.clone(),
        usage: Usage::new(prompt_tokens, 0),
    }))
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
