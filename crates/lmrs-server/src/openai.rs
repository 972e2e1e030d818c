//! OpenAI-compatible request and response types: models, embeddings, completions and chat
//! completions (with their streaming chunks), as the official `openai` client sends and reads
//! them.
//!
//! Completions and chat need a causal language model; their validation
//! ([`SamplingParams::generation_config`]) is here too; the stop-sequence matcher for streamed
//! text is [`crate::stop::StopMatcher`].

use crate::error::ApiError;
use lmrs_generate::GenerationConfig;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// OpenAI's limit on stop sequences per request.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Most choices (`n`) one request may ask for.
pub const MAX_CHOICES: usize = 16;

/// One or more texts: a JSON string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Texts(pub Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Texts(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Embedding or prompt input: texts, or token ids (`[1, 2]` or `[[1, 2], [3]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One or more texts.
    Texts(Vec<String>),
    /// One or more token-id sequences.
    Tokens(Vec<Vec<u32>>),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Text(String),
            Token(u32),
            Tokens(Vec<u32>),
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Input;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array of strings, or token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input::Texts(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Item>()? {
                    items.push(item);
                }
                if items.iter().all(|i| matches!(i, Item::Text(_))) {
                    return Ok(Input::Texts(
                        items
                            .into_iter()
                            .filter_map(|i| match i {
                                Item::Text(t) => Some(t),
                                _ => None,
                            })
                            .collect(),
                    ));
                }
                if items.iter().all(|i| matches!(i, Item::Token(_))) {
                    let ids = items
                        .into_iter()
                        .filter_map(|i| match i {
                            Item::Token(t) => Some(t),
                            _ => None,
                        })
                        .collect();
                    return Ok(Input::Tokens(vec![ids]));
                }
                if items.iter().all(|i| matches!(i, Item::Tokens(_))) {
                    return Ok(Input::Tokens(
                        items
                            .into_iter()
                            .filter_map(|i| match i {
                                Item::Tokens(t) => Some(t),
                                _ => None,
                            })
                            .collect(),
                    ));
                }
                Err(de::Error::custom(
                    "input mixes strings and token ids; send one kind",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Models

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// The id to pass as `model`.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Unix time the model was loaded.
    pub created: u64,
    /// Always `"lmrs"`.
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: String,
    /// The served model(s).
    pub data: Vec<Model>,
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// `encoding_format` of an embeddings request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A JSON array of numbers (default).
    #[default]
    Float,
    /// Base64 of the little-endian f32 bytes (what the `openai` client asks for by default).
    Base64,
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// The model id (see `GET /v1/models`).
    pub model: String,
    /// Text(s) to embed.
    pub input: Input,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Must equal the model's dimension when given (no truncation of embeddings).
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// End-user id (accepted, unused).
    #[serde(default)]
    pub user: Option<String>,
}

/// An embedding as floats or base64.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// `encoding_format: "float"`.
    Float(Vec<f32>),
    /// `encoding_format: "base64"`.
    Base64(String),
}

/// One embedding of the response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddingData {
    /// Always `"embedding"`.
    pub object: &'static str,
    /// Position of the input.
    pub index: usize,
    /// The vector.
    pub embedding: EmbeddingVector,
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the input(s).
    pub prompt_tokens: usize,
    /// Tokens generated (0 for embeddings).
    #[serde(default)]
    pub completion_tokens: usize,
    /// Sum of both.
    pub total_tokens: usize,
}

impl Usage {
    /// Usage with `total_tokens` filled in.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddingResponse {
    /// Always `"list"`.
    pub object: &'static str,
    /// One embedding per input, in order.
    pub data: Vec<EmbeddingData>,
    /// The model id.
    pub model: String,
    /// Token counts (`completion_tokens` is 0).
    pub usage: Usage,
}

/// Base64 (standard alphabet, padded) of `values` as little-endian f32 bytes.
pub fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Completions and chat

/// `stop`: one string or up to four.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Stop(pub Texts);

/// `stream_options`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling fields completions and chat share, with OpenAI defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SamplingParams {
    /// Tokens to generate at most (`max_completion_tokens` in chat wins over it).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Tokens to generate at least, end-of-sequence suppressed until then (vLLM's extension;
    /// with `max_tokens` it makes every request do the same work). Default 0.
    #[serde(default)]
    pub min_tokens: Option<usize>,
    /// 0 to 2; 0 is greedy. Default 1.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus mass in (0, 1]. Default 1.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Choices to return. Default 1.
    #[serde(default)]
    pub n: Option<usize>,
    /// Stop sequences (not part of the returned text).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed for reproducible sampling.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Only 0 is supported.
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    /// Only 0 is supported.
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    /// Server-sent events instead of one JSON body.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// End-user id (accepted, unused).
    #[serde(default)]
    pub user: Option<String>,
}

