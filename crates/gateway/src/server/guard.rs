//! The request-head guard of both listeners (the main port and the Ollama bridge), run before routing: the
//! `Host` check against DNS rebinding, the `Origin` check against cross-site pages, the refusal of
//! browser-simple content types (a page's way around the CORS preflight), the client key, and the admin key on
//! `/admin/*` and `/metrics`. docs/security.md explains the threat model; server/listen.rs puts a [`Guard`] in front of
//! the router for each request. A created client key (keys/) that passes travels on as a [`Caller`] extension, for
//! the handler's limits.
//!
//! It runs on every request of the hot path, so it is a synchronous look at the request head: a few header
//! lookups and byte comparisons, no allocation when the request passes, and a future that is either the inner
//! service's own or a ready refusal (no boxing, unlike `axum::middleware::from_fn` or a router layer). Only a Codex
//! CLI token this instance has not seen yet (another instance issued it) pays for a boxed look-up (guard/token.rs).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};
use axum::response::Response;
use dialects::{ErrorKind, GatewayError};
use futures_util::future::Either;
use tower::Service;

use crate::app::reload::SharedKeys;
use crate::app::{AppState, request_id};
use crate::hosts::{host_name, is_loopback_name, is_loopback_origin};
use crate::keys::{Caller, Keys, Standing};
use crate::record::{Api, Recorder, Sinks};
use crate::server::dialect::Shape;
use crate::server::errors::{error_response, error_response_with_status};
use crate::server::gemini;
use crate::server::routes::shape_of;
use crate::users::ct_eq;

mod token;

/// Who may talk to one listener. Built once at start-up from the configuration.
#[derive(Debug)]
pub struct Policy {
    /// The listener is bound to a loopback address: only loopback names and `allowed_hosts` pass the `Host`
    /// check. Elsewhere any `Host` passes unless `allowed_hosts` is set.
    loopback_bind: bool,
    /// Lower case, without port; `*` accepts any.
    allowed_hosts: Box<[String]>,
    /// The address the listener is bound to, as a `Host` names it (`192.168.1.5`, `[fd00::5]`): always allowed,
    /// since a page can only send it from that very address. `None` for unspecified addresses (0.0.0.0, [::]).
    bind_host: Option<String>,
    /// Lower case `scheme://host[:port]`.
    allowed_origins: Box<[String]>,
    /// Balancers whose `X-Forwarded-For` names the client (forwarded.rs).
    trusted_proxies: Box<[ipnet::IpNet]>,
    /// The configured keys (`api_keys`, the admin key): replaced whole by a config reload (app/reload.rs),
    /// read once per request (one `ArcSwap` load).
    shared: Arc<ArcSwap<SharedKeys>>,
    /// Keys the admin created, with limits (none on a policy built without them).
    created: Option<Arc<Keys>>,
    /// People who sign in (users/): their session tokens go on to the admin API's layer, which checks them.
    users: Option<Arc<crate::users::Users>>,
    /// `[oauth] header`: where the Codex CLI sends a user's token (oauth/), checked here on the model routes.
    token_header: Option<header::HeaderName>,
    /// `[metrics] public`: `/metrics` needs no key (a scraper on a private network).
    metrics_public: bool,
    /// `[metrics] scrape_key`: a key for `/metrics` alone (server/scrape.rs).
    scrape_key: Option<Box<str>>,
    listener: Listener,
    /// The error shape of a refusal, by path: the listener's routes decide (routes.rs `shape_of` on the main
    /// port; the bridge's own).
    shape_of: fn(&str) -> Shape,
    /// Where a refusal's request record goes (none on a policy built without them).
    records: Option<Sinks>,
}

/// Which listener a policy guards: decides which keys it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    Main,
    OllamaBridge,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An HTTP/1.1 request without `Host`, or any request with two (RFC 9112 §3.2: 400).
    HostMissingOrRepeated,
    /// A `Host` that is neither a loopback name nor in `allowed_hosts` (DNS rebinding).
    Host,
    /// A browser `Origin` that is neither loopback nor in `allowed_origins` (a cross-site page).
    Origin,
    /// A browser POST with a form or text content type (would skip the CORS preflight).
    ContentType,
    /// No client key presented.
    MissingKey,
    /// A wrong client key, or `?key=` off the Gemini routes.
    WrongKey,
    /// A created key that was revoked.
    KeyRevoked,
    /// A created key past its expiry.
    KeyExpired,
    /// A client key (shared or created) on `/admin/*` or `/metrics`, which need the admin key.
    NotAdmin,
    /// `/admin/*` while client keys were created but no admin credential is configured.
    AdminKeyUnset,
    /// A Codex CLI token (oauth/) that is unknown, expired or revoked, or whose user was disabled or removed.
    TokenInvalid,
    /// A Codex CLI token whose user's role may not use the models (users/access.rs).
    RoleForbidden,
}

