//! The router: which handler answers which route, and the middleware every request passes
//! (metrics, the `Host` check, bearer auth, the body limit). It only wires; the handlers live
//! in service.rs, embeddings.rs, completions.rs and task_routes.rs, and what they share in
//! state.rs.

use crate::completions::{chat_completions, completions};
use crate::embeddings::embeddings;
use crate::error::ApiError;
use crate::service::{docs, get_model, health, list_models, metrics, openapi};
use crate::state::AppState;
use crate::task_routes::{classify, fill_mask, ner, summarize, text2text, translate};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::time::Instant;

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
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Middleware

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

/// Middleware: without an API key, refuse requests whose `Host` is not this machine.
pub(crate) async fn check_host(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if s.config.api_key.is_none() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host());
        match host {
            Some(h) if crate::guard::host_allowed(h, &s.config.allowed_hosts) => {}
            Some(h) => {
                return ApiError::forbidden(format!(
                    "Host '{h}' is not this machine; a server without an API key answers only \
                     localhost, IP addresses and --allowed-hosts (this guards against DNS \
                     rebinding from web pages)"
                ))
                .into_response()
            }
            None => return ApiError::bad_request("the request has no Host header").into_response(),
        }
    }
    next.run(req).await
}
