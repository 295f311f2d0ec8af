//! Roles on the admin API: a route layer finds out who is asking (the admin key, a user's session token sent as
//! `Authorization: Bearer cgs_...`, or nobody on a keyless single-user install), asks `users::access` whether that
//! role may take the action the route is declared with (users/table.rs), and refuses with 403 `role_forbidden` in
//! the admin API's error shape when not. What it found goes on as an [`Asking`] request extension (handlers that
//! serve a member their own things read it) and on the answer (the audit layer's actor, users/trail.rs). The guard
//! (server/guard.rs) has already refused wrong keys; a session token it lets through to here, where the store can
//! be asked about it.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dialects::{ErrorKind, GatewayError};

use super::error::AdminError;
use crate::app::AppState;
use crate::users::access::{self, Action, Decision};
use crate::users::table::RouteEntry;
use crate::users::{Principal, SESSION_PREFIX, User};

/// Who is asking and what the table allowed them.
#[derive(Debug, Clone)]
pub struct Asking {
    pub principal: Principal,
    pub decision: Decision,
}

impl Asking {
    /// The user whose own things a handler is limited to (`None`: everything).
    pub fn only_own(&self) -> Option<&User> {
        match self.decision {
            Decision::Own => self.principal.user(),
            Decision::Allow | Decision::Refuse => None,
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Asking {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<AppState>) -> Result<Self, AdminError> {
        parts
            .extensions
            .get::<Asking>()
            .cloned()
            .ok_or_else(|| AdminError::Internal(anyhow::anyhow!("the admin route has no access layer")))
    }
}

/// Who presented what: a session token, the admin key, or nothing the layer knows.
async fn identify(s: &Arc<AppState>, headers: &HeaderMap) -> Result<Option<Principal>, AdminError> {
    let presented = crate::server::guard::presented_in(headers);
    if let Some(token) = presented[0].filter(|t| t.starts_with(SESSION_PREFIX)) {
        return match s.users.resolve(token).await {
            Some(signed) => Ok(Some(Principal::User(signed))),
            None => Err(crate::server::guard::session_ended().into()),
        };
    }
    let shared = s.live.shared_keys.load();
    if presented.iter().flatten().any(|p| crate::server::guard::any_equal(&shared.admin_keys, p)) {
        return Ok(Some(Principal::AdminKey));
    }
    // The guard's keyless case: no admin credential, no created key, no user.
    let open = shared.admin_keys.is_empty() && s.keys.is_empty() && !s.users.any();
    Ok(open.then_some(Principal::AdminOpen))
}

pub async fn layer(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let action = req.extensions().get::<RouteEntry>().map(|e| e.action);
    let principal = match identify(&s, req.headers()).await {
        Ok(p) => p,
        // An ended session sent along to the sign-in does not stand in the way of a new one.
        Err(_) if action == Some(Action::Public) => None,
        Err(e) => return e.into_response(),
    };
    let decision = match (&principal, action) {
        (_, Some(Action::Public)) => Decision::Allow,
        (None, _) => {
            let e = GatewayError::new(ErrorKind::Unauthorized, "Send the admin key or a session token.")
                .with_code("invalid_api_key");
            return AdminError::from(e).into_response();
        }
        (Some(p), action) => access::decide_route(p.role(), action),
    };
    let Some(principal) = principal else {
        // A public route with nobody signed in.
        return next.run(req).await;
    };
    let mut resp = if decision == Decision::Refuse {
        let role = principal.role().as_str();
        let e = GatewayError::new(ErrorKind::PermissionDenied, format!("The {role} role may not use this route."));
        AdminError::from(e.with_code("role_forbidden")).into_response()
    } else {
        req.extensions_mut().insert(Asking { principal: principal.clone(), decision });
        next.run(req).await
    };
    resp.extensions_mut().insert(principal);
    resp
}
