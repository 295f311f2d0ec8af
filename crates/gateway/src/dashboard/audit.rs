//! The dashboard in the audit trail (audit/): the changes made through it (a login, successful or not, a logout,
//! account actions and imports, logins started, keys, settings) are recorded by the layer it shares with the admin
//! API (users/trail.rs), with the session's actor (access.rs); handlers add non-secret details with an
//! [`audit::Note`] ([`noted`]). Here: the login jobs' end, and the Audit page, which reads the trail with the admin
//! API's filters.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::St;
use super::session::PageAccess;
use crate::audit::{self, Actor, Entry, Note, Outcome};

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
