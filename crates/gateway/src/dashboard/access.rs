//! Roles on the dashboard: a route layer asks `users::access` whether the visitor's role may take the route's
//! action (pages and JSON calls alike), and answers a refusal page (403, with the pages the role may open) or, for
//! a JSON call, the dashboard's JSON error, when not. A visitor without a session goes on to the handler, whose
//! gate sends them to the login (session.rs). For a member limited to their own things the layer hands the handler
//! an [`Own`] extension (keys, usage, requests).

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{St, json_error, session};
use crate::users::access::{self, Action, Decision};
use crate::users::{Principal, Role, User};

/// The user whose own things the handler shows and changes (`None`: everything, for an admin or a viewer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Own(pub Option<User>);

impl<S: Send + Sync> FromRequestParts<S> for Own {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Own>().cloned().unwrap_or_default())
    }
}

pub(crate) async fn layer(
    State(dash): State<St>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map(MatchedPath::as_str).unwrap_or("").to_string();
    let action = access::dashboard_action(req.method(), &route);
    if action == Some(Action::Public) {
        return next.run(req).await;
    }
    let Some(who) = session::who(&dash, req.headers()).await else {
        return next.run(req).await;
    };
    match decide(who.role(), action) {
        Decision::Refuse => refused(&dash, &who, &route),
        Decision::Own => {
            req.extensions_mut().insert(Own(who.user().cloned()));
            next.run(req).await
        }
        Decision::Allow => next.run(req).await,
    }
}

/// What `role` may do on a route of `action` (the admin API's layer too): a route missing from the table is an
/// admin's only (the table test catches it first).
pub(crate) fn decide(role: Role, action: Option<Action>) -> Decision {
    match action {
        Some(a) => access::decide(role, a),
        None => match role {
            Role::Admin => Decision::Allow,
            Role::Member | Role::Viewer => Decision::Refuse,
        },
    }
}

/// 403: the JSON error for a call, the refusal page for a page.
fn refused(dash: &St, who: &Principal, route: &str) -> Response {
    let role = who.role().as_str();
    if route.starts_with("/dashboard/api/") || route == "/dashboard/logout" {
        return json_error(StatusCode::FORBIDDEN, format!("The {role} role may not do this."));
    }
    let csrf = match who {
        Principal::User(s) => s.csrf.clone(),
        _ => String::new(),
    };
    let mut ctx = super::pages::base_for(who, &csrf, "Not allowed", "");
    ctx.insert("role".into(), json!(role));
    ctx.insert("home".into(), json!(access::home(who.role())));
    (StatusCode::FORBIDDEN, dash.render("refused.html", ctx.into())).into_response()
}
