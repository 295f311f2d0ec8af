//! The audit trail's layer of the admin API and the dashboard (audit/): every request that may change state (any
//! method but GET, HEAD and OPTIONS) is recorded once answered, under its route's name ([`Audit`], table.rs), with
//! who asked as the access layer or a sign-in put it on the answer (an `Actor`, or the `Principal` found), the
//! client's address, the account, key, conversation or job its path names, and its outcome; handlers add
//! non-secret details with an [`audit::Note`] on their answer.

use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::Principal;
use super::table::{Audit, RouteEntry};
use crate::audit::{self, Actor, Entry, Note, Outcome};
use crate::store::Store;

/// A method that changes nothing: not recorded.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The layer: the request runs, then its entry is appended (off the async workers) before the answer goes out.
pub async fn layer(
    State(store): State<Arc<Store>>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let audit = req.extensions().get::<RouteEntry>().map(|e| e.audit);
    if matches!(audit, Some(Audit::Read)) || audit.is_none() && is_read(req.method()) {
        return next.run(req).await;
    }
    let params: Vec<(String, String)> =
        params.map(|p| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let name = match audit {
        Some(Audit::Named(name)) => name.to_string(),
        Some(Audit::ByParam(p, name_of)) => name_of(param(p).unwrap_or_default()),
        // A route that is not named (its handler names it, or a method the path does not serve): `admin.put
        // /admin/keys`, so that nothing is missed.
        Some(Audit::Read | Audit::ByHandler) | None => {
            let route = matched.as_ref().map_or("", MatchedPath::as_str);
            let surface = route.split('/').nth(1).unwrap_or_default();
            format!("{surface}.{} {route}", req.method().as_str().to_ascii_lowercase())
        }
    };
    let target = ["id", "key", "job"].into_iter().find_map(param).map(str::to_string);
    let source = audit::source_of(req.extensions());
    let mut resp = next.run(req).await;
    let actor = match (resp.extensions_mut().remove::<Actor>(), resp.extensions_mut().remove::<Principal>()) {
        (Some(actor), _) => actor,
        (None, Some(p)) => p.actor(),
        (None, None) => Actor::Anonymous,
    };
    let mut entry = Entry::new(actor, name);
    entry.source = source;
    entry.target = target;
    append_answered(&store, entry, &mut resp).await;
    resp
}

/// Append `entry` with the answer's outcome, status and [`Note`].
async fn append_answered(store: &Arc<Store>, mut entry: Entry, resp: &mut Response) {
    // A refused sign-in counted into its burst: the burst's summary will say it (audit/bursts.rs).
    if resp.extensions_mut().remove::<audit::bursts::InBurst>().is_some() {
        return;
    }
    entry.outcome = Outcome::of_status(resp.status());
    entry.details.insert("status".into(), resp.status().as_u16().into());
    if let Some(note) = resp.extensions_mut().remove::<Note>() {
        note.apply(&mut entry);
    }
    append(store, entry).await;
}

/// Append `entry` off the async workers, before the answer goes out.
pub async fn append(store: &Arc<Store>, entry: Entry) {
    let store = store.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || audit::record(&store, entry)).await {
        tracing::error!("the audit trail's append did not complete: {e}");
    }
}
