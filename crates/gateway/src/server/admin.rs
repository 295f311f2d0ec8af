//! The JSON admin API under `/admin/*` (authenticated with the client key like every other route): the same
//! account management as the CLI, on the running gateway, for scripts and a future dashboard.

use std::sync::Arc;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dialects::{ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::manage::{self, ImportSource};
use crate::app::reload::{Trigger, reload_logged};
use crate::app::{AppState, request_id};
use crate::auth::now_unix;
use crate::server::errors::error_response;
use crate::server::openai;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/accounts", get(list).post(add))
        .route("/admin/accounts/export", get(export))
        .route("/admin/accounts/{id}", get(one).delete(remove))
        .route("/admin/accounts/{id}/enable", post(enable))
        .route("/admin/accounts/{id}/disable", post(disable))
        .route("/admin/accounts/{id}/label", post(label))
        .route("/admin/accounts/{id}/proxy", post(proxy))
        .route("/admin/accounts/{id}/refresh", post(refresh))
        .route("/admin/accounts/{id}/check", post(check))
        .route("/admin/accounts/{id}/cooldowns", delete(clear_cooldowns))
        .route("/admin/reload", get(last_reload).post(reload_now))
        // The usage ledger (usage/api.rs).
        .route("/admin/usage", get(usage))
        .route("/admin/requests", get(requests))
}

type Result<T> = std::result::Result<T, GatewayError>;

fn reply(headers: &HeaderMap, r: Result<Value>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(openai::SHAPE, &e, &request_id(headers)),
    }
}

fn internal(e: anyhow::Error) -> GatewayError {
    GatewayError::internal(format!("{e:#}"))
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("No account `{id}`"))
}

async fn status(State(s): State<Arc<AppState>>) -> Json<Value> {
    let accounts = s.pool.accounts();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "accounts": accounts.len(),
        "usable": accounts.iter().filter(|a| a.is_active()).count(),
        "strategy": format!("{:?}", s.pool.strategy()),
        "listen": s.config.listen.to_string(),
        // Upstream events of a type this version does not know, since start (relay/reader.rs).
        "unknown_upstream_events": crate::relay::reader::unknown_events(),
        // HTTP/2 streams the gateway reset toward the upstream, since start (upstream/http2/body.rs).
        "upstream_http2_resets_sent": crate::upstream::http2_resets_sent(),
        // Request records the usage ledger could not keep (channel full, or a batch that failed to commit).
        "usage_records_dropped": s.ledger.records_dropped(),
    }))
}

async fn list(State(s): State<Arc<AppState>>) -> Json<Value> {
    let now = now_unix();
    Json(Value::Array(s.pool.accounts().iter().map(|a| a.summary(now)).collect()))
}

async fn one(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(&headers, s.pool.get(&id).map(|a| a.summary(now_unix())).ok_or_else(|| not_found(&id)))
}

/// Body: `{"auth_json": {...}}`, `{"export": {...}}`, `{"refresh_token": "..."}` or
/// `{"api_key": "...", "base_url"?: "...", "models"?: [...]}`; optional `label`.
#[derive(Deserialize)]
struct AddBody {
    auth_json: Option<Value>,
    export: Option<Value>,
    refresh_token: Option<String>,
    api_key: Option<String>,
    base_url: Option<String>,
    models: Option<Vec<String>>,
    label: Option<String>,
}

async fn add(State(s): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let r = async {
        let b: AddBody = dialects::json::decode_body(&body)?;
        let source = match (b.auth_json, b.export, b.refresh_token, b.api_key) {
            (Some(v), None, None, None) => ImportSource::AuthJson(v),
            (None, Some(v), None, None) => ImportSource::Export(v),
            (None, None, Some(rt), None) => ImportSource::RefreshToken(rt),
            (None, None, None, Some(key)) => ImportSource::ApiKey { key, base_url: b.base_url, models: b.models },
            _ => {
                return Err(GatewayError::invalid("Send exactly one of auth_json, export, refresh_token or api_key"));
            }
        };
        let rows = manage::resolve(
            source,
            b.label,
            &s.upstream.http().clone(),
            &s.config.auth_issuer,
            &s.config.client.user_agent,
        )
        .await
        .map_err(|e| GatewayError::invalid(format!("{e:#}")))?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        for row in &rows {
            s.pool.store().upsert_account(row).map_err(internal)?;
        }
        s.pool.reload().map_err(internal)?;
        let now = now_unix();
        Ok(Value::Array(ids.iter().filter_map(|id| s.pool.get(id)).map(|a| a.summary(now)).collect()))
    }
    .await;
    match r {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error_response(openai::SHAPE, &e, &request_id(&headers)),
    }
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    include_secrets: bool,
}

