//! The OpenAPI 3.1 description served at `GET /openapi.json`, and the `GET /docs` page made
//! from it.

use crate::backend::ModelInfo;
use crate::openai::{MAX_CHOICES, MAX_STOP_SEQUENCES};
use crate::state::{MAX_BEAMS, MAX_FILL_MASK_TOP_K, MAX_INPUTS};
use crate::ServerConfig;
use serde_json::{json, Value};

mod responses;

/// Every route: method, path, summary. The router and this table are checked against each
/// other by the tests.
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/health",
        "Liveness: 200 while serving, 503 while shutting down. No auth.",
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics: requests, queue depth, batch sizes, tokens/s, latency histograms.",
    ),
    ("get", "/openapi.json", "This document."),
    ("get", "/docs", "A page listing the routes."),
    (
        "get",
        "/v1/models",
        "The served model (OpenAI list format).",
    ),
    ("get", "/v1/models/{id}", "One model by id."),
    (
        "post",
        "/v1/completions",
        "OpenAI text completions (causal language models).",
    ),
    (
        "post",
        "/v1/chat/completions",
        "OpenAI chat completions (causal language models with a chat template).",
    ),
    (
        "post",
        "/v1/embeddings",
        "OpenAI embeddings (sentence-embedding models).",
    ),
    (
        "post",
        "/v1/summarize",
        "Summarization with the checkpoint's settings (encoder-decoder models).",
    ),
    (
        "post",
        "/v1/translate",
        "Translation (encoder-decoder models).",
    ),
    (
        "post",
        "/v1/text2text",
        "Plain generate() on the input (encoder-decoder models).",
    ),
    (
        "post",
        "/v1/classify",
        "Text classification (sequence classifiers).",
    ),
    ("post", "/v1/ner", "Named entities (token classifiers)."),
    (
        "post",
        "/v1/fill-mask",
        "Most likely tokens for each mask (masked language models).",
    ),
];

/// Whether a server of `info`'s model answers `path` (service routes always do).
fn served(info: &ModelInfo, path: &str) -> bool {
    !path.starts_with("/v1/") || path.starts_with("/v1/models") || info.routes().contains(&path)
}

/// One text or an array of texts. The bounds are the server's (an empty array, more than
/// [`MAX_INPUTS`] texts, or a text that is empty or only whitespace answer 400). The API fuzzer
/// generates its valid cases from these, so a bound left out here makes most of them 400s and
/// the success path goes untested.
fn texts_schema() -> Value {
    let text = json!({"type": "string", "minLength": 1, "pattern": "\\S"});
    json!({"oneOf": [text,
                     {"type": "array", "items": text, "minItems": 1, "maxItems": MAX_INPUTS}],
           "description": "One text or an array of texts (non-empty, not only whitespace)."})
}

/// The languages `/v1/translate` takes as `source` and `target`, by ISO code and English name
/// (lmrs-pipelines' table; the server also takes them in any letter case).
const LANGUAGES: &[[&str; 2]] = &[
    ["en", "English"],
    ["de", "German"],
    ["fr", "French"],
    ["ro", "Romanian"],
    ["es", "Spanish"],
    ["it", "Italian"],
    ["pt", "Portuguese"],
    ["nl", "Dutch"],
    ["ru", "Russian"],
    ["zh", "Chinese"],
    ["ja", "Japanese"],
];

/// `source` / `target`: one of [`LANGUAGES`], by code or name.
fn language_schema(description: &str) -> Value {
    let names: Vec<&str> = LANGUAGES.iter().flatten().copied().collect();
    json!({"enum": names, "description": description})
}

/// A task route's request object: every property is named, and the server refuses any other
/// (serde `deny_unknown_fields`: 400).
fn closed(mut schema: Value) -> Value {
    schema["additionalProperties"] = json!(false);
    schema
}

/// `model`: the served model's id. The document names it exactly so that clients (and the
/// API fuzzer, which generates requests from this document) know the one value that is not a
/// 404.
fn model_schema(info: &ModelInfo) -> Value {
    json!({"type": "string", "enum": [info.id],
           "description": "The served model's id (see GET /v1/models); the model reference the server was started with is accepted too, any other name answers 404."})
}

