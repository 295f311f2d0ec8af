//! The JSON admin API under `/admin/*` (the request guard lets only the admin key in: server/guard.rs): the same
//! account management as the CLI, on the running gateway, for scripts and the CLI's live target (cli/destination/).

use std::sync::Arc;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use dialects::{ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::Account;
use crate::accounts::manage::{self, ImportSource};
use crate::app::AppState;
use crate::app::reload::{Trigger, reload_logged};
use crate::audit::Note;
use crate::auth::now_unix;
use crate::users::access::Action::*;
use crate::users::table::RouteTable;

mod access;
mod audit;
mod conversations;
mod error;
mod keys;
mod users;

use access::Asking;
use error::{AdminError, AdminJson};

/// The admin API's routes: the accounts, the reload, the usage ledger, the client keys (keys.rs), the audit trail
/// (audit.rs), each behind the role check (access.rs) and the audit layer that records every change made through
/// them (users/trail.rs).
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    // Inside the audit layer: a refusal by role is recorded as any other answer.
    let layers = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(state.pool.store().clone(), crate::users::trail::layer))
        .layer(axum::middleware::from_fn_with_state(state, access::layer));
    table().into_router(layers)
}

/// Every admin route, its action and audit name (the access table test walks them: server/access_table.rs).
pub fn table() -> RouteTable<Arc<AppState>> {
    RouteTable::new()
        .get("/admin/status", Overview, status)
        .get("/admin/forecast", Overview, forecast)
        .get("/admin/accounts", AccountsRead, list)
        .post("/admin/accounts", AccountsWrite, "account.add", add)
        .get("/admin/accounts/export", AccountsExport, export)
        .get("/admin/accounts/{id}", AccountsRead, one)
        .delete("/admin/accounts/{id}", AccountsWrite, "account.remove", remove)
        .post("/admin/accounts/{id}/enable", AccountsWrite, "account.enable", set_enabled::<true>)
        .post("/admin/accounts/{id}/disable", AccountsWrite, "account.disable", set_enabled::<false>)
        .post("/admin/accounts/{id}/label", AccountsWrite, "account.label", label)
        .post("/admin/accounts/{id}/policy", AccountsWrite, "account.policy", policy)
        .post("/admin/accounts/{id}/proxy", AccountsWrite, "account.proxy", proxy)
        .post("/admin/accounts/{id}/refresh", AccountsWrite, "account.refresh", refresh)
        .post("/admin/accounts/{id}/check", AccountsWrite, "account.check", check)
        .delete("/admin/accounts/{id}/cooldowns", AccountsWrite, "account.cooldowns_clear", clear_cooldowns)
        .get("/admin/reload", ReloadRead, last_reload)
        .post("/admin/reload", Reload, "config.reload", reload_now)
        // The usage ledger (usage/api.rs).
        .get("/admin/usage", UsageRead, usage)
        .get("/admin/requests", RequestsRead, requests)
        .merge(keys::routes())
        .merge(conversations::routes())
        .merge(audit::routes())
        .merge(users::routes())
}

/// What an admin handler answers: JSON, or the admin API's error (error.rs).
type Answer<T = Json<Value>> = Result<T, AdminError>;

