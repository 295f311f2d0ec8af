//! Remote compaction, as the backend serves it (issue 25; codex-rs `CompactClient`, path `responses/compact`):
//! `POST {codex base}/responses/compact` (ChatGPT login) and `POST /v1/responses/compact` (API key) take the
//! compaction input (model, input, instructions, tools, parallel_tool_calls, reasoning, service_tier,
//! prompt_cache_key, text: a unary JSON request, never a stream) and answer `{"output": [...]}`: the user
//! messages of the input, then exactly one `{"type": "compaction", "encrypted_content"}` item, sealed for the
//! caller like reasoning so a later request must carry it back untouched to the same account
//! (`validate/input.rs` opens it). Any other field is refused like the backend refuses unknown parameters.

use crate::server::{bearer, chatgpt_auth, detail, invalid_api_key, json_response};
use crate::state::Shared;
use crate::tokens::seal_reasoning;
use crate::validate::{Ctx, check_compaction_input};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// The fields of the official client's compaction input.
const FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "parallel_tool_calls",
    "reasoning",
    "service_tier",
    "prompt_cache_key",
    "text",
];

pub(crate) async fn chatgpt_compact(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let models = shared.inner.lock().accounts.get(&account).map(|a| a.models.clone()).unwrap_or_default();
    if let Some(refusal) = crate::versions::refuse(&shared, &headers, &body) {
        return refusal;
    }
    let mut resp = compact(&shared, &account, &models, true, &body);
    if resp.status().is_success() {
        crate::ratelimits::put(&shared, &account, resp.headers_mut());
    }
    resp.extensions_mut().insert(crate::server::AuthedAccount(Some(account)));
    resp
}

pub(crate) async fn api_compact(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = match bearer(&headers) {
        Some(k) if shared.inner.lock().api_keys.contains(k) => k.to_string(),
        _ => return invalid_api_key(),
    };
    let models: Vec<String> = crate::catalog::MODELS.iter().map(|m| m.slug.to_string()).collect();
    compact(&shared, &format!("apikey:{key}"), &models, false, &body)
}

fn compact(shared: &Shared, owner: &str, models: &[String], chatgpt: bool, raw: &[u8]) -> Response {
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("Invalid JSON body: {e}")),
    };
    let Some(obj) = body.as_object() else {
        return detail(StatusCode::BAD_REQUEST, "Request body must be a JSON object");
    };
    if let Some(key) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return detail(StatusCode::BAD_REQUEST, &format!("Unsupported parameter: {key}"));
    }
    let priority_ok = |m: &str| crate::catalog::supports_priority(m);
    let ctx = Ctx {
        require_instructions: false,
        models,
        chatgpt,
        secret: &shared.secret,
        owner,
        priority_ok: &priority_ok,
        held: 0,
        lite: false,
        effort_updates: false,
    };
    if let Err(r) = check_compaction_input(obj, &ctx) {
        return detail(StatusCode::BAD_REQUEST, &r.message);
    }
    let mut output: Vec<Value> = obj
        .get("input")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("role").and_then(Value::as_str) == Some("user"))
        .map(|i| json!({"type": "message", "role": "user", "content": i.get("content").cloned().unwrap_or(json!([]))}))
        .collect();
    let sealed = seal_reasoning(&shared.secret, owner, shared.next_reasoning_counter());
    output.push(json!({"type": "compaction", "encrypted_content": sealed}));
    json_response(StatusCode::OK, json!({"output": output}))
}
