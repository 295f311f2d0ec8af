//! `GET /v1/models` (OpenAI list, Anthropic list when `anthropic-version` is sent, and the Codex catalog under
//! `models` in the same object so Codex CLI's `/models?client_version=` works), `GET /v1/models/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::app::request_id;
use crate::catalog;
use crate::server::errors::error_response;
use crate::server::openai;

const CREATED: u64 = 1_767_225_600; // 2026-01-01, a fixed date: the backend does not report one.

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let entries = state.catalog.entries().await;
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "type": "model",
                    "id": e.slug,
                    "display_name": e.display_name_or_slug(),
                    "created_at": "2026-01-01T00:00:00Z",
                })
            })
            .collect();
        let first = entries.first().map(|e| e.slug.as_str());
        let last = entries.last().map(|e| e.slug.as_str());
        return Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response();
    }
    let data: Vec<Value> = entries.iter().map(|e| openai_model(&e.slug)).collect();
    // The Codex catalog is passed on as received: the Codex CLI reads fields this gateway does not type.
    let models: Vec<&Value> = entries.iter().map(|e| e.raw()).collect();
    Json(json!({"object": "list", "data": data, "models": models})).into_response()
}

fn openai_model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "openai"})
}

pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let entries = state.catalog.entries().await;
    let wanted = dialects::models::ModelRef::parse(&id);
    match catalog::find(&entries, &wanted.slug) {
        Some(entry) => {
            let mut m = openai_model(&id);
            m["models"] = json!([entry.raw()]);
            Json(m).into_response()
        }
        None => error_response(openai::SHAPE, &GatewayError::model_not_found(&id), &request_id(&headers)),
    }
}
