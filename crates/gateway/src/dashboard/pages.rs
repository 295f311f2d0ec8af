//! The dashboard's pages: Overview (pool health and traffic, with its JSON for the live update), Accounts and
//! Setup (Settings: settings.rs). Each handler passes the gate (session.rs), gathers plain values and renders a
//! template.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{ApiRead, Authed, PageAccess};
use super::{St, json_response, setup};
use crate::auth::now_unix;
use crate::store::team::StoreHealth;
use crate::users::Principal;
use crate::users::access;
use crate::users::table::RouteEntry;

/// A page of the main navigation: [`base_for`] the gate's visitor with the fields of `extra`, rendered from
/// `<nav>.html`, the session cookie on it when the gate made one.
pub(crate) fn page(dash: &St, a: Authed, title: &str, nav: &str, extra: Value) -> Response {
    let mut ctx = base_for(&a.who, &a.csrf, title, nav);
    if let Value::Object(extra) = extra {
        ctx.extend(extra);
    }
    a.finish(dash.render(&format!("{nav}.html"), Value::Object(ctx)))
}

/// The page context every template gets: title, active nav entry, CSRF token, the pages the visitor's role may
/// open and who they are (the refusal page has no gate's [`Authed`], hence the visitor and token).
pub(crate) fn base_for(who: &Principal, csrf: &str, title: &str, nav: &str) -> serde_json::Map<String, Value> {
    let role = who.role();
    let open = |e: &&RouteEntry| access::decide(role, e.action) != access::Decision::Refuse;
    let items: Vec<Value> =
        super::nav().iter().filter(open).filter_map(|e| e.nav.map(|(id, label)| json!([id, label, e.path]))).collect();
    let mut m = serde_json::Map::new();
    m.insert("title".into(), title.into());
    m.insert("nav".into(), nav.into());
    m.insert("nav_items".into(), items.into());
    m.insert("signed_in".into(), who.user().map(|u| json!({"name": u.name, "role": u.role.as_str()})).into());
    // Pages hide the controls the role may not use (the access layer refuses them anyway).
    m.insert("role".into(), role.as_str().into());
    m.insert("csrf".into(), csrf.into());
    m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

/// Pool health and traffic since start.
pub(crate) fn overview_data(dash: &St) -> Value {
    let now = now_unix();
    let accounts = dash.app.pool.accounts();
    let mut serving = 0;
    let mut soonest_reset: Option<i64> = None;
    let mut back_at: Option<i64> = None;
    let mut in_flight = 0;
    let limits = *dash.quota.read();
    let mut near = Vec::new();
    for a in accounts.iter() {
        let q = a.quota.read().clone();
        // Accounts at or past the warning threshold in a window, the fullest first (listed on the Overview).
        for (window, used, reset) in [
            ("5 hours", q.primary_used_percent, q.primary_reset_at),
            ("weekly", q.secondary_used_percent, q.secondary_reset_at),
        ] {
            if let Some(used) = used.filter(|&u| u >= limits.warn) {
                let name = a.display_name();
                let level = if used >= limits.critical { "critical" } else { "warn" };
                near.push(json!({"name": name, "window": window, "used": used, "reset": reset, "level": level}));
            }
        }
        // Whole-account cooldowns and a used-up window keep it from serving (as metrics/accounts.rs counts up).
        let blocked =
            a.cooldowns(now).iter().filter(|c| c.model.is_none()).map(|c| c.until).chain(q.blocked_until(now)).max();
        if a.is_active() {
            match blocked {
                None => serving += 1,
                Some(t) => back_at = Some(back_at.map_or(t, |b| b.min(t))),
            }
        }
        let resets = [q.primary_reset_at, q.secondary_reset_at].into_iter().flatten().filter(|&r| r > now);
        soonest_reset = resets.chain(soonest_reset).min();
        in_flight += a.in_flight();
    }
    let used = |x: &Value| x["used"].as_f64().unwrap_or(0.0);
    near.sort_by(|a, b| used(b).total_cmp(&used(a)));
    let totals = dash.app.metrics.as_ref().map(|m| m.totals());
    // The team store as the change watcher last found it (as `/ready` and `codex_gateway_store_up` report it);
    // `null` without one.
    let store = match dash.app.pool.store().health() {
        StoreHealth::Local => None,
        StoreHealth::Team { reachable: true, .. } => Some("reachable"),
        StoreHealth::Team { reachable: false, .. } => Some("unreachable"),
    };
    json!({
        "now": now,
        "store": store,
        "accounts_total": accounts.len(),
        "accounts_serving": serving,
        "soonest_reset": soonest_reset,
        "next_back": back_at,
        "active_streams": crate::metrics::streams::open_streams(),
        "in_flight": in_flight,
        "metrics": totals.is_some(),
        "totals": totals.unwrap_or_default(),
        "strategy": dash.app.pool.strategy().as_str(),
        "near_limit": near,
        "quota": limits,
    })
}

/// `GET /dashboard`: Overview.
pub(crate) async fn overview(State(dash): State<St>, PageAccess(a): PageAccess) -> Response {
    let (o, forecast) = (overview_data(&dash), super::forecast::forecast_data(&dash));
    let extra = json!({"o": o, "forecast": forecast, "day": super::ledger::overview_extras(&dash).await});
    page(&dash, a, "Overview", "overview", extra)
}

/// `GET /dashboard/api/overview`: the same numbers, for the page's live update.
pub(crate) async fn overview_json(State(dash): State<St>, _: ApiRead) -> Response {
    json_response(StatusCode::OK, overview_data(&dash))
}

/// `GET /dashboard/accounts`.
pub(crate) async fn accounts(State(dash): State<St>, PageAccess(a): PageAccess) -> Response {
    let now = now_unix();
    let named = |acc: &std::sync::Arc<crate::accounts::Account>| {
        let mut v = acc.summary(now);
        // The name shown: the label, else the email, else the id.
        v["name"] = acc.display_name().into();
        v
    };
    let list: Vec<Value> = dash.app.pool.accounts().iter().map(named).collect();
    let (limits, issuer) = (*dash.quota.read(), &dash.app.config.auth_issuer);
    let extra = json!({"accounts": list, "now": now, "limits": limits, "issuer": issuer});
    page(&dash, a, "Accounts", "accounts", extra)
}

#[derive(Deserialize)]
pub(crate) struct SetupQuery {
    model: Option<String>,
    /// The client key to preselect (its id).
    key: Option<String>,
}

/// `GET /dashboard/setup?model=`: a snippet per client, filled with this gateway's address and a model.
pub(crate) async fn setup(
    State(dash): State<St>,
    PageAccess(a): PageAccess,
    headers: HeaderMap,
    Query(q): Query<SetupQuery>,
) -> Response {
    let models: Vec<String> = dash.app.catalog.entries().await.iter().map(|e| e.slug.clone()).collect();
    let model = q.model.filter(|m| models.contains(m)).or_else(|| models.first().cloned()).unwrap_or_default();
    // Keys that can still be used, by name and prefix: their secrets are not kept, so the snippets show the
    // prefix unless the page's script holds the secret of a key created in this browser tab.
    let now = now_unix();
    let member = a.who.user().filter(|u| u.role == crate::users::Role::Member);
    let keys: Vec<Value> = match dash.app.keys.store().list_keys() {
        Ok(rows) => rows
            .iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))
            // A member sets up clients with their own keys, and sees no one else's.
            .filter(|k| member.is_none_or(|u| k.owner.as_deref() == Some(u.id.as_str())))
            .map(|k| json!({"id": k.id, "name": k.name, "prefix": k.prefix, "models": k.models}))
            .collect(),
        Err(e) => {
            tracing::error!("dashboard setup: the key list: {e:#}");
            Vec::new()
        }
    };
    let chosen = q.key.filter(|id| keys.iter().any(|k| k["id"] == id.as_str()));
    let base_url = setup::base_url(&headers, &dash.app.config);
    let ollama = &dash.app.config.ollama;
    let ollama_url = ollama.enabled.then(|| format!("http://{}", ollama.listen));
    let clients = setup::clients(&base_url, &model, ollama_url.as_deref(), dash.app.config.inbound_ws.enabled);
    let extra = json!({
        "models": models,
        "model": model,
        "base_url": base_url,
        "ollama_url": ollama_url,
        "keys": keys,
        "chosen_key": chosen,
        "open": dash.app.config.api_keys.is_empty(),
        "clients": clients,
    });
    page(&dash, a, "Setup", "setup", extra)
}