impl Policy {
    /// The main port's policy, with the configured keys of `state.live` (which a reload replaces), and its users
    /// (users/): their session tokens are let through to the admin API, whose layer checks them, and the admin
    /// API is no longer open while users exist.
    pub fn main(state: &AppState) -> Policy {
        let mut p = Policy::new(state, state.config.listen.ip(), Listener::Main);
        p.shared = state.live.shared_keys.clone();
        p.users = Some(state.users.clone());
        p.metrics_public = state.config.metrics.public;
        p.scrape_key = state.config.metrics.scrape_key.as_deref().map(Box::from);
        p
    }

    /// The Ollama bridge's: the same host and origin lists, and no client key (Ollama clients send none). A
    /// created key that is presented is still honoured (its limits, revocation and expiry apply). Refusals take
    /// `shape_of` the path (the bridge's routes).
    pub fn ollama_bridge(state: &AppState, shape_of: fn(&str) -> Shape) -> Policy {
        let mut p = Policy::new(state, state.config.ollama.listen.ip(), Listener::OllamaBridge);
        p.shape_of = shape_of;
        p
    }

    /// With the created keys, and the state's sinks for the refusals' records (the access log and whatever the
    /// state adds).
    fn new(state: &AppState, bind: IpAddr, listener: Listener) -> Policy {
        let config = &state.config;
        let bind_host = match bind {
            _ if bind.is_unspecified() => None,
            IpAddr::V4(ip) => Some(ip.to_string()),
            IpAddr::V6(ip) => Some(format!("[{ip}]")),
        };
        Policy {
            loopback_bind: bind.is_loopback(),
            bind_host,
            allowed_hosts: config.access.allowed_hosts.clone().into(),
            allowed_origins: config.access.allowed_origins.clone().into(),
            trusted_proxies: config.access.trusted_proxies.clone().into(),
            shared: Arc::default(),
            created: Some(state.keys.clone()),
            users: None,
            token_header: header::HeaderName::from_bytes(config.oauth.header.as_bytes()).ok(),
            records: Some(state.records.clone()),
            metrics_public: false,
            scrape_key: None,
            listener,
            shape_of,
        }
    }

