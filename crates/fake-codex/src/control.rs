//! The `/_fake/*` control API: the same operations as the Rust handle (`lib.rs`), over HTTP for
//! tests written in other languages. Requests to these paths are not recorded.

use crate::server::{detail, json_response};
use crate::state::Shared;
use crate::types::{AccountSpec, EndpointMode, Scenario};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_fake/accounts", post(add_account))
        .route("/_fake/api-keys", post(add_api_key))
        .route("/_fake/enqueue", post(enqueue))
        .route("/_fake/requests", get(requests))
        .route("/_fake/token-calls", get(token_calls))
        .route("/_fake/accounts/{id}/expire", post(expire))
        .route("/_fake/accounts/{id}/quota", post(quota))
        .route("/_fake/accounts/{id}/quota-cost", post(quota_cost))
        .route("/_fake/reset-requests", post(reset_requests))
        .route("/_fake/stats", get(stats))
        .route("/_fake/token-endpoint", post(token_endpoint))
        .route("/_fake/catalog-endpoint", post(catalog_endpoint))
        .route("/_fake/models/{slug}/min-client-version", post(min_client_version))
        .route("/_fake/models/{slug}/prefer-websockets", post(prefer_websockets))
        .route("/_fake/models/{slug}/responses-lite", post(responses_lite))
        .route("/_fake/models/{slug}/effort-updates", post(effort_updates))
        .route("/_fake/websocket", post(websocket))
        .route("/_fake/connections/{n}/preface", get(preface))
}

/// What the client sent first on TLS connection `n` (`preface.rs`).
async fn preface(State(shared): State<Arc<Shared>>, Path(n): Path<u64>) -> Response {
    match shared.prefaces.describe(n) {
        Some(v) => json_response(StatusCode::OK, v),
        None => detail(StatusCode::NOT_FOUND, "no TLS connection of that number is kept"),
    }
}

#[derive(Deserialize)]
struct PreferBody {
    prefer: bool,
}

