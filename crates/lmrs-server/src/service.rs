//! The service routes: `/health`, `/metrics`, `/openapi.json`, `/docs`, `/v1/models`.

use crate::error::ApiError;
use crate::openai::{Model, ModelList};
use crate::state::{check_model, AppState, Shared};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;

pub(crate) async fn health(State(s): State<AppState>) -> Response {
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

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
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

pub(crate) async fn openapi(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::openapi::spec(&s.info, &s.config))
}

pub(crate) async fn docs(State(s): State<AppState>) -> Html<String> {
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

pub(crate) async fn list_models(State(s): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![model_entry(&s)],
    })
}

pub(crate) async fn get_model(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    check_model(&s, Some(&id))?;
    Ok(Json(model_entry(&s)))
}
