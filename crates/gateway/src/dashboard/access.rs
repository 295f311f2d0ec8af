//! Roles on the dashboard: a route layer asks `users::access` whether the visitor's role may take the action the
//! route is declared with (users/table.rs; pages and JSON calls alike), and answers a refusal page (403, with the
//! pages the role may open) or, for a JSON call, the dashboard's JSON error, when not. A visitor without a session
//! goes on to the handler, whose gate sends them to the login (session.rs). For a member limited to their own
//! things the layer hands the handler an [`Own`] extension (keys, usage, requests). On the answer it puts who made
//! a change, for the audit layer (users/trail.rs).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{St, json_error, session};
use crate::audit::Actor;
use crate::users::access::{self, Action, Decision};
use crate::users::table::RouteEntry;
use crate::users::{Principal, User, trail};

/// The user whose own things the handler shows and changes (`None`: everything, for an admin or a viewer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Own(pub Option<User>);

impl<S: Send + Sync> FromRequestParts<S> for Own {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Own>().cloned().unwrap_or_default())
    }
}

pub(crate) async fn layer(State(dash): State<St>, req: Request, next: Next) -> Response {
    // Looked up before the handler runs, for the audit trail: a logout ends the session it is recorded under.
    let session = (!trail::is_read(req.method())).then(|| session::actor_of(&dash, req.headers())).flatten();
    let mut resp = decided(&dash, req, next).await;
    // Who made the change, unless the handler said (a sign-in): the session's actor, the admin key's login, or a
    // session the gate opened for this very request (loopback without a login).
    if resp.extensions().get::<Actor>().is_none() {
        let login = resp.extensions_mut().remove::<Principal>().map(|p| p.actor());
        let opened = || {
            let mut cookies = resp.headers().get_all(header::SET_COOKIE).iter();
            cookies.any(|c| c.as_bytes().starts_with(b"cgw_session=")).then_some(Actor::DashboardLoopback)
        };
        if let Some(actor) = session.or(login).or_else(opened) {
            resp.extensions_mut().insert(actor);
        }
    }
    resp
}

/// The handler's answer, or the refusal when the role may not take the route's action.
async fn decided(dash: &St, mut req: Request, next: Next) -> Response {
    let action = req.extensions().get::<RouteEntry>().map(|e| e.action);
    if action == Some(Action::Public) {
        return next.run(req).await;
    }
    let Some(who) = session::who(dash, req.headers()).await else {
        return next.run(req).await;
    };
    match access::decide_route(who.role(), action) {
        Decision::Refuse => refused(dash, &who, &req),
        Decision::Own => {
            req.extensions_mut().insert(Own(who.user().cloned()));
            next.run(req).await
        }
        Decision::Allow => next.run(req).await,
    }
}

/// 403: the JSON error for a call (any method but GET, or a path under `/dashboard/api/`), the refusal page for a
/// page.
fn refused(dash: &St, who: &Principal, req: &Request) -> Response {
    let role = who.role().as_str();
    if !trail::is_read(req.method()) || req.uri().path().starts_with("/dashboard/api/") {
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