/// Secrets leave over HTTP only when a client key guards the route: keyless, whatever reaches the port (another
/// local user, a page that got past the browser defences) would get every account's tokens. The CLI reads the
/// store directly and needs no key.
async fn export(State(s): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<ExportQuery>) -> Response {
    if q.include_secrets && s.config.admin_keys().is_empty() {
        let err = GatewayError::new(
            ErrorKind::PermissionDenied,
            "include_secrets is refused over HTTP while no client key is set: set one (CODEX_GATEWAY_API_KEY, \
             `api_keys` or --api-key) and send it, or run `codex-gateway accounts export --include-secrets` on \
             this machine (it reads the store directly).",
        )
        .with_code("secrets_need_a_key");
        return error_response(openai::SHAPE, &err, &request_id(&headers));
    }
    reply(&headers, manage::export(s.pool.store(), q.include_secrets).map_err(internal))
}

async fn remove(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        if !s.pool.store().remove_account(&id).map_err(internal)? {
            return Err(not_found(&id));
        }
        s.pool.reload().map_err(internal)?;
        Ok(json!({"removed": id}))
    })();
    reply(&headers, r)
}

fn set_enabled(s: &AppState, id: &str, enabled: bool) -> Result<Value> {
    if s.pool.store().get_account(id).map_err(internal)?.is_none() {
        return Err(not_found(id));
    }
    let status = manage::set_enabled(s.pool.store(), id, enabled).map_err(internal)?;
    s.pool.reload().map_err(internal)?;
    Ok(json!({"id": id, "status": status.as_str()}))
}

async fn enable(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(&headers, set_enabled(&s, &id, true))
}

async fn disable(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    reply(&headers, set_enabled(&s, &id, false))
}

#[derive(Deserialize)]
struct LabelBody {
    label: Option<String>,
}

async fn label(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = (|| {
        let b: LabelBody = dialects::json::decode_body(&body)?;
        if !s.pool.store().set_label(&id, b.label.as_deref()).map_err(internal)? {
            return Err(not_found(&id));
        }
        s.pool.reload().map_err(internal)?;
        Ok(json!({"id": id, "label": b.label}))
    })();
    reply(&headers, r)
}

#[derive(Deserialize)]
struct ProxyBody {
    proxy: Option<String>,
}

/// Body `{"proxy": "socks5://host:port"}` (http, https, socks5); `null` for the global setting.
async fn proxy(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = (|| {
        let b: ProxyBody = dialects::json::decode_body(&body)?;
        if let Some(p) = &b.proxy {
            reqwest::Proxy::all(p)
                .map_err(|e| GatewayError::invalid_param("proxy", format!("Invalid proxy URL: {e}")))?;
        }
        if !s.pool.store().set_proxy(&id, b.proxy.as_deref()).map_err(internal)? {
            return Err(not_found(&id));
        }
        s.pool.reload().map_err(internal)?;
        Ok(s.pool.get(&id).map(|a| a.summary(now_unix())).unwrap_or(Value::Null))
    })();
    reply(&headers, r)
}

async fn refresh(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let account = s.pool.get(&id).ok_or_else(|| not_found(&id))?;
        s.pool.force_refresh(&account).await?;
        Ok(account.summary(now_unix()))
    }
    .await;
    reply(&headers, r)
}

async fn check(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let account = s.pool.get(&id).ok_or_else(|| not_found(&id))?;
        Ok(s.pool.check(&account).await)
    }
    .await;
    reply(&headers, r)
}

async fn clear_cooldowns(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = s.pool.get(&id).ok_or_else(|| not_found(&id)).map(|a| {
        s.pool.clear_cooldowns(&a);
        a.summary(now_unix())
    });
    reply(&headers, r)
}

/// `GET /admin/reload`: the last reload's report (app/reload.rs).
async fn last_reload(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(state.live.last()).into_response()
}

/// `POST /admin/reload`: reload now.
async fn reload_now(State(state): State<Arc<AppState>>) -> Response {
    let report = reload_logged(state, Trigger::Admin).await;
    // A refused file is the request's fault as much as anyone's: 422 with the report (its `error` says why).
    let status = if report.ok { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    (status, axum::Json(report)).into_response()
}

/// `GET /admin/usage` (usage/api.rs).
async fn usage(State(s): State<Arc<AppState>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let answer = crate::usage::api::usage(&s.ledger, raw.as_deref()).await;
    answer.unwrap_or_else(|e| error_response(openai::SHAPE, &e, &request_id(&headers)))
}

/// `GET /admin/requests` (usage/api.rs).
async fn requests(State(s): State<Arc<AppState>>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let answer = crate::usage::api::requests(&s.ledger, raw.as_deref()).await;
    answer.unwrap_or_else(|e| error_response(openai::SHAPE, &e, &request_id(&headers)))
}