/// The quota forecasts: each ChatGPT account's and the pool's, with the pool's projection (docs/accounts.md,
/// "Forecast").
async fn forecast(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(s.pool.forecast_json())
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
        // Requests sent over HTTP after the upstream WebSocket failed, by reason (docs/protocol.md, "Broken WebSocket").
        "upstream_websocket_fallbacks": crate::upstream::websocket_fallbacks().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        // Request records the usage ledger could not keep (channel full, or a batch that failed to commit).
        "usage_records_dropped": s.ledger.records_dropped(),
        // Conversations held on their account (docs/accounts.md, "Risk signals").
        "conversations_held": s.pool.held_total(),
        // Audit trail entries that could not be written (audit/: logged, the change itself stands).
        "audit_append_failures": crate::audit::append_failures(),
        // This process's open files limit and the concurrent streams it allows (docs/operations.md, "Open files").
        "open_files": crate::descriptors::current()
            .map(|l| crate::descriptors::Report::new(&l, crate::descriptors::Upstream::of(&s.config))),
        // Failed accepts since start, by cause (server/listen/refusals.rs).
        "accepts_refused": crate::metrics::accepts::refusals()
            .map(|(why, n)| (why.as_str(), n))
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

async fn list(State(s): State<Arc<AppState>>) -> Json<Value> {
    let now = now_unix();
    Json(Value::Array(s.pool.accounts().iter().map(|a| a.summary(now)).collect()))
}

fn account(s: &AppState, id: &str) -> Result<Arc<Account>, AdminError> {
    s.pool.get(id).ok_or_else(|| AdminError::NoAccount(id.to_string()))
}

async fn one(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    Ok(Json(account(&s, &id)?.summary(now_unix())))
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

/// Answers 201 with the added accounts' summaries.
async fn add(
    State(s): State<Arc<AppState>>,
    AdminJson(b): AdminJson<AddBody>,
) -> Answer<(StatusCode, Note, Json<Value>)> {
    let source = match (b.auth_json, b.export, b.refresh_token, b.api_key) {
        (Some(v), None, None, None) => ImportSource::AuthJson(v),
        (None, Some(v), None, None) => ImportSource::Export(v),
        (None, None, Some(rt), None) => ImportSource::RefreshToken(rt),
        (None, None, None, Some(key)) => ImportSource::ApiKey { key, base_url: b.base_url, models: b.models },
        _ => {
            return Err(GatewayError::invalid("Send exactly one of auth_json, export, refresh_token or api_key").into());
        }
    };
    let from = crate::audit::import_kind(&source);
    let http = s.upstream.http().clone();
    let rows = manage::resolve(source, b.label, &http, &s.config.auth_issuer, &s.config.client)
        .await
        .map_err(|e| GatewayError::invalid(format!("{e:#}")))?;
    let note = manage::save(&s.pool, from, &rows)?;
    let now = now_unix();
    let added = rows.iter().filter_map(|r| s.pool.get(&r.id)).map(|a| a.summary(now)).collect();
    Ok((StatusCode::CREATED, note, Json(Value::Array(added))))
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    include_secrets: bool,
}

/// Secrets leave over HTTP only when a client key guards the route: keyless, whatever reaches the port (another
/// local user, a page that got past the browser defences) would get every account's tokens. The CLI reads the
/// store directly and needs no key.
async fn export(State(s): State<Arc<AppState>>, Query(q): Query<ExportQuery>) -> Answer {
    if q.include_secrets && s.config.admin_keys().is_empty() {
        return Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            "include_secrets is refused over HTTP while no client key is set: set one (CODEX_GATEWAY_API_KEY, \
             `api_keys` or --api-key) and send it, or run `codex-gateway accounts export --include-secrets` on \
             this machine (it reads the store directly).",
        )
        .with_code("secrets_need_a_key")
        .into());
    }
    Ok(Json(manage::export(s.pool.store(), q.include_secrets)?))
}

async fn remove(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    if !s.pool.store().remove_account(&id)? {
        return Err(AdminError::NoAccount(id));
    }
    s.pool.reload()?;
    Ok(Json(json!({"removed": id})))
}

/// `POST /admin/accounts/{id}/enable` and `/disable`.
async fn set_enabled<const ENABLED: bool>(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    if s.pool.store().get_account(&id)?.is_none() {
        return Err(AdminError::NoAccount(id));
    }
    let status = manage::set_enabled(s.pool.store(), &id, ENABLED)?;
    s.pool.reload()?;
    Ok(Json(json!({"id": id, "status": status.as_str()})))
}

#[derive(Deserialize)]
struct LabelBody {
    label: Option<String>,
}

async fn label(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(b): AdminJson<LabelBody>,
) -> Answer<(Note, Json<Value>)> {
    let label = manage::set_label(s.pool.store(), &id, b.label.as_deref()).map_err(|e| changed(e, "label", None))?;
    s.pool.reload()?;
    Ok((Note::default().with("label", label.clone()), Json(json!({"id": id, "label": label}))))
}

