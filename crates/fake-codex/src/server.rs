//! The HTTP surface: the router, the middleware that records every request (decoding zstd
//! bodies on the way), bearer/account authentication shared by the ChatGPT endpoints, and the
//! small read-only endpoints (model catalogs, usage). The `/responses` handlers live in
//! `responses.rs`, OAuth in `oauth.rs`, the `/_fake` control API in `control.rs`.

use crate::catalog;
use crate::scenario::token_expired_body;
use crate::state::{Shared, TokenRejection};
use crate::tokens::{now_ms, now_secs};
use crate::types::{ConnectionNumber, EndpointMode, RecordedRequest};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Marks a response with the account (or API key owner) it was served for, for the recorder.
#[derive(Clone)]
pub(crate) struct AuthedAccount(pub Option<String>);

const MAX_BODY: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/backend-api/codex/responses", post(crate::responses::chatgpt_responses).get(crate::ws::chatgpt_ws))
        .route("/v1/responses", post(crate::responses::api_responses))
        .route("/backend-api/codex/responses/compact", post(crate::compact::chatgpt_compact))
        .route("/backend-api/codex/images/generations", post(crate::images::generations))
        .route("/backend-api/codex/images/edits", post(crate::images::edits))
        .route("/v1/responses/compact", post(crate::compact::api_compact))
        .route("/backend-api/codex/models", get(codex_models))
        .route("/v1/models", get(api_models))
        .route("/backend-api/wham/usage", get(usage))
        .merge(crate::oauth::routes())
        .merge(crate::wham::routes())
        .merge(crate::control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .layer(middleware::from_fn(compressed_json))
        .with_state(shared)
}

/// A JSON answer zstd-encoded for a request that accepts it: the official client asks on every HTTP call from
/// 0.171, and the backend may answer so; the fake does, so a gateway that asks is held to decoding its catalog,
/// quota, workspace and token answers too (recorded as they were before encoding).
async fn compressed_json(req: Request, next: Next) -> Response {
    let accepts = crate::encode::accepts_zstd(req.headers()) && !req.uri().path().starts_with("/_fake/");
    let resp = next.run(req).await;
    match accepts {
        true => crate::encode::zstd_json(resp).await,
        false => resp,
    }
}

async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, json!({"detail": "Not Found"}))
}

/// A JSON response with a status.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A FastAPI-style `{"detail": ...}` error.
pub(crate) fn detail(status: StatusCode, msg: &str) -> Response {
    json_response(status, json!({"detail": msg}))
}

