//! `POST /v1/completions` and `POST /v1/chat/completions` over a causal LM.
//!
//! The handler renders the chat template or tokenizes the prompt, checks every length against
//! the context window (OpenAI's `context_length_exceeded`), maps the sampling fields to a
//! [`GenerationConfig`] and queues a [`Work::Complete`]. Requests with equal options that wait
//! together share one `generate_ids` batch on the model thread. The answer is one JSON body, or
//! with `stream: true` OpenAI's server-sent chunks: per choice a first chunk (chat: the
//! assistant role), text pieces as they are decoded, a last chunk with `finish_reason`, then a
//! usage chunk when `stream_options.include_usage`, then `[DONE]`.
//!
//! `n` choices: greedy search generates once and repeats the text (every choice would be the
//! same); sampling generates `n` sequences per prompt (`num_return_sequences`, or for a stream
//! `n` copies of the prompt, which draw the same seeded samples). Stop sequences end a row as
//! soon as they appear; streamed text is held back while it could be the start of one.

use crate::backend::{Backend, Output, Work};
use crate::error::ApiError;
use crate::openai::{
    AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, CompletionChoice, CompletionRequest, CompletionResponse,
    FinishReason, Input, SamplingParams, Usage,
};
use crate::state::{
    check_model, enqueue, make_job, submit, unexpected, unix_now, unsupported, AppState, JsonBody,
    Shared, MAX_INPUTS,
};
use crate::stop::StopMatcher;
use crate::worker::Reply;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lmrs_core::CausalLm;
use lmrs_generate::GenerationConfig;
use lmrs_pipelines::{Completion, CompletionOutput, TextGenerationPipeline};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// OpenAI's default `max_tokens` for `/v1/completions`.
pub const DEFAULT_COMPLETION_TOKENS: usize = 16;

/// A validated request: what to queue and how to answer.
struct Plan {
    /// The prompts queued (a streamed sampled request: each prompt once per choice).
    prompts: Vec<Vec<u32>>,
    overrides: GenerationConfig,
    /// Tokens in the request's prompts, each counted once.
    prompt_tokens: usize,
    /// Each generated sequence stands for this many choices (greedy `n > 1`: the same text).
    repeat: usize,
    /// Choices answered: prompts times `n`.
    choices: usize,
    /// Seeded sampling: the draws depend on the row, so the request runs alone.
    exclusive: bool,
    stream: bool,
    include_usage: bool,
    stops: Vec<String>,
}

/// The causal pipeline, or 404 `model_not_supported`.
fn pipeline<'a>(s: &'a Shared, route: &str) -> Result<&'a TextGenerationPipeline, ApiError> {
    match &*s.backend {
        Backend::CausalLm(p) => Ok(p),
        _ => Err(unsupported(
            s,
            &format!("{route} (it needs a causal language model)"),
        )),
    }
}