    /// Decide on a request from its head alone, and return the created key it authenticated with.
    /// Allocation-free unless the request is refused (or sends its key in `?key=` with percent-escapes).
    pub fn admit<B>(&self, req: &Request<B>) -> Result<Option<Caller>, Refusal> {
        let headers = req.headers();
        let host = host_of(req)?;
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(Refusal::Host);
        }
        if let Some(origin) = headers.get(header::ORIGIN)
            && !self.origin_allowed(origin.as_bytes())
            && !host.is_some_and(|h| same_origin(origin.as_bytes(), h))
        {
            return Err(Refusal::Origin);
        }
        // The content type first: JSON clients stop there, without the three lookups of `from_browser`.
        if req.method() == Method::POST
            && headers.get(header::CONTENT_TYPE).is_some_and(|ct| is_browser_simple(ct.as_bytes()))
            && from_browser(headers)
        {
            return Err(Refusal::ContentType);
        }
        let path = req.uri().path();
        // The dashboard has its own gate (a login and a session cookie: dashboard/session.rs).
        if is_public(path) || (self.metrics_public && path == "/metrics") || crate::dashboard::is_dashboard_path(path) {
            return Ok(None);
        }
        let shared = self.shared.load();
        if is_admin(path) && self.listener == Listener::Main {
            return self.check_admin(req, &shared).map(|()| None);
        }
        // A user's Codex CLI token stands in for a client key (and is refused, not ignored, when it is wrong).
        if self.listener == Listener::Main
            && let Some(caller) = self.token_caller(req)?
        {
            return Ok(Some(caller));
        }
        let created = self.created.as_deref().filter(|c| !c.is_empty());
        match (self.listener, shared.keys.is_empty(), created) {
            (Listener::Main, true, None) => Ok(None),
            (Listener::Main, _, _) => self.check_key(req, created, &shared),
            // The bridge asks for no key; a created one presented is honoured, anything else is ignored.
            (Listener::OllamaBridge, _, None) => Ok(None),
            (Listener::OllamaBridge, _, Some(_)) => match self.check_key(req, created, &shared) {
                Err(Refusal::MissingKey | Refusal::WrongKey) => Ok(None),
                other => other,
            },
        }
    }

    /// `/admin/*` and `/metrics`: the admin key only (constant-time), never a client key; on `/admin/*` also a
    /// user's session token, which the admin API's access layer checks, and the sign-in, which needs nothing.
    fn check_admin<B>(&self, req: &Request<B>, shared: &SharedKeys) -> Result<(), Refusal> {
        let created = self.created.as_deref().filter(|c| !c.is_empty());
        let users = self.users.as_deref().filter(|u| u.any());
        let presented = presented_in(req.headers());
        let path = req.uri().path();
        // The sign-in needs nothing (it refuses what does not match a user); a user's session token is looked up
        // by the admin API's layer (server/admin/access.rs), in the store when this instance has not seen it yet.
        let session = presented[0].is_some_and(|t| t.starts_with(crate::users::SESSION_PREFIX));
        if path == SIGN_IN || (session && path.starts_with("/admin/")) {
            return Ok(());
        }
        // `/metrics`: the scraper's key opens it alone; a user's session (the bearer token or the dashboard's
        // cookie) goes on to the route, which looks it up and refuses any role but admin (server/scrape.rs).
        if path == "/metrics" {
            let scrape = |p: &str| self.scrape_key.as_deref().is_some_and(|k| ct_eq(p, k));
            if presented.iter().flatten().any(|p| scrape(p))
                || session
                || super::scrape::session_cookie(req.headers()).is_some()
            {
                return Ok(());
            }
        }
        if shared.admin_keys.is_empty() {
            // Keyless as before, until keys or users exist: then a client could drop its key and manage keys
            // itself, or anyone could do what only signed-in users may.
            return if created.is_some() || users.is_some() { Err(Refusal::AdminKeyUnset) } else { Ok(()) };
        }
        if presented.iter().flatten().any(|p| any_equal(&shared.admin_keys, p)) {
            return Ok(());
        }
        let client = |p: &str| any_equal(&shared.keys, p) || created.is_some_and(|c| c.find(p).is_some());
        if presented.iter().flatten().any(|p| client(p)) {
            return Err(Refusal::NotAdmin);
        }
        let none = presented.iter().all(Option::is_none) && !has_query_key(req);
        if none { Err(Refusal::MissingKey) } else { Err(Refusal::WrongKey) }
    }

    /// The user of a Codex CLI token in the `[oauth] header` (`Bearer <token>`), as the users' snapshot knows
    /// them now (users/ follows the store: a user disabled or removed anywhere is refused from the next re-read),
    /// served under the key `ClientKey::signed_in` makes; `None` when the header is absent. A token the snapshot
    /// lacks is refused here; `Guard::call` may then look it up (token.rs).
    fn token_caller<B>(&self, req: &Request<B>) -> Result<Option<Caller>, Refusal> {
        let Some(users) = &self.users else { return Ok(None) };
        let Some(token) = self.presented_token(req) else { return Ok(None) };
        let signed = token.and_then(|t| users.access(t)).ok_or(Refusal::TokenInvalid)?;
        self.caller_of(&signed, req).map(Some)
    }

    /// The token in the `[oauth] header`, without its `Bearer `: `None` without the header, `Some(None)` when
    /// its value is not text.
    fn presented_token<'r, B>(&self, req: &'r Request<B>) -> Option<Option<&'r str>> {
        let value = req.headers().get(self.token_header.as_ref()?)?;
        let token = value.to_str().ok().map(str::trim);
        Some(token.map(|t| t.strip_prefix("Bearer ").or_else(|| t.strip_prefix("bearer ")).unwrap_or(t).trim()))
    }

    /// The caller a signed-in Codex CLI token serves as, if its user's role may use the models.
    fn caller_of<B>(&self, signed: &crate::users::SignedIn, req: &Request<B>) -> Result<Caller, Refusal> {
        if !crate::oauth::flows::may_use_models(&signed.user) {
            if let Some(users) = &self.users {
                audit_refusal(users, &signed.user, req.uri().path());
            }
            return Err(Refusal::RoleForbidden);
        }
        Ok(Caller(Arc::new(crate::keys::ClientKey::signed_in(&signed.user))))
    }

    fn host_allowed(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else { return false };
        let name = host_name(host);
        is_loopback_name(name)
            || (!self.loopback_bind && self.allowed_hosts.is_empty())
            || self.bind_host.as_deref().is_some_and(|b| b.eq_ignore_ascii_case(name))
            || self.allowed_hosts.iter().any(|h| h == "*" || h.eq_ignore_ascii_case(name))
    }

    /// A loopback origin, or one in `allowed_origins` (also the Ollama bridge's CORS rule).
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        let Ok(origin) = std::str::from_utf8(origin) else { return false };
        is_loopback_origin(origin) || self.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// `Authorization: Bearer`, `x-api-key`, `x-goog-api-key`; `?key=` only on the Gemini routes, where Google's
    /// clients send it (elsewhere it would only put keys into access logs).
    ///
    /// The shared keys are compared first and in constant time; a created key is then found by its hash
    /// (keys/mod.rs `Keys::find` says why that is not a timing leak).
    fn check_key<B>(
        &self,
        req: &Request<B>,
        created: Option<&Keys>,
        shared: &SharedKeys,
    ) -> Result<Option<Caller>, Refusal> {
        let presented = presented_in(req.headers());
        if presented.iter().flatten().any(|p| any_equal(&shared.keys, p)) {
            return Ok(None);
        }
        let standing = |key: Arc<crate::keys::ClientKey>| match key.standing(crate::auth::now_unix()) {
            Standing::Usable => Ok(Some(Caller(key))),
            Standing::Revoked => Err(Refusal::KeyRevoked),
            Standing::Expired => Err(Refusal::KeyExpired),
        };
        if let Some(key) = created.and_then(|c| presented.iter().flatten().find_map(|p| c.find(p))) {
            return standing(key);
        }
        let gemini_path = gemini::owns(req.uri().path());
        if gemini_path && query_keys(req).any(|v| any_equal(&shared.keys, &v)) {
            return Ok(None);
        }
        if gemini_path && let Some(key) = created.and_then(|c| query_keys(req).find_map(|v| c.find(&v))) {
            return standing(key);
        }
        let none = presented.iter().all(Option::is_none) && !has_query_key(req);
        if none { Err(Refusal::MissingKey) } else { Err(Refusal::WrongKey) }
    }

    /// The refusal in the dialect of the path (the bridge: Ollama's, OpenAI's under `/v1/`).
    pub fn refuse<B>(&self, refusal: Refusal, req: &Request<B>) -> Response {
        let path = req.uri().path();
        let shape = (self.shape_of)(path);
        let err = self.error(refusal, req);
        // The router's request-id layer has not run yet: take the client's id or make one.
        let rid = Some(request_id(req.headers())).filter(|r| !r.is_empty());
        let rid = rid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut resp = match refusal {
            // 415 in place of the 400 `InvalidRequest` renders as.
            Refusal::ContentType => error_response_with_status(shape, &err, &rid, StatusCode::UNSUPPORTED_MEDIA_TYPE),
            _ => error_response(shape, &err, &rid),
        };
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
        // A refused request is a request too: one record (its access line), before any route was matched.
        if let Some(sinks) = &self.records {
            let mut record = Recorder::new(sinks.clone(), Api::Other, "(refused)", rid);
            record.error(&err);
            record.finish(resp.status().as_u16());
        }
        resp
    }

    fn error<B>(&self, refusal: Refusal, req: &Request<B>) -> GatewayError {
        let h = req.headers();
        match refusal {
            Refusal::HostMissingOrRepeated => GatewayError::new(
                ErrorKind::InvalidRequest,
                "An HTTP/1.1 request needs exactly one Host header (RFC 9112 section 3.2).",
            )
            .with_code("invalid_host_header"),
            Refusal::Host => GatewayError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "Host {} is not allowed: this gateway answers to loopback names (localhost, 127.0.0.1, [::1]) \
                     and the names in `[server] allowed_hosts` (CODEX_GATEWAY_ALLOWED_HOSTS). A web page on another \
                     name that resolves to this machine (DNS rebinding) is refused this way; behind a reverse proxy \
                     or on a LAN, add the name clients use to `[server] allowed_hosts`.",
                    shown(h.get(header::HOST).map(|v| v.as_bytes()))
                ),
            )
            .with_code("host_not_allowed"),
            Refusal::Origin => GatewayError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "Requests from the web page at origin {} are not allowed: only loopback origins and those in \
                     `[server] allowed_origins` (CODEX_GATEWAY_ALLOWED_ORIGINS) may call this gateway from a \
                     browser. Tools that are not browsers send no Origin and are not affected.",
                    shown(h.get(header::ORIGIN).map(|v| v.as_bytes()))
                ),
            )
            .with_code("origin_not_allowed"),
            Refusal::ContentType => GatewayError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "A browser request with Content-Type {} is refused (it would skip the CORS preflight): send \
                     `Content-Type: application/json`.",
                    shown(h.get(header::CONTENT_TYPE).map(|v| v.as_bytes()))
                ),
            )
            .with_code("unsupported_content_type"),
            Refusal::MissingKey => GatewayError::new(
                ErrorKind::Unauthorized,
                "Missing API key: send the gateway's key as `Authorization: Bearer <key>` (or x-api-key).",
            )
            .with_code("invalid_api_key"),
            Refusal::WrongKey if !gemini::owns(req.uri().path()) && has_query_key(req) => GatewayError::new(
                ErrorKind::Unauthorized,
                "`?key=` is accepted only on the Gemini routes: send the gateway's key as \
                     `Authorization: Bearer <key>` (or x-api-key).",
            )
            .with_code("invalid_api_key"),
            Refusal::WrongKey => GatewayError::new(ErrorKind::Unauthorized, "Invalid API key for this gateway.")
                .with_code("invalid_api_key"),
            Refusal::KeyRevoked => {
                GatewayError::new(ErrorKind::Unauthorized, "This API key was revoked by the gateway's admin.")
                    .with_code("key_revoked")
            }
            Refusal::KeyExpired => {
                GatewayError::new(ErrorKind::Unauthorized, "This API key has expired.").with_code("key_expired")
            }
            Refusal::NotAdmin => GatewayError::new(
                ErrorKind::PermissionDenied,
                "This is a client key: /admin/* and /metrics need the gateway's admin key (CODEX_GATEWAY_ADMIN_KEY).",
            )
            .with_code("admin_key_required"),
            Refusal::TokenInvalid => GatewayError::new(
                ErrorKind::Unauthorized,
                "The gateway sign-in token is unknown, expired or revoked: sign in to the gateway again from Codex.",
            )
            .with_code("invalid_token"),
            Refusal::RoleForbidden => GatewayError::new(
                ErrorKind::PermissionDenied,
                "Your role may not use the models through this gateway: ask an admin.",
            )
            .with_code("role_forbidden"),
            Refusal::AdminKeyUnset => GatewayError::new(
                ErrorKind::Unauthorized,
                "Client keys or users exist but no admin credential is configured: set CODEX_GATEWAY_ADMIN_KEY (or \
                 `[server] admin_key`, or CODEX_GATEWAY_API_KEY) to use /admin/* and /metrics, or sign in as a \
                 user (POST /admin/sign-in) and send the session token.",
            )
            .with_code("admin_key_required"),
        }
    }
}