/// The model's catalog entry says `prefer_websockets` (or no longer does).
async fn prefer_websockets(State(shared): State<Arc<Shared>>, Path(slug): Path<String>, body: Bytes) -> Response {
    match parse::<PreferBody>(&body, None) {
        Ok(b) => {
            shared.ws.set_preferred(&slug, b.prefer);
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct LiteBody {
    lite: bool,
}

/// The model's catalog entry says `use_responses_lite` (or no longer does).
async fn responses_lite(State(shared): State<Arc<Shared>>, Path(slug): Path<String>, body: Bytes) -> Response {
    match parse::<LiteBody>(&body, None) {
        Ok(b) => {
            shared.set_lite(&slug, b.lite);
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EffortUpdatesBody {
    on: bool,
}

/// The model's catalog entry says `supports_reasoning_effort_updates` (or no longer does).
async fn effort_updates(State(shared): State<Arc<Shared>>, Path(slug): Path<String>, body: Bytes) -> Response {
    match parse::<EffortUpdatesBody>(&body, None) {
        Ok(b) => {
            shared.set_effort_updates(&slug, b.on);
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebsocketBody {
    /// Refuse every handshake with 426 (clients then use HTTP SSE).
    refuse: Option<bool>,
    /// Answer every handshake 404, as an origin without the WebSocket endpoint.
    absent: Option<bool>,
    /// Refuse every `previous_response_id` (`previous_response_not_found`).
    forget_responses: Option<bool>,
    /// The largest message a new connection takes (`x-codex-websocket-max-message-bytes`); 0 for the default.
    max_message_bytes: Option<u64>,
}

async fn websocket(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<WebsocketBody>(&body, None) {
        Ok(b) => {
            if let Some(refuse) = b.refuse {
                shared.ws.set_refuse(refuse);
            }
            if let Some(absent) = b.absent {
                shared.ws.set_absent(absent);
            }
            if let Some(forget) = b.forget_responses {
                shared.ws.set_forget(forget);
            }
            if let Some(max) = b.max_message_bytes {
                shared.ws.set_max_message((max > 0).then_some(max));
            }
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct MinVersionBody {
    version: String,
}

async fn min_client_version(State(shared): State<Arc<Shared>>, Path(slug): Path<String>, body: Bytes) -> Response {
    match parse::<MinVersionBody>(&body, None) {
        Ok(b) => match crate::versions::parse(&b.version) {
            Some(v) => {
                shared.min_versions.set(&slug, v);
                ok()
            }
            None => detail(StatusCode::BAD_REQUEST, "version must look like 0.170.0"),
        },
        Err(r) => r,
    }
}

/// Parse a JSON body; an empty body means the type's default when `empty` is given.
fn parse<T: DeserializeOwned>(body: &[u8], empty: Option<T>) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(v) = empty
    {
        return Ok(v);
    }
    serde_json::from_slice(body).map_err(|e| detail(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")))
}

fn ok() -> Response {
    json_response(StatusCode::OK, json!({"ok": true}))
}

async fn add_account(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<AccountSpec>(&body, Some(AccountSpec::default())) {
        Ok(spec) => json_response(StatusCode::OK, json!(shared.add_account(spec))),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct KeyBody {
    key: String,
}

async fn add_api_key(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<KeyBody>(&body, None) {
        Ok(k) => {
            shared.inner.lock().api_keys.insert(k.key);
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EnqueueBody {
    #[serde(default)]
    account_id: Option<String>,
    scenario: Scenario,
}

async fn enqueue(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<EnqueueBody>(&body, None) {
        Ok(e) => {
            shared.enqueue(e.account_id.as_deref(), e.scenario);
            ok()
        }
        Err(r) => r,
    }
}

async fn requests(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let inner = shared.inner.lock();
    let list: Vec<_> =
        inner.requests.iter().filter(|r| q.get("path").is_none_or(|p| r.path.contains(p.as_str()))).collect();
    json_response(StatusCode::OK, json!(list))
}

async fn token_calls(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, json!(shared.inner.lock().token_calls))
}

fn known(shared: &Shared, id: &str) -> Result<(), Response> {
    if shared.inner.lock().accounts.contains_key(id) {
        Ok(())
    } else {
        Err(detail(StatusCode::NOT_FOUND, "unknown account"))
    }
}

async fn expire(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if let Err(r) = known(&shared, &id) {
        return r;
    }
    shared.expire_access_tokens(&id);
    ok()
}

#[derive(Deserialize)]
struct QuotaBody {
    primary_used_percent: f64,
    #[serde(default)]
    secondary_used_percent: f64,
    #[serde(default)]
    resets_at: Option<i64>,
}

async fn quota(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = known(&shared, &id) {
        return r;
    }
    match parse::<QuotaBody>(&body, None) {
        Ok(q) => {
            shared.set_quota(&id, q.primary_used_percent, q.secondary_used_percent, q.resets_at);
            ok()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct CostBody {
    percent_per_request: f64,
}

async fn quota_cost(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    if let Err(r) = known(&shared, &id) {
        return r;
    }
    match parse::<CostBody>(&body, None) {
        Ok(c) => {
            shared.set_quota_cost(&id, c.percent_per_request);
            ok()
        }
        Err(r) => r,
    }
}

async fn reset_requests(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset_requests();
    ok()
}

/// Counters for benchmarks: connections accepted, streams started / completed / dropped by the client, and
/// the unix-microsecond times of the latest drops.
async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, shared.stats.snapshot())
}

/// `{"mode": "normal" | "hang" | "fail", "status"?: 500}`: how `/oauth/token` answers from now on.
async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<EndpointMode>(&body, None) {
        Ok(mode) => {
            *shared.token_mode.lock() = mode;
            ok()
        }
        Err(r) => r,
    }
}

/// The same for the Codex model catalog.
async fn catalog_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse::<EndpointMode>(&body, None) {
        Ok(mode) => {
            *shared.catalog_mode.lock() = mode;
            ok()
        }
        Err(r) => r,
    }
}
