//! A user's sign-in on the dashboard's login page (users/): name, password and, for a user who enrolled one, the
//! one-time code; the session it opens is the user's, kept in the store (`users::Users::sign_in`), its token the
//! session cookie. The admin key's login and the gate stay in session.rs.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::session::logged_in;
use super::{St, json_response};
use crate::audit::{Actor, Note};
use crate::users::{Method, SIGN_IN_DELAY, SignInRefused, SignedIn, Users, blocking};

/// Check a user's name, password and one-time code and open their session, one attempt at a time (the admin
/// API's sign-in too): a refusal waits [`SIGN_IN_DELAY`], holding up the next attempt.
pub(crate) async fn sign_in(
    users: &Arc<Users>,
    name: &str,
    password: &str,
    code: Option<&str>,
) -> Result<(String, Arc<SignedIn>), SignInRefused> {
    let turn = users.turn().await;
    let (u, name, password, code) = (users.clone(), name.to_string(), password.to_string(), code.map(str::to_string));
    let checked = blocking("sign-in", move || {
        let row = u.check(&name, &password, code.as_deref())?;
        let method = if row.totp_secret.is_some() { Method::PasswordTotp } else { Method::Password };
        Ok::<_, SignInRefused>(u.sign_in(&row, method)?)
    })
    .await;
    if checked.is_err() {
        tokio::time::sleep(SIGN_IN_DELAY).await;
    }
    drop(turn);
    checked
}

/// A user's sign-in (users/): the password, and a one-time code when the user enrolled one. A failure is recorded
/// in the audit trail with the name tried and why (never the password or the code).
pub(super) async fn user_login(
    dash: &St,
    headers: &HeaderMap,
    name: &str,
    password: &str,
    code: Option<&str>,
    next: Option<&str>,
) -> Response {
    let tried: String = name.trim().chars().take(200).collect();
    let note = Note::target(tried).action("user.sign_in");
    match sign_in(&dash.app.users, name, password, code).await {
        Ok((token, signed)) => {
            let home = crate::users::access::home(signed.user.role);
            let resp = logged_in(headers, &token, dash.sessions.lifetime, next.unwrap_or(home));
            let actor = Extension(Actor::User { name: signed.user.name.clone() });
            (actor, note.with("method", signed.method.clone()), resp).into_response()
        }
        Err(refused) => {
            tracing::warn!("dashboard: a sign-in was refused ({refused:?})");
            let (status, message) = match &refused {
                SignInRefused::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be checked."),
                SignInRefused::CodeNeeded => (StatusCode::UNAUTHORIZED, "Enter the code from your authenticator app."),
                SignInRefused::WrongCode => (StatusCode::UNAUTHORIZED, "Wrong code."),
                SignInRefused::WrongNameOrPassword | SignInRefused::NotAllowed => {
                    (StatusCode::UNAUTHORIZED, "Wrong name or password.")
                }
            };
            let body = json!({"error": message, "code_needed": matches!(refused, SignInRefused::CodeNeeded)});
            let note = note.with("reason", refused.reason());
            (Extension(Actor::Anonymous), note, json_response(status, body)).into_response()
        }
    }
}
