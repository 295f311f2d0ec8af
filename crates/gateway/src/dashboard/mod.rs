//! The web dashboard at `/dashboard` (docs/dashboard.md): server-rendered pages (minijinja templates embedded
//! in the binary, `templates/`), a little JavaScript and CSS (`assets/`), and the JSON calls the pages make,
//! beside the JSON admin API (server/admin/) and on the same layers. The request guard (server/guard.rs) lets
//! `/dashboard` paths through without the client key: the gate (`session.rs`) and the roles (`access.rs`) decide.

// Handlers return `Result<_, Response>` for early exits ([`Answer`]); the large error variant is fine here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::config::Config;
use crate::users::access::Action::*;
use crate::users::table::{Audit, RouteEntry, RouteTable};

pub(crate) mod access;
mod actions;
pub(crate) mod audit;
mod forecast;
mod keys;
mod ledger;
mod logins;
mod oauth;
mod pages;
mod prices;
mod session;
mod settings;
mod setup;
pub(crate) mod signin;
mod sso;
mod users;

pub(crate) use session::cookie;
pub use session::{LOGIN_DELAY, SESSION_COOKIE};

/// A path the dashboard serves (the guard skips the client key for these: the dashboard has its own gate).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// What every dashboard handler shares.
pub(crate) struct Dash {
    pub app: Arc<AppState>,
    pub sessions: session::Sessions,
    pub logins: logins::Jobs,
    /// The single sign-on provider of `[dashboard.oidc]` (none: password and admin key only).
    pub sso: Option<crate::users::oidc::Provider>,
    /// The quota warning thresholds in force (Settings change them at once).
    pub quota: parking_lot::RwLock<crate::config::QuotaThresholds>,
    /// Compiled at the first page a browser asks for, not at start: a gateway nobody opens the dashboard of
    /// keeps neither the compiled templates nor the template compiler's pages in memory (idle RSS).
    templates: std::sync::OnceLock<minijinja::Environment<'static>>,
}

pub(crate) type St = Arc<Dash>;

/// The dashboard's routes (none when `[dashboard] enabled = false`).
pub fn routes(app: Arc<AppState>) -> Router<Arc<AppState>> {
    if !app.config.dashboard.enabled {
        return Router::new();
    }
    let dash = Arc::new(Dash {
        sso: sso_provider(&app.config),
        sessions: session::Sessions::new(app.config.dashboard.session),
        logins: logins::Jobs::default(),
        quota: parking_lot::RwLock::new(app.config.dashboard.quota),
        templates: std::sync::OnceLock::new(),
        app,
    });
    // Inside the audit layer: a refusal by role is recorded as any other answer.
    let layers = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(dash.app.pool.store().clone(), crate::users::trail::layer))
        .layer(axum::middleware::from_fn_with_state(dash.clone(), access::layer));
    table().into_router(layers).with_state(dash)
}

/// The provider of `[dashboard.oidc]`, reached with the gateway's HTTP client settings (proxy, CA bundle).
fn sso_provider(config: &Config) -> Option<crate::users::oidc::Provider> {
    let oidc = config.dashboard.oidc.clone()?;
    // Never HTTP/2 prior knowledge (`upstream_h2c` is for the upstream, not for a sign-in provider).
    let mut plain = config.clone();
    plain.upstream_h2c = false;
    match crate::upstream::build_http_client(&plain) {
        Ok(http) => Some(crate::users::oidc::Provider::new(oidc, http)),
        Err(e) => {
            tracing::error!("dashboard: single sign-on is off: {e:#}");
            None
        }
    }
}

/// Every dashboard route, its action and audit name (the access table test walks them: server/access_table.rs),
/// and the pages of the main navigation, in its order.
pub(crate) fn table() -> RouteTable<St> {
    RouteTable::new()
        .page("/dashboard", Overview, ("overview", "Overview"), pages::overview)
        .page("/dashboard/accounts", AccountsRead, ("accounts", "Accounts"), pages::accounts)
        .page("/dashboard/keys", KeysRead, ("keys", "Keys"), keys::page)
        .page("/dashboard/usage", UsageRead, ("usage", "Usage"), ledger::usage_page)
        .page("/dashboard/requests", RequestsRead, ("requests", "Requests"), ledger::requests_page)
        .page("/dashboard/setup", Setup, ("setup", "Setup"), pages::setup)
        .page("/dashboard/settings", SettingsRead, ("settings", "Settings"), settings::page)
        .page("/dashboard/users", UsersRead, ("users", "Users"), users::page)
        .page("/dashboard/audit", AuditRead, ("audit", "Audit"), audit::page)
        .get("/dashboard/login", Public, session::login_page)
        .post("/dashboard/login", Public, "dashboard.login", session::login)
        .post("/dashboard/logout", OwnSession, "dashboard.logout", session::logout)
        // Single sign-on: its start and the provider's answer need no session (sso.rs).
        .get("/dashboard/sso/start", Public, sso::start)
        .get("/dashboard/sso/callback", Public, sso::callback)
        .get("/dashboard/assets/{name}", Public, asset)
        .get("/dashboard/api/overview", Overview, pages::overview_json)
        .get("/dashboard/api/accounts/export", AccountsExport, actions::export)
        .post("/dashboard/api/accounts/add", AccountsWrite, "account.add", actions::add)
        .post(
            "/dashboard/api/accounts/{id}/{action}",
            AccountsWrite,
            Audit::ByParam("action", account_action),
            actions::act,
        )
        .post("/dashboard/api/login/{flow}", AccountsWrite, Audit::ByParam("flow", login_flow), logins::start)
        .get("/dashboard/api/login/job/{job}", AccountsWrite, logins::status)
        .post("/dashboard/api/login/job/{job}/paste", AccountsWrite, "account.login_paste", logins::paste)
        .post("/dashboard/api/settings", SettingsWrite, "settings.save", settings::save)
        .get("/dashboard/api/usage.csv", UsageRead, ledger::usage_csv)
        .get("/dashboard/api/requests.csv", RequestsRead, ledger::requests_csv)
        .post("/dashboard/api/keys", KeysWrite, "key.create", keys::create)
        .post("/dashboard/api/keys/{id}", KeysUpdate, "key.update", keys::update)
        .post("/dashboard/api/keys/{id}/revoke", KeysWrite, "key.revoke", keys::revoke)
        .post("/dashboard/api/users", UsersWrite, "user.create", users::create)
        .post("/dashboard/api/users/{id}", UsersWrite, "user.update", users::update)
        .post("/dashboard/api/users/{id}/{action}", UsersWrite, Audit::ByParam("action", user_action), users::act)
        // The Codex CLI's sign-in (oauth/): the pages that give the CLI a token need a session that may use the
        // models; its token and device endpoints answer the CLI, which has none. Their handlers name their entries.
        .get("/dashboard/oauth/authorize", Models, oauth::authorize)
        .get("/dashboard/oauth/device", Models, oauth::device_page)
        .post("/dashboard/api/oauth/device", Models, Audit::ByHandler, oauth::device_decide)
        .post("/dashboard/oauth/token", Public, Audit::ByHandler, oauth::token)
        .post("/dashboard/oauth/device/code", Public, Audit::ByHandler, oauth::device_code)
}