/// The host a request is for: the target's authority when the target is in absolute form (RFC 9112 §3.2.2: the
/// `Host` field is then ignored; HTTP/2's `:authority` comes the same way), else its one `Host` field. An HTTP/1.1
/// request without `Host`, or a request with two, is refused (RFC 9112 §3.2; nginx answers both 400), so the check
/// cannot read one `Host` while a proxy in front routes by the other. HTTP/1.0 may lack `Host` (`None`): browsers
/// always send it, so such a request is not the DNS-rebinding attack the check is for.
fn host_of<B>(req: &Request<B>) -> Result<Option<&[u8]>, Refusal> {
    let mut fields = req.headers().get_all(header::HOST).iter();
    let (first, second) = (fields.next(), fields.next());
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    match (first, second, authority) {
        (Some(_), Some(_), _) => Err(Refusal::HostMissingOrRepeated),
        (None, None, _) if req.version() == Version::HTTP_11 => Err(Refusal::HostMissingOrRepeated),
        (_, _, Some(authority)) => Ok(Some(authority)),
        (Some(host), None, None) => Ok(Some(host.as_bytes())),
        (None, _, None) => Ok(None),
    }
}

/// A known user's token refused for their role, in the audit trail (off the request's path; a token nobody holds
/// is not recorded: it names no one, and recording it would let anyone fill the trail).
fn audit_refusal(users: &crate::users::Users, user: &crate::users::User, path: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    let mut entry =
        crate::audit::Entry::new(crate::audit::Actor::User { name: user.name.clone() }, "oauth.token.refused");
    entry.target = Some(user.id.clone());
    entry.outcome = crate::audit::Outcome::Refused;
    entry.details.insert("error".into(), "role_forbidden".into());
    entry.details.insert("path".into(), path.chars().take(100).collect::<String>().into());
    let store = users.store().clone();
    rt.spawn_blocking(move || crate::audit::record(&store, entry));
}

