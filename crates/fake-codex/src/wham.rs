//! The ChatGPT-login surface the official client reads before and beside its turns, under
//! `/backend-api/wham/`: the workspace routing discovery (`accounts/check`) and the user's settings
//! (`settings/user`). Shapes from the official client's source (codex-rs `backend-client`, the app-server's
//! `workspace_routing.rs`); the quota read (`wham/usage`) is in `server.rs`.
//!
//! As strict as the backend: both need a valid access token and a `ChatGPT-Account-ID` that matches it (the
//! official client sends both); the discovery lists only the workspace the token belongs to.

use crate::server::{chatgpt_auth, json_response};
use crate::state::Shared;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/backend-api/wham/accounts/check", get(accounts_check))
        .route("/backend-api/wham/settings/user", get(settings_user))
}

/// `GET /backend-api/wham/accounts/check`: the workspaces the login may use, in the list form the official client
/// reads (`accounts: [{id, workspace_backend_origin, account_routing_override, ...}]`). `NO_CONSTRAINT` for both
/// routing fields: the client keeps its configured backend origin (which it then requires to be `https`) and adds
/// no routing-override header.
async fn accounts_check(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (plan, email) = {
        let inner = shared.inner.lock();
        match inner.accounts.get(&account) {
            Some(a) => (a.plan.clone(), a.email.clone()),
            None => return crate::server::detail(StatusCode::NOT_FOUND, "Account not found"),
        }
    };
    let structure = if matches!(plan.as_str(), "team" | "business" | "enterprise") { "workspace" } else { "personal" };
    let body = json!({
        "accounts": [{
            "id": account,
            "name": email,
            "plan_type": plan,
            "structure": structure,
            "workspace_backend_origin": "NO_CONSTRAINT",
            "account_routing_override": "NO_CONSTRAINT",
        }],
        "account_ordering": [account],
        "default_account_id": account,
    });
    crate::server::tag(json_response(StatusCode::OK, body), Some(account))
}

/// `GET /backend-api/wham/settings/user`: the user's Codex settings; the fake's users have none set.
async fn settings_user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match chatgpt_auth(&shared, &headers) {
        Ok(account) => crate::server::tag(json_response(StatusCode::OK, json!({})), Some(account)),
        Err(r) => r,
    }
}