impl SamplingParams {
    /// Whether the response is streamed.
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The number of choices, validated.
    pub fn choices(&self) -> Result<usize, ApiError> {
        match self.n.unwrap_or(1) {
            0 => Err(ApiError::bad_request("`n` must be at least 1").with_param("n")),
            n if n > MAX_CHOICES => Err(ApiError::bad_request(format!(
                "`n` must be at most {MAX_CHOICES}, got {n}"
            ))
            .with_param("n")),
            n => Ok(n),
        }
    }

    /// The stop sequences, validated (at most four, none empty).
    pub fn stop_sequences(&self) -> Result<Vec<String>, ApiError> {
        let stops = self
            .stop
            .as_ref()
            .map(|s| s.0 .0.clone())
            .unwrap_or_default();
        if stops.len() > MAX_STOP_SEQUENCES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                stops.len()
            ))
            .with_param("stop"));
        }
        if stops.iter().any(String::is_empty) {
            return Err(
                ApiError::bad_request("stop sequences must not be empty").with_param("stop")
            );
        }
        Ok(stops)
    }

    /// The generation settings these fields ask for, layered over the model's defaults by the
    /// caller. `default_max_tokens` applies when `max_tokens` is unset (OpenAI: 16 for
    /// completions, the context for chat); `limit` is the server's `--max-new-tokens-limit`.
    ///
    /// OpenAI semantics: temperature 0 is greedy search, otherwise sampling with the given
    /// temperature and `top_p` and no top-k cut (`top_k = 0`, where `transformers` would default
    /// to 50). With greedy search and `n > 1` every choice is the same text, so the caller
    /// generates once and repeats it; with sampling `n` becomes `num_return_sequences`. Stop
    /// sequences become `stop_strings` (the pipeline cuts the text at the first one).
    pub fn generation_config(
        &self,
        default_max_tokens: usize,
        limit: usize,
    ) -> Result<GenerationConfig, ApiError> {
        let n = self.choices()?;
        let stops = self.stop_sequences()?;
        let max_tokens = match self.max_tokens {
            Some(0) => {
                return Err(ApiError::bad_request("`max_tokens` must be at least 1")
                    .with_param("max_tokens"))
            }
            Some(m) if m > limit => {
                return Err(ApiError::bad_request(format!(
                    "`max_tokens` is {m} but this server generates at most {limit} tokens"
                ))
                .with_param("max_tokens"))
            }
            Some(m) => m,
            None => default_max_tokens.min(limit),
        };
        if let Some(min) = self.min_tokens.filter(|&m| m > max_tokens) {
            return Err(ApiError::bad_request(format!(
                "`min_tokens` ({min}) must not be over `max_tokens` ({max_tokens})"
            ))
            .with_param("min_tokens"));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_request(format!(
                "`temperature` must be between 0 and 2, got {temperature}"
            ))
            .with_param("temperature"));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(
                ApiError::bad_request(format!("`top_p` must be in (0, 1], got {top_p}"))
                    .with_param("top_p"),
            );
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if v.is_some_and(|v| v != 0.0) {
                return Err(
                    ApiError::bad_request(format!("`{name}` is not supported (only 0)"))
                        .with_param(name),
                );
            }
        }
        let sample = temperature > 0.0;
        Ok(GenerationConfig {
            max_new_tokens: Some(max_tokens),
            min_new_tokens: self.min_tokens.filter(|&m| m > 0),
            do_sample: Some(sample),
            temperature: sample.then_some(temperature),
            top_p: sample.then_some(top_p),
            top_k: sample.then_some(0),
            num_return_sequences: Some(if sample { n } else { 1 }),
            seed: self.seed,
            num_beams: Some(1),
            stop_strings: (!stops.is_empty()).then_some(stops),
            ..Default::default()
        })
    }
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model id.
    pub model: String,
    /// Prompt text(s) or token ids.
    pub prompt: Input,
    /// Sampling, length, stop and streaming fields.
    #[serde(flatten)]
    pub sampling: SamplingParams,
    /// Echo the prompt before the completion (only `false` is supported).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Log-probabilities (not supported).
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Server-side candidates (only 1 or `n` is supported).
    #[serde(default)]
    pub best_of: Option<usize>,
    /// Text after the completion (not supported).
    #[serde(default)]
    pub suffix: Option<String>,
}