/// The admin API's sign-in (server/admin/users.rs), open to anyone: it refuses what matches no user.
const SIGN_IN: &str = "/admin/sign-in";

/// The gateway's own status and Claude Code's connectivity preflight need no key (they still pass the host and
/// origin checks).
fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/ready")
}

/// A page of the gateway itself (its dashboard, reached by a name the `Host` check let in): `Origin` names the
/// very host the request went to.
fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let rest = origin.strip_prefix(b"http://").or_else(|| origin.strip_prefix(b"https://"));
    rest.is_some_and(|r| r.eq_ignore_ascii_case(host))
}

/// The admin API and the metrics page (the prefix: every route under it, present and future).
fn is_admin(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/") || path == "/metrics" || path.starts_with("/metrics/")
}

/// The keys a request presents in headers: `Authorization: Bearer`, `x-api-key`, `x-goog-api-key`.
pub(crate) fn presented_in(h: &HeaderMap) -> [Option<&str>; 3] {
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    // Static names: a `&str` one is parsed again on every lookup, and this runs on every request.
    static X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");
    static X_GOOG_API_KEY: header::HeaderName = header::HeaderName::from_static("x-goog-api-key");
    let header_key = |name: &header::HeaderName| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    [bearer, header_key(&X_API_KEY), header_key(&X_GOOG_API_KEY)]
}

/// A user's session token the guard let through that opens nothing any more (the admin API's layer and
/// `/metrics` look it up).
pub(crate) fn session_ended() -> GatewayError {
    GatewayError::new(
        ErrorKind::Unauthorized,
        "This session has ended (signed out, expired, or the user was disabled or removed): sign in again.",
    )
    .with_code("session_ended")
}