fn generation_properties(info: &ModelInfo, limit: usize) -> Value {
    let int = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    let num = |d: &str| json!({"type": "number", "description": d});
    json!({
        "model": model_schema(info),
        "input": texts_schema(),
        "stream": {"type": "boolean", "description": "Server-sent events of text pieces (one input, greedy or sampling), then the response object, then [DONE]."},
        "max_length": int("Maximum total output length (decoder start token included)."),
        "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": limit,
                           "description": "Maximum generated tokens (wins over max_length); at most --max-new-tokens-limit."},
        "min_length": int("Minimum total length before the end token."),
        "min_new_tokens": int("Minimum generated tokens (wins over min_length)."),
        "num_beams": {"type": "integer", "minimum": 1, "maximum": MAX_BEAMS,
                      "description": "Beams (1: greedy or sampling)."},
        "num_return_sequences": {"type": "integer", "minimum": 1,
                                 "description": "Sequences per input (at most num_beams; 1 for greedy search)."},
        "length_penalty": num("Beam score length exponent."),
        "early_stopping": {"oneOf": [{"type": "boolean"}, {"const": "never"}]},
        "no_repeat_ngram_size": int("Forbid repeating n-grams of this size."),
        "repetition_penalty": {"type": "number", "exclusiveMinimum": 0,
                               "description": "Penalty on repeated tokens (>1 discourages)."},
        "bad_words_ids": {"type": "array", "minItems": 1,
                          "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}},
        "do_sample": {"type": "boolean"},
        "temperature": num("Sampling temperature."),
        "top_k": int("Sample among the k most likely tokens (0: all)."),
        "top_p": {"type": "number", "minimum": 0, "maximum": 1, "description": "Nucleus sampling mass."},
        "seed": int("Seed for reproducible sampling."),
        "forced_bos_token_id": int("Token forced first."),
        "forced_eos_token_id": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "array", "items": {"type": "integer", "minimum": 0}}]},
        "use_cache": {"type": "boolean"}
    })
}

fn error_responses() -> Value {
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "400": err("Malformed JSON, wrong types, unknown fields, empty or too long input, invalid options."),
        "401": err("Missing or wrong API key (when the server has one)."),
        "403": err("A Host header the server does not accept."),
        "408": err("The body did not arrive within --body-timeout."),
        "404": err("Unknown route or model, or a route the loaded model does not serve."),
        "413": err("Body over the size limit."),
        "415": err("A request body that is not application/json."),
        "429": err("The queue is full; retry later (Retry-After header)."),
        "500": err("The model failed (e.g. NaN or Inf in its output)."),
        "503": err("The server is shutting down."),
        "504": err("The request took longer than --request-timeout.")
    })
}

