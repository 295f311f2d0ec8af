//! `/admin/keys`: client keys with limits, on the running gateway (the guard lets only the admin key in). Each
//! change is written to the store and the in-memory registry is reloaded before the answer, so a revoke or a new
//! limit applies to the next request. The secret is in the answer to the POST that creates a key, and nowhere
//! else, ever.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dialects::{ErrorKind, GatewayError};
use serde_json::Value;

use crate::app::AppState;
use crate::app::request_id;
use crate::auth::now_unix;
use crate::keys::manage::{self, KeyPatch, KeySpec, ManageError};
use crate::keys::stored_with_usage;
use crate::server::errors::error_response;
use crate::server::openai;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/keys", get(list).post(create))
        .route("/admin/keys/{id}", get(one).patch(update))
        .route("/admin/keys/{id}/revoke", post(revoke))
}

fn error(e: ManageError) -> GatewayError {
    match e {
        ManageError::Invalid(m) => GatewayError::invalid(m),
        ManageError::NotFound(id) => GatewayError::new(ErrorKind::NotFound, format!("No client key `{id}`")),
        e @ ManageError::NameTaken { .. } => GatewayError::invalid(e.to_string()).with_code("name_taken"),
        ManageError::Store(e) => GatewayError::internal(format!("{e:#}")),
    }
}

fn reply(headers: &HeaderMap, status: StatusCode, r: Result<Value, GatewayError>) -> Response {
    match r {
        Ok(v) => (status, Json(v)).into_response(),
        Err(e) => error_response(openai::SHAPE, &e, &request_id(headers)),
    }
}

/// The registry follows the store before the answer goes out.
fn reloaded(s: &AppState) -> Result<(), GatewayError> {
    s.keys.reload().map_err(|e| GatewayError::internal(format!("{e:#}")))
}

async fn list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = s
        .keys
        .store()
        .list_keys()
        .map(|rows| Value::Array(rows.iter().map(|row| stored_with_usage(Some(&s.keys), row)).collect()))
        .map_err(|e| error(e.into()));
    reply(&headers, StatusCode::OK, r)
}

async fn one(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = match s.keys.store().get_key(&id) {
        Ok(Some(row)) => Ok(stored_with_usage(Some(&s.keys), &row)),
        Ok(None) => Err(error(ManageError::NotFound(id))),
        Err(e) => Err(error(e.into())),
    };
    reply(&headers, StatusCode::OK, r)
}

/// Body: `{"name": "...", "models"?: [...], "rpm"?, "concurrency"?, "daily_tokens"?, "monthly_tokens"?,
/// "expires"?: "2027-01-31"}`. Answers 201 with the key and its `secret`.
async fn create(State(s): State<Arc<AppState>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let r = (|| {
        if s.config.admin_keys().is_empty() {
            // Without an admin credential a client could drop its key and manage keys itself (server/guard.rs).
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "Creating client keys needs an admin credential: set CODEX_GATEWAY_ADMIN_KEY (or `[server] \
                 admin_key`, or CODEX_GATEWAY_API_KEY) and restart the gateway.",
            )
            .with_code("admin_key_required"));
        }
        let spec: KeySpec = dialects::json::decode_body(&body)?;
        let (row, secret) = manage::create(s.keys.store(), spec, now_unix()).map_err(error)?;
        reloaded(&s)?;
        let mut v = stored_with_usage(Some(&s.keys), &row);
        v["secret"] = secret.into();
        Ok(v)
    })();
    reply(&headers, StatusCode::CREATED, r)
}

/// Body: any of `create`'s fields; `null` removes a limit (or the model list, or the expiry).
async fn update(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let r = (|| {
        let patch: KeyPatch = dialects::json::decode_body(&body)?;
        let row = manage::update(s.keys.store(), &id, patch).map_err(error)?;
        reloaded(&s)?;
        Ok(stored_with_usage(Some(&s.keys), &row))
    })();
    reply(&headers, StatusCode::OK, r)
}

async fn revoke(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = (|| {
        let row = manage::revoke(s.keys.store(), &id, now_unix()).map_err(error)?;
        reloaded(&s)?;
        Ok(stored_with_usage(Some(&s.keys), &row))
    })();
    reply(&headers, StatusCode::OK, r)
}
