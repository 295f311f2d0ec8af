//! `/admin/keys`: client keys with limits, on the running gateway (the guard lets only the admin key in). Each
//! change is written to the store and the in-memory registry is reloaded before the answer, so a revoke or a new
//! limit applies to the next request. The secret is in the answer to the POST that creates a key, and nowhere
//! else, ever.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{AdminError, AdminJson, KeysManageable};
use crate::app::AppState;
use crate::audit::Note;
use crate::auth::now_unix;
use crate::keys::manage::{self, KeyPatch, KeySpec, ManageError};
use crate::keys::stored_with_usage;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/keys", get(list).post(create))
        .route("/admin/keys/{id}", get(one).patch(update))
        .route("/admin/keys/{id}/revoke", post(revoke))
}

/// The registry follows the store before the answer goes out.
fn reloaded(s: &AppState) -> Result<(), AdminError> {
    Ok(s.keys.reload()?)
}

async fn list(State(s): State<Arc<AppState>>) -> Result<Json<Value>, AdminError> {
    let rows = s.keys.store().list_keys().map_err(ManageError::from)?;
    Ok(Json(Value::Array(rows.iter().map(|row| stored_with_usage(Some(&s.keys), row)).collect())))
}

async fn one(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, AdminError> {
    match s.keys.store().get_key(&id).map_err(ManageError::from)? {
        Some(row) => Ok(Json(stored_with_usage(Some(&s.keys), &row))),
        None => Err(ManageError::NotFound(id).into()),
    }
}

/// Body: `{"name": "...", "models"?: [...], "rpm"?, "concurrency"?, "daily_tokens"?, "monthly_tokens"?,
/// "expires"?: "2027-01-31"}`. Answers 201 with the key and its `secret`; refused without an admin credential
/// ([`KeysManageable`]) before the body is read.
async fn create(
    State(s): State<Arc<AppState>>,
    _: KeysManageable,
    AdminJson(spec): AdminJson<KeySpec>,
) -> Result<(StatusCode, Note, Json<Value>), AdminError> {
    let (row, secret) = manage::create(s.keys.store(), spec, now_unix())?;
    reloaded(&s)?;
    let mut v = stored_with_usage(Some(&s.keys), &row);
    v["secret"] = secret.into();
    Ok((StatusCode::CREATED, crate::audit::key_note(&row), Json(v)))
}

/// Body: any of `create`'s fields; `null` removes a limit (or the model list, or the expiry); `"suspended":
/// false` lifts a suspension (`true` suspends the key by hand).
async fn update(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(patch): AdminJson<KeyPatch>,
) -> Result<(Note, Json<Value>), AdminError> {
    let lift = patch.suspended == Some(false);
    let row = manage::update(s.keys.store(), &id, patch)?;
    if lift {
        // Also a suspension whose row was never written (the write failed): this registry's own state.
        s.keys.lift_suspension(&row.id);
    }
    reloaded(&s)?;
    Ok((crate::audit::key_note(&row), Json(stored_with_usage(Some(&s.keys), &row))))
}

async fn revoke(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<(Note, Json<Value>), AdminError> {
    let row = manage::revoke(s.keys.store(), &id, now_unix())?;
    reloaded(&s)?;
    Ok((crate::audit::key_note(&row), Json(stored_with_usage(Some(&s.keys), &row))))
}
