//! The Codex CLI's gateway sign-in over HTTP (oauth/ holds the grants): the authorization endpoint, which sends a
//! signed-in user's browser back to the CLI's loopback port with a code; the device verification page and its
//! approval call; and the two endpoints the CLI itself calls, token and device authorization, which take a form and
//! answer RFC 6749/8628 JSON. A browser without a dashboard session is sent to the login page with the way back
//! (`?next=`), so whatever signs a user in there (a password, an OpenID Connect sign-in) signs them in here too.
//!
//! Every answer of the token and device endpoints is in the audit trail through the dashboard's layer (audit.rs),
//! with the grant, the user and the refusal's code; the authorization (a GET) records its own entry.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::session::{ApiWrite, who};
use super::signin::{Surface, failure_delay, refused, too_many};
use super::{Answer, St, json_error, json_response};
use crate::audit::{self, Actor, Entry, Note, Outcome};
use crate::oauth::OAuthError;
use crate::oauth::error::no_store;
use crate::oauth::flows::{self, AuthorizeError, DeviceDecisionError};
use crate::users::limits::address_key;
use crate::users::{Principal, SignedIn, blocking};

/// `GET /dashboard/oauth/authorize?response_type=code&client_id&redirect_uri&code_challenge&code_challenge_method=S256&state&scope`.
pub(crate) async fn authorize(State(dash): State<St>, parts: Parts) -> Answer {
    let (headers, query) = (&parts.headers, parts.uri.query().unwrap_or_default().to_string());
    let bad = |e: &str| message(&dash, StatusCode::BAD_REQUEST, e);
    let q = flows::form(query.as_bytes()).map_err(|e| bad(&e.to_string()))?;
    let redirect = flows::check_client(&q, &dash.app.config.oauth).map_err(|e| bad(&e.to_string()))?;
    let user = signed_in_user(&dash, headers, &format!("/dashboard/oauth/authorize?{query}")).await?.user.clone();
    let users = dash.app.users.clone();
    let (q2, u2) = (q.clone(), user.clone());
    let made = blocking("authorization", move || flows::authorize(&users, &q2, &u2)).await;
    let mut entry = Entry::new(Actor::User { name: user.name.clone() }, "oauth.authorize");
    entry.source = audit::source_of(&parts.extensions);
    entry.target = Some(user.id.clone());
    let mut back = url::Url::parse(&redirect).map_err(|_| bad("redirect_uri is not a URL"))?;
    let answer = match made {
        Ok(code) => {
            back.query_pairs_mut().append_pair("code", &code);
            None
        }
        Err(AuthorizeError::Redirect(error, description)) => {
            entry.outcome = Outcome::Refused;
            entry.details.insert("error".into(), error.into());
            back.query_pairs_mut().append_pair("error", error).append_pair("error_description", description);
            None
        }
        Err(e @ (AuthorizeError::UnknownClient | AuthorizeError::BadRedirect)) => Some(bad(&e.to_string())),
        Err(AuthorizeError::Internal(e)) => {
            tracing::error!("oauth: an authorization failed: {e:#}");
            entry.outcome = Outcome::Failed;
            Some(message(&dash, StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be completed."))
        }
    };
    if let Some(state) = q.get("state") {
        back.query_pairs_mut().append_pair("state", state);
    }
    crate::users::trail::append(dash.app.pool.store(), entry).await;
    Ok(answer.unwrap_or_else(|| Redirect::to(back.as_str()).into_response()))
}

/// The signed-in user's session, or the answer that gets one: the login with the way back, or a page saying an
/// admin key's session has no user to sign the CLI in as.
async fn signed_in_user(dash: &St, headers: &HeaderMap, back: &str) -> Result<Arc<SignedIn>, Response> {
    match who(dash, headers).await {
        Some(Principal::User(s)) => Ok(s),
        Some(_) => Err(message(
            dash,
            StatusCode::FORBIDDEN,
            "Codex signs in as a user: log out of the admin key's session and sign in with your own name.",
        )),
        None => {
            let next: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            Err(Redirect::to(&format!("/dashboard/login?next={next}")).into_response())
        }
    }
}

fn message(dash: &St, status: StatusCode, text: &str) -> Response {
    let ctx = json!({
        "title": "Codex sign-in",
        "message": text,
        "bad": !status.is_success(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (status, dash.render("oauth.html", ctx)).into_response()
}

/// `GET /dashboard/oauth/device[?user_code=...]`: the page where a signed-in user enters the CLI's code.
pub(crate) async fn device_page(
    State(dash): State<St>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    RawQuery(query): RawQuery,
) -> Answer {
    let query = query.unwrap_or_default();
    let back = if query.is_empty() {
        "/dashboard/oauth/device".to_string()
    } else {
        format!("/dashboard/oauth/device?{query}")
    };
    let s = signed_in_user(&dash, &headers, &back).await?;
    // A session or address that typed too many wrong codes is told so here too, in the page's own shape.
    let (now, guards) = (std::time::Instant::now(), &dash.app.users.guards);
    let source = audit::source_of(&ext);
    let waiting = guards.code_sessions.waiting(&s.token_sha256, now);
    if let Some(wait) = waiting.or_else(|| guards.code_addresses.waiting(address_key(source.as_deref()), now)) {
        let mut page = message(&dash, StatusCode::TOO_MANY_REQUESTS, &wait.message());
        page.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from(wait.seconds()));
        return Err(page);
    }
    let typed = flows::form(query.as_bytes()).ok().and_then(|q| q.get("user_code").cloned()).unwrap_or_default();
    let mut ctx = super::pages::base_for(&Principal::User(s.clone()), &s.csrf, "Codex sign-in", "");
    ctx.insert("device".into(), true.into());
    ctx.insert("user_code".into(), typed.chars().take(12).collect::<String>().into());
    Ok(dash.render("oauth.html", ctx.into()))
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    user_code: String,
    approve: bool,
}

/// `POST /dashboard/api/oauth/device` `{"user_code", "approve"}` (with the CSRF token): the signed-in user
/// approves or denies the CLI's code. Wrong codes are counted per session and per client address (RFC 8628 §5.1:
/// the codes are short enough to guess only without a limit): past the allowance, 429 with `Retry-After`, the
/// right code too, until the wait is over (signin.rs, users/limits.rs).
pub(crate) async fn device_decide(
    State(dash): State<St>,
    ApiWrite(who): ApiWrite,
    ext: axum::http::Extensions,
    body: Bytes,
) -> Response {
    let Principal::User(s) = who else {
        return json_error(StatusCode::FORBIDDEN, "Codex signs in as a user: sign in with your own name.");
    };
    let Ok(d) = serde_json::from_slice::<Decision>(&body) else {
        return json_error(StatusCode::BAD_REQUEST, "Send {\"user_code\": ..., \"approve\": true|false} as JSON.");
    };
    let note =
        Note::target(s.user.id.clone()).action(if d.approve { "oauth.device.approve" } else { "oauth.device.deny" });
    let source = audit::source_of(&ext);
    let started = std::time::Instant::now();
    let guards = &dash.app.users.guards;
    let session = guards.code_sessions.admit(&s.token_sha256, started);
    let address = guards.code_addresses.admit(address_key(source.as_deref()), started);
    let (session, address) = match (session, address) {
        (Ok(session), Ok(address)) => (session, address),
        (session, address) => {
            // Whichever was let through is given back: the attempt was not made.
            let wait =
                [&session, &address].iter().filter_map(|r| r.as_ref().err()).max_by_key(|w| w.retry_after).copied();
            session.into_iter().for_each(|c| guards.code_sessions.refund(c));
            address.into_iter().for_each(|c| guards.code_addresses.refund(c));
            let wait = wait.unwrap_or(crate::users::limits::Wait {
                retry_after: std::time::Duration::from_secs(1),
                locked: false,
            });
            let in_burst =
                refused(&dash.app, Surface::DeviceCode, source.as_deref(), Some(&s.user.name), wait.reason()).await;
            return super::audit::noted(
                (in_burst, too_many(&wait)).into_response(),
                note.with("reason", wait.reason()),
            );
        }
    };
    let users = dash.app.users.clone();
    let user = s.user.clone();
    let approve = d.approve;
    let done = blocking("approval", move || flows::device_decide(&users, &user, &d.user_code, approve)).await;
    if !matches!(done, Err(DeviceDecisionError::UnknownCode)) {
        // Only a wrong code is a guess.
        guards.code_sessions.refund(session);
        guards.code_addresses.refund(address);
    }
    let mut in_burst = None;
    let resp = match done {
        Ok(()) if approve => json_response(
            StatusCode::OK,
            json!({"ok": true, "message": "Approved: Codex is signed in. You can go back to your terminal."}),
        ),
        Ok(()) => json_response(StatusCode::OK, json!({"ok": true, "message": "Denied: Codex was not signed in."})),
        Err(e @ DeviceDecisionError::UnknownCode) => {
            in_burst =
                refused(&dash.app, Surface::DeviceCode, source.as_deref(), Some(&s.user.name), "unknown_code").await;
            failure_delay(&dash.app, started).await;
            json_error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e @ DeviceDecisionError::NotAllowed) => json_error(StatusCode::FORBIDDEN, e.to_string()),
        Err(DeviceDecisionError::Internal(e)) => {
            tracing::error!("oauth: a device approval failed: {e:#}");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "The approval could not be saved.")
        }
    };
    super::audit::noted((in_burst, resp).into_response(), note)
}

/// `POST /dashboard/oauth/token` (a form): the three grants.
pub(crate) async fn token(State(dash): State<St>, body: Bytes) -> Answer {
    let form = flows::form(&body)
        .map_err(|e| with_note(e.into_response(), "oauth.token.refused", None, &[("error", "invalid_request")]))?;
    let (users, cfg) = (dash.app.users.clone(), dash.app.config.oauth.clone());
    let out = blocking("token", move || Ok::<_, OAuthError>(flows::token(&users, &cfg, &form)))
        .await
        .map_err(IntoResponse::into_response)?;
    let actor = out.user.as_deref().and_then(|id| dash.app.users.user(id)).map(|u| Actor::User { name: u.name });
    let grant = out.grant.clone();
    let mut details = vec![("grant_type", grant.as_str())];
    let (resp, action) = match out.result {
        Ok(t) => {
            let mut body = json!({
                "access_token": t.access_token,
                "token_type": "Bearer",
                "expires_in": t.expires_in,
                "refresh_token": t.refresh_token,
            });
            if let Some(scope) = t.scope {
                body["scope"] = scope.into();
            }
            let resp = no_store(StatusCode::OK, body);
            let action = if grant == "refresh_token" { "oauth.token.refresh" } else { "oauth.token.issue" };
            (resp, action)
        }
        Err(e) => {
            details.push(("error", e.code()));
            if out.revoked_family {
                details.push(("revoked", "family"));
            }
            (e.into_response(), "oauth.token.refused")
        }
    };
    Ok((actor.map(Extension), with_note(resp, action, out.user, &details)).into_response())
}

fn with_note(resp: Response, action: &str, target: Option<String>, details: &[(&str, &str)]) -> Response {
    let mut note = Note::default().action(action);
    note.target = target;
    (details.iter().fold(note, |note, (k, v)| note.with(k, *v)), resp).into_response()
}

/// `POST /dashboard/oauth/device/code` (a form: `client_id`, `scope`): a device code and the page to approve it.
pub(crate) async fn device_code(State(dash): State<St>, headers: HeaderMap, body: Bytes) -> Answer {
    let form = flows::form(&body)
        .map_err(|e| with_note(e.into_response(), "oauth.device.start", None, &[("error", "invalid_request")]))?;
    let (users, cfg) = (dash.app.users.clone(), dash.app.config.oauth.clone());
    let d = blocking("device", move || flows::device_start(&users, &cfg, &form)).await.map_err(|e| {
        let code = e.code();
        with_note(e.into_response(), "oauth.device.start", None, &[("error", code)])
    })?;
    let page = format!("{}/dashboard/oauth/device", origin(&headers));
    let complete = format!("{page}?user_code={}", d.user_code);
    let body = json!({
        "device_code": d.device_code,
        "user_code": d.user_code,
        "verification_uri": page,
        "verification_uri_complete": complete,
        "expires_in": d.expires_in,
        "interval": d.interval,
    });
    Ok(with_note(no_store(StatusCode::OK, body), "oauth.device.start", None, &[]))
}

/// The gateway's origin as the client reached it (the guard checked the `Host` against the allowed names).
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("{}://{host}", if super::session::over_tls(headers) { "https" } else { "http" })
}