/// Constant-time against each configured key (the comparison's time does not depend on where bytes differ).
pub(crate) fn any_equal(keys: &[String], presented: &str) -> bool {
    keys.iter().any(|k| ct_eq(k, presented))
}

/// The values of the `key` parameters of the request's query (Gemini's clients send their key there).
fn query_keys<B>(req: &Request<B>) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let pairs = req.uri().query().into_iter().flat_map(|q| url::form_urlencoded::parse(q.as_bytes()));
    pairs.filter(|(k, _)| k == "key").map(|(_, v)| v)
}

fn has_query_key<B>(req: &Request<B>) -> bool {
    query_keys(req).next().is_some()
}

/// A header value quoted for an error message: JSON-escaped anyway, but also bounded and limited to the
/// characters a host, origin or media type has, so an attacker's bytes are never echoed back.
fn shown(value: Option<&[u8]>) -> String {
    match value {
        None => "(none)".into(),
        Some(v) if v.len() <= 200 && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-._:/[]+;= ".contains(b)) => {
            format!("`{}`", String::from_utf8_lossy(v))
        }
        Some(_) => "(not shown)".into(),
    }
}

/// A browser made this request: it sends `Origin` on every cross-origin request and on POSTs, and the
/// `Sec-Fetch-*` metadata on every request. Tools (curl, SDKs) send neither.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers.contains_key("sec-fetch-site")
        || headers.contains_key("sec-fetch-mode")
}

/// The content types a page may POST cross-site without a CORS preflight (WHATWG Fetch "CORS-safelisted").
pub fn is_browser_simple(content_type: &[u8]) -> bool {
    let essence = content_type.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    [&b"text/plain"[..], b"application/x-www-form-urlencoded", b"multipart/form-data"]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t))
}

/// A [`Policy`] in front of a service (server/listen.rs puts one in front of the router for each request).
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Guard<S> {
    pub fn new(inner: S, policy: Arc<Policy>) -> Guard<S> {
        Guard { inner, policy }
    }
}

