//! The dashboard's gate: the admin credential (`Config::admin_keys`) exchanged for a session cookie
//! (HttpOnly, SameSite=Strict, Secure behind TLS), a CSRF token per session that every state-changing call
//! carries (`X-CSRF-Token`), a delay after each failed login served to that attempt alone and a limit per client
//! address (signin.rs, users/limits.rs: no attempt waits on another), logout, and the session lifetime
//! (`[dashboard] session_hours`).
//!
//! With `[dashboard] loopback_without_login = true`, a request to a loopback-bound gateway by a loopback name
//! gets a session without logging in (still with its CSRF token). With no admin credential and no user at all,
//! the pages say how to set one instead of opening unprotected.
//!
//! A user's session (users/, opened by signin.rs) is kept in the store, not here: its cookie is the session
//! token (`cgs_...`), looked up in the users' registry, which every instance of a team re-reads when one of them
//! ends it. Who a session is ([`Principal`]) carries its role to the access layer (access.rs) and its actor to
//! the audit trail. Handlers name the gate they pass as an extractor ([`PageAccess`], [`ApiRead`], [`ApiWrite`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;

use super::signin::{Surface, refused, succeeded};
use super::{St, json_error, json_response};
use crate::audit::Actor;
use crate::hosts::{host_name, is_loopback_name};
use crate::users::{Principal, SESSION_PREFIX, blocking, ct_eq, random_token};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cgw_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
const LOGIN_COOKIE: &str = "cgw_login";
/// How long a failed login waits before it answers by default (`[dashboard.attempts] failure_delay_ms`).
pub const LOGIN_DELAY: Duration = crate::users::SIGN_IN_DELAY;
/// Sessions kept at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 256;

struct Session {
    csrf: String,
    expires: Instant,
    /// How it was opened (the admin key's login, or loopback): the actor of its changes in the audit trail.
    opened: Principal,
}

pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    pub(super) lifetime: Duration,
}

/// A request the gate let through.
pub(crate) struct Authed {
    pub csrf: String,
    /// Who the session is: their role, and the actor of their changes in the audit trail.
    pub who: Principal,
    /// A cookie to set (a session made without a login, on loopback when configured).
    set_cookie: Option<HeaderValue>,
}

impl Authed {
    /// Put the session cookie on `resp` when this request made a session.
    pub fn finish(self, resp: Response) -> Response {
        with_cookies(resp, self.set_cookie)
    }
}

/// Compare with every admin credential (`Config::admin_keys`: created client keys never log in), without stopping
/// at the first match.
fn is_admin(config: &crate::config::Config, presented: &str) -> bool {
    config.admin_keys().iter().fold(false, |ok, k| ok | ct_eq(k, presented))
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), lifetime }
    }

    fn create(&self, opened: Principal) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + self.lifetime, opened });
        (id, csrf)
    }

    fn csrf_of(&self, id: &str) -> Option<(String, Principal)> {
        let mut map = self.map.lock();
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some((s.csrf.clone(), s.opened.clone())),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }
}

/// A cookie's value from the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request reached the gateway over TLS (a TLS-terminating proxy says so in `X-Forwarded-Proto`).
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

pub(super) fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> HeaderValue {
    cookie_with(headers, name, value, max_age, "Path=/dashboard; HttpOnly; SameSite=Strict")
}

/// `resp` with `cookies` set.
pub(super) fn with_cookies(mut resp: Response, cookies: impl IntoIterator<Item = HeaderValue>) -> Response {
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// A cookie with `attributes`, `Secure` behind TLS.
pub(super) fn cookie_with(
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: Duration,
    attributes: &str,
) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let c = format!("{name}={value}; {attributes}; Max-Age={}{secure}", max_age.as_secs());
    // Tokens are base64url, addresses percent-encoded: always a valid header value.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("cgw_invalid=1"))
}

/// Why the gate stopped a request.
enum Denied {
    /// Not logged in.
    Login,
    /// No admin credential is configured: nobody can log in.
    NoCredential,
}

