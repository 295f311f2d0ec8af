//! The Accounts page's actions, as JSON calls with the CSRF token: enable, disable, label, the owner's policy, proxy
//! (set and check), refresh now, clear cooldowns, remove; adding an account from an auth.json, an OpenAI API key or a
//! relay; the export (without secrets: the dashboard never shows one). The work is the admin API's (accounts/manage.rs
//! and the pool); errors come back as `{"error"}` for the page to show in place.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{ApiRead, ApiWrite};
use super::{Answer, St, json_body, json_error, json_response};
use crate::accounts::manage::{self, ImportSource};
use crate::audit::Note;
use crate::auth::now_unix;

#[derive(Deserialize, Default)]
struct ActBody {
    label: Option<String>,
    proxy: Option<String>,
    /// `normal`, `burn_first` or `preserve` (the page's choice).
    policy: Option<String>,
    /// With `preserve`: the percent of each window kept for the owner (empty: the default).
    floor: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Response {
    super::failed("action", e, "The gateway could not do that; its log says why.")
}

/// `POST /dashboard/api/accounts/{id}/{action}`.
pub(crate) async fn act(
    State(dash): State<St>,
    _: ApiWrite,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Answer {
    let b: ActBody = if body.is_empty() { ActBody::default() } else { json_body(&body, "Unreadable request")? };
    let pool = &dash.app.pool;
    let Some(account) = pool.get(&id) else {
        return Err(json_error(StatusCode::NOT_FOUND, format!("No account `{id}`.")));
    };
    let store = pool.store();
    let stored = matches!(action.as_str(), "check" | "refresh" | "clear_cooldowns" | "release_holds")
        || store.get_account(&id).ok().flatten().is_some();
    if !stored {
        return Err(json_error(
            StatusCode::CONFLICT,
            "This account is the linked Codex CLI login (read from auth.json): import it (Upload auth.json) to manage it here.",
        ));
    }
    let changed = match action.as_str() {
        "enable" | "disable" => {
            manage::set_enabled(store, &id, action == "enable").map(|_| Note::default()).map_err(Into::into)
        }
        "label" => manage::set_label(store, &id, b.label.as_deref()).map(|l| Note::default().with("label", l)),
        "policy" => {
            let choice = b.policy.as_deref().map(str::trim).unwrap_or_default();
            let text = match b.floor.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
                Some(floor) if choice == "preserve" => format!("preserve:{floor}"),
                Some(_) | None => choice.to_string(),
            };
            manage::set_policy(store, &id, &text).map(|p| Note::default().with("policy", p.as_text()))
        }
        "proxy" => manage::set_proxy(store, &id, b.proxy.as_deref())
            .map(|p| Note::default().with("proxy", p.as_deref().map(crate::audit::redact_url))),
        "check" => {
            let started = Instant::now();
            let result = pool.check(&account).await;
            let ms = started.elapsed().as_millis() as u64;
            return Ok(json_response(StatusCode::OK, json!({"check": result, "latency_ms": ms})));
        }
        "refresh" => {
            pool.force_refresh(&account)
                .await
                .map_err(|e| json_error(StatusCode::BAD_GATEWAY, format!("Refresh failed: {}", e.message)))?;
            return Ok(json_response(StatusCode::OK, account.summary(now_unix())));
        }
        "clear_cooldowns" => {
            pool.clear_cooldowns(&account);
            return Ok(json_response(StatusCode::OK, account.summary(now_unix())));
        }
        // Every conversation held on the account (docs/accounts.md, "Risk signals"), as the admin API's
        // `DELETE /admin/accounts/{id}/holds`.
        "release_holds" => {
            let keys = pool.release_holds_of(&id).await.map_err(internal)?;
            return Ok(json_response(StatusCode::OK, json!({"released": keys})));
        }
        "remove" => store.remove_account(&id).map(|_| Note::default()).map_err(Into::into),
        _ => return Err(json_error(StatusCode::NOT_FOUND, format!("No action `{action}`."))),
    };
    let note = changed.map_err(|e| match e {
        manage::ChangeError::Bad(message) => json_error(StatusCode::BAD_REQUEST, message),
        manage::ChangeError::NoAccount(_) => json_error(StatusCode::NOT_FOUND, format!("No account `{id}`.")),
        manage::ChangeError::Store(e) => internal(e),
    })?;
    pool.reload().map_err(internal)?;
    let summary = pool.get(&id).map(|a| a.summary(now_unix())).unwrap_or(Value::Null);
    Ok(super::audit::noted(json_response(StatusCode::OK, json!({"ok": true, "account": summary})), note))
}

/// `{"kind": "auth_json", "text": "..."}`, `{"kind": "api_key", "key": "sk-..."}` or
/// `{"kind": "relay", "key", "base_url", "models"?}`; optional `label`.
#[derive(Deserialize)]
struct AddBody {
    kind: String,
    text: Option<String>,
    key: Option<String>,
    base_url: Option<String>,
    models: Option<String>,
    label: Option<String>,
}

/// `POST /dashboard/api/accounts/add`.
pub(crate) async fn add(State(dash): State<St>, _: ApiWrite, body: axum::body::Bytes) -> Answer {
    let b: AddBody = json_body(&body, "Unreadable request")?;
    let bad = |m: String| Err(json_error(StatusCode::BAD_REQUEST, m));
    let present = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let source = match b.kind.as_str() {
        "auth_json" => match present(b.text).map(|t| serde_json::from_str::<Value>(&t)) {
            Some(Ok(v)) if v.get("accounts").is_some_and(Value::is_array) => ImportSource::Export(v),
            Some(Ok(v)) => ImportSource::AuthJson(v),
            Some(Err(e)) => return bad(format!("That file is not JSON: {e}")),
            None => return bad("Choose an auth.json file first.".into()),
        },
        "api_key" | "relay" => {
            let Some(key) = present(b.key) else {
                return bad("Enter the API key.".into());
            };
            let base_url = present(b.base_url);
            if b.kind == "relay" && base_url.is_none() {
                return bad("Enter the relay's base URL (its /v1 address).".into());
            }
            let models = present(b.models)
                .map(|m| m.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
            ImportSource::ApiKey { key, base_url, models }
        }
        other => return bad(format!("Unknown kind `{other}`.")),
    };
    let label = b.label;
    let from = crate::audit::import_kind(&source);
    let app = &dash.app;
    let rows =
        match manage::resolve(source, label, app.upstream.http(), &app.config.auth_issuer, &app.config.client).await {
            Ok(rows) => rows,
            Err(e) => return bad(format!("{e:#}")),
        };
    let note = manage::save(&app.pool, from, &rows).map_err(internal)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    Ok(super::audit::noted(json_response(StatusCode::CREATED, json!({"ok": true, "added": ids})), note))
}

/// `GET /dashboard/api/accounts/export`: every account without its secrets, as a download.
pub(crate) async fn export(State(dash): State<St>, _: ApiRead) -> Response {
    match manage::export(dash.app.pool.store(), false) {
        Ok(v) => {
            let disposition = "attachment; filename=\"codex-gateway-accounts.json\"";
            ([(header::CONTENT_DISPOSITION, disposition)], json_response(StatusCode::OK, v)).into_response()
        }
        Err(e) => internal(e),
    }
}