impl<S, B> Service<Request<B>> for Guard<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    /// A refusal, the inner service's own future, or (a Codex CLI token this instance has not seen) a boxed
    /// look-up in the store before either.
    type Future = Either<Either<Ready<Result<Response, Infallible>>, S::Future>, token::LookUp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.policy.trusted_proxies.is_empty() {
            super::forwarded::adopt_client(&mut req, &self.policy.trusted_proxies);
        }
        match self.policy.admit(&req) {
            Ok(None) => Either::Left(Either::Right(self.inner.call(req))),
            // Only requests with a created key pay for the extension (one small allocation).
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
                Either::Left(Either::Right(self.inner.call(req)))
            }
            Err(Refusal::TokenInvalid) => match self.policy.unseen_token(&req) {
                Some((users, token)) => Either::Right(self.look_up(users, token, req)),
                None => Either::Left(Either::Left(ready(Ok(self.policy.refuse(Refusal::TokenInvalid, &req))))),
            },
            Err(refusal) => Either::Left(Either::Left(ready(Ok(self.policy.refuse(refusal, &req))))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    impl Policy {
        /// [`Policy::admit`] without the created key.
        fn check<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
            self.admit(req).map(|_| ())
        }
    }

    /// A loopback listener's policy without keys: what the listener's tests (server/listen/tests.rs) put in front.
    pub(crate) fn loopback_without_keys() -> Policy {
        policy(true, &[], &[], &[])
    }

    fn policy(loopback_bind: bool, hosts: &[&str], origins: &[&str], keys: &[&str]) -> Policy {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>().into();
        Policy {
            loopback_bind,
            bind_host: (!loopback_bind).then(|| "192.168.1.5".to_string()),
            allowed_hosts: owned(hosts),
            allowed_origins: owned(origins),
            trusted_proxies: Box::default(),
            shared: Arc::new(ArcSwap::from_pointee(SharedKeys { keys: owned(keys), admin_keys: owned(keys) })),
            created: None,
            users: None,
            token_header: None,
            records: None,
            metrics_public: false,
            scrape_key: None,
            listener: Listener::Main,
            shape_of,
        }
    }

    /// An HTTP/1.1 request, with a loopback `Host` unless `headers` name one.
    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header("host", "127.0.0.1:8765");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A request of `version` with exactly `hosts` as its `Host` fields.
    fn with_hosts(version: Version, path: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method("GET").uri(path).version(version);
        for host in hosts {
            b = b.header("host", *host);
        }
        b.body(()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn host_table() {
        let keyless = policy(true, &[], &[], &[]);
        let listed = policy(true, &["gw.example", "[fd00::5]"], &[], &[]);
        let lan_open = policy(false, &[], &[], &["k"]);
        let lan_listed = policy(false, &["gw.lan"], &[], &["k"]);
        let any = policy(true, &["*"], &[], &[]);
        let cases: &[(&Policy, &str, bool)] = &[
            (&keyless, "127.0.0.1:8765", true),
            (&keyless, "localhost:1", true),
            (&keyless, "[::1]:8765", true),
            (&keyless, "evil.example:8765", false),
            (&keyless, "evil.example", false),
            (&keyless, "0.0.0.0:8765", false),
            (&listed, "GW.example:443", true),
            (&listed, "[fd00::5]:8765", true),
            (&listed, "other.example", false),
            (&lan_open, "anything.example", true),
            (&lan_listed, "gw.lan:8765", true),
            (&lan_listed, "127.0.0.1:8765", true),
            (&lan_listed, "192.168.1.5:8765", true),
            (&lan_listed, "192.168.1.6:8765", false),
            (&lan_listed, "evil.example", false),
            (&any, "evil.example", true),
        ];
        for (p, host, ok) in cases {
            assert_eq!(p.check(&req("GET", "/health", &[("host", host)])).is_ok(), *ok, "{host} {p:?}");
        }
        // No Host at all in HTTP/1.0: not a browser, allowed. In HTTP/1.1, or two of them: 400 (RFC 9112 §3.2).
        assert_eq!(keyless.check(&with_hosts(Version::HTTP_10, "/health", &[])), Ok(()));
        let missing = Err(Refusal::HostMissingOrRepeated);
        assert_eq!(keyless.check(&with_hosts(Version::HTTP_11, "/health", &[])), missing);
        let twice = with_hosts(Version::HTTP_11, "/health", &["127.0.0.1:8765", "evil.example"]);
        assert_eq!(keyless.check(&twice), missing);
        let twice = with_hosts(Version::HTTP_10, "/health", &["127.0.0.1:8765", "127.0.0.1:8765"]);
        assert_eq!(keyless.check(&twice), missing);
        // An absolute-form target names the host, whatever `Host` says (RFC 9112 §3.2.2).
        let absolute = |target, host| with_hosts(Version::HTTP_11, target, &[host]);
        assert_eq!(keyless.check(&absolute("http://evil.example/health", "127.0.0.1:8765")), Err(Refusal::Host));
        assert_eq!(keyless.check(&absolute("http://127.0.0.1:8765/health", "evil.example")), Ok(()));
        assert_eq!(keyless.check(&with_hosts(Version::HTTP_10, "http://evil.example/health", &[])), Err(Refusal::Host));
    }

    #[test]
    fn origin_table() {
        let p = policy(true, &[], &["https://chat.example"], &[]);
        for (origin, ok) in [
            ("http://127.0.0.1:3000", true),
            ("http://localhost", true),
            ("https://localhost:5173", true),
            ("http://[::1]:8080", true),
            ("http://app.localhost:3000", true),
            ("https://chat.example", true),
            ("https://CHAT.example", true),
            ("http://chat.example", false),
            ("https://chat.example:8443", false),
            ("https://evil.example", false),
            ("http://localhost.evil.example", false),
            ("null", false),
            ("file://", false),
            ("http://10.0.0.1", false),
            ("http://127.0.0.1/x", false),
        ] {
            let r = req("GET", "/health", &[("host", "127.0.0.1:1"), ("origin", origin)]);
            assert_eq!(p.check(&r).is_ok(), ok, "{origin}");
        }
    }

    #[test]
    fn content_type_table() {
        for (ct, simple) in [
            ("text/plain", true),
            ("text/plain;charset=UTF-8", true),
            ("Application/X-WWW-Form-Urlencoded", true),
            ("multipart/form-data; boundary=x", true),
            (" text/plain ", true),
            ("application/json", false),
            ("application/json; charset=utf-8", false),
            ("text/plainx", false),
            ("", false),
        ] {
            assert_eq!(is_browser_simple(ct.as_bytes()), simple, "{ct}");
        }
        let p = policy(true, &[], &[], &[]);
        let loopback = ("host", "127.0.0.1:1");
        let form = ("content-type", "application/x-www-form-urlencoded");
        // curl -d: a form content type, no browser headers: served.
        assert_eq!(p.check(&req("POST", "/v1/chat/completions", &[loopback, form])), Ok(()));
        // The same from a browser (even a loopback page): refused, so no page skips the preflight.
        let from_page = [loopback, form, ("origin", "http://localhost:3000")];
        assert_eq!(p.check(&req("POST", "/v1/chat/completions", &from_page)), Err(Refusal::ContentType));
        let fetch_meta = [loopback, ("content-type", "text/plain"), ("sec-fetch-site", "same-origin")];
        assert_eq!(p.check(&req("POST", "/v1/messages", &fetch_meta)), Err(Refusal::ContentType));
        let json = [loopback, ("content-type", "application/json"), ("origin", "http://localhost:3000")];
        assert_eq!(p.check(&req("POST", "/v1/messages", &json)), Ok(()));
        // A body-less browser POST (no content type) is not a simple-form request.
        assert_eq!(p.check(&req("POST", "/admin/accounts/x/enable", &[loopback, ("sec-fetch-mode", "cors")])), Ok(()));
    }

    #[test]
    fn keys_and_query_keys() {
        let p = policy(false, &[], &[], &["k1", "k2"]);
        let check = |path: &str, headers: &[(&str, &str)]| p.check(&req("GET", path, headers));
        assert_eq!(check("/v1/models", &[("authorization", "Bearer k2")]), Ok(()));
        assert_eq!(check("/v1/models", &[("x-api-key", "k1")]), Ok(()));
        assert_eq!(check("/v1/models", &[]), Err(Refusal::MissingKey));
        assert_eq!(check("/v1/models", &[("x-api-key", "")]), Err(Refusal::WrongKey));
        assert_eq!(check("/v1/models", &[("authorization", "Bearer k3")]), Err(Refusal::WrongKey));
        assert_eq!(check("/health", &[]), Ok(()));
        assert_eq!(check("/v1beta/models/gemini-2.5-pro:generateContent?key=k1", &[]), Ok(()));
        assert_eq!(check("/v1beta/models?key=k%31", &[]), Ok(()));
        assert_eq!(check("/v1beta/models?key=", &[]), Err(Refusal::WrongKey));
        assert_eq!(check("/admin/accounts?key=k1", &[]), Err(Refusal::WrongKey));
        assert_eq!(check("/v1/chat/completions?key=k1", &[]), Err(Refusal::WrongKey));
    }

    /// `/admin/*` and `/metrics` take the admin key only; client keys there are refused as such (403), and the
    /// admin key is also an unrestricted client key.
    #[test]
    fn admin_paths_need_the_admin_key() {
        let mut p = policy(false, &[], &[], &["client", "admin"]);
        let keys = vec!["client".to_string(), "admin".to_string()].into();
        p.shared.store(Arc::new(SharedKeys { keys, admin_keys: vec!["admin".to_string()].into() }));
        let check = |path: &str, key: &str| p.check(&req("GET", path, &[("authorization", &format!("Bearer {key}"))]));
        for path in ["/admin", "/admin/status", "/admin/keys/key_1/revoke", "/metrics", "/metrics/x"] {
            assert_eq!(check(path, "admin"), Ok(()), "{path}");
            assert_eq!(check(path, "client"), Err(Refusal::NotAdmin), "{path}");
            assert_eq!(check(path, "nope"), Err(Refusal::WrongKey), "{path}");
            assert_eq!(p.check(&req("GET", path, &[])), Err(Refusal::MissingKey), "{path}");
        }
        for path in ["/administrator", "/metricsx", "/v1/models"] {
            assert_eq!(check(path, "client"), Ok(()), "{path}");
            assert_eq!(check(path, "admin"), Ok(()), "{path}");
        }
        assert_eq!(p.refuse(Refusal::NotAdmin, &req("GET", "/admin/status", &[])).status(), StatusCode::FORBIDDEN);
        // `[metrics] public = true` opens `/metrics` alone.
        p.metrics_public = true;
        assert_eq!(p.check(&req("GET", "/metrics", &[])), Ok(()));
        assert_eq!(p.check(&req("GET", "/admin/status", &[])), Err(Refusal::MissingKey));
        assert_eq!(p.refuse(Refusal::KeyRevoked, &req("POST", "/v1/messages", &[])).status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn refusals_render_in_the_paths_dialect() {
        let p = policy(true, &[], &[], &[]);
        let evil = [("host", "evil.example:8765")];
        let status = |path: &str, headers: &[(&str, &str)], r| p.refuse(r, &req("POST", path, headers)).status();
        assert_eq!(status("/v1/messages", &evil, Refusal::Host), StatusCode::FORBIDDEN);
        assert_eq!(status("/v1beta/models/m:generateContent", &evil, Refusal::ContentType), 415);
        assert_eq!(status("/v1/chat/completions", &evil, Refusal::ContentType), 415);
        // The router's request-id layer comes after the guard: refusals carry an id of their own, or the client's.
        let resp = p.refuse(Refusal::Origin, &req("GET", "/v1/models", &[]));
        assert!(resp.headers().get("x-request-id").is_some_and(|v| v.len() == 36));
        let resp = p.refuse(Refusal::Host, &req("POST", "/v1/messages", &[("x-request-id", "req-1")]));
        assert_eq!(resp.headers().get("request-id").map(|v| v.as_bytes()), Some(&b"req-1"[..]));
        assert_eq!(shown(Some(b"evil.example:8765")), "`evil.example:8765`");
        assert_eq!(shown(Some(b"<script>")), "(not shown)");
        assert_eq!(shown(Some("é".as_bytes())), "(not shown)");
    }
}
