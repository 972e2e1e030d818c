//! The HTTP surface: router, middleware (metrics, bearer auth), JSON body extraction with
//! OpenAI-style errors, and the handlers.

use crate::backend::{Backend, ModelInfo, Output, Work};
use crate::completions::{chat_completions, completions};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{
    base64_f32, EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
    EncodingFormat, Input, Model, ModelList, Usage,
};
use crate::tasks::{
    ClassifyData, ClassifyRequest, FillMaskData, FillMaskRequest, NerData, NerRequest, Seq2SeqData,
    Seq2SeqResponse, Seq2SeqTaskRequest, TaskResponse,
};
use crate::worker::{Job, PushError, Queue, Reply};
use crate::ServerConfig;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lmrs_core::Seq2SeqLm;
use lmrs_generate::LengthLimit;
use lmrs_pipelines::{Aggregation, ScoreFunction, Seq2SeqOutput, Task};
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

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
async fn check_texts(
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

// ---------------------------------------------------------------------------------------------
// Seq2seq task routes

async fn summarize(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Seq2SeqTaskRequest>,
) -> Result<Response, ApiError> {
    seq2seq(s, req, Task::Summarization, "summarization").await
}

async fn text2text(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Seq2SeqTaskRequest>,
) -> Result<Response, ApiError> {
    seq2seq(s, req, Task::Text2Text, "text2text").await
}

async fn translate(
    State(s): State<AppState>,
    JsonBody(mut req): JsonBody<Seq2SeqTaskRequest>,
) -> Result<Response, ApiError> {
    let Some(target) = req.target.take() else {
        return Err(
            ApiError::bad_request("`target` (the target language) is required")
                .with_param("target"),
        );
    };
    let source = req.source.take().unwrap_or_else(|| "English".into());
    seq2seq(s, req, Task::Translation { source, target }, "translation").await
}

async fn seq2seq(
    s: AppState,
    req: Seq2SeqTaskRequest,
    task: Task,
    object: &'static str,
) -> Result<Response, ApiError> {
    check_model(&s, req.model.as_deref())?;
    let Backend::Seq2Seq(p) = &*s.backend else {
        let route = match object {
            "summarization" => "/v1/summarize",
            "translation" => "/v1/translate",
            _ => "/v1/text2text",
        };
        return Err(unsupported(
            &s,
            &format!("{route} (it needs an encoder-decoder model)"),
        ));
    };
    if let Some(field) = [("source", &req.source), ("target", &req.target)]
        .iter()
        .find_map(|(name, v)| v.is_some().then_some(*name))
    {
        return Err(
            ApiError::bad_request(format!("`{field}` is only taken by /v1/translate"))
                .with_param(field),
        );
    }
    let (prefix, mut cfg) = p.task_config(&task)?;
    let mut overrides = req.overrides();
    cfg.merge(&overrides);
    let special = p.model().special_tokens();
    let mut resolved = cfg.resolve(&special)?;
    let new_tokens = |limit: LengthLimit| match limit {
        LengthLimit::NewTokens(n) => n,
        LengthLimit::Total(n) => n.saturating_sub(1),
    };
    let limit = s.config.max_new_tokens_limit;
    let asked = new_tokens(resolved.max_length);
    if asked > limit {
        if req.sets_max_length() {
            let param = if req.max_new_tokens.is_some() {
                "max_new_tokens"
            } else {
                "max_length"
            };
            return Err(ApiError::bad_request(format!(
                "{asked} new tokens asked for; this server generates at most {limit}"
            ))
            .with_param(param));
        }
        // The checkpoint's own default is over the server's limit: cap it.
        overrides.max_new_tokens = Some(limit);
        cfg.merge(&overrides);
        resolved = cfg.resolve(&special)?;
    }
    if resolved.num_beams > MAX_BEAMS {
        return Err(ApiError::bad_request(format!(
            "`num_beams` is at most {MAX_BEAMS} on this server"
        ))
        .with_param("num_beams"));
    }
    let (texts, tokens) = check_texts(&s, req.input.0, &prefix).await?;
    let stream = req.stream.unwrap_or(false);
    if stream && texts.len() != 1 {
        return Err(ApiError::bad_request("`stream` takes exactly one input").with_param("stream"));
    }
    let exclusive = stream || (resolved.do_sample && resolved.seed.is_some());
    if !stream {
        let work = Work::Generate {
            task,
            texts,
            overrides: Box::new(overrides),
            stream: None,
        };
        let Output::Generate(outs) = submit(&s, work, exclusive, tokens).await? else {
            return Err(unexpected());
        };
        return Ok(Json(seq2seq_response(&s, object, outs)).into_response());
    }
    let (piece_tx, piece_rx) = mpsc::unbounded_channel();
    let work = Work::Generate {
        task,
        texts,
        overrides: Box::new(overrides),
        stream: Some(piece_tx),
    };
    let (job, rx) = make_job(work, true, tokens);
    enqueue(&s, job)?;
    Ok(stream_seq2seq(s, object, piece_rx, rx))
}

fn seq2seq_response(s: &Shared, object: &str, outs: Vec<Seq2SeqOutput>) -> Seq2SeqResponse {
    let prompt_tokens = outs.iter().map(|o| o.input_tokens).sum();
    let completion_tokens = outs
        .iter()
        .flat_map(|o| &o.sequences)
        .map(|q| q.token_ids.len())
        .sum();
    Seq2SeqResponse {
        object: object.to_string(),
        model: s.info.id.clone(),
        created: unix_now(),
        data: outs
            .iter()
            .enumerate()
            .map(|(index, o)| {
                let best = o.sequences.first();
                Seq2SeqData {
                    index,
                    text: best.map(|b| b.text.clone()).unwrap_or_default(),
                    sequences: o.sequences.iter().map(Into::into).collect(),
                    input_tokens: o.input_tokens,
                    output_tokens: best.map_or(0, |b| b.token_ids.len()),
                    truncated: o.truncated,
                }
            })
            .collect(),
        usage: Usage::new(prompt_tokens, completion_tokens),
    }
}

/// Server-sent events: `{"object": "<task>.chunk", "index": 0, "text": piece}` per piece, then
/// the whole response object (or `{"error": ...}`), then `[DONE]`. A client that goes away
/// closes the event channel, which drops the reply receiver and so cancels a queued job.
fn stream_seq2seq(
    s: AppState,
    object: &'static str,
    mut pieces: mpsc::UnboundedReceiver<String>,
    mut reply: oneshot::Receiver<Reply>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(s.config.request_timeout);
        tokio::pin!(deadline);
        let chunk = |piece: String| {
            Event::default().data(
                serde_json::json!({"object": format!("{object}.chunk"), "index": 0, "text": piece})
                    .to_string(),
            )
        };
        let result = loop {
            tokio::select! {
                Some(piece) = pieces.recv() => {
                    if tx.send(chunk(piece)).await.is_err() {
                        return;
                    }
                }
                r = &mut reply => break r.unwrap_or_else(|_| Err(ApiError::internal(
                    "the model thread stopped before answering"))),
                _ = &mut deadline => {
                    s.metrics.rejected("timeout");
                    break Err(ApiError::timeout(s.config.request_timeout.as_secs_f64()));
                }
                _ = tx.closed() => return,
            }
        };
        while let Ok(piece) = pieces.try_recv() {
            if tx.send(chunk(piece)).await.is_err() {
                return;
            }
        }
        let last = match result {
            Ok(Output::Generate(outs)) => {
                serde_json::to_string(&seq2seq_response(&s, object, outs)).unwrap_or_default()
            }
            Ok(_) => unexpected().body().to_string(),
            Err(e) => e.body().to_string(),
        };
        let _ = tx.send(Event::default().data(last)).await;
        let _ = tx.send(Event::default().data("[DONE]")).await;
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Encoder task routes

async fn classify(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ClassifyRequest>,
) -> Result<Json<TaskResponse<ClassifyData>>, ApiError> {
    check_model(&s, req.model.as_deref())?;
    if !matches!(&*s.backend, Backend::Classification(..)) {
        return Err(unsupported(&s, "/v1/classify"));
    }
    let function = match req.function.as_deref() {
        None => None,
        Some(f) => Some(ScoreFunction::from_name(f).ok_or_else(|| {
            ApiError::bad_request(format!(
                "'{f}' is not a score function (softmax, sigmoid, none)"
            ))
            .with_param("function")
        })?),
    };
    let top_k = match req.top_k.unwrap_or(1) {
        0 => None,
        k => Some(k),
    };
    let (texts, tokens) = check_texts(&s, req.input.0, "").await?;
    let work = Work::Classify {
        texts,
        top_k,
        function,
    };
    let Output::Classify(results) = submit(&s, work, false, tokens).await? else {
        return Err(unexpected());
    };
    let prompt_tokens = results.iter().map(|r| r.tokens).sum();
    Ok(Json(task_response(
        &s,
        "classification",
        results
            .into_iter()
            .enumerate()
            .map(|(index, r)| ClassifyData {
                index,
                labels: r.labels,
                tokens: r.tokens,
                truncated: r.truncated,
            })
            .collect(),
        prompt_tokens,
    )))
}

async fn ner(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<NerRequest>,
) -> Result<Json<TaskResponse<NerData>>, ApiError> {
    check_model(&s, req.model.as_deref())?;
    if !matches!(&*s.backend, Backend::TokenClassification(..)) {
        return Err(unsupported(&s, "/v1/ner"));
    }
    let name = req.aggregation.as_deref().unwrap_or("simple");
    let aggregation = Aggregation::from_name(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "'{name}' is not an aggregation strategy (none, simple, first, average, max)"
        ))
        .with_param("aggregation")
    })?;
    let (texts, tokens) = check_texts(&s, req.input.0, "").await?;
    let Output::Ner(results) = submit(&s, Work::Ner { texts, aggregation }, false, tokens).await?
    else {
        return Err(unexpected());
    };
    Ok(Json(task_response(
        &s,
        "ner",
        results
            .into_iter()
            .enumerate()
            .map(|(index, entities)| NerData { index, entities })
            .collect(),
        tokens,
    )))
}

