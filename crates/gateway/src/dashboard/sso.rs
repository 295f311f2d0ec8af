//! Single sign-on on the login page (`[dashboard.oidc]`, docs/dashboard.md "Single sign-on"): the "Sign in with
//! ..." button opens `GET /dashboard/sso/start`, which sends the browser to the provider with the state in a
//! short-lived cookie; the provider sends it back to `GET /dashboard/sso/callback`, on this instance or any other
//! of a team (the sign-in waits in the store: users/oidc/). The flow itself is users/oidc/; this is its HTTP
//! side: the cookies, the pages, and the audit trail's entry for every sign-in and every refusal (both are GETs,
//! which the dashboard's audit layer does not record, so they are recorded here).

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{SESSION_COOKIE, cookie, cookie_with, login_form, over_tls, safe_next, set_cookie, with_cookies};
use super::signin::{Surface, failure_delay, refused, succeeded};
use super::{St, html_response};
use crate::audit::{self, Actor, Entry, Outcome};
use crate::auth::login::html_escape;
use crate::users::limits::address_key;
use crate::users::oidc::{self, CALLBACK_PATH, Callback, SsoError};

/// The cookie that holds a started sign-in's state until the provider's answer.
const STATE_COOKIE: &str = "cgw_sso";
/// Where the sign-in was asked from (the login page's `?next=`, e.g. the Codex CLI's authorization page),
/// percent-encoded; read back by the callback, on whichever instance it lands.
const NEXT_COOKIE: &str = "cgw_sso_next";

/// The sign-in's cookies: HttpOnly, only sent to the callback's path, and SameSite=Lax, because the provider's
/// answer is a top-level navigation from another site (a Strict cookie would not come with it).
fn sso_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: std::time::Duration) -> HeaderValue {
    cookie_with(headers, name, value, max_age, "Path=/dashboard/sso; HttpOnly; SameSite=Lax")
}

/// Where the provider sends the browser back: `[dashboard.oidc] public_url`, else this request's own scheme and
/// host (the guard has held the `Host` to the allowed names).
fn redirect_uri(dash: &St, headers: &HeaderMap) -> Option<String> {
    let config = dash.sso.as_ref().map(|p| &p.config)?;
    if let Some(base) = &config.public_url {
        return Some(format!("{base}{CALLBACK_PATH}"));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| !h.is_empty())?;
    let scheme = if over_tls(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{host}{CALLBACK_PATH}"))
}

/// Append the sign-in's entry to the audit trail: who (the user's name, or the provider's e-mail or subject when
/// known), how it went, whether the user was made by it and, for a refusal, why; never a code, a token or the
/// state.
async fn record(dash: &St, source: Option<String>, actor: Actor, who: Option<String>, how: Result<bool, &SsoError>) {
    let mut entry = Entry::new(actor, "user.sign_in");
    entry.source = source;
    entry.target = who.map(|w| w.chars().take(200).collect());
    entry.details.insert("method".into(), "oidc".into());
    match how {
        Ok(created) => {
            entry.details.insert("created".into(), created.into());
        }
        Err(e) => {
            entry.outcome = if e.status() >= 500 { Outcome::Failed } else { Outcome::Refused };
            entry.details.insert("reason".into(), e.reason().into());
        }
    }
    crate::users::trail::append(dash.app.pool.store(), entry).await;
}

/// A callback refused at once for the address's failures, as one of the first of its burst.
async fn record_limited(dash: &St, source: Option<String>, reason: &str) {
    let mut entry = Entry::new(Actor::Anonymous, "user.sign_in");
    entry.source = source;
    entry.outcome = Outcome::Refused;
    entry.details.insert("method".into(), "oidc".into());
    entry.details.insert("reason".into(), reason.into());
    crate::users::trail::append(dash.app.pool.store(), entry).await;
}

/// The login page with the refusal in place of the button's silence.
fn refused_page(dash: &St, headers: &HeaderMap, e: &SsoError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, login_form(dash, headers, Some(&format!("Single sign-on failed: {e}.")))).into_response()
}

/// `GET /dashboard/sso/start`: to the provider.
pub(crate) async fn start(State(dash): State<St>, req: Request) -> Response {
    let headers = req.headers().clone();
    let source = audit::source_of(req.extensions());
    let result = match (&dash.sso, redirect_uri(&dash, &headers)) {
        (None, _) => Err(SsoError::NotConfigured),
        (Some(_), None) => Err(SsoError::Provider("the request has no Host to send the answer back to".into())),
        (Some(p), Some(uri)) => oidc::start(p, &dash.app.users, &uri).await,
    };
    match result {
        Ok(started) => {
            let state = sso_cookie(&headers, STATE_COOKIE, &started.state, oidc::PENDING_LIFETIME);
            let query = Query::<std::collections::HashMap<String, String>>::try_from_uri(req.uri()).ok();
            let next = query.as_ref().and_then(|q| safe_next(q.get("next").map(String::as_str))).map(|next| {
                let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                sso_cookie(&headers, NEXT_COOKIE, &encoded, oidc::PENDING_LIFETIME)
            });
            with_cookies(Redirect::to(&started.url).into_response(), [state].into_iter().chain(next))
        }
        // Nothing to sign in to: not a refusal to record (and no way to fill the trail from outside).
        Err(e @ SsoError::NotConfigured) => refused_page(&dash, &headers, &e),
        Err(e) => {
            tracing::warn!("dashboard: a single sign-on could not start: {e}");
            record(&dash, source, Actor::Anonymous, None, Err(&e)).await;
            refused_page(&dash, &headers, &e)
        }
    }
}

