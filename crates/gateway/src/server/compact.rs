//! `POST /v1/responses/compact` (and `/responses/compact`): remote compaction for the Codex CLI (issue 25,
//! docs/protocol.md). The body is the official client's compaction input; it goes to the backend's compact
//! endpoint (`upstream/compact.rs`) on the account that holds the conversation (affinity by
//! `prompt_cache_key`, else the session headers, as for model calls), byte for byte: compaction items and
//! encrypted reasoning must reach the account that issued them untouched, and its answer (`{"output": [...]}`
//! with one `compaction` item) comes back untouched too, with the account's `x-codex-*` limit headers.
//! A 401 refreshes the token once; other refusals are classified like a model call's (`dialects::failure`) and
//! answered in the OpenAI error shape. No failover: the conversation's encrypted items belong to its account.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use dialects::failure::{Reason, Refusal, Stage};
use dialects::{ErrorKind, GatewayError, UpstreamFailure};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::accounts::{Account, LeaseError, RefreshBudget};
use crate::auth::now_unix;
use crate::relay::exchange::session_uuid;
use crate::server::errors::{Shape, body_error, error_response};
use crate::server::{AppState, request_id};
use crate::upstream::ratelimits::RateLimitHeaders;
use crate::upstream::{CallContext, IntoFailure, UpstreamResponse, classify, identity};

/// Largest compaction answer read (the compacted history of a long conversation).
const MAX_ANSWER: usize = 32 * 1024 * 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/responses/compact", post(compact)).route("/responses/compact", post(compact))
}

async fn compact(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rid = request_id(&headers);
    match run(&state, &headers, body).await {
        Ok(response) => response,
        Err(err) => error_response(Shape::OpenAi, &err, &rid),
    }
}

fn invalid(message: &str, param: &str) -> GatewayError {
    let mut err = GatewayError::new(ErrorKind::InvalidRequest, message);
    err.param = Some(param.to_string());
    err
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let tree: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, format!("The body is not a JSON object: {e}")))?;
    let model = match tree.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(invalid("`model` is required and must be a string.", "model")),
    };
    if !tree.get("input").is_some_and(Value::is_array) {
        return Err(invalid("`input` is required and must be an array of items.", "input"));
    }
    state.catalog.check(&model).await?;
    let key = tree
        .get("prompt_cache_key")
        .and_then(Value::as_str)
        .or_else(|| ["session-id", "session_id", "conversation_id"].iter().find_map(|h| header_str(headers, h)))
        .unwrap_or_default()
        .to_string();
    drop(tree);
    let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
    let lease = state.pool.lease(&model, conversation, &[]).await.map_err(|e| match e {
        LeaseError::UnknownModel(e) | LeaseError::Unavailable(e) => e,
        LeaseError::Exhausted => GatewayError::new(ErrorKind::UpstreamUnavailable, "No account could compact."),
    })?;
    let account = lease.account.clone();
    let ctx = CallContext {
        request_id: request_id(headers),
        session_id: session_uuid(&key),
        thread_id: header_str(headers, "thread-id").map(str::to_string),
        turn_state: header_str(headers, "x-codex-turn-state").map(str::to_string),
        client_version: identity::presented(
            state.config.client.version,
            identity::caller_version(headers),
            state.catalog.minimal_client_version(&model),
        ),
        // Compaction is a unary HTTP call (`responses/compact`), never over the WebSocket.
        ..CallContext::default()
    };
    let answer = send(state, &account, body, &ctx).await;
    drop(lease);
    let (status, upstream_headers, bytes) = match answer {
        Ok(ok) => ok,
        Err(failure) => {
            state.pool.record_failure(&account, &model, &failure);
            return Err(failure.to_error());
        }
    };
    state.pool.record_success(&account, &upstream_headers);
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    RateLimitHeaders::from_upstream(&upstream_headers).apply(response.headers_mut());
    Ok(response)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// Send with a fresh token (once more after a refresh on 401), within the header deadline, and read the
/// answer within the idle deadline. A refusal is classified.
async fn send(
    state: &AppState,
    account: &Arc<Account>,
    body: Bytes,
    ctx: &CallContext,
) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamFailure> {
    let timeouts = &state.config.timeouts;
    let mut refresh = RefreshBudget::default();
    let mut auth = state.pool.authorization(account, None, &mut refresh).await.map_err(UpstreamFailure::Credentials)?;
    let mut refreshed = false;
    loop {
        let sending = state.upstream.compact(account, auth.clone(), body.clone(), ctx);
        let response = match tokio::time::timeout(timeouts.upstream_headers, sending).await {
            Ok(answer) => answer.map_err(|e| e.failure(Stage::Request))?,
            Err(_) => return Err(UpstreamFailure::HeaderTimeout { limit: timeouts.upstream_headers }),
        };
        let UpstreamResponse { status, headers, mut body } = response;
        if status.is_success() {
            let bytes = read_all(&mut body, state.config.upstream_idle_timeout).await?;
            return Ok((status, headers, bytes));
        }
        let bytes = read_all(&mut body, timeouts.upstream_error_body).await.unwrap_or_default();
        let failure = classify(status, &headers, &bytes, now_unix());
        match &failure {
            UpstreamFailure::Refused(Refusal { reason: Reason::Unauthorized, .. }) if !refreshed => {
                refreshed = true;
                let refused = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
                auth = state
                    .pool
                    .authorization(account, Some(refused), &mut refresh)
                    .await
                    .map_err(UpstreamFailure::Credentials)?;
            }
            _ => return Err(failure),
        }
    }
}

/// The whole answer, up to [`MAX_ANSWER`] bytes, each wait bounded by `idle`.
async fn read_all(body: &mut crate::upstream::BodyStream, idle: std::time::Duration) -> Result<Bytes, UpstreamFailure> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                out.extend_from_slice(&chunk);
                if out.len() > MAX_ANSWER {
                    return Err(UpstreamFailure::StreamCut);
                }
            }
            Ok(Some(Err(e))) => return Err(e.failure(Stage::Body)),
            Ok(None) => return Ok(Bytes::from(out)),
            Err(_) => return Err(UpstreamFailure::Idle),
        }
    }
}
