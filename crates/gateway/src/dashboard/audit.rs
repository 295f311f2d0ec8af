//! The dashboard in the audit trail (audit/): one layer records every request that may change state (a login,
//! successful or not, a logout, account actions and imports, logins started, keys, settings) with the session's
//! actor (how it was opened: session.rs), the client's address, the action and target its route names, and its
//! outcome; handlers add non-secret details with an [`audit::Note`]. The Audit page reads the trail with the
//! admin API's filters.

use axum::extract::{MatchedPath, RawPathParams, RawQuery, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::St;
use super::session::{PageAccess, actor_of};
use crate::app::AppState;
use crate::audit::{self, Actor, Entry, Note, Outcome};

/// The layer: the request runs, then its entry is appended (off the async workers) before the answer goes out.
pub(crate) async fn layer(
    State(dash): State<St>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("").to_string();
    let params: Vec<(String, String)> =
        params.map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default();
    let source = audit::source_of(req.extensions());
    // Looked up before the handler runs: a logout ends the session it is recorded under.
    let session = actor_of(&dash, req.headers());
    let mut resp = next.run(req).await;
    // A sign-in says who it was (or that it was nobody); otherwise the session's actor.
    let actor = match resp.extensions_mut().remove::<Actor>().or(session) {
        Some(a) => a,
        None if route == "/dashboard/login" && resp.status().is_success() => Actor::DashboardAdminKey,
        // A session the gate opened for this very request (loopback without a login).
        None if resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.as_bytes().starts_with(b"cgw_session=")) =>
        {
            Actor::DashboardLoopback
        }
        None => Actor::Anonymous,
    };
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut entry = Entry::new(actor, action(&route, param("action").as_deref(), param("flow").as_deref()));
    entry.source = source;
    entry.target = param("id").or_else(|| param("job"));
    append_answered(&dash.app, entry, &mut resp).await;
    resp
}

/// Append `entry` with the answer's outcome, status and [`Note`] (the admin API's layer too).
pub(crate) async fn append_answered(app: &AppState, mut entry: Entry, resp: &mut Response) {
    // A refused sign-in counted into its burst: the burst's summary will say it (audit/bursts.rs).
    if resp.extensions_mut().remove::<audit::bursts::InBurst>().is_some() {
        return;
    }
    entry.outcome = Outcome::of_status(resp.status());
    entry.details.insert("status".into(), resp.status().as_u16().into());
    if let Some(note) = resp.extensions_mut().remove::<Note>() {
        note.apply(&mut entry);
    }
    append(app, entry).await;
}

/// Append `entry` off the async workers, before the answer goes out.
pub(crate) async fn append(app: &AppState, entry: Entry) {
    let store = app.pool.store().clone();
    if let Err(e) = tokio::task::spawn_blocking(move || audit::record(&store, entry)).await {
        tracing::error!("the audit trail's append did not complete: {e}");
    }
}

/// The action a dashboard route is (the admin API's names where it is the same change).
fn action(route: &str, act: Option<&str>, flow: Option<&str>) -> String {
    match route {
        "/dashboard/login" => "dashboard.login".into(),
        "/dashboard/logout" => "dashboard.logout".into(),
        "/dashboard/api/accounts/add" => "account.add".into(),
        "/dashboard/api/accounts/{id}/{action}" => match act.unwrap_or_default() {
            "clear_cooldowns" => "account.cooldowns_clear".into(),
            "release_holds" => "account.holds_release".into(),
            a @ ("enable" | "disable" | "label" | "policy" | "proxy" | "check" | "refresh" | "remove") => {
                format!("account.{a}")
            }
            // Not an action (actions.rs answers 404): the path's text is the caller's, not a name to keep.
            _ => "account.unknown_action".into(),
        },
        "/dashboard/api/login/{flow}" => match flow.unwrap_or_default() {
            f @ ("device" | "browser" | "paste") => format!("account.login_start.{f}"),
            _ => "account.login_start.unknown".into(),
        },
        "/dashboard/api/login/job/{job}/paste" => "account.login_paste".into(),
        "/dashboard/api/settings" => "settings.save".into(),
        "/dashboard/api/keys" => "key.create".into(),
        "/dashboard/api/keys/{id}" => "key.update".into(),
        "/dashboard/api/keys/{id}/revoke" => "key.revoke".into(),
        "/dashboard/api/users" => "user.create".into(),
        "/dashboard/api/users/{id}" => "user.update".into(),
        "/dashboard/api/users/{id}/{action}" => match act.unwrap_or_default() {
            "password" => "user.password".into(),
            "totp" => "user.totp_enrol".into(),
            "totp_remove" => "user.totp_remove".into(),
            "unlock" => "user.unlock".into(),
            "remove" => "user.remove".into(),
            _ => "user.unknown_action".into(),
        },
        other => format!("dashboard.post {other}"),
    }
}

/// `resp` with `note` for the layer.
pub(crate) fn noted(resp: Response, note: Note) -> Response {
    (note, resp).into_response()
}

/// An account login the dashboard started, when its job ends (logins.rs): the account it saved, or the failure.
pub(crate) fn login_finished(dash: &St, actor: Actor, account: Result<&crate::store::StoredAccount, &str>) {
    let mut entry = Entry::new(actor, "account.login");
    match account {
        Ok(a) => {
            entry.target = Some(a.id.clone());
            entry.details = Note::default().with("email", a.email.clone()).with("label", a.label.clone()).details;
        }
        Err(reason) => {
            entry.outcome = Outcome::Refused;
            entry.details.insert("reason".into(), reason.into());
        }
    }
    audit::record(dash.app.pool.store(), entry);
}

/// `GET /dashboard/audit`: the trail, newest first, with the filters of `/admin/audit`.
pub(crate) async fn page(State(dash): State<St>, PageAccess(a): PageAccess, RawQuery(raw): RawQuery) -> Response {
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    let extra = match rows(&dash, raw.as_deref()).await {
        Ok(rows) => {
            let one = |r: &crate::store::audit::AuditRow| {
                let mut v = audit::export::row_json(r);
                // The stored text, shown as it is (and escaped as any value).
                v["details_text"] = r.details.clone().into();
                v
            };
            json!({"f": q, "rows": rows.iter().rev().map(one).collect::<Vec<_>>()})
        }
        Err(e) => json!({"f": q, "error": e}),
    };
    super::pages::page(&dash, a, "Audit", "audit", extra)
}

/// The trail's rows the filters of `raw` select, or what the page says instead.
async fn rows(dash: &St, raw: Option<&str>) -> Result<Vec<crate::store::audit::AuditRow>, String> {
    let filter = audit::query::parse(raw, crate::usage::when::now_ms())
        .map_err(|b| format!("Cannot read {} = {:?}.", b.name, b.value))?;
    let store = dash.app.pool.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_rows(&filter))
        .await
        .map_err(|e| format!("The read did not complete: {e}"))?;
    rows.map_err(|e| {
        tracing::error!("dashboard: the audit trail could not be read: {e:#}");
        "The audit trail could not be read; see the gateway's log.".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_their_actions() {
        assert_eq!(action("/dashboard/api/accounts/{id}/{action}", Some("disable"), None), "account.disable");
        assert_eq!(action("/dashboard/api/login/{flow}", None, Some("device")), "account.login_start.device");
        assert_eq!(action("/dashboard/login", None, None), "dashboard.login");
        assert_eq!(action("/dashboard/api/accounts/{id}/{action}", Some("<x>"), None), "account.unknown_action");
    }
}
