//! The auth.openai.com side: `POST /oauth/token` (refresh with single-use rotating refresh
//! tokens, and PKCE authorization-code exchange), `GET /oauth/authorize` (auto-approves as a new
//! plus account and redirects with a code), and the device-code endpoints under
//! `/api/accounts/deviceauth/`. Every token call is logged with its outcome in the state.

use crate::server::json_response;
use crate::state::{AuthCode, DeviceLogin, Shared};
use crate::tokens::{CLIENT_ID, pkce_challenge, random_string};
use crate::types::AccountSpec;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/authorize", get(authorize))
        .route("/api/accounts/deviceauth/usercode", post(device_usercode))
        .route("/api/accounts/deviceauth/token", post(device_token))
}

fn oauth_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, json!({"error": {"message": message, "type": "invalid_request_error", "code": code}}))
}

/// Parse a form-encoded or JSON body into string fields.
fn fields(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("application/x-www-form-urlencoded"));
    if !form && let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        return map
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect();
    }
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn tokens_body(ttl: u64, id_token: String, access: String, refresh: String) -> Value {
    json!({
        "id_token": id_token,
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": "openid profile email offline_access",
    })
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.token_arrivals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if shared.cfg.token_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.cfg.token_delay_ms)).await;
    }
    // Before anything is consumed: a hung or failing call leaves the refresh token valid, as a timeout in
    // front of the real endpoint does.
    let mode = *shared.token_mode.lock();
    if let Some(resp) = crate::server::misbehave(mode).await {
        let grant = fields(&headers, &body).get("grant_type").cloned().unwrap_or_default();
        shared.record_token_call(&grant, None, "failed_on_purpose");
        return resp;
    }
    let f = fields(&headers, &body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        shared.record_token_call(&grant, None, "invalid_client");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "Unknown or missing client_id.");
    }
    match grant.as_str() {
        "refresh_token" => refresh(&shared, &f),
        "authorization_code" => exchange_code(&shared, &f),
        _ => {
            shared.record_token_call(&grant, None, "unsupported_grant_type");
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant_type.")
        }
    }
}

fn refresh(shared: &Shared, f: &HashMap<String, String>) -> Response {
    let Some(rt) = f.get("refresh_token") else {
        shared.record_token_call("refresh_token", None, "invalid_request");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing refresh_token.");
    };
    let mut inner = shared.inner.lock();
    match shared.consume_refresh(&mut inner, rt) {
        Ok(account) => {
            let (id, access, refresh) = shared.issue_locked(&mut inner, &account);
            let ttl = shared.token_ttl_locked(&inner, &account);
            drop(inner);
            shared.record_token_call("refresh_token", Some(account), "ok");
            json_response(StatusCode::OK, tokens_body(ttl, id, access, refresh))
        }
        Err((outcome, account)) => {
            drop(inner);
            shared.record_token_call("refresh_token", account, outcome);
            let msg = if outcome == "refresh_token_reused" {
                "Your refresh token has already been used to generate a new access token. Please try signing in again."
            } else {
                "Your refresh token has expired. Please try signing in again."
            };
            oauth_error(StatusCode::UNAUTHORIZED, outcome, msg)
        }
    }
}

fn exchange_code(shared: &Shared, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    let (code, redirect, verifier) = (get("code"), get("redirect_uri"), get("code_verifier"));
    let mut inner = shared.inner.lock();
    let problem = match inner.codes.get(code) {
        None => Some("Invalid authorization code."),
        Some(c) if c.used => Some("Authorization code has already been used."),
        Some(c) if c.redirect_uri != redirect => Some("redirect_uri does not match."),
        Some(c) if pkce_challenge(verifier) != c.challenge => Some("PKCE verification failed."),
        Some(_) => None,
    };
    if let Some(msg) = problem {
        let account = inner.codes.get(code).map(|c| c.account_id.clone());
        drop(inner);
        shared.record_token_call("authorization_code", account, "invalid_grant");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", msg);
    }
    let account = match inner.codes.get_mut(code) {
        Some(c) => {
            c.used = true;
            c.account_id.clone()
        }
        None => String::new(),
    };
    let (id, access, refresh) = shared.issue_locked(&mut inner, &account);
    let ttl = shared.token_ttl_locked(&inner, &account);
    drop(inner);
    shared.record_token_call("authorization_code", Some(account), "ok");
    json_response(StatusCode::OK, tokens_body(ttl, id, access, refresh))
}

async fn authorize(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string()).into_response();
    if get("response_type") != "code" {
        return bad("response_type must be code");
    }
    if get("client_id") != CLIENT_ID {
        return bad("unknown client_id");
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        return bad("PKCE with code_challenge_method=S256 is required");
    }
    let Ok(mut target) = url::Url::parse(get("redirect_uri")) else {
        return bad("invalid redirect_uri");
    };
    let creds = shared.add_account(AccountSpec::default());
    let code = format!("ac_{}", random_string(40));
    shared.inner.lock().codes.insert(
        code.clone(),
        AuthCode {
            account_id: creds.account_id,
            challenge: get("code_challenge").to_string(),
            redirect_uri: get("redirect_uri").to_string(),
            used: false,
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scope", get("scope"))
        .append_pair("state", get("state"));
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())], "").into_response()
}

async fn device_usercode(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = fields(&headers, &body);
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_client", "Unknown or missing client_id.");
    }
    let device_auth_id = format!("deviceauth_{}", random_string(24));
    let raw = random_string(8).to_uppercase();
    let user_code = format!("{}-{}", &raw[..4], &raw[4..]);
    shared
        .inner
        .lock()
        .devices
        .insert(device_auth_id.clone(), DeviceLogin { user_code: user_code.clone(), polls: 0, approved: None });
    json_response(StatusCode::OK, json!({"device_auth_id": device_auth_id, "user_code": user_code, "interval": "1"}))
}

/// Polls answered "pending" before the fake approves a device login.
const PENDING_POLLS: u32 = 2;

async fn device_token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let f = fields(&headers, &body);
    let id = f.get("device_auth_id").cloned().unwrap_or_default();
    let user_code = f.get("user_code").cloned().unwrap_or_default();
    let (polls, approved) = {
        let mut inner = shared.inner.lock();
        let Some(d) = inner.devices.get_mut(&id) else {
            return oauth_error(StatusCode::NOT_FOUND, "deviceauth_not_found", "Unknown device_auth_id.");
        };
        if d.user_code != user_code {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_user_code", "user_code does not match.");
        }
        d.polls += 1;
        (d.polls, d.approved.clone())
    };
    if polls <= PENDING_POLLS {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "deviceauth_authorization_pending",
            "The user has not yet approved this device.",
        );
    }
    let (code, challenge, verifier) = match approved {
        Some(a) => a,
        None => {
            let creds = shared.add_account(AccountSpec::default());
            let verifier = random_string(64);
            let challenge = pkce_challenge(&verifier);
            let code = format!("ac_{}", random_string(40));
            let mut inner = shared.inner.lock();
            inner.codes.insert(
                code.clone(),
                AuthCode {
                    account_id: creds.account_id,
                    challenge: challenge.clone(),
                    redirect_uri: format!("{}/deviceauth/callback", shared.base_url),
                    used: false,
                },
            );
            let a = (code, challenge, verifier);
            if let Some(d) = inner.devices.get_mut(&id) {
                d.approved = Some(a.clone());
            }
            a
        }
    };
    json_response(
        StatusCode::OK,
        json!({"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier}),
    )
}