/// Who is asking: a session, a new one on loopback when configured, or nobody.
fn gate(dash: &St, headers: &HeaderMap) -> Result<Authed, Denied> {
    if let Some((csrf, who)) = session_of(dash, headers) {
        return Ok(Authed { csrf, who, set_cookie: None });
    }
    if loopback_open(dash, headers) {
        let (id, csrf) = dash.sessions.create(Principal::DashboardLoopback);
        let set_cookie = Some(set_cookie(headers, SESSION_COOKIE, &id, dash.sessions.lifetime));
        return Ok(Authed { csrf, who: Principal::DashboardLoopback, set_cookie });
    }
    if nobody_can_log_in(dash) { Err(Denied::NoCredential) } else { Err(Denied::Login) }
}

/// The session the request's cookie names: an admin key's or loopback one (kept here), or a user's
/// (users/, in the store); its CSRF token and who it is.
fn session_of(dash: &St, headers: &HeaderMap) -> Option<(String, Principal)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    if id.starts_with(SESSION_PREFIX) {
        let signed = dash.app.users.session(id)?;
        return Some((signed.csrf.clone(), Principal::User(signed)));
    }
    dash.sessions.csrf_of(id)
}

/// `[dashboard] loopback_without_login` applies to this request.
fn loopback_open(dash: &St, headers: &HeaderMap) -> bool {
    let c = &dash.app.config;
    let loopback_host =
        headers.get(header::HOST).and_then(|h| h.to_str().ok()).is_some_and(|h| is_loopback_name(host_name(h)));
    c.dashboard.loopback_without_login && c.listen.ip().is_loopback() && loopback_host
}

/// No admin credential, no user and no single sign-on: the pages say how to set one up.
fn nobody_can_log_in(dash: &St) -> bool {
    dash.app.config.admin_keys().is_empty() && !dash.app.users.any() && dash.sso.is_none()
}

/// Who the request is without opening a session (the access layer's question, dashboard/access.rs): a session,
/// or the loopback visitor a session would be opened for. A user's session this instance has not seen yet (made
/// on another instance of a team) is looked up in the store first.
pub(crate) async fn who(dash: &St, headers: &HeaderMap) -> Option<Principal> {
    if let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| id.starts_with(SESSION_PREFIX)) {
        // Remembered by the registry when found, so the handler's gate finds it too.
        if let Some(signed) = dash.app.users.resolve(id).await {
            return Some(Principal::User(signed));
        }
    }
    if let Some((_, who)) = session_of(dash, headers) {
        return Some(who);
    }
    loopback_open(dash, headers).then_some(Principal::DashboardLoopback)
}

/// A page's visitor the gate let in: as an extractor, a request without a session gets the login redirect (or
/// the no-credential page) before the handler runs. The handler puts [`Authed`]'s cookie on its page
/// ([`Authed::finish`]).
pub(crate) struct PageAccess(pub Authed);

impl FromRequestParts<St> for PageAccess {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &St) -> Result<Self, Response> {
        match gate(dash, &parts.headers) {
            Ok(a) => Ok(PageAccess(a)),
            Err(Denied::Login) => Err(Redirect::to("/dashboard/login").into_response()),
            Err(Denied::NoCredential) => Err(no_credential(dash)),
        }
    }
}

/// A JSON call that reads: a session. A refusal is the dashboard's JSON error, for the page's script to show.
pub(crate) struct ApiRead;

impl FromRequestParts<St> for ApiRead {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &St) -> Result<Self, Response> {
        api_gate(dash, &parts.headers).map(|_| ApiRead)
    }
}

/// A JSON call that changes state: a session and its CSRF token (`X-CSRF-Token`); who the session is.
pub(crate) struct ApiWrite(pub Principal);

impl FromRequestParts<St> for ApiWrite {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &St) -> Result<Self, Response> {
        let authed = api_gate(dash, &parts.headers)?;
        let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ct_eq(sent, &authed.csrf) {
            return Err(json_error(StatusCode::FORBIDDEN, "Missing or wrong CSRF token: reload the page."));
        }
        Ok(ApiWrite(authed.who))
    }
}