/// `GET /dashboard/sso/callback`: the provider's answer; a session, or the login page saying why not. Refusals are
/// counted per client address (signin.rs, users/limits.rs): past the allowance the answer is 429 with `Retry-After`
/// at once, before the provider is asked anything, and each refusal waits `failure_delay_ms` alone.
pub(crate) async fn callback(State(dash): State<St>, req: Request) -> Response {
    let headers = req.headers().clone();
    let source = audit::source_of(req.extensions());
    let started = std::time::Instant::now();
    let addresses = &dash.app.users.guards.sso_addresses;
    let charge = match addresses.admit(address_key(source.as_deref()), started) {
        Ok(charge) => charge,
        Err(wait) => {
            let in_burst = refused(&dash.app, Surface::Sso, source.as_deref(), None, wait.reason()).await;
            if in_burst.is_none() {
                record_limited(&dash, source.clone(), wait.reason()).await;
            }
            let mut resp =
                (StatusCode::TOO_MANY_REQUESTS, login_form(&dash, &headers, Some(&wait.message()))).into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.seconds()));
            return with_cookies(resp, [sso_cookie(&headers, STATE_COOKIE, "", std::time::Duration::ZERO)]);
        }
    };
    let answer = Query::<Callback>::try_from_uri(req.uri()).map(|q| q.0).unwrap_or_default();
    let result = match &dash.sso {
        None => Err(oidc::Failed { error: SsoError::NotConfigured, who: None }),
        Some(p) => oidc::finish(p, &dash.app.users, cookie(&headers, STATE_COOKIE), &answer).await,
    };
    // Only a refusal of the answer counts: not a success, nor the provider or the gateway failing (5xx).
    let counts = matches!(&result, Err(f) if !matches!(f.error, SsoError::NotConfigured) && f.error.status() < 500);
    if !counts {
        addresses.refund(charge);
    }
    let resp = match result {
        Ok(done) => {
            let name = done.signed.user.name.clone();
            if done.created {
                tracing::info!("dashboard: a user was made at their first single sign-on");
            }
            succeeded(&dash.app, Surface::Sso, source.as_deref()).await;
            record(&dash, source, Actor::User { name: name.clone() }, Some(name), Ok(done.created)).await;
            let asked = cookie(&headers, NEXT_COOKIE).and_then(|v| {
                url::form_urlencoded::parse(format!("n={v}").as_bytes()).next().map(|(_, n)| n.into_owned())
            });
            let home = safe_next(asked.as_deref()).unwrap_or(crate::users::access::home(done.signed.user.role));
            // Safe inside a double-quoted HTML attribute (the return address goes into the page that moves on).
            let home = html_escape(home).replace('\'', "&#39;");
            // A page that moves on by itself rather than a redirect: the session cookie is SameSite=Strict, and a
            // browser does not send it on a redirect chain that began at the provider's site.
            let html = format!(
                "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url={home}\">\
                 <title>Signed in</title><p>Signed in. <a href=\"{home}\">Continue to the dashboard</a>.</p>"
            );
            let session = set_cookie(&headers, SESSION_COOKIE, &done.token, dash.sessions.lifetime);
            let clear = asked.is_some().then(|| sso_cookie(&headers, NEXT_COOKIE, "", std::time::Duration::ZERO));
            with_cookies(html_response(StatusCode::OK, html), [session].into_iter().chain(clear))
        }
        Err(failed) if matches!(failed.error, SsoError::NotConfigured) => refused_page(&dash, &headers, &failed.error),
        Err(failed) => {
            tracing::warn!("dashboard: a single sign-on was refused ({})", failed.error.reason());
            let reason = failed.error.reason();
            let in_burst = refused(&dash.app, Surface::Sso, source.as_deref(), failed.who.as_deref(), reason).await;
            if in_burst.is_none() {
                record(&dash, source, Actor::Anonymous, failed.who, Err(&failed.error)).await;
            }
            failure_delay(&dash.app, started).await;
            refused_page(&dash, &headers, &failed.error)
        }
    };
    // The state served its one use, whatever came of it.
    with_cookies(resp, [sso_cookie(&headers, STATE_COOKIE, "", std::time::Duration::ZERO)])
}
