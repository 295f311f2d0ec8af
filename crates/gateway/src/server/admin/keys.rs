//! `/admin/keys`: client keys with limits, on the running gateway (admins; a member their own keys: access.rs). Each
//! change is written to the store and the in-memory registry is reloaded before the answer, so a revoke or a new
//! limit applies to the next request. The secret is in the answer to the POST that creates a key, and nowhere
//! else, ever.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::Value;

use super::access::Asking;
use super::error::{AdminError, AdminJson, KeysManageable};
use crate::app::AppState;
use crate::audit::Note;
use crate::auth::now_unix;
use crate::keys::manage::{self, KeyPatch, KeySpec, ManageError};
use crate::keys::stored_with_usage;
use crate::users::access::Action::*;
use crate::users::table::RouteTable;

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::new()
        .get("/admin/keys", KeysRead, list)
        .post("/admin/keys", KeysWrite, "key.create", create)
        .get("/admin/keys/{id}", KeysRead, one)
        .patch("/admin/keys/{id}", KeysUpdate, "key.update", update)
        .post("/admin/keys/{id}/revoke", KeysWrite, "key.revoke", revoke)
}

/// A member sees their own keys only (`asking`: server/admin/access.rs): their id; an admin every key.
fn own(asking: &Asking) -> Option<&str> {
    asking.only_own().map(|u| u.id.as_str())
}

async fn list(State(s): State<Arc<AppState>>, asking: Asking) -> Result<Json<Value>, AdminError> {
    let rows = s.keys.store().list_keys().map_err(ManageError::from)?;
    let shown = rows.iter().filter(|row| manage::visible(row, own(&asking)));
    Ok(Json(Value::Array(shown.map(|row| stored_with_usage(Some(&s.keys), row)).collect())))
}

async fn one(
    State(s): State<Arc<AppState>>,
    asking: Asking,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    Ok(Json(stored_with_usage(Some(&s.keys), &manage::find_visible(s.keys.store(), &id, own(&asking))?)))
}

/// Body: `{"name": "...", "models"?: [...], "rpm"?, "concurrency"?, "daily_tokens"?, "monthly_tokens"?,
/// "expires"?: "2027-01-31"}`. Answers 201 with the key and its `secret`; refused without an admin credential
/// ([`KeysManageable`]) before the body is read.
async fn create(
    State(s): State<Arc<AppState>>,
    _: KeysManageable,
    asking: Asking,
    AdminJson(spec): AdminJson<KeySpec>,
) -> Result<(StatusCode, Note, Json<Value>), AdminError> {
    // A signed-in user's key is theirs; a member's counts against the maximum an admin set them (checked with the
    // insert: concurrent creations cannot together pass it).
    let max_keys = asking.only_own().map(|member| member.max_keys);
    let owner = asking.principal.user().map(|u| manage::Owner { id: &u.id, name: &u.name, max_keys });
    let (row, secret) = manage::create(s.keys.store(), spec, owner, now_unix())?;
    s.keys.reload()?;
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
    s.keys.reload()?;
    Ok((crate::audit::key_note(&row), Json(stored_with_usage(Some(&s.keys), &row))))
}

async fn revoke(
    State(s): State<Arc<AppState>>,
    asking: Asking,
    Path(id): Path<String>,
) -> Result<(Note, Json<Value>), AdminError> {
    let id = manage::find_visible(s.keys.store(), &id, own(&asking))?.id;
    let row = manage::revoke(s.keys.store(), &id, now_unix())?;
    s.keys.reload()?;
    Ok((crate::audit::key_note(&row), Json(stored_with_usage(Some(&s.keys), &row))))
}