/// The text of a chat message: a string, or content parts of which the text ones are joined.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ContentPart {
    /// `text` is the only type supported.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text (may be null for an assistant message).
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// The text of the message: content parts joined; an error for non-text parts.
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(MessageContent::Text(t)) => Ok(t.clone()),
            Some(MessageContent::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad_request(format!(
                                "content parts of type '{kind}' are not supported (text only)"
                            ))
                            .with_param("messages"))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model id.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Sampling, length, stop and streaming fields.
    #[serde(flatten)]
    pub sampling: SamplingParams,
    /// Newer name of `max_tokens`; wins over it.
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    /// Log-probabilities (not supported).
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Tools (not supported).
    #[serde(default)]
    pub tools: Option<serde_json::Value>,
}

impl ChatCompletionRequest {
    /// Check the messages (non-empty, known roles, text content).
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(
                ApiError::bad_request("`messages` must not be empty").with_param("messages")
            );
        }
        for m in &self.messages {
            if !matches!(
                m.role.as_str(),
                "system" | "developer" | "user" | "assistant" | "tool"
            ) {
                return Err(
                    ApiError::bad_request(format!("unknown message role '{}'", m.role))
                        .with_param("messages"),
                );
            }
            m.text()?;
        }
        if self.logprobs == Some(true) {
            return Err(ApiError::bad_request("`logprobs` is not supported").with_param("logprobs"));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(ApiError::bad_request("`tools` are not supported").with_param("tools"));
        }
        Ok(())
    }

    /// The sampling fields with `max_completion_tokens` folded into `max_tokens`.
    pub fn sampling(&self) -> SamplingParams {
        let mut s = self.sampling.clone();
        if self.max_completion_tokens.is_some() {
            s.max_tokens = self.max_completion_tokens;
        }
        s
    }
}

impl CompletionRequest {
    /// Reject the fields this server does not implement.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::bad_request("`echo` is not supported").with_param("echo"));
        }
        if self.logprobs.is_some_and(|l| l > 0) {
            return Err(ApiError::bad_request("`logprobs` is not supported").with_param("logprobs"));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::bad_request("`suffix` is not supported").with_param("suffix"));
        }
        if let Some(b) = self.best_of {
            if b != self.sampling.n.unwrap_or(1) {
                return Err(ApiError::bad_request("`best_of` must equal `n`").with_param("best_of"));
            }
        }
        match &self.prompt {
            Input::Texts(t) if t.is_empty() => {
                Err(ApiError::bad_request("`prompt` must not be empty").with_param("prompt"))
            }
            Input::Tokens(t) if t.is_empty() || t.iter().any(Vec::is_empty) => {
                Err(ApiError::bad_request("`prompt` must not be empty").with_param("prompt"))
            }
            _ => Ok(()),
        }
    }
}

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop sequence.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

/// One choice of a completion.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompletionChoice {
    /// The generated text.
    pub text: String,
    /// Choice number (prompt-major: prompt `i`, choice `j` is `i * n + j`).
    pub index: usize,
    /// Always null.
    pub logprobs: Option<()>,
    /// Why it ended (null in streamed chunks until the last one).
    pub finish_reason: Option<FinishReason>,
}

/// `POST /v1/completions` response (also each streamed chunk, with `usage` null).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CompletionResponse {
    /// `cmpl-...`.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// The choices.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (absent in streamed chunks unless `include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// An assistant message of a chat response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AssistantMessage {
    /// Always `"assistant"`.
    pub role: &'static str,
    /// The generated text.
    pub content: String,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatChoice {
    /// Choice number.
    pub index: usize,
    /// The reply.
    pub message: AssistantMessage,
    /// Always null.
    pub logprobs: Option<()>,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

/// `POST /v1/chat/completions` response.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// The new part of a streamed chat message.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ChatDelta {
    /// `"assistant"` in each choice's first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a streamed chat chunk.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatChunkChoice {
    /// Choice number.
    pub index: usize,
    /// New text.
    pub delta: ChatDelta,
    /// Always null.
    pub logprobs: Option<()>,
    /// Set in the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// One server-sent event of a streamed chat completion (`data: {...}`, then `data: [DONE]`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatCompletionChunk {
    /// Same id in every chunk of a response.
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: &'static str,
    /// Unix time.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// Choices with new text (empty in the usage chunk).
    pub choices: Vec<ChatChunkChoice>,
    /// Token counts, in the last chunk when `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[cfg(test)]
mod tests;