/// Who a request's session is, without opening one (`None`: no session yet).
pub(crate) fn actor_of(dash: &St, headers: &HeaderMap) -> Option<Actor> {
    session_of(dash, headers).map(|(_, who)| who.actor())
}

/// The gate for a JSON call: 401 without a session.
fn api_gate(dash: &St, headers: &HeaderMap) -> Result<Authed, Response> {
    gate(dash, headers).map_err(|d| match d {
        Denied::Login => json_error(StatusCode::UNAUTHORIZED, "Not logged in: open /dashboard/login."),
        Denied::NoCredential => {
            json_error(StatusCode::UNAUTHORIZED, "No admin key is set: see /dashboard for how to set one.")
        }
    })
}

fn no_credential(dash: &St) -> Response {
    let ctx = json!({
        "title": "Set an admin key",
        "config_file": dash.app.config.config_file.display().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (StatusCode::SERVICE_UNAVAILABLE, dash.render("no_credential.html", ctx)).into_response()
}

/// A return address after the login (`?next=`), when it is a page of the dashboard itself: never another site
/// (`//host`, a backslash, a scheme), so the login cannot be used to send a browser elsewhere.
pub(crate) fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with("/dashboard/")
            && !n.contains("//")
            && !n.contains('\\')
            && n.len() <= 4096
            && !n.bytes().any(|b| b.is_ascii_control())
    })
}

/// `GET /dashboard/login[?next=/dashboard/...]`.
pub(crate) async fn login_page(
    State(dash): State<St>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match gate(&dash, &headers) {
        Ok(a) => {
            let home = crate::users::access::home(a.who.role());
            let to = safe_next(q.get("next").map(String::as_str)).unwrap_or(home);
            a.finish(Redirect::to(to).into_response())
        }
        Err(Denied::NoCredential) => no_credential(&dash),
        Err(Denied::Login) => login_form(&dash, &headers, None),
    }
}

/// The login page's forms (and its CSRF cookie), with `sso_error` shown above them when a single sign-on was
/// refused (sso.rs).
pub(super) fn login_form(dash: &St, headers: &HeaderMap, sso_error: Option<&str>) -> Response {
    let csrf = random_token();
    let ctx = json!({
        "title": "Log in",
        "csrf": csrf,
        "version": env!("CARGO_PKG_VERSION"),
        // Users sign in with a name and password; the admin key stays the break-glass way in.
        "users": dash.app.users.any(),
        "admin_key": !dash.app.config.admin_keys().is_empty(),
        // "Sign in with <display_name>" (`[dashboard.oidc]`).
        "sso": dash.sso.as_ref().map(|p| p.config.display_name.clone()),
        "sso_error": sso_error,
    });
    with_cookies(dash.render("login.html", ctx), [set_cookie(headers, LOGIN_COOKIE, &csrf, Duration::from_secs(3600))])
}

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    /// The admin key; or a user's name and password (and one-time code), below.
    key: Option<String>,
    name: Option<String>,
    password: Option<String>,
    code: Option<String>,
    csrf: String,
    /// Where to go once signed in (the page's `?next=`, checked by [`safe_next`]).
    next: Option<String>,
}

