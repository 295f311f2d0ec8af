//! Who may read `/metrics` (docs/operations.md, "Metrics"): the admin key, the scraper's own key (`[metrics]
//! scrape_key`, which opens nothing else), or an admin user's session, sent as `Authorization: Bearer cgs_...` (what
//! `POST /admin/sign-in` gives) or as the dashboard's session cookie. The guard (server/guard.rs) settles the keys
//! on the request head and lets a session through; here, on the route, the session is looked up (in the store when
//! this instance has not seen it: one made on another instance of a team) and its role decided by
//! `users::access` (`Action::Metrics`), so a member's session is refused with 403 `role_forbidden`.

use std::sync::Arc;

use axum::http::HeaderMap;
use dialects::{ErrorKind, GatewayError};

use crate::app::AppState;
use crate::server::guard::{any_equal, presented_in, session_ended};
use crate::users::SESSION_PREFIX;
use crate::users::access::{Action, Decision, decide};

/// The dashboard's session cookie, when it holds a user's session token.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    crate::dashboard::cookie(headers, crate::dashboard::SESSION_COOKIE).filter(|v| v.starts_with(SESSION_PREFIX))
}

/// Whether the request may read `/metrics`; the refusal in the gateway's error shape otherwise.
pub(super) async fn may_read(state: &Arc<AppState>, headers: &HeaderMap) -> Result<(), GatewayError> {
    if state.config.metrics.public {
        return Ok(());
    }
    let presented = presented_in(headers);
    let shared = state.live.shared_keys.load();
    let scrape_key = state.config.metrics.scrape_key.as_slice();
    if presented.iter().flatten().any(|p| any_equal(&shared.admin_keys, p) || any_equal(scrape_key, p)) {
        return Ok(());
    }
    let session = presented[0].filter(|t| t.starts_with(SESSION_PREFIX)).or_else(|| session_cookie(headers));
    let Some(token) = session else {
        // What the guard let through without a key: a single-user install with no admin credential, no created
        // key and no user.
        let open = shared.admin_keys.is_empty() && state.keys.is_empty() && !state.users.any();
        return if open { Ok(()) } else { Err(unauthorized()) };
    };
    let Some(signed) = state.users.resolve(token).await else { return Err(session_ended()) };
    match decide(signed.user.role, Action::Metrics) {
        Decision::Allow => Ok(()),
        Decision::Own | Decision::Refuse => Err(GatewayError::new(
            ErrorKind::PermissionDenied,
            format!(
                "The {} role may not read /metrics: an admin's session, the admin key or `[metrics] scrape_key` may.",
                signed.user.role.as_str()
            ),
        )
        .with_code("role_forbidden")),
    }
}

fn unauthorized() -> GatewayError {
    GatewayError::new(
        ErrorKind::Unauthorized,
        "Send the admin key, `[metrics] scrape_key`, or an admin's session token (POST /admin/sign-in).",
    )
    .with_code("invalid_api_key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    #[test]
    fn the_session_cookie_is_found_among_others_and_only_a_session_token() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; cgw_session=cgs_abc; b=2"));
        assert_eq!(session_cookie(&h), Some("cgs_abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("cgw_session=dash-admin-key-session"));
        assert_eq!(session_cookie(&h), None, "a dashboard session of the admin key is no user's");
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