async fn record(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_fake/") {
        return next.run(req).await;
    }
    let seq = shared.next_seq();
    let at_ms = now_ms();
    let (mut parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut rec = RecordedRequest {
        seq,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: Value::Null,
        account_id: None,
        status: 0,
        at_ms,
        http_version: format!("{:?}", parts.version),
        connection: parts.extensions.get::<ConnectionNumber>().map_or(0, |c| c.0),
        chained_input: None,
    };
    let early = match to_bytes(body, MAX_BODY).await {
        Err(_) => Err(detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")),
        Ok(raw) => {
            let zstd =
                parts.headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"));
            if zstd {
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.remove(header::CONTENT_LENGTH);
                zstd::decode_all(&raw[..])
                    .map(bytes::Bytes::from)
                    .map_err(|_| detail(StatusCode::BAD_REQUEST, "Invalid zstd request body"))
            } else {
                Ok(raw)
            }
        }
    };
    let resp = match early {
        Err(resp) => resp,
        Ok(bytes) => {
            rec.body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
    };
    // A WebSocket handshake: its messages are recorded one by one instead (`ws.rs`).
    if resp.extensions().get::<crate::ws::NotRecorded>().is_some() {
        return resp;
    }
    rec.status = resp.status().as_u16();
    rec.account_id = resp.extensions().get::<AuthedAccount>().and_then(|a| a.0.clone());
    let streaming = match (&rec.account_id, rec.status) {
        (Some(account), 200) if rec.path.ends_with("/responses") => Some(Streaming::start(&shared, account)),
        _ => None,
    };
    shared.record_request(rec);
    match streaming {
        // Counted until its body ends or is dropped: how many answers one account has in flight at once.
        Some(guard) => {
            let (parts, body) = resp.into_parts();
            let stream = futures_util::StreamExt::map(body.into_data_stream(), move |chunk| {
                let _ = &guard;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        None => resp,
    }
}

/// One Responses answer streaming to an account's client, counted in `Shared::streaming` while it lives.
struct Streaming {
    shared: Arc<Shared>,
    account: String,
}

impl Streaming {
    fn start(shared: &Arc<Shared>, account: &str) -> Streaming {
        let mut map = shared.streaming.lock();
        let entry = map.entry(account.to_string()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        Streaming { shared: shared.clone(), account: account.to_string() }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if let Some(entry) = self.shared.streaming.lock().get_mut(&self.account) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

/// The bearer token of a request.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticate a ChatGPT-mode request: valid access token plus a matching ChatGPT-Account-ID.
pub(crate) fn chatgpt_auth(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let Some(token) = bearer(headers) else {
        return Err(detail(StatusCode::UNAUTHORIZED, "Unauthorized"));
    };
    let account = match shared.check_access(token) {
        Ok(a) => a,
        Err(TokenRejection::Expired) => {
            return Err(json_response(StatusCode::UNAUTHORIZED, token_expired_body()));
        }
        Err(TokenRejection::Unknown) => {
            return Err(detail(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
    };
    let with_account = |mut r: Response| {
        r.extensions_mut().insert(AuthedAccount(Some(account.clone())));
        r
    };
    match headers.get("chatgpt-account-id").and_then(|v| v.to_str().ok()) {
        Some(h) if h == account => Ok(account),
        Some(_) => Err(with_account(detail(
            StatusCode::FORBIDDEN,
            "ChatGPT-Account-ID does not match the access token's account",
        ))),
        None => Err(with_account(detail(StatusCode::FORBIDDEN, "Missing ChatGPT-Account-ID header"))),
    }
}

/// `r`, marked with the account it was served for (the request log's `account_id`).
pub(crate) fn tag(mut r: Response, account: Option<String>) -> Response {
    r.extensions_mut().insert(AuthedAccount(account));
    r
}

async fn codex_models(State(shared): State<Arc<Shared>>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    shared.catalog_calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mode = *shared.catalog_mode.lock();
    if let Some(resp) = misbehave(mode).await {
        return resp;
    }
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let slugs = {
        let inner = shared.inner.lock();
        inner.accounts.get(&account).map(|a| a.models.clone()).unwrap_or_default()
    };
    let version = uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("client_version=")));
    let mut body = crate::versions::catalog(&shared, &slugs, version);
    crate::ws::mark_preferred(&shared, &mut body);
    crate::catalog::mark_lite(&shared, &mut body);
    crate::catalog::mark_effort_updates(&shared, &mut body);
    let body = body.to_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("W/\"{}\"", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    let matches = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    tag(resp, Some(account))
}

async fn api_models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let ok =
        bearer(&headers).is_some_and(|t| shared.inner.lock().api_keys.contains(t) || shared.check_access(t).is_ok());
    if !ok {
        return invalid_api_key();
    }
    json_response(StatusCode::OK, catalog::openai_list())
}

/// A side endpoint told to misbehave: `Hang` never answers (the future stays pending until the client goes
/// away), `Fail` answers its status with an OpenAI-style error body; `Normal` lets the handler go on.
pub(crate) async fn misbehave(mode: EndpointMode) -> Option<Response> {
    match mode {
        EndpointMode::Normal => None,
        EndpointMode::Hang => std::future::pending().await,
        EndpointMode::Fail { status } => Some(json_response(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json!({"error": {"message": "fake-codex: this endpoint is failing on purpose", "type": "server_error", "code": null}}),
        )),
    }
}

/// 401 for an unknown API key, OpenAI style.
pub(crate) fn invalid_api_key() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        json!({"error": {
            "message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        }}),
    )
}

async fn usage(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let resp = match shared.quota(&account) {
        Some(q) => json_response(StatusCode::OK, catalog::usage_body(&q, now_secs())),
        None => detail(StatusCode::NOT_FOUND, "Account not found"),
    };
    tag(resp, Some(account))
}
