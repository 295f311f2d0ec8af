//! `POST /backend-api/codex/responses` (ChatGPT mode) and `POST /v1/responses` (API-key mode):
//! authenticate, validate strictly (`validate.rs`), check quota, pick the queued or default
//! scenario (`scenario.rs`, `default_reply.rs`), account tokens and prompt-cache hits, then stream
//! the SSE steps built by `sse.rs` as the response body (`body.rs`).

use crate::catalog;
use crate::default_reply::default_scenario;
use crate::scenario::{Outcome, ReplyCtx, outcome, usage_limit_body};
use crate::server::{AuthedAccount, bearer, chatgpt_auth, detail, invalid_api_key, json_response};
use crate::sse::{self, Ending, Meta};
use crate::state::Shared;
use crate::tokens::{now_secs, random_id, seal_reasoning};
use crate::types::Scenario;
use crate::validate::{Ctx, Reject, validate};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Who is calling.
enum Caller {
    Account(String),
    ApiKey(String),
}

impl Caller {
    fn owner(&self) -> String {
        match self {
            Caller::Account(a) => a.clone(),
            Caller::ApiKey(k) => format!("apikey:{k}"),
        }
    }
    fn account(&self) -> Option<&str> {
        match self {
            Caller::Account(a) => Some(a),
            Caller::ApiKey(_) => None,
        }
    }
}

pub(crate) async fn chatgpt_responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let tag = Some(account.clone());
    let mut resp = if headers.get("originator").is_none() {
        detail(StatusCode::BAD_REQUEST, "missing originator")
    } else if let Some(refusal) = crate::versions::refuse(&shared, &headers, &body) {
        refusal
    } else {
        respond(&shared, Caller::Account(account), &body, 0).await
    };
    if crate::encode::accepts_zstd(&headers) {
        resp = crate::encode::zstd_stream(resp);
    }
    resp.extensions_mut().insert(AuthedAccount(tag));
    resp
}

/// The answer to one Responses body of an authenticated ChatGPT account, as the HTTP endpoint gives it (the
/// WebSocket endpoint answers each `response.create` message with this, `ws.rs`; `held`: how many leading input
/// items came from the connection's chain, not from the client).
pub(crate) async fn chatgpt_answer(shared: &Arc<Shared>, account: String, raw: &[u8], held: usize) -> Response {
    respond(shared, Caller::Account(account), raw, held).await
}

pub(crate) async fn api_responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match bearer(&headers) {
        Some(k) if shared.inner.lock().api_keys.contains(k) => k.to_string(),
        _ => return invalid_api_key(),
    };
    respond(&shared, Caller::ApiKey(key), &body, 0).await
}

fn render_reject(caller: &Caller, r: Reject) -> Response {
    match caller {
        Caller::Account(_) => detail(StatusCode::BAD_REQUEST, &r.message),
        Caller::ApiKey(_) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": {
                "message": r.message,
                "type": "invalid_request_error",
                "param": r.param,
                "code": r.code,
            }}),
        ),
    }
}

/// Serialized leading units of a request, for token counting and the prompt cache.
fn units(body: &Value) -> Vec<String> {
    let mut out = vec![
        json!([body.get("model"), body.get("instructions")]).to_string(),
        body.get("tools").cloned().unwrap_or(Value::Null).to_string(),
    ];
    if let Some(items) = body.get("input").and_then(Value::as_array) {
        out.extend(items.iter().map(Value::to_string));
    }
    out
}

/// The units as the prompt cache sees them: the tokens the model reads, so an item's ids, status and
/// annotations, and whether a message's text is a string or parts, do not count (a client's own copy of an answer
/// hits the cache the backend's answer filled, as on the real backend, which caches rendered tokens).
///
/// The request-level reasoning effort is part of the first unit: the model reads it at the very start of the
/// prompt, so changing it between turns rewrites the whole prefix and nothing is cached. A `configuration_update`
/// item changes the effort from its own place on, an item like any other, so everything before it stays cached
/// (what Codex CLI 0.169+ sends to keep the cache when its user changes the effort).
fn cache_units(body: &Value) -> Vec<String> {
    let effort = body.get("reasoning").and_then(|r| r.get("effort"));
    let mut out = vec![
        json!([body.get("model"), body.get("instructions"), effort]).to_string(),
        body.get("tools").cloned().unwrap_or(Value::Null).to_string(),
    ];
    if let Some(items) = body.get("input").and_then(Value::as_array) {
        out.extend(items.iter().map(rendered));
    }
    out
}

