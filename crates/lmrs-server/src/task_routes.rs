//! The task routes: `/v1/summarize`, `/v1/translate`, `/v1/text2text` (seq2seq models, with
//! streaming), `/v1/classify`, `/v1/ner` and `/v1/fill-mask` (encoders). Each validates its
//! body, checks its texts ([`check_texts`]), queues one [`Work`] and shapes the answer.

use crate::backend::{Backend, Output, Work};
use crate::error::ApiError;
use crate::openai::Usage;
use crate::state::{
    check_model, check_texts, enqueue, make_job, submit, unexpected, unix_now, unsupported,
    AppState, JsonBody, Shared, MAX_BEAMS, MAX_FILL_MASK_TOP_K,
};
use crate::tasks::{
    ClassifyData, ClassifyRequest, FillMaskData, FillMaskRequest, NerData, NerRequest, Seq2SeqData,
    Seq2SeqResponse, Seq2SeqTaskRequest, TaskResponse,
};
use crate::worker::Reply;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lmrs_core::Seq2SeqLm;
use lmrs_generate::LengthLimit;
use lmrs_pipelines::{Aggregation, ScoreFunction, Seq2SeqOutput, Task};
use std::convert::Infallible;
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------------
// Seq2seq task routes

pub(crate) async fn summarize(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Seq2SeqTaskRequest>,
) -> Result<Response, ApiError> {
    seq2seq(s, req, Task::Summarization, "summarization").await
}

pub(crate) async fn text2text(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<Seq2SeqTaskRequest>,
) -> Result<Response, ApiError> {
    seq2seq(s, req, Task::Text2Text, "text2text").await
}

pub(crate) async fn translate(
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

pub(crate) async fn classify(
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

pub(crate) async fn ner(
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

pub(crate) async fn fill_mask(
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
