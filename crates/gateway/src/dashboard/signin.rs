//! A user's sign-in on the dashboard's login page (users/): name, password and, for a user who enrolled one, the
//! one-time code; the session it opens is the user's, kept in the store (`users::Users::sign_in`), its token the
//! session cookie. The admin key's login and the gate stay in session.rs.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::session::logged_in;
use super::{St, json_response};
use crate::audit::{Actor, Note};
use crate::users::{SIGN_IN_DELAY, SignInRefused};

/// A user's sign-in (users/): the password, and a one-time code when the user enrolled one. A failure waits
/// [`SIGN_IN_DELAY`], holding up the next attempt, and is recorded in the audit trail with the name tried and
/// why (never the password or the code).
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
    let users = dash.app.users.clone();
    let turn = dash.app.users.turn().await;
    let (name, password, code) = (name.to_string(), password.to_string(), code.map(str::to_string));
    let checked = tokio::task::spawn_blocking(move || {
        let row = users.check(&name, &password, code.as_deref())?;
        let method =
            if row.totp_secret.is_some() { crate::users::Method::PasswordTotp } else { crate::users::Method::Password };
        Ok::<_, SignInRefused>(users.sign_in(&row, method)?)
    })
    .await
    .unwrap_or_else(|e| Err(SignInRefused::Store(anyhow::anyhow!("the sign-in task failed: {e}"))));
    match checked {
        Ok((token, signed)) => {
            drop(turn);
            let home = crate::users::access::home(signed.user.role);
            let mut resp = logged_in(headers, &token, dash.sessions.lifetime, next.unwrap_or(home));
            resp.extensions_mut().insert(Actor::User { name: signed.user.name.clone() });
            resp.extensions_mut().insert(note.with("method", signed.method.clone()));
            resp
        }
        Err(refused) => {
            tokio::time::sleep(SIGN_IN_DELAY).await;
            drop(turn);
            tracing::warn!("dashboard: a sign-in was refused ({refused:?})");
            let (status, message) = match &refused {
                SignInRefused::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "The sign-in could not be checked."),
                SignInRefused::CodeNeeded => (StatusCode::UNAUTHORIZED, "Enter the code from your authenticator app."),
                SignInRefused::WrongCode => (StatusCode::UNAUTHORIZED, "Wrong code."),
                SignInRefused::WrongNameOrPassword | SignInRefused::NotAllowed => {
                    (StatusCode::UNAUTHORIZED, "Wrong name or password.")
                }
            };
            let mut resp = json_response(
                status,
                json!({"error": message, "code_needed": matches!(refused, SignInRefused::CodeNeeded)}),
            );
            resp.extensions_mut().insert(Actor::Anonymous);
            resp.extensions_mut().insert(note.with("reason", refused.reason()));
            resp
        }
    }
}
