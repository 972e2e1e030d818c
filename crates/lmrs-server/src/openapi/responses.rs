//! The response side of the OpenAPI document: the `200` answer of every route and the
//! component schemas of the bodies (the OpenAI shapes for the OpenAI routes). The API fuzzer
//! (scripts/test-apifuzz.sh) validates every body the server sends against these, so they
//! must say what the serializers in `openai.rs` and `tasks.rs` write, no more and no less.

use serde_json::{json, Value};

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": reference(schema)}}})
}

/// A JSON body, or with `"stream": true` server-sent events. The event schema follows the
/// OpenAPI 3.1 convention for `text/event-stream` (one schema per event: its `data`, `event`,
/// `id` fields; OpenAPI 3.2 calls it `itemSchema`); `data` is the JSON text of a `chunk`
/// object (`contentSchema`), then `[DONE]`.
fn json_or_stream(description: &str, schema: &str, chunks: &[&str]) -> Value {
    let mut data: Vec<Value> = chunks.iter().map(|c| reference(c)).collect();
    data.push(reference("Error"));
    json!({"description": description, "content": {
        "application/json": {"schema": reference(schema)},
        "text/event-stream": {"schema": {
            "type": "object", "required": ["data"],
            "properties": {
                "data": {"oneOf": [
                    {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"oneOf": data},
                     "description": format!("A {} object, or an Error object when the request fails after the stream began.", chunks.join(" or "))},
                    {"const": "[DONE]", "description": "The last event."}
                ]},
                "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"}
            }
        }}
    }})
}