/// One input item as the model reads it.
fn rendered(item: &Value) -> String {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    if kind == "message" {
        let role = item.get("role").and_then(Value::as_str).unwrap_or_default();
        let text = match item.get("content") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| match p.get("text").and_then(Value::as_str) {
                    Some(t) => t.to_string(),
                    None => p.to_string(),
                })
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        };
        return format!("<{role}>{text}");
    }
    match item {
        Value::Object(m) => {
            let kept: serde_json::Map<String, Value> = m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "status" | "internal_chat_message_metadata_passthrough"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(kept).to_string()
        }
        other => other.to_string(),
    }
}

async fn respond(shared: &Arc<Shared>, caller: Caller, raw: &[u8], held: usize) -> Response {
    match prepare(shared, caller, raw, held) {
        Answer::Now(resp) => resp,
        Answer::After(ms, resp) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            resp
        }
        // Until the client goes away (the handler is then dropped).
        Answer::Never => std::future::pending().await,
    }
}

/// A response, possibly to be sent only after a pause (a `silence` before an HTTP error, a hang before
/// headers), or never.
enum Answer {
    Now(Response),
    After(u64, Response),
    Never,
}

/// Hold an answer back before its headers: `None` ms is forever.
fn hang(hang_ms: Option<u64>, answer: Answer) -> Answer {
    match (hang_ms, answer) {
        (None, _) | (_, Answer::Never) => Answer::Never,
        (Some(ms), Answer::Now(resp)) => Answer::After(ms, resp),
        (Some(ms), Answer::After(more, resp)) => Answer::After(ms + more, resp),
    }
}

/// Whether a ChatGPT account's Responses body would be served (validation, quota): the refusal the HTTP
/// endpoint would give, or `None`. The WebSocket endpoint checks its warm-ups (`generate: false`) with this, which
/// the backend completes without running the model.
pub(crate) fn chatgpt_refusal(shared: &Arc<Shared>, account: &str, raw: &[u8], held: usize) -> Option<Response> {
    admit(shared, &Caller::Account(account.to_string()), raw, held).err()
}

/// A body that passed validation and quota, and its caller's plan; else the refusal.
fn admit(shared: &Arc<Shared>, caller: &Caller, raw: &[u8], held: usize) -> Result<(Value, String), Response> {
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return Err(render_reject(
                caller,
                Reject { message: format!("Invalid JSON body: {e}"), param: None, code: None },
            ));
        }
    };
    let owner = caller.owner();
    let (models, plan_type) = match caller {
        Caller::Account(a) => {
            let inner = shared.inner.lock();
            match inner.accounts.get(a) {
                Some(acc) => (acc.models.clone(), acc.plan.clone()),
                None => return Err(detail(StatusCode::UNAUTHORIZED, "Unauthorized")),
            }
        }
        Caller::ApiKey(_) => (catalog::MODELS.iter().map(|m| m.slug.to_string()).collect(), "api".to_string()),
    };
    let priority_ok = |m: &str| catalog::supports_priority(m);
    let ctx = Ctx {
        require_instructions: shared.cfg.require_instructions,
        models: &models,
        chatgpt: matches!(caller, Caller::Account(_)),
        secret: &shared.secret,
        owner: &owner,
        priority_ok: &priority_ok,
        held,
        lite: body.get("model").and_then(Value::as_str).is_some_and(|m| catalog::is_lite(shared, m)),
        effort_updates: body
            .get("model")
            .and_then(Value::as_str)
            .is_some_and(|m| catalog::takes_effort_updates(shared, m)),
    };
    if let Err(r) = validate(&body, &ctx) {
        return Err(render_reject(caller, r));
    }
    if let Some(refusal) = caller.account().and_then(|a| exhausted(shared, a, &plan_type)) {
        return Err(refusal);
    }
    Ok((body, plan_type))
}

fn prepare(shared: &Arc<Shared>, caller: Caller, raw: &[u8], held: usize) -> Answer {
    let (body, plan_type) = match admit(shared, &caller, raw, held) {
        Ok(admitted) => admitted,
        Err(refusal) => return Answer::Now(refusal),
    };
    let scenario = shared.dequeue(caller.account()).unwrap_or_else(|| default_scenario(&body));
    if let Scenario::HangBeforeHeaders { ms, then } = scenario {
        let then = then.map(|t| *t).unwrap_or_else(|| default_scenario(&body));
        return hang(ms, answer(shared, &caller, &body, then, plan_type));
    }
    answer(shared, &caller, &body, scenario, plan_type)
}

/// The 429 `usage_limit_reached` of an account whose quota window is used up, if it is.
pub(crate) fn exhausted(shared: &Shared, account: &str, plan_type: &str) -> Option<Response> {
    let q = shared.quota(account)?;
    let resets_at = match (q.primary_used >= 100.0, q.secondary_used >= 100.0) {
        (false, false) => return None,
        (true, false) => q.primary_reset_at,
        (false, true) => q.secondary_reset_at,
        (true, true) => q.primary_reset_at.max(q.secondary_reset_at),
    };
    Some(json_response(StatusCode::TOO_MANY_REQUESTS, usage_limit_body(plan_type, resets_at)))
}

