//! The admin API in the audit trail (audit/): one layer records every request that may change state (any method
//! but GET and HEAD) with who asked as its actor (the admin key, a signed-in user: access.rs), the client's address, the route's action, the
//! account, key or conversation its path names, and its outcome; handlers add non-secret details with an
//! [`audit::Note`] on their answer. `GET /admin/audit` reads the trail with filters (audit/query.rs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{MatchedPath, RawPathParams, RawQuery, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use dialects::GatewayError;
use serde_json::{Value, json};

use super::error::AdminError;
use crate::app::AppState;
use crate::audit::{self, Actor, Entry};
use crate::users::Principal;
use crate::users::table::RouteTable;

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::new().get("/admin/audit", read)
}

/// The layer: the request runs, then its entry is appended (off the async workers) before the answer goes out.
pub async fn layer(
    State(s): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("").to_string();
    let target = params.ok().and_then(|p| p.iter().next().map(|(_, v)| v.to_string()));
    let source = audit::source_of(req.extensions());
    let mut resp = next.run(req).await;
    // Who asked, as the access layer found out (access.rs) or a sign-in decided; nobody it knew otherwise.
    let actor = match (resp.extensions_mut().remove::<Principal>(), resp.extensions_mut().remove::<Actor>()) {
        (_, Some(actor)) => actor,
        (Some(p), None) => p.actor(),
        (None, None) => Actor::Anonymous,
    };
    let mut entry = Entry::new(actor, action(&method, &route));
    entry.source = source;
    entry.target = target;
    crate::dashboard::audit::append_answered(&s, entry, &mut resp).await;
    resp
}

/// The action a route is (docs/operations.md, "Audit trail"); a route not named here is recorded by its method
/// and path, so a new one is never missed.
fn action(method: &Method, route: &str) -> String {
    let named = match (method.as_str(), route) {
        ("POST", "/admin/accounts") => "account.add",
        ("DELETE", "/admin/accounts/{id}") => "account.remove",
        ("POST", "/admin/accounts/{id}/enable") => "account.enable",
        ("POST", "/admin/accounts/{id}/disable") => "account.disable",
        ("POST", "/admin/accounts/{id}/label") => "account.label",
        ("POST", "/admin/accounts/{id}/policy") => "account.policy",
        ("POST", "/admin/accounts/{id}/proxy") => "account.proxy",
        ("POST", "/admin/accounts/{id}/refresh") => "account.refresh",
        ("POST", "/admin/accounts/{id}/check") => "account.check",
        ("DELETE", "/admin/accounts/{id}/cooldowns") => "account.cooldowns_clear",
        ("DELETE", "/admin/accounts/{id}/holds") => "account.holds_release",
        ("DELETE", "/admin/conversations/{key}/hold") => "conversation.release",
        ("POST", "/admin/reload") => "config.reload",
        ("POST", "/admin/keys") => "key.create",
        ("PATCH", "/admin/keys/{id}") => "key.update",
        ("POST", "/admin/keys/{id}/revoke") => "key.revoke",
        ("POST", "/admin/sign-in") => "user.sign_in",
        ("POST", "/admin/sign-out") => "user.sign_out",
        ("POST", "/admin/users") => "user.create",
        ("PATCH", "/admin/users/{id}") => "user.update",
        ("DELETE", "/admin/users/{id}") => "user.remove",
        ("POST", "/admin/users/{id}/password") => "user.password",
        ("POST", "/admin/users/{id}/totp") => "user.totp_enrol",
        ("DELETE", "/admin/users/{id}/totp") => "user.totp_remove",
        ("POST", "/admin/users/{id}/unlock") => "user.unlock",
        _ => return format!("admin.{} {route}", method.as_str().to_ascii_lowercase()),
    };
    named.to_string()
}

/// `GET /admin/audit?actor=&action=&since=&until=&limit=`: `{"count", "entries": [...]}`, oldest first.
async fn read(State(s): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let filter = audit::query::parse(raw.as_deref(), crate::usage::when::now_ms())
        .map_err(|b| GatewayError::invalid_param(b.name, format!("Cannot read {} = {:?}", b.name, b.value)))?;
    let store = s.pool.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_rows(&filter))
        .await
        .map_err(|e| AdminError::Internal(anyhow::anyhow!("the audit read did not complete: {e}")))??;
    let entries: Vec<Value> = rows.iter().map(audit::export::row_json).collect();
    Ok(Json(json!({"count": entries.len(), "entries": entries})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_actions_and_others_still_recorded() {
        assert_eq!(action(&Method::POST, "/admin/accounts/{id}/disable"), "account.disable");
        assert_eq!(action(&Method::PATCH, "/admin/keys/{id}"), "key.update");
        assert_eq!(action(&Method::PUT, "/admin/new"), "admin.put /admin/new");
    }
}