/// The `200` response of `path`.
pub(super) fn success(path: &str) -> Value {
    match path {
        "/health" => json_body("Serving.", "Health"),
        "/metrics" => json!({"description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}}}),
        "/openapi.json" => json!({"description": "This document.",
            "content": {"application/json": {"schema": {"type": "object"}}}}),
        "/docs" => json!({"description": "An HTML page.",
            "content": {"text/html": {"schema": {"type": "string"}}}}),
        "/v1/models" => json_body("The served model.", "ModelList"),
        "/v1/models/{id}" => json_body("The model.", "Model"),
        "/v1/completions" => json_or_stream(
            "The completion.",
            "CompletionResponse",
            &["CompletionResponse"],
        ),
        "/v1/chat/completions" => json_or_stream(
            "The chat completion.",
            "ChatCompletionResponse",
            &["ChatCompletionChunk"],
        ),
        "/v1/embeddings" => json_body("One embedding per input.", "EmbeddingResponse"),
        "/v1/summarize" | "/v1/translate" | "/v1/text2text" => json_or_stream(
            "One result per input.",
            "Seq2SeqResponse",
            &["Seq2SeqChunk", "Seq2SeqResponse"],
        ),
        "/v1/classify" => json_body("Labels per input.", "ClassifyResponse"),
        "/v1/ner" => json_body("Entities per input.", "NerResponse"),
        "/v1/fill-mask" => json_body("Proposals per mask.", "FillMaskResponse"),
        _ => json!({"description": "Success."}),
    }
}

/// `/health` while shutting down: 503 with the health body (`status: "draining"`).
pub(super) fn health_draining() -> Value {
    json_body("Shutting down (status \"draining\").", "Health")
}

/// An object schema whose every property is required.
fn object(properties: Value) -> Value {
    let required: Vec<String> = properties
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// `{"object", "model", "created", "data": [item], "usage"}` of the task routes.
fn task_response(objects: Value, item: Value) -> Value {
    object(json!({
        "object": objects, "model": string(), "created": count(),
        "data": array(item), "usage": reference("Usage")
    }))
}

/// The component schemas.
pub(super) fn schemas() -> Value {
    let finish = json!({"enum": ["stop", "length"]});
    // Not `null`: inside `json!` that is the JSON literal, not a variable.
    let nothing = json!({"type": "null"});
    // The optional fields of a named-entity (present or absent by aggregation strategy).
    let mut entity = object(json!({
        "score": {"type": "number"}, "word": string(), "start": count(), "end": count()
    }));
    entity["properties"]["entity"] = string();
    entity["properties"]["entity_group"] = string();
    entity["properties"]["index"] = count();
    let mut sequence = object(json!({"text": string(), "token_ids": array(count())}));
    sequence["properties"]["score"] =
        json!({"type": "number", "description": "Beam score (beam search only)."});
    let mut completion = object(json!({
        "id": string(), "object": {"const": "text_completion"}, "created": count(),
        "model": string(),
        "choices": array(object(json!({
            "text": string(), "index": count(), "logprobs": nothing,
            // Null in streamed chunks but the last of a choice.
            "finish_reason": {"oneOf": [finish, nothing]}
        })))
    }));
    completion["properties"]["usage"] = reference("Usage");
    let mut chunk = object(json!({
        "id": string(), "object": {"const": "chat.completion.chunk"}, "created": count(),
        "model": string(),
        "choices": array(object(json!({
            "index": count(),
            "delta": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": string()}},
            "logprobs": nothing, "finish_reason": {"oneOf": [finish, nothing]}
        })))
    }));
    chunk["properties"]["usage"] = reference("Usage");
    json!({
        "Error": object(json!({"error": {
            "type": "object",
            "properties": {
                "message": string(), "type": string(),
                "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}
            },
            "required": ["message", "type", "param", "code"]
        }})),
        "Health": object(json!({
            "status": {"enum": ["ok", "draining"]}, "model": string(), "kind": string(),
            "queue_depth": count()
        })),
        "Usage": object(json!({
            "prompt_tokens": count(), "completion_tokens": count(), "total_tokens": count()
        })),
        "Model": object(json!({
            "id": string(), "object": {"const": "model"}, "created": count(), "owned_by": string()
        })),
        "ModelList": object(json!({"object": {"const": "list"}, "data": array(reference("Model"))})),
        "EmbeddingResponse": object(json!({
            "object": {"const": "list"},
            "data": array(object(json!({
                "object": {"const": "embedding"}, "index": count(),
                "embedding": {"oneOf": [array(json!({"type": "number"})),
                                        {"type": "string", "description": "encoding_format base64: little-endian f32 bytes."}]}
            }))),
            "model": string(), "usage": reference("Usage")
        })),
        "CompletionResponse": completion,
        "ChatCompletionResponse": object(json!({
            "id": string(), "object": {"const": "chat.completion"}, "created": count(),
            "model": string(),
            "choices": array(object(json!({
                "index": count(),
                "message": object(json!({"role": {"const": "assistant"}, "content": string()})),
                "logprobs": nothing, "finish_reason": finish
            }))),
            "usage": reference("Usage")
        })),
        "ChatCompletionChunk": chunk,
        "Seq2SeqResponse": task_response(
            json!({"enum": ["summarization", "translation", "text2text"]}),
            object(json!({
                "index": count(), "text": string(), "sequences": array(sequence),
                "input_tokens": count(), "output_tokens": count(), "truncated": {"type": "boolean"}
            })),
        ),
        "Seq2SeqChunk": object(json!({
            "object": {"enum": ["summarization.chunk", "translation.chunk", "text2text.chunk"]},
            "index": count(), "text": string()
        })),
        "ClassifyResponse": task_response(
            json!({"const": "classification"}),
            object(json!({
                "index": count(),
                "labels": array(object(json!({"label": string(), "score": {"type": "number"}}))),
                "tokens": count(), "truncated": {"type": "boolean"}
            })),
        ),
        "NerResponse": task_response(
            json!({"const": "ner"}),
            object(json!({"index": count(), "entities": array(entity)})),
        ),
        "FillMaskResponse": task_response(
            json!({"const": "fill-mask"}),
            object(json!({
                "index": count(),
                "masks": array(array(object(json!({
                    "score": {"type": "number"}, "token": count(), "token_str": string(),
                    "sequence": string()
                }))))
            })),
        ),
    })
}