/// `POST /dashboard/login` `{"key", "csrf"}` or `{"name", "password", "code"?, "csrf"}`: a session cookie, or
/// 401 after [`LOGIN_DELAY`], or 429 while the client address or the name must wait (signin.rs).
pub(crate) async fn login(
    State(dash): State<St>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    body: axum::body::Bytes,
) -> Response {
    let source = crate::audit::source_of(&ext);
    let Ok(b) = serde_json::from_slice::<LoginBody>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "Send {\"key\": ..., \"csrf\": ...} or {\"name\", \"password\", \"csrf\"} as JSON.",
        );
    };
    if !cookie(&headers, LOGIN_COOKIE).is_some_and(|c| ct_eq(c, &b.csrf)) {
        return json_error(StatusCode::FORBIDDEN, "The login form expired: reload the page.");
    }
    if let (Some(name), Some(password)) = (&b.name, &b.password) {
        let next = safe_next(b.next.as_deref());
        let login = (name.as_str(), password.as_str(), b.code.as_deref());
        return super::signin::user_login(&dash, &headers, source.as_deref(), login, next).await;
    }
    let Some(key) = b.key else {
        return json_error(StatusCode::BAD_REQUEST, "Send the admin key, or a user name and password.");
    };
    if dash.app.config.admin_keys().is_empty() {
        return json_error(StatusCode::UNAUTHORIZED, "No admin key is set: sign in with a user name and password.");
    }
    // Counted against the client address as a password is (signin.rs); a failure waits alone, holding nothing.
    let started = std::time::Instant::now();
    let addresses = &dash.app.users.guards.sign_in_addresses;
    let charge = match addresses.admit(crate::users::limits::address_key(source.as_deref()), started) {
        Ok(charge) => charge,
        Err(wait) => {
            let in_burst = refused(&dash.app, Surface::Password, source.as_deref(), None, wait.reason()).await;
            return (in_burst, super::signin::too_many(&wait)).into_response();
        }
    };
    if !is_admin(&dash.app.config, key.trim()) {
        tracing::warn!("dashboard: a login with a wrong admin key was refused");
        let in_burst = refused(&dash.app, Surface::Password, source.as_deref(), None, "wrong_admin_key").await;
        super::signin::failure_delay(&dash.app, started).await;
        return (in_burst, json_error(StatusCode::UNAUTHORIZED, "Wrong admin key.")).into_response();
    }
    addresses.refund(charge);
    succeeded(&dash.app, Surface::Password, source.as_deref()).await;
    let (id, _) = dash.sessions.create(Principal::DashboardAdminKey);
    let resp = logged_in(&headers, &id, dash.sessions.lifetime, safe_next(b.next.as_deref()).unwrap_or("/dashboard"));
    // The audit trail's actor when the request came without a session (access.rs).
    (axum::Extension(Principal::DashboardAdminKey), resp).into_response()
}

/// The answer to a login that worked: the session cookie, the login form's cookie cleared.
pub(super) fn logged_in(headers: &HeaderMap, id: &str, lifetime: Duration, next: &str) -> Response {
    let cookies =
        [set_cookie(headers, SESSION_COOKIE, id, lifetime), set_cookie(headers, LOGIN_COOKIE, "", Duration::ZERO)];
    with_cookies(json_response(StatusCode::OK, json!({"ok": true, "next": next})), cookies)
}

/// `POST /dashboard/logout` (with the CSRF token): the session ends.
pub(crate) async fn logout(State(dash): State<St>, ApiWrite(who): ApiWrite, headers: HeaderMap) -> Response {
    if let Principal::User(signed) = who {
        // Ended in the store: every instance refuses it from its next re-read.
        let users = dash.app.users.clone();
        if let Err(e) = blocking("sign-out", move || users.sign_out(&signed)).await {
            tracing::warn!("dashboard: a session could not be ended in the store: {e:#}");
        }
    } else if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        dash.sessions.map.lock().remove(id);
    }
    let resp = Json(json!({"ok": true, "next": "/dashboard/login"})).into_response();
    with_cookies(resp, [set_cookie(&headers, SESSION_COOKIE, "", Duration::ZERO)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; cgw_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "cgw_login"), None);
    }

    #[test]
    fn secure_only_behind_tls() {
        let mut h = HeaderMap::new();
        assert!(!set_cookie(&h, "x", "v", LOGIN_DELAY).to_str().unwrap_or_default().contains("Secure"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let c = set_cookie(&h, "x", "v", LOGIN_DELAY);
        let c = c.to_str().unwrap_or_default();
        assert!(c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    }
}