/// A stream to send: built from a plan, or a recording's steps as they are (and whether it ends finished).
enum Reply {
    Planned(crate::sse::Plan),
    Recorded(Vec<crate::sse::Step>, bool),
}

/// The answer to a request that passed validation and quota, for `scenario`.
fn answer(shared: &Arc<Shared>, caller: &Caller, body: &Value, scenario: Scenario, plan_type: String) -> Answer {
    let owner = caller.owner();
    let reasoning = body.get("reasoning").filter(|r| !r.is_null());
    // The last `configuration_update` in the input sets the effort this answer is made with.
    let updated = body.get("input").and_then(Value::as_array).and_then(|items| {
        items.iter().rev().find_map(|i| {
            (i.get("type").and_then(Value::as_str) == Some("configuration_update"))
                .then(|| i.pointer("/reasoning/effort").and_then(Value::as_str))
                .flatten()
        })
    });
    let effort = updated.or_else(|| reasoning.and_then(|r| r.get("effort")).and_then(Value::as_str));
    let summary = reasoning.and_then(|r| r.get("summary")).and_then(Value::as_str);
    let include_encrypted = body
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "reasoning.encrypted_content"));
    let seal = || seal_reasoning(&shared.secret, &owner, shared.next_reasoning_counter());
    let rctx = ReplyCtx {
        reasoning_on: reasoning.is_some() && effort != Some("none"),
        include_encrypted,
        summary_on: summary.is_some_and(|s| s != "none"),
        default_deltas: shared.cfg.default_deltas,
        default_delay_ms: shared.cfg.default_delay_ms,
        plan_type: &plan_type,
        seal: &seal,
    };
    let reply = match outcome(scenario, &rctx) {
        Outcome::Stream(plan) => Reply::Planned(plan),
        Outcome::Replay { steps, finished } => Reply::Recorded(steps, finished),
        Outcome::HangingBody { status, body } => return Answer::Now(hanging_body(status, body)),
        Outcome::Http { status, body, content_type, headers, delay_ms } => {
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response();
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    resp.headers_mut().insert(k, v);
                }
            }
            return if delay_ms > 0 { Answer::After(delay_ms, resp) } else { Answer::Now(resp) };
        }
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let units = units(body);
    let total: usize = units.iter().map(String::len).sum();
    let cached = match body.get("prompt_cache_key").and_then(Value::as_str) {
        Some(key) => {
            let hit = shared.prompt_cache_hit(&owner, key, &cache_units(body));
            (units.iter().take(hit).map(String::len).sum::<usize>() / 4) as u64
        }
        None => 0,
    };
    let input_tokens = sse::approx_tokens(total);
    // A model that reports cache writes wrote what it did not read from the cache, under a conversation's key.
    let cache_write = match body.get("prompt_cache_key") {
        Some(_) if crate::catalog::info(&model).cache_writes => input_tokens.saturating_sub(cached),
        Some(_) | None => 0,
    };
    let meta = Meta {
        response_id: random_id("resp_"),
        model: model.clone(),
        created_at: now_secs(),
        input_tokens,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        keepalive: shared.cfg.keepalive_events,
        framing: shared.cfg.framing,
    };
    let (steps, finished) = match reply {
        Reply::Planned(plan) => {
            let finished = matches!(plan.ending, Ending::Completed | Ending::Incomplete(_));
            (sse::build(&plan, &meta), finished)
        }
        Reply::Recorded(steps, finished) => (steps, finished),
    };
    if let Some(account) = caller.account()
        && finished
    {
        shared.charge(account);
    }
    let mut resp = Response::new(Body::new(crate::body::StepBody::new(shared, steps)));
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(k, v);
        }
    };
    put("content-type", "text/event-stream".into());
    put("cache-control", "no-cache".into());
    put("x-request-id", uuid::Uuid::new_v4().to_string());
    put("openai-model", model);
    for i in 0..shared.cfg.extra_response_headers {
        let name = HeaderName::try_from(format!("x-extra-{i}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(format!("value number {i} of the header block"))) {
            resp.headers_mut().insert(name, value);
        }
    }
    if let Some(account) = caller.account() {
        crate::ratelimits::put(shared, account, resp.headers_mut());
    }
    Answer::Now(resp)
}

/// An error answer that declares its whole length, sends half of it, and then nothing.
fn hanging_body(status: u16, body: String) -> Response {
    let half = Bytes::from(body.as_bytes()[..body.len() / 2].to_vec());
    let first = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
    let stream = first.chain(futures_util::stream::pending());
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}