/// Validate `prompts` and the sampling fields against the model and the server's limits.
/// `default_max_tokens` applies when the request sets no length (`None`: the rest of the
/// context, up to `--max-new-tokens-limit`); `param` names the prompt field in errors.
fn plan(
    s: &Shared,
    p: &TextGenerationPipeline,
    prompts: Vec<Vec<u32>>,
    sampling: &SamplingParams,
    default_max_tokens: Option<usize>,
    param: &'static str,
) -> Result<Plan, ApiError> {
    let limit = s.config.max_new_tokens_limit;
    let n = sampling.choices()?;
    let mut cfg = sampling.generation_config(default_max_tokens.unwrap_or(limit), limit)?;
    let stream = sampling.stream();
    if stream && prompts.len() != 1 {
        return Err(ApiError::bad_request("`stream` takes exactly one prompt").with_param("stream"));
    }
    let context = p.model().max_positions();
    let input_limit = s.input_limit();
    let vocab = p.model().vocab_size();
    let mut longest = 0;
    let mut prompt_tokens = 0;
    for (i, ids) in prompts.iter().enumerate() {
        if ids.is_empty() {
            return Err(
                ApiError::bad_request(format!("prompt {i} is empty (no tokens)")).with_param(param),
            );
        }
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(ApiError::bad_request(format!(
                "prompt {i} has token id {bad}, outside the model's vocabulary of {vocab}"
            ))
            .with_param(param));
        }
        if ids.len() > input_limit {
            return Err(ApiError::bad_request(format!(
                "prompt {i} is {} tokens long; this server takes prompts of at most \
                 {input_limit} tokens",
                ids.len()
            ))
            .with_param(param)
            .with_code("context_length_exceeded"));
        }
        longest = longest.max(ids.len());
        prompt_tokens += ids.len();
    }
    let asked = cfg.max_new_tokens.unwrap_or(limit);
    if sampling.max_tokens.is_some() {
        if longest + asked > context {
            return Err(ApiError::bad_request(format!(
                "this model's maximum context length is {context} tokens, but {} were \
                 requested ({longest} in the prompt, {asked} for the completion); shorten the \
                 prompt or lower `max_tokens`",
                longest + asked
            ))
            .with_param(param)
            .with_code("context_length_exceeded"));
        }
    } else {
        let room = context.saturating_sub(longest);
        if room == 0 {
            return Err(ApiError::bad_request(format!(
                "the prompt is {longest} tokens long and fills this model's context of \
                 {context} tokens; shorten it"
            ))
            .with_param(param)
            .with_code("context_length_exceeded"));
        }
        cfg.max_new_tokens = Some(asked.min(room));
    }
    let sample = cfg.do_sample == Some(true);
    if !sample {
        // The seed does not matter to greedy search; equal options batch together.
        cfg.seed = None;
    }
    let choices = prompts.len() * n;
    let mut prompts = prompts;
    if sample && stream && n > 1 {
        // Streamed choices must be told apart: one prompt copy per choice.
        prompts = prompts
            .iter()
            .flat_map(|ids| std::iter::repeat_n(ids.clone(), n))
            .collect();
        cfg.num_return_sequences = Some(1);
    }
    Ok(Plan {
        choices,
        prompts,
        exclusive: sample && cfg.seed.is_some(),
        overrides: cfg,
        prompt_tokens,
        repeat: if sample { 1 } else { n },
        stream,
        include_usage: sampling
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        stops: sampling.stop_sequences()?,
    })
}

/// Every choice of a result, in order (prompt-major), a greedy text repeated `repeat` times.
fn choices(outs: &[CompletionOutput], repeat: usize) -> Vec<&Completion> {
    outs.iter()
        .flat_map(|o| &o.completions)
        .flat_map(|c| std::iter::repeat_n(c, repeat))
        .collect()
}

fn finish(c: &Completion) -> FinishReason {
    match c.finish_reason {
        lmrs_pipelines::FinishReason::Stop => FinishReason::Stop,
        lmrs_pipelines::FinishReason::Length => FinishReason::Length,
    }
}

fn usage(prompt_tokens: usize, choices: &[&Completion]) -> Usage {
    Usage::new(
        prompt_tokens,
        choices.iter().map(|c| c.token_ids.len()).sum(),
    )
}

/// A response id: `PREFIX-` and a hex string unique within this process.
fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{nanos:x}{:04x}", n & 0xffff)
}

/// Queue the plan; the generated outputs, or the queued job's stream.
async fn run(s: &Shared, plan: &mut Plan) -> Result<Vec<CompletionOutput>, ApiError> {
    let work = Work::Complete {
        prompts: std::mem::take(&mut plan.prompts),
        overrides: Box::new(plan.overrides.clone()),
        stream: None,
    };
    match submit(s, work, plan.exclusive, plan.prompt_tokens).await? {
        Output::Complete(outs) => Ok(outs),
        _ => Err(unexpected()),
    }
}

/// Queue a streamed plan; the piece channel and the reply.
#[allow(clippy::type_complexity)]
fn start_stream(
    s: &Shared,
    plan: &mut Plan,
) -> Result<
    (
        mpsc::UnboundedReceiver<(usize, String)>,
        oneshot::Receiver<Reply>,
    ),
    ApiError,
> {
    let (tx, pieces) = mpsc::unbounded_channel();
    let work = Work::Complete {
        prompts: std::mem::take(&mut plan.prompts),
        overrides: Box::new(plan.overrides.clone()),
        stream: Some(tx),
    };
    let (job, reply) = make_job(work, plan.exclusive, plan.prompt_tokens);
    enqueue(s, job)?;
    Ok((pieces, reply))
}

// ---------------------------------------------------------------------------------------------
// Handlers

