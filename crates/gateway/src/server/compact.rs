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
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use dialects::{ErrorKind, GatewayError};
use serde_json::{Map, Value};

use crate::accounts::{LeaseError, RefreshBudget};
use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::relay::exchange::{account_thread_id, thread_id_for};
use crate::relay::unary;
use crate::server::errors::{body_error, error_response};
use crate::server::openai;
use crate::upstream::ratelimits::RateLimitHeaders;
use crate::upstream::{CallContext, identity};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/responses/compact", post(compact)).route("/responses/compact", post(compact))
}

async fn compact(
    State(state): State<Arc<AppState>>,
    caller: Option<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rid = request_id(&headers);
    // An opportunistic key's compaction, as its turns, spends only quota that would otherwise expire.
    let opportunistic = caller.is_some_and(|Caller(k)| k.opportunistic);
    match run(&state, &headers, body, opportunistic).await {
        Ok(response) => response,
        Err(err) => error_response(openai::SHAPE, &err, &rid),
    }
}

async fn run(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    opportunistic: bool,
) -> Result<Response, GatewayError> {
    // From here: an attempt the catalog check waits through is the request's one refresh attempt.
    let mut refresh = RefreshBudget::default();
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let tree: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::invalid(format!("The body is not a JSON object: {e}")))?;
    let model = match tree.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(GatewayError::invalid_param("model", "`model` is required and must be a string.")),
    };
    if !tree.get("input").is_some_and(Value::is_array) {
        return Err(GatewayError::invalid_param("input", "`input` is required and must be an array of items."));
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
    let need = crate::accounts::Need { conversation, opportunistic, ..crate::accounts::Need::model(&model) };
    let lease = state.pool.lease(&need, &[]).await.map_err(|e| match e {
        LeaseError::UnknownModel(e) | LeaseError::Unavailable(e) | LeaseError::Held { error: e, .. } => e,
        LeaseError::Exhausted => GatewayError::new(ErrorKind::UpstreamUnavailable, "No account could compact."),
    })?;
    let account = lease.account.clone();
    // An account other than the one that got the conversation's own identifiers gets its own (issue 71), in the
    // headers and the body's `prompt_cache_key` alike (the rest of the body goes as it came).
    let own = |id: &str| account_thread_id(id, &account.id);
    let relabel = conversation
        .and_then(|k| state.pool.home_account(k))
        .is_some_and(|(home, origin)| origin.unwrap_or(home) != account.id);
    let thread = if relabel { own(&thread_id_for(&key)) } else { thread_id_for(&key) };
    let body = if relabel { with_cache_key(&body, &thread)? } else { body };
    let caller_thread = header_str(headers, "thread-id").filter(|t| *t != thread_id_for(&key));
    let turn = identity::Turn::new(identity::TurnInputs {
        headers,
        client_metadata: None,
        thread_id: &thread,
        slug: &model,
        service_tier: None,
        effort: None,
        kind: identity::RequestKind::Compaction,
        // The official clients that still call `/responses/compact` predate Responses Lite.
        lite: false,
        now_ms: crate::auth::now_ms(),
    });
    let ctx = CallContext {
        request_id: request_id(headers),
        thread_id: caller_thread.map(|t| if relabel { own(t) } else { t.to_string() }),
        session_id: thread,
        turn: Some(Arc::new(turn)),
        turn_state: header_str(headers, "x-codex-turn-state").map(str::to_string),
        client_version: identity::presented(
            state.config.client.version,
            identity::caller_version(headers),
            state.catalog.turn_facts(&model).minimal_client_version,
        ),
        // Compaction is a unary HTTP call (`responses/compact`), never over the WebSocket.
        ..CallContext::default()
    };
    let call = |auth| state.upstream.compact(&account, auth, body.clone(), &ctx);
    let answer = unary::send(state, &account, &mut refresh, call).await;
    drop(lease);
    let (status, upstream_headers, bytes) = answer.map_err(|failure| {
        state.pool.record_failure(&account, &model, conversation, &failure);
        failure.to_error()
    })?;
    state.pool.record_success(&account, &upstream_headers);
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    RateLimitHeaders::from_upstream(&upstream_headers).apply(response.headers_mut());
    Ok(response)
}

/// The compaction body with `thread` as its `prompt_cache_key` (when it has one), in the official client's member
/// order; every other value as it came.
fn with_cache_key(body: &Bytes, thread: &str) -> Result<Bytes, GatewayError> {
    let mut tree: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| GatewayError::internal(format!("the body cannot be read again: {e}")))?;
    if tree.contains_key("prompt_cache_key") {
        tree.insert("prompt_cache_key".into(), Value::String(thread.to_string()));
    }
    let bytes = identity::official_order(&tree).map_err(|e| GatewayError::internal(e.to_string()))?;
    Ok(Bytes::from(bytes))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}
