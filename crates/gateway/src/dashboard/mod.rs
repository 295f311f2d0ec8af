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
use crate::users::table::RouteTable;

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
    table()
        .into_router()
        // Inside the audit layer: a refusal by role is recorded as any other answer.
        .route_layer(axum::middleware::from_fn_with_state(dash.clone(), access::layer))
        .route_layer(axum::middleware::from_fn_with_state(dash.clone(), audit::layer))
        .with_state(dash)
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

/// Every dashboard route, listed as registered (the access table test walks them: server/access_table.rs).
pub(crate) fn table() -> RouteTable<St> {
    RouteTable::new()
        .get("/dashboard", pages::overview)
        .get("/dashboard/accounts", pages::accounts)
        .get("/dashboard/keys", keys::page)
        .get("/dashboard/usage", ledger::usage_page)
        .get("/dashboard/requests", ledger::requests_page)
        .get("/dashboard/setup", pages::setup)
        .get("/dashboard/settings", pages::settings)
        .get("/dashboard/audit", audit::page)
        .get("/dashboard/users", users::page)
        .get("/dashboard/login", session::login_page)
        .post("/dashboard/login", session::login)
        .post("/dashboard/logout", session::logout)
        .get("/dashboard/sso/start", sso::start)
        .get("/dashboard/sso/callback", sso::callback)
        .get("/dashboard/assets/{name}", asset)
        .get("/dashboard/api/overview", pages::overview_json)
        .get("/dashboard/api/accounts/export", actions::export)
        .post("/dashboard/api/accounts/add", actions::add)
        .post("/dashboard/api/accounts/{id}/{action}", actions::act)
        .post("/dashboard/api/login/{flow}", logins::start)
        .get("/dashboard/api/login/job/{job}", logins::status)
        .post("/dashboard/api/login/job/{job}/paste", logins::paste)
        .post("/dashboard/api/settings", settings::save)
        .get("/dashboard/api/usage.csv", ledger::usage_csv)
        .get("/dashboard/api/requests.csv", ledger::requests_csv)
        .post("/dashboard/api/keys", keys::create)
        .post("/dashboard/api/keys/{id}", keys::update)
        .post("/dashboard/api/keys/{id}/revoke", keys::revoke)
        .post("/dashboard/api/users", users::create)
        .post("/dashboard/api/users/{id}", users::update)
        .post("/dashboard/api/users/{id}/{action}", users::act)
        .get("/dashboard/oauth/authorize", oauth::authorize)
        .get("/dashboard/oauth/device", oauth::device_page)
        .post("/dashboard/api/oauth/device", oauth::device_decide)
        .post("/dashboard/oauth/token", oauth::token)
        .post("/dashboard/oauth/device/code", oauth::device_code)
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