async fn fill_mask(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<FillMaskRequest>,
) -> Result<Json<TaskResponse<FillMaskData>>, ApiError> {
    check_model(&s, req.model.as_deref())?;
    let Backend::FillMask(p, _) = &*s.backend else {
        return Err(unsupported(&s, "/v1/fill-mask"));
    };
    let top_k = req.top_k.unwrap_or(5);
    if top_k == 0 || top_k > MAX_FILL_MASK_TOP_K {
        return Err(ApiError::bad_request(format!(
            "`top_k` must be between 1 and {MAX_FILL_MASK_TOP_K}"
        ))
        .with_param("top_k"));
    }
    let (texts, tokens) = check_texts(&s, req.input.0, "").await?;
    if let Some(i) = texts.iter().position(|t| !t.contains(p.mask_token())) {
        return Err(
            ApiError::bad_request(format!("input {i} has no {} token", p.mask_token()))
                .with_param("input"),
        );
    }
    let Output::FillMask(results) =
        submit(&s, Work::FillMask { texts, top_k }, false, tokens).await?
    else {
        return Err(unexpected());
    };
    Ok(Json(task_response(
        &s,
        "fill-mask",
        results
            .into_iter()
            .enumerate()
            .map(|(index, masks)| FillMaskData { index, masks })
            .collect(),
        tokens,
    )))
}

fn task_response<T>(
    s: &Shared,
    object: &'static str,
    data: Vec<T>,
    tokens: usize,
) -> TaskResponse<T> {
    TaskResponse {
        object,
        model: s.info.id.clone(),
        created: unix_now(),
        data,
        usage: Usage::new(tokens, 0),
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
