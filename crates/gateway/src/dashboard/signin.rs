//! A user's sign-in on the dashboard's login page (users/): name, password and, for a user who enrolled one, the
//! one-time code; the session it opens is the user's, kept in the store (`users::Users::sign_in`), its token the
//! session cookie. The admin key's login and the gate stay in session.rs.
//!
//! Also the sign-in surfaces' shared defences against guessing (docs/security.md, "Guessing at the sign-in
//! pages"): the client address's count of failures (users/limits.rs) before anything is checked, the wait a failed
//! attempt serves alone, the 429 a limited one gets at once, and the audit trail's bursts (audit/bursts.rs), for the
//! password sign-ins here and in `POST /admin/sign-in`, the admin key's login (session.rs), the device codes
//! (oauth.rs) and the single sign-on callback (sso.rs).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::session::logged_in;
use super::{St, json_response};
use crate::app::AppState;
use crate::audit::bursts::{InBurst, Refusal};
use crate::audit::{Actor, Entry, Note, Outcome};
use crate::users::limits::{Wait, address_key};
use crate::users::{Method, SignInRefused, SignedIn, blocking};

/// A sign-in surface, as its failures are counted and summed up in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// A name and password (the login form, `POST /admin/sign-in`) or the admin key (the login form).
    Password,
    /// A device code typed on the verification page.
    DeviceCode,
    /// The single sign-on provider's answer.
    Sso,
}

impl Surface {
    fn key(self, source: Option<&str>) -> String {
        let surface = match self {
            Surface::Password => "sign-in",
            Surface::DeviceCode => "device-code",
            Surface::Sso => "sso",
        };
        format!("{surface} {}", address_key(source))
    }

    /// The action of the burst's summary (`<action>.failures`).
    fn action(self) -> &'static str {
        match self {
            Surface::Password | Surface::Sso => "user.sign_in",
            Surface::DeviceCode => "oauth.device",
        }
    }
}

/// Append `entries` to the audit trail, in order.
async fn write(app: &AppState, entries: impl IntoIterator<Item = Entry>) {
    for e in entries {
        crate::users::trail::append(app.pool.store(), e).await;
    }
}

/// A refusal at `surface` from `source` (`name`: the name tried, `reason`: the refusal's name in the trail): into
/// its burst, the summaries it ended written; [`InBurst`] when the request's own entry is to be left out.
pub(crate) async fn refused(
    app: &AppState,
    surface: Surface,
    source: Option<&str>,
    name: Option<&str>,
    reason: &str,
) -> Option<InBurst> {
    let now = crate::usage::when::now_ms();
    let key = surface.key(source);
    let (refusal, ended) = app.users.guards.bursts.refused(&key, surface.action(), source, name, reason, now);
    write(app, ended).await;
    match refusal {
        Refusal::RecordIt => None,
        Refusal::Counted => Some(InBurst),
    }
}

/// A success at `surface` from `source`: the address's burst ends and its summary is written before the success.
pub(crate) async fn succeeded(app: &AppState, surface: Surface, source: Option<&str>) {
    let ended = app.users.guards.bursts.close(&surface.key(source));
    write(app, ended).await;
}

/// The refused request waits out the failure delay from `started` (that request alone: nothing is held).
pub(crate) async fn failure_delay(app: &AppState, started: Instant) {
    let until = started + app.config.dashboard.attempts.failure_delay;
    tokio::time::sleep_until(until.into()).await;
}

/// The dashboard's JSON answer to a limited attempt: 429 with `Retry-After`.
pub(crate) fn too_many(wait: &Wait) -> Response {
    let body = json!({"error": wait.message(), "retry_after": wait.seconds(), "locked": wait.locked});
    let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, body);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.seconds()));
    resp
}

/// What a password sign-in came to.
pub(crate) struct Tried {
    pub result: Result<(String, Arc<SignedIn>), SignInRefused>,
    /// The refusal is counted into its burst: the surface's layer leaves its entry out.
    pub in_burst: Option<InBurst>,
}