#[derive(Deserialize)]
struct PolicyBody {
    policy: String,
}

/// Body `{"policy": "preserve:40"}` (`normal`, `burn_first`, `preserve`, `preserve:PERCENT`): the owner's policy
/// (docs/accounts.md, "Policies"), in force for the next lease.
async fn policy(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(b): AdminJson<PolicyBody>,
) -> Answer<(Note, Json<Value>)> {
    let policy =
        manage::set_policy(s.pool.store(), &id, &b.policy).map_err(|e| changed(e, "policy", Some("invalid_policy")))?;
    s.pool.reload()?;
    Ok((Note::default().with("policy", policy.as_text()), Json(json!({"id": id, "policy": policy.as_text()}))))
}

#[derive(Deserialize)]
struct ProxyBody {
    proxy: Option<String>,
}

/// Body `{"proxy": "socks5://host:port"}` (http, https, socks5); `null` for the global setting.
async fn proxy(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(b): AdminJson<ProxyBody>,
) -> Answer<(Note, Json<Value>)> {
    let proxy = manage::set_proxy(s.pool.store(), &id, b.proxy.as_deref()).map_err(|e| changed(e, "proxy", None))?;
    s.pool.reload()?;
    let note = Note::default().with("proxy", proxy.as_deref().map(crate::audit::redact_url));
    Ok((note, Json(s.pool.get(&id).map(|a| a.summary(now_unix())).unwrap_or(Value::Null))))
}

/// A setting refused by `accounts::manage`: a bad value is the client's 400 on `field`.
fn changed(e: manage::ChangeError, field: &str, code: Option<&str>) -> AdminError {
    match e {
        manage::ChangeError::Bad(message) => {
            let err = GatewayError::invalid_param(field, message);
            code.map_or(err.clone(), |c| err.with_code(c)).into()
        }
        manage::ChangeError::NoAccount(id) => AdminError::NoAccount(id),
        manage::ChangeError::Store(e) => AdminError::from(e),
    }
}

async fn refresh(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    let account = account(&s, &id)?;
    s.pool.force_refresh(&account).await?;
    Ok(Json(account.summary(now_unix())))
}

async fn check(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    let account = account(&s, &id)?;
    Ok(Json(s.pool.check(&account).await))
}

async fn clear_cooldowns(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Answer {
    let account = account(&s, &id)?;
    s.pool.clear_cooldowns(&account);
    Ok(Json(account.summary(now_unix())))
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
    (status, report.note(), axum::Json(report)).into_response()
}

/// `GET /admin/usage` (usage/api.rs); a member's own usage only (the requests made for them), by key unless
/// they ask for another grouping.
async fn usage(State(s): State<Arc<AppState>>, asking: Asking, RawQuery(raw): RawQuery) -> Answer<Response> {
    match asking.only_own() {
        None => Ok(crate::usage::api::usage(&s.ledger, raw.as_deref()).await?),
        Some(user) => Ok(crate::usage::api::usage_of_user(&s.ledger, raw.as_deref(), &user.id).await?),
    }
}

/// `GET /admin/requests` (usage/api.rs); a member gets their own requests, across all their keys unless `key=`
/// names one of theirs.
async fn requests(State(s): State<Arc<AppState>>, asking: Asking, RawQuery(raw): RawQuery) -> Answer<Response> {
    if let Some(user) = asking.only_own() {
        // Any key the user owns, revoked ones included (their past use is the user's).
        let owned = |k: &str| {
            let rows = s.keys.store().list_keys();
            rows.is_ok_and(|rows| rows.iter().any(|r| r.id == k && r.owner.as_deref() == Some(user.id.as_str())))
        };
        if crate::usage::api::requests_key(raw.as_deref()).is_some_and(|k| !owned(&k)) {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "A member lists the requests of their own keys: leave out key= for all of them, or name one of yours.",
            )
            .with_code("not_your_key")
            .into());
        }
        return Ok(crate::usage::api::requests_of_user(&s.ledger, raw.as_deref(), &user.id).await?);
    }
    Ok(crate::usage::api::requests(&s.ledger, raw.as_deref()).await?)
}