fn request_schema(path: &str, info: &ModelInfo, limit: usize) -> Option<Value> {
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    let tokens =
        |d: &str| json!({"type": "integer", "minimum": 1, "maximum": limit, "description": d});
    let sampling = json!({
        "max_tokens": tokens("Tokens to generate at most (at most --max-new-tokens-limit)."),
        "min_tokens": {"type": "integer", "minimum": 0, "description": "vLLM extension: generate at least this many tokens (at most max_tokens)."},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": MAX_CHOICES},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "stop": {"oneOf": [{"type": "string", "minLength": 1},
                           {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": MAX_STOP_SEQUENCES}]},
        "presence_penalty": {"enum": [0], "description": "Only 0 is supported."},
        "frequency_penalty": {"enum": [0], "description": "Only 0 is supported."},
        "seed": {"type": "integer", "minimum": 0}, "user": {"type": "string"}
    });
    let with = |mut base: Value, extra: Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let model = model_schema(info);
    let token_ids =
        json!({"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1});
    Some(match path {
        "/v1/completions" => obj(
            with(
                sampling,
                json!({"model": model,
                       "prompt": {"oneOf": [{"type": "string", "minLength": 1},
                                            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_INPUTS},
                                            token_ids,
                                            {"type": "array", "items": token_ids, "minItems": 1, "maxItems": MAX_INPUTS}],
                                  "description": "Text(s), or token ids (one sequence or several)."}}),
            ),
            &["model", "prompt"],
        ),
        "/v1/chat/completions" => obj(
            with(
                sampling,
                json!({"model": model, "max_completion_tokens": tokens("Newer name of max_tokens; wins over it."),
                       "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role"], "properties": {
                           "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                           "content": {"oneOf": [{"type": "string"}, {"type": "null"},
                               {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                   "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]},
                           "name": {"type": "string"}}}}}),
            ),
            &["model", "messages"],
        ),
        "/v1/embeddings" => obj(
            json!({"model": model, "input": texts_schema(),
                   "encoding_format": {"enum": ["float", "base64"]},
                   "dimensions": {"type": "integer", "minimum": 0, "description": "Must equal the model's dimension."},
                   "user": {"type": "string"}}),
            &["model", "input"],
        ),
        "/v1/summarize" | "/v1/text2text" => {
            closed(obj(generation_properties(info, limit), &["input"]))
        }
        "/v1/translate" => closed(obj(
            with(
                generation_properties(info, limit),
                json!({"source": language_schema("Source language by name or code (default English)."),
                       "target": language_schema("Target language by name or code.")}),
            ),
            &["input", "target"],
        )),
        "/v1/classify" => closed(obj(
            json!({"model": model, "input": texts_schema(),
                   "top_k": {"type": "integer", "minimum": 0, "description": "Labels per text (default 1; 0: all)."},
                   "function": {"enum": ["softmax", "sigmoid", "none"]}}),
            &["input"],
        )),
        "/v1/ner" => closed(obj(
            json!({"model": model, "input": texts_schema(),
                   "aggregation": {"enum": ["none", "simple", "first", "average", "max"]}}),
            &["input"],
        )),
        "/v1/fill-mask" => closed(obj(
            json!({"model": model,
                   "input": with(texts_schema(), json!({"description": "One text or an array of texts, each with the model's mask token (e.g. [MASK]; 400 otherwise)."})),
                   "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_FILL_MASK_TOP_K}}),
            &["input"],
        )),
        _ => return None,
    })
}

/// The OpenAPI document for a server of `info`'s model with `config`'s limits.
pub fn spec(info: &ModelInfo, config: &ServerConfig) -> Value {
    let limit = config.max_new_tokens_limit;
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": error_responses(),
        });
        op["responses"]["200"] = responses::success(path);
        if *path == "/health" {
            // Draining: the same body with status "draining", not an error object.
            op["responses"]["503"] = responses::health_draining();
        }
        if !served(info, path) {
            op["description"] = json!(format!(
                "Not served by this server's {} model (answers 404).",
                info.kind.name()
            ));
        }
        if let Some(schema) = request_schema(path, info, limit) {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        if *path == "/v1/models/{id}" {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        }
        if *path != "/health" {
            op["security"] = json!([{"bearer": []}]);
        }
        paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|o| o.insert(method.to_string(), op));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "lmrs server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Serving '{}' ({} model). OpenAI-compatible routes plus task routes.",
                                   info.id, info.kind.name()),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "Required on every route but /health when the server runs with --api-key."}},
            "schemas": responses::schemas()
        }
    })
}

/// A plain HTML page listing the routes (no scripts: the server works offline).
pub fn docs_html(info: &ModelInfo) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut rows = String::new();
    for (method, path, summary) in ROUTES {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}{}</td></tr>\n",
            method.to_uppercase(),
            escape(path),
            escape(summary),
            if served(info, path) {
                ""
            } else {
                " <em>(not served by this model)</em>"
            }
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>lmrs server</title></head><body>\n\
         <h1>lmrs server</h1>\n<p>Model <code>{}</code> ({}). Machine-readable description: \
         <a href=\"/openapi.json\">/openapi.json</a>.</p>\n<table border=\"1\" cellpadding=\"4\">\n\
         <tr><th>method</th><th>route</th><th>what</th></tr>\n{rows}</table>\n</body></html>\n",
        escape(&info.id),
        info.kind.name()
    )
}

#[cfg(test)]
mod tests {
    use super::LANGUAGES;

    /// Every error status a route can answer is in the document: the API fuzzer's
    /// status_code_conformance check fails on any other (408 was missing once). 405 is left
    /// out on purpose: it answers a method the document does not list for the path.
    #[test]
    fn every_error_status_is_documented() {
        use crate::error::ApiError;
        let documented = super::error_responses();
        for e in [
            ApiError::bad_request(""),
            ApiError::unauthorized(""),
            ApiError::forbidden(""),
            ApiError::body_timeout(1.0),
            ApiError::not_found(""),
            ApiError::unsupported(""),
            ApiError::payload_too_large(""),
            ApiError::unsupported_media_type(""),
            ApiError::queue_full(1),
            ApiError::internal(""),
            ApiError::shutting_down(),
            ApiError::timeout(1.0),
        ] {
            let code = e.status.as_u16().to_string();
            assert!(documented.get(&code).is_some(), "{code} is not documented");
        }
    }

    #[test]
    fn every_documented_language_is_one_the_translator_takes() {
        for [code, name] in LANGUAGES {
            assert_eq!(lmrs_pipelines::language_code(code), Some((*code, *name)));
            assert_eq!(lmrs_pipelines::language_code(name), Some((*code, *name)));
        }
    }
}