/// Check a user's name, password and one-time code from `source` (the client address) and open their session (the
/// admin API's sign-in too). The address and the name are counted first (users/limits.rs, users/attempt.rs); a
/// refusal waits `[dashboard.attempts] failure_delay_ms` alone, a limited attempt is answered at once.
pub(crate) async fn sign_in(
    app: &AppState,
    name: &str,
    password: &str,
    code: Option<&str>,
    source: Option<&str>,
) -> Tried {
    let started = Instant::now();
    let guards = &app.users.guards;
    let tried: String = name.trim().chars().take(200).collect();
    let mut locked_out = None;
    let result = match guards.sign_in_addresses.admit(address_key(source), started) {
        Err(wait) => Err(SignInRefused::Limited(wait)),
        Ok(charge) => {
            let u = app.users.clone();
            let (name, password, code) = (name.to_string(), password.to_string(), code.map(str::to_string));
            let checked = blocking("sign-in", move || {
                let attempt = u.attempt(&name, &password, code.as_deref());
                let opened = attempt.result.and_then(|row| {
                    let method = if row.totp_secret.is_some() { Method::PasswordTotp } else { Method::Password };
                    Ok(u.sign_in(&row, method)?)
                });
                Ok::<_, SignInRefused>((opened, attempt.locked_out))
            })
            .await;
            let opened = checked.and_then(|(opened, locked)| {
                locked_out = locked;
                opened
            });
            // The address is charged for guesses only: a right password, or a store that failed, is given back.
            if matches!(opened, Ok(_) | Err(SignInRefused::CodeNeeded | SignInRefused::Store(_))) {
                guards.sign_in_addresses.refund(charge);
            }
            opened
        }
    };
    let in_burst = match &result {
        Ok(_) => {
            succeeded(app, Surface::Password, source).await;
            None
        }
        Err(SignInRefused::CodeNeeded | SignInRefused::Store(_)) => None,
        Err(e) => {
            let in_burst = refused(app, Surface::Password, source, Some(&tried), e.reason()).await;
            if let Some(l) = locked_out {
                tracing::warn!("a user was locked out after {} failed sign-ins", l.failures);
                succeeded(app, Surface::Password, source).await;
                let mut entry = Entry::new(Actor::Gateway, "user.lockout");
                entry.source = source.map(str::to_string);
                entry.target = Some(l.user_id);
                entry.outcome = Outcome::Ok;
                let details =
                    [("name", json!(l.name)), ("failures", json!(l.failures)), ("until_ms", json!(l.until_ms))];
                entry.details.extend(details.into_iter().map(|(k, v)| (k.to_string(), v)));
                write(app, [entry]).await;
            }
            if !matches!(e, SignInRefused::Limited(_)) {
                failure_delay(app, started).await;
            }
            in_burst
        }
    };
    Tried { result, in_burst }
}

/// A user's sign-in (users/): the password, and a one-time code when the user enrolled one. A failure is recorded
/// in the audit trail with the name tried and why (never the password or the code), or counted into its burst.
pub(super) async fn user_login(
    dash: &St,
    headers: &HeaderMap,
    source: Option<&str>,
    login: (&str, &str, Option<&str>),
    next: Option<&str>,
) -> Response {
    let (name, password, code) = login;
    let tried: String = name.trim().chars().take(200).collect();
    let note = Note::target(tried).action("user.sign_in");
    let Tried { result, in_burst } = sign_in(&dash.app, name, password, code, source).await;
    match result {
        Ok((token, signed)) => {
            let home = crate::users::access::home(signed.user.role);
            let resp = logged_in(headers, &token, dash.sessions.lifetime, next.unwrap_or(home));
            let actor = Extension(Actor::User { name: signed.user.name.clone() });
            (actor, note.with("method", signed.method.clone()), resp).into_response()
        }
        Err(refused) => {
            tracing::warn!("dashboard: a sign-in was refused ({})", refused.reason());
            let note = note.with("reason", refused.reason());
            let (status, message) = match &refused {
                SignInRefused::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be checked."),
                SignInRefused::CodeNeeded => (StatusCode::UNAUTHORIZED, "Enter the code from your authenticator app."),
                SignInRefused::WrongCode => (StatusCode::UNAUTHORIZED, "Wrong code."),
                SignInRefused::WrongNameOrPassword | SignInRefused::NotAllowed => {
                    (StatusCode::UNAUTHORIZED, "Wrong name or password.")
                }
                SignInRefused::Limited(wait) => {
                    return (Extension(Actor::Anonymous), note, in_burst, too_many(wait)).into_response();
                }
            };
            let body = json!({"error": message, "code_needed": matches!(refused, SignInRefused::CodeNeeded)});
            (Extension(Actor::Anonymous), note, in_burst, json_response(status, body)).into_response()
        }
    }
}
