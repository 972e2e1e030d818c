//! `POST /v1/embeddings` (OpenAI's shape: floats or base64, `dimensions` checked).

use crate::backend::{Backend, Output, Work};
use crate::error::ApiError;
use crate::openai::{
    base64_f32, EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingVector,
    EncodingFormat, Input, Usage,
};
use crate::state::{check_model, check_texts, submit, unexpected, unsupported, AppState, JsonBody};
use axum::extract::State;
use axum::Json;

pub(crate) async fn embeddings(
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
