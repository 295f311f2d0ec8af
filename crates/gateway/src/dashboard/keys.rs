//! The Keys page: client keys with limits (keys/), created, listed with their usage, updated and revoked from
//! the browser, through `keys::manage` as `/admin/keys` does; a member sees, creates (up to their maximum) and revokes their own keys only. A new key's secret is in the answer to its
//! creation and nowhere else: the page shows it once with a copy button; lists show the prefix only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::Own;
use super::audit::noted;
use super::session::{ApiWrite, PageAccess};
use super::{Answer, St, failed, json_body, json_error, json_response};
use crate::auth::now_unix;
use crate::keys::manage::{self, KeyPatch, KeySpec, ManageError};
use crate::keys::stored_with_usage;
use crate::store::StoredKey;
use crate::users::access::{self, Action};

fn refused(e: ManageError) -> Response {
    match e {
        ManageError::Invalid(m) => json_error(StatusCode::BAD_REQUEST, m),
        ManageError::NotFound(id) => json_error(StatusCode::NOT_FOUND, format!("No client key `{id}`.")),
        e @ ManageError::NameTaken { .. } => json_error(StatusCode::CONFLICT, format!("{e}.")),
        e @ ManageError::TooManyKeys { .. } => json_error(StatusCode::FORBIDDEN, format!("{e}.")),
        ManageError::Store(e) => failed("keys", e, "The key store failed; the gateway's log says why."),
    }
}

/// The key after a change, noted for the audit trail; the registry follows the store before the answer goes out
/// (a revoke applies to the next request).
fn changed(dash: &St, status: StatusCode, row: &StoredKey, secret: Option<String>) -> Answer {
    dash.app.keys.reload().map_err(|e| failed("keys: reload", e, "The key registry could not be reloaded."))?;
    let mut v = stored_with_usage(Some(&dash.app.keys), row);
    if let Some(secret) = secret {
        v["secret"] = secret.into();
    }
    Ok(noted(json_response(status, v), crate::audit::key_note(row)))
}

/// `GET /dashboard/keys`.
pub(crate) async fn page(State(dash): State<St>, PageAccess(a): PageAccess, own: Own) -> Answer {
    let keys = &dash.app.keys;
    let rows = keys.store().list_keys().map_err(|e| refused(e.into()))?;
    let list: Vec<Value> =
        rows.iter().filter(|r| manage::visible(r, owner(&own))).map(|r| stored_with_usage(Some(keys), r)).collect();
    let role = a.who.role();
    let may = |action| access::decide(role, action) != access::Decision::Refuse;
    let models: Vec<String> = dash.app.catalog.entries().await.iter().map(|e| e.slug.clone()).collect();
    let extra = json!({
        "keys": list,
        "models": models,
        "can_create": manageable(&dash) && may(Action::KeysWrite),
        "read_only": !may(Action::KeysWrite),
        "can_edit": may(Action::KeysUpdate),
        "own": own.0.as_ref().map(|u| json!({"name": u.name, "max_keys": u.max_keys})),
    });
    Ok(super::pages::page(&dash, a, "Keys", "keys", extra))
}

/// Keys may be created: an admin credential or users exist (without either, a client could drop its key and
/// manage keys itself).
fn manageable(dash: &St) -> bool {
    !dash.app.config.admin_keys().is_empty() || dash.app.users.any()
}

/// A member sees and revokes their own keys only: their id.
fn owner(own: &Own) -> Option<&str> {
    own.0.as_ref().map(|u| u.id.as_str())
}

/// The form's fields: numbers and lists as the page sends them (empty: no limit).
#[derive(Deserialize)]
pub(crate) struct Form {
    name: String,
    #[serde(default)]
    models: String,
    rpm: Option<u32>,
    concurrency: Option<u32>,
    daily_tokens: Option<u64>,
    monthly_tokens: Option<u64>,
    #[serde(default)]
    expires: String,
    /// The checkbox: served only from quota that would otherwise expire.
    #[serde(default)]
    opportunistic: bool,
}

fn models(text: &str) -> Option<Vec<String>> {
    let list: Vec<String> = text.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
    (!list.is_empty()).then_some(list)
}

/// `POST /dashboard/api/keys`: the new key, with its `secret` (this once).
pub(crate) async fn create(
    State(dash): State<St>,
    ApiWrite(who): ApiWrite,
    own: Own,
    body: axum::body::Bytes,
) -> Answer {
    if !manageable(&dash) {
        // As /admin/keys: without an admin credential a client could drop its key and manage keys itself.
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "Creating client keys needs an admin key: set CODEX_GATEWAY_ADMIN_KEY and restart the gateway.",
        ));
    }
    let f: Form = json_body(&body, "Unreadable key form")?;
    let spec = KeySpec {
        name: f.name,
        models: models(&f.models),
        rpm: f.rpm,
        concurrency: f.concurrency,
        daily_tokens: f.daily_tokens,
        monthly_tokens: f.monthly_tokens,
        expires: Some(f.expires.trim().to_string()).filter(|e| !e.is_empty()),
        opportunistic: f.opportunistic,
    };
    // A member's maximum is checked with the insert (concurrent creations cannot together pass it).
    let max_keys = own.0.as_ref().map(|member| member.max_keys);
    let owner = who.user().map(|u| manage::Owner { id: &u.id, name: &u.name, max_keys });
    let (row, secret) = manage::create(dash.app.keys.store(), spec, owner, now_unix()).map_err(refused)?;
    changed(&dash, StatusCode::CREATED, &row, Some(secret))
}

/// `POST /dashboard/api/keys/{id}`: the whole form again; an empty field removes that limit.
pub(crate) async fn update(
    State(dash): State<St>,
    _: ApiWrite,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let f: Form = json_body(&body, "Unreadable key form")?;
    let patch = KeyPatch {
        name: Some(f.name),
        models: Some(models(&f.models)),
        rpm: Some(f.rpm),
        concurrency: Some(f.concurrency),
        daily_tokens: Some(f.daily_tokens),
        monthly_tokens: Some(f.monthly_tokens),
        expires: Some(Some(f.expires.trim().to_string()).filter(|e| !e.is_empty())),
        opportunistic: Some(f.opportunistic),
        // The form has no suspension: lifted with `keys update --resume` or the admin API.
        suspended: None,
    };
    let row = manage::update(dash.app.keys.store(), &id, patch).map_err(refused)?;
    changed(&dash, StatusCode::OK, &row, None)
}

/// `POST /dashboard/api/keys/{id}/revoke`.
pub(crate) async fn revoke(State(dash): State<St>, _: ApiWrite, own: Own, Path(id): Path<String>) -> Answer {
    manage::find_visible(dash.app.keys.store(), &id, owner(&own)).map_err(refused)?;
    let row = manage::revoke(dash.app.keys.store(), &id, now_unix()).map_err(refused)?;
    changed(&dash, StatusCode::OK, &row, None)
}
