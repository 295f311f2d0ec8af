//! `GET /v1/models` (OpenAI list, Anthropic list when `anthropic-version` is sent, and the Codex catalog under
//! `models` in the same object so Codex CLI's `/models?client_version=` works), `GET /v1/models/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::server::errors::{Dialect, error_response};
use crate::server::exchange::request_id;

const CREATED: u64 = 1_767_225_600; // 2026-01-01, a fixed date: the backend does not report one.

fn slug(e: &Value) -> &str {
    e.get("slug").and_then(Value::as_str).unwrap_or_default()
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let entries = state.catalog.entries(&state).await;
    if headers.contains_key("anthropic-version") {
        let data: Vec<Value> = entries
            .iter()
            .map(|e| {
                json!({
                    "type": "model",
                    "id": slug(e),
                    "display_name": e.get("display_name").cloned().unwrap_or_else(|| json!(slug(e))),
                    "created_at": "2026-01-01T00:00:00Z",
                })
            })
            .collect();
        let first = data.first().and_then(|d| d.get("id")).cloned();
        let last = data.last().and_then(|d| d.get("id")).cloned();
        return Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last})).into_response();
    }
    let data: Vec<Value> = entries.iter().map(|e| openai_model(slug(e))).collect();
    Json(json!({"object": "list", "data": data, "models": entries})).into_response()
}

fn openai_model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "openai"})
}

pub async fn get(State(state): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let entries = state.catalog.entries(&state).await;
    let wanted = dialects::models::ModelRef::parse(&id);
    match entries.iter().find(|e| slug(e) == wanted.slug) {
        Some(entry) => {
            let mut m = openai_model(&id);
            m["models"] = json!([entry]);
            Json(m).into_response()
        }
        None => error_response(Dialect::OpenAi, &GatewayError::model_not_found(&id), &request_id(&headers)),
    }
}