pub(crate) async fn completions(
    State(s): State<AppState>,
    JsonBody(mut req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    check_model(&s, Some(&req.model))?;
    req.validate()?;
    let limit = s.config.max_new_tokens_limit;
    req.sampling
        .generation_config(DEFAULT_COMPLETION_TOKENS, limit)?;
    let p = pipeline(&s, "/v1/completions")?;
    let count = match &req.prompt {
        Input::Texts(t) => t.len(),
        Input::Tokens(t) => t.len(),
    };
    if count > MAX_INPUTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_INPUTS} prompts per request, got {count}"
        ))
        .with_param("prompt"));
    }
    // Moved out, not cloned: prompts may be megabytes.
    let prompts = match std::mem::replace(&mut req.prompt, Input::Tokens(Vec::new())) {
        Input::Texts(texts) => {
            for (i, t) in texts.iter().enumerate() {
                s.check_bytes(&format!("prompt {i}"), t.len(), "prompt")?;
            }
            let backend = s.backend.clone();
            let bytes = texts.iter().map(String::len).sum();
            s.cpu
                .run(bytes, move || {
                    let Backend::CausalLm(p) = &*backend else {
                        return Err(unexpected());
                    };
                    texts
                        .iter()
                        .map(|t| p.tokenizer().encode_plain(t, true).map_err(ApiError::from))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?
        }
        Input::Tokens(ids) => ids,
    };
    let mut plan = plan(
        &s,
        p,
        prompts,
        &req.sampling,
        Some(DEFAULT_COMPLETION_TOKENS),
        "prompt",
    )?;
    let head = Head::new(&s, Flavor::Text);
    if plan.stream {
        let (pieces, reply) = start_stream(&s, &mut plan)?;
        return Ok(stream(s.clone(), head, plan, pieces, reply));
    }
    let outs = run(&s, &mut plan).await?;
    let all = choices(&outs, plan.repeat);
    Ok(Json(CompletionResponse {
        id: head.id,
        object: "text_completion",
        created: head.created,
        model: head.model,
        choices: all
            .iter()
            .enumerate()
            .map(|(index, c)| CompletionChoice {
                text: c.text.clone(),
                index,
                logprobs: None,
                finish_reason: Some(finish(c)),
            })
            .collect(),
        usage: Some(usage(plan.prompt_tokens, &all)),
    })
    .into_response())
}

pub(crate) async fn chat_completions(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    check_model(&s, Some(&req.model))?;
    req.validate()?;
    let sampling = req.sampling();
    let limit = s.config.max_new_tokens_limit;
    sampling.generation_config(limit, limit)?;
    let p = pipeline(&s, "/v1/chat/completions")?;
    if p.chat_template().is_none() {
        return Err(unsupported(
            &s,
            "/v1/chat/completions (it has no chat template; use /v1/completions)",
        ));
    }
    let messages = req
        .messages
        .iter()
        .map(|m| {
            Ok(lmrs_pipelines::ChatMessage {
                // OpenAI's newer name for the system role, which templates do not know.
                role: match m.role.as_str() {
                    "developer" => "system".into(),
                    r => r.into(),
                },
                content: m.text()?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let bytes: usize = messages
        .iter()
        .map(|m| m.content.len() + m.role.len())
        .sum();
    s.check_bytes("the conversation", bytes, "messages")?;
    // Rendering runs a template that came with the model (bounded by its fuel) and tokenizes:
    // both off the async runtime.
    let backend = s.backend.clone();
    let ids = s
        .cpu
        .run(bytes, move || {
            let Backend::CausalLm(p) = &*backend else {
                return Err(unexpected());
            };
            p.chat_prompt(&messages).map_err(|e| {
                ApiError::bad_request(format!("cannot render the chat template: {e}"))
                    .with_param("messages")
            })
        })
        .await?;
    let mut plan = plan(&s, p, vec![ids], &sampling, None, "messages")?;
    let head = Head::new(&s, Flavor::Chat);
    if plan.stream {
        let (pieces, reply) = start_stream(&s, &mut plan)?;
        return Ok(stream(s.clone(), head, plan, pieces, reply));
    }
    let outs = run(&s, &mut plan).await?;
    let all = choices(&outs, plan.repeat);
    Ok(Json(ChatCompletionResponse {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model: head.model,
        choices: all
            .iter()
            .enumerate()
            .map(|(index, c)| ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: c.text.clone(),
                },
                logprobs: None,
                finish_reason: finish(c),
            })
            .collect(),
        usage: usage(plan.prompt_tokens, &all),
    })
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// `chat.completion.chunk` objects with `delta`s.
    Chat,
    /// `text_completion` objects with `text`.
    Text,
}

/// What every chunk of one response shares.
struct Head {
    flavor: Flavor,
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(s: &Shared, flavor: Flavor) -> Self {
        Self {
            flavor,
            id: response_id(match flavor {
                Flavor::Chat => "chatcmpl",
                Flavor::Text => "cmpl",
            }),
            created: unix_now(),
            model: s.info.id.clone(),
        }
    }

    /// One chunk: a choice's first (chat: the role), a text piece, or its last (with
    /// `finish_reason`); with no `index`, the usage chunk.
    fn chunk(
        &self,
        index: Option<usize>,
        role: bool,
        text: Option<String>,
        finish: Option<FinishReason>,
        usage: Option<Usage>,
    ) -> Event {
        let json = match self.flavor {
            Flavor::Chat => serde_json::to_string(&ChatCompletionChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: index
                    .map(|index| ChatChunkChoice {
                        index,
                        delta: ChatDelta {
                            role: role.then_some("assistant"),
                            content: text,
                        },
                        logprobs: None,
                        finish_reason: finish,
                    })
                    .into_iter()
                    .collect(),
                usage,
            }),
            Flavor::Text => serde_json::to_string(&CompletionResponse {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: index
                    .map(|index| CompletionChoice {
                        text: text.unwrap_or_default(),
                        index,
                        logprobs: None,
                        finish_reason: finish,
                    })
                    .into_iter()
                    .collect(),
                usage,
            }),
        };
        Event::default().data(json.unwrap_or_default())
    }

    fn piece(&self, index: usize, text: String) -> Event {
        self.chunk(Some(index), false, Some(text), None, None)
    }
}

/// Per-choice text sent so far, held back at possible stop sequences.
struct Choices {
    matchers: Vec<StopMatcher>,
    sent: Vec<String>,
    repeat: usize,
}

impl Choices {
    /// The chunks for a piece of generated row `row` (the choices it stands for).
    fn piece(&mut self, head: &Head, row: usize, piece: &str) -> Vec<Event> {
        let mut events = Vec::new();
        for c in row * self.repeat..(row + 1) * self.repeat {
            let (Some(m), Some(sent)) = (self.matchers.get_mut(c), self.sent.get_mut(c)) else {
                continue;
            };
            let text = m.push(piece);
            if !text.is_empty() {
                sent.push_str(&text);
                events.push(head.piece(c, text));
            }
        }
        events
    }
}

/// Server-sent events for a queued stream. A client that goes away closes the event channel,
/// which drops the reply and so stops the request's rows at the next decoding step.
fn stream(
    s: AppState,
    head: Head,
    plan: Plan,
    mut pieces: mpsc::UnboundedReceiver<(usize, String)>,
    mut reply: oneshot::Receiver<Reply>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let count = plan.choices;
        let mut state = Choices {
            matchers: vec![StopMatcher::new(plan.stops.clone()); count],
            sent: vec![String::new(); count],
            repeat: plan.repeat,
        };
        if head.flavor == Flavor::Chat {
            for c in 0..count {
                let first = head.chunk(Some(c), true, Some(String::new()), None, None);
                if tx.send(first).await.is_err() {
                    return;
                }
            }
        }
        let deadline = tokio::time::sleep(s.config.request_timeout);
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                Some((row, piece)) = pieces.recv() => {
                    for e in state.piece(&head, row, &piece) {
                        if tx.send(e).await.is_err() {
                            return;
                        }
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
        let mut events = Vec::new();
        while let Ok((row, piece)) = pieces.try_recv() {
            events.extend(state.piece(&head, row, &piece));
        }
        match result {
            Ok(Output::Complete(outs)) => {
                let all = choices(&outs, plan.repeat);
                for (c, done) in all.iter().enumerate() {
                    // What was held back: a possible stop sequence that was not one, or an
                    // incomplete character at the end.
                    if let Some(rest) = state
                        .sent
                        .get(c)
                        .and_then(|sent| done.text.strip_prefix(sent.as_str()))
                        .filter(|rest| !rest.is_empty())
                    {
                        events.push(head.piece(c, rest.to_string()));
                    }
                    let text = (head.flavor == Flavor::Text).then(String::new);
                    events.push(head.chunk(Some(c), false, text, Some(finish(done)), None));
                }
                if plan.include_usage {
                    let u = usage(plan.prompt_tokens, &all);
                    events.push(head.chunk(None, false, None, None, Some(u)));
                }
            }
            Ok(_) => events.push(Event::default().data(unexpected().body().to_string())),
            Err(e) => events.push(Event::default().data(e.body().to_string())),
        }
        events.push(Event::default().data("[DONE]"));
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