/// The pages of the main navigation, as the table declares them.
pub(crate) fn nav() -> &'static [RouteEntry] {
    static NAV: std::sync::OnceLock<Vec<RouteEntry>> = std::sync::OnceLock::new();
    NAV.get_or_init(|| table().entries().filter(|e| e.nav.is_some()).cloned().collect())
}

/// The audit name of an account action (the admin API's names where it is the same change).
fn account_action(action: &str) -> String {
    match action {
        "clear_cooldowns" => "account.cooldowns_clear".into(),
        "release_holds" => "account.holds_release".into(),
        a @ ("enable" | "disable" | "label" | "policy" | "proxy" | "check" | "refresh" | "remove") => {
            format!("account.{a}")
        }
        // Not an action (actions.rs answers 404): the path's text is the caller's, not a name to keep.
        _ => "account.unknown_action".into(),
    }
}

/// The audit name of a login started.
fn login_flow(flow: &str) -> String {
    match flow {
        f @ ("device" | "browser" | "paste") => format!("account.login_start.{f}"),
        _ => "account.login_start.unknown".into(),
    }
}

/// The audit name of a user action.
fn user_action(action: &str) -> String {
    let name = match action {
        "password" => "user.password",
        "totp" => "user.totp_enrol",
        "totp_remove" => "user.totp_remove",
        "unlock" => "user.unlock",
        "remove" => "user.remove",
        _ => "user.unknown_action",
    };
    name.into()
}

fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Names end in `.html`, so minijinja escapes every value for HTML (a label `<script>` shows as text).
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("no_credential.html", include_str!("templates/no_credential.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("accounts.html", include_str!("templates/accounts.html")),
        ("setup.html", include_str!("templates/setup.html")),
        ("cards.html", include_str!("templates/cards.html")),
        ("keys.html", include_str!("templates/keys.html")),
        ("usage.html", include_str!("templates/usage.html")),
        ("requests.html", include_str!("templates/requests.html")),
        ("settings.html", include_str!("templates/settings.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("users.html", include_str!("templates/users.html")),
        ("refused.html", include_str!("templates/refused.html")),
        ("oauth.html", include_str!("templates/oauth.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // The templates are part of the binary; a broken one is caught by the tests that render each page.
            tracing::error!("dashboard template {name}: {e}");
        }
    }
    env
}

impl Dash {
    /// Render a template into an HTML answer with the dashboard's security headers.
    pub fn render(&self, name: &str, ctx: Value) -> Response {
        match self.templates.get_or_init(templates).get_template(name).and_then(|t| t.render(&ctx)) {
            Ok(html) => html_response(StatusCode::OK, html),
            Err(e) => {
                tracing::error!("dashboard template {name}: {e:#}");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><title>Error</title><p>The page could not be rendered; see the gateway's log.</p>"
                        .into(),
                )
            }
        }
    }
}

/// HTML with headers that keep the page from being framed, sniffed, cached or running foreign script.
pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    // No inline script or style; the Setup page's tests may call the Ollama bridge on another loopback port.
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self' http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; \
               form-action 'self'; base-uri 'none'";
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (status, headers, html).into_response()
}

/// A JSON answer of the dashboard's calls (never cached).
pub(crate) fn json_response(status: StatusCode, v: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response()
}

/// An error for the page's script to show in place: `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({"error": message.into()}))
}

/// A failure of the gateway's own (the store, a reload): its cause logged under `what`, the page told `message`.
pub(crate) fn failed(what: &str, e: impl std::fmt::Display, message: &'static str) -> Response {
    tracing::error!("dashboard {what}: {e:#}");
    json_error(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// A handler's answer, its refusals returned early with `?`.
pub(crate) type Answer = Result<Response, Response>;

/// A JSON body, or 400 with `what` and why it could not be read.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("{what}: {e}")))
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The embedded assets (public: they hold nothing secret, and the login page needs them).
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, ct) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    // Versioned by the binary: a restart may change them, so keep caches short.
    let cache = "private, max-age=300";
    ([(header::CONTENT_TYPE, ct), (header::X_CONTENT_TYPE_OPTIONS, "nosniff"), (header::CACHE_CONTROL, cache)], body)
        .into_response()
}
