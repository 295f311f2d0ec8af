//! Normalising Responses requests for the Codex backend, and assembling non-streaming answers.

use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::models::{ModelRef, normalize_effort};
use crate::outcome::upstream_failure;
use crate::upstream_request::members::MEMBERS;
use crate::upstream_request::{OutputLimits, UpstreamRequest};

/// Fields dropped silently (documented in docs/parameter-policy.md): sampling knobs and bookkeeping the
/// backend rejects. `store` is read first ([`Chain`]): the gateway keeps the response, the backend never does.
const DROPPED: [&str; 13] = [
    "temperature",
    "top_p",
    "top_logprobs",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_retention",
    "stream_options",
    "max_tool_calls",
    "stream",
    "frequency_penalty",
    "presence_penalty",
    "seed",
];

/// What a Responses request says of stored responses, which the gateway serves itself (the backend keeps none:
/// it runs with `store: false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `previous_response_id`: the response whose input and output items go in front of this request's input.
    pub previous_response_id: Option<String>,
    /// `store`, true unless the client set it false (OpenAI's default): whether this response is to be kept for a
    /// later request to name.
    pub store: bool,
}

/// Decode a Responses request body for passthrough, and what it says of stored responses.
pub fn decode(body: &[u8]) -> Result<(UpstreamRequest, Chain), GatewayError> {
    let value: Value = crate::json::decode_body(body)?;
    let Value::Object(mut src) = value else {
        return Err(GatewayError::invalid("The request body must be a JSON object"));
    };
    let model = match src.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => ModelRef::parse(m),
        _ => return Err(GatewayError::invalid_param("model", "`model` must be a non-empty string")),
    };
    let stream = src.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if src.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(GatewayError::invalid_param("background", "Background responses are not supported"));
    }
    let previous_response_id = match src.shift_remove("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => {
            return Err(GatewayError::invalid_param(
                "previous_response_id",
                "Invalid type for 'previous_response_id': expected a string.",
            ));
        }
    };
    let store = match src.shift_remove("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(GatewayError::invalid_param("store", "Invalid type for 'store': expected a boolean.")),
    };
    if src.get("conversation").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid_param(
            "conversation",
            "Stored conversations are not supported; send the full `input`",
        ));
    }

    let mut body = Map::new();
    // The members the backend accepts (`upstream_request::members`); everything else is handled by the policy here.
    for key in MEMBERS.iter().filter(|m| m.passed).map(|m| m.name) {
        if let Some(v) = src.shift_remove(key)
            && !v.is_null()
        {
            body.insert(key.to_string(), v);
        }
    }
    for key in DROPPED {
        src.shift_remove(key);
    }
    // The warm-up (`generate: false`, the official client's first message on a WebSocket): kept, for the gateway
    // to pass on over the upstream WebSocket or to answer itself (`generate: true` is every request's default).
    match src.shift_remove("generate") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            body.insert("generate".into(), Value::Bool(false));
        }
        Some(_) => return Err(GatewayError::invalid_param("generate", "`generate` must be a boolean")),
    }
    src.shift_remove("max_output_tokens");
    src.shift_remove("background");
    src.shift_remove("conversation");
    if let Some((unknown, _)) = src.iter().next() {
        return Err(GatewayError::invalid_param(unknown, format!("Unsupported parameter: `{unknown}`")));
    }

    normalize_input(&mut body)?;
    normalize_tools(&mut body);
    normalize_reasoning(&mut body)?;
    if let Some(Value::String(tier)) = body.get("service_tier")
        && tier != "priority"
    {
        body.shift_remove("service_tier");
    }
    let conversation_key = body.get("prompt_cache_key").and_then(Value::as_str).map(str::to_string);
    let req = UpstreamRequest {
        body,
        model,
        stream,
        conversation_key,
        // max_output_tokens is dropped for passthrough (docs/parameter-policy.md): events go back unchanged.
        limits: OutputLimits::default(),
    };
    Ok((req, Chain { previous_response_id, store }))
}

/// `reasoning` sub-keys the backend knows pass (`effort` mapped onto its words); `context` stays for the
/// gateway to forward or drop by the model's catalog entry ([`drop_reasoning_context`]); any other sub-key is
/// refused like an unknown top-level field (docs/parameter-policy.md), instead of failing upstream.
fn normalize_reasoning(body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let r = match body.get_mut("reasoning") {
        None => return Ok(()),
        Some(Value::Object(r)) => r,
        Some(_) => return Err(GatewayError::invalid_param("reasoning", "`reasoning` must be an object")),
    };
    if let Some(unknown) =
        r.keys().find(|k| !matches!(k.as_str(), "effort" | "summary" | "generate_summary" | "context"))
    {
        let param = format!("reasoning.{unknown}");
        return Err(GatewayError::invalid_param(&param, format!("Unsupported parameter: `{param}`")));
    }
    if let Some(Value::String(e)) = r.get("effort") {
        let mapped = normalize_effort(e).ok_or_else(|| {
            GatewayError::invalid_param("reasoning.effort", format!("Unknown reasoning effort `{e}`"))
        })?;
        r.insert("effort".into(), json!(mapped));
    }
    if r.get("context").is_some_and(Value::is_null) {
        r.shift_remove("context");
    }
    Ok(())
}

/// Whether the request carries `reasoning.context`, which only some models accept (their catalog entry has
/// `supports_reasoning_context: true`).
pub fn has_reasoning_context(req: &UpstreamRequest) -> bool {
    req.body.get("reasoning").and_then(|r| r.get("context")).is_some()
}

/// Remove `reasoning.context` for a model that does not take it: omitting it means `auto`, the model's
/// default, so the request keeps its meaning where the backend would refuse it.
pub fn drop_reasoning_context(req: &mut UpstreamRequest) {
    if let Some(Value::Object(r)) = req.body.get_mut("reasoning") {
        r.shift_remove("context");
    }
}

/// String input -> one user message; `system` role -> `developer` (the backend refuses system messages);
/// role-only "easy" messages get `type: message`.
fn normalize_input(body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    let input = body.shift_remove("input").unwrap_or(Value::Array(Vec::new()));
    let mut items = match input {
        Value::String(s) => vec![json!({"type":"message","role":"user","content":[{"type":"input_text","text":s}]})],
        Value::Array(a) => a,
        _ => return Err(GatewayError::invalid_param("input", "`input` must be a string or an array of items")),
    };
    normalize_items(&mut items)?;
    body.insert("input".into(), Value::Array(items));
    Ok(())
}

/// Input items as the backend takes them (see [`normalize_input`]): also for the items of a response the gateway
/// kept, which go in front of a later request's input as they were sent (a WebSocket turn's are kept before they
/// are decoded). Items already normalised are left as they are.
pub fn normalize_items(items: &mut [Value]) -> Result<(), GatewayError> {
    for (i, item) in items.iter_mut().enumerate() {
        let Value::Object(obj) = item else {
            return Err(GatewayError::invalid_param(&format!("input[{i}]"), "Each input item must be an object"));
        };
        if obj.get("type").and_then(Value::as_str) == Some("item_reference") {
            return Err(GatewayError::invalid_param(
                &format!("input[{i}]"),
                "item_reference needs stored responses, which the Codex backend does not keep; send the item itself",
            ));
        }
        if obj.get("type").is_none() && obj.contains_key("role") {
            obj.insert("type".into(), json!("message"));
        }
        if obj.get("role").and_then(Value::as_str) == Some("system") {
            obj.insert("role".into(), json!("developer"));
        }
    }
    Ok(())
}

/// Function tools keep only the keys the backend knows (clients add `cache_control`, `defer_loading`, ...).
fn normalize_tools(body: &mut Map<String, Value>) {
    let Some(Value::Array(tools)) = body.get_mut("tools") else { return };
    for tool in tools.iter_mut() {
        if let Value::Object(t) = tool
            && t.get("type").and_then(Value::as_str) == Some("function")
        {
            t.retain(|k, _| matches!(k.as_str(), "type" | "name" | "description" | "parameters" | "strict"));
        }
    }
}

/// Builds the non-streaming Responses object from raw event payloads.
#[derive(Debug, Default)]
pub struct ResponsesAssembler {
    base: Option<Value>,
    items: Vec<(u64, Value)>,
    last: Option<Value>,
    error: Option<GatewayError>,
}

impl ResponsesAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one `data:` payload (already parsed as JSON).
    pub fn on_payload(&mut self, mut payload: Value) {
        let kind = payload.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        match kind.as_str() {
            "response.created" | "response.in_progress" => {
                if let Some(r) = payload.get_mut("response") {
                    self.base = Some(r.take());
                }
            }
            "response.output_item.done" => {
                let idx = payload.get("output_index").and_then(Value::as_u64).unwrap_or(self.items.len() as u64);
                if let Some(item) = payload.get_mut("item") {
                    self.items.push((idx, item.take()));
                }
            }
            "response.completed" | "response.incomplete" => {
                if let Some(r) = payload.get_mut("response") {
                    self.last = Some(r.take());
                }
            }
            "response.failed" | "error" => {
                let err = payload.get("response").and_then(|r| r.get("error")).or_else(|| payload.get("error"));
                let code = err.and_then(|e| e.get("code")).or_else(|| payload.get("code")).and_then(Value::as_str);
                let message = err
                    .and_then(|e| e.get("message"))
                    .or_else(|| payload.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream response failed");
                self.error = Some(upstream_failure(code, message));
            }
            _ => {}
        }
    }

    /// The final response object, or the error that ended it.
    pub fn finish(mut self) -> Result<Value, GatewayError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut response = self.last.take().ok_or_else(|| {
            GatewayError::new(
                crate::error::ErrorKind::UpstreamUnavailable,
                "The upstream stream ended before the response completed",
            )
        })?;
        // Indexing a non-object `Value` for assignment panics: an upstream that sends `"response": []` gets an
        // error, not a dead connection.
        let Some(obj) = response.as_object_mut() else {
            return Err(GatewayError::new(
                crate::error::ErrorKind::UpstreamUnavailable,
                "The upstream sent a final response that is not a JSON object",
            ));
        };
        let empty = obj.get("output").and_then(Value::as_array).is_none_or(|o| o.is_empty());
        if empty && !self.items.is_empty() {
            self.items.sort_by_key(|(i, _)| *i);
            obj.insert("output".into(), Value::Array(self.items.into_iter().map(|(_, v)| v).collect()));
        }
        if !obj.contains_key("id")
            && let Some(id) = self.base.as_ref().and_then(|b| b.get("id"))
        {
            obj.insert("id".into(), id.clone());
        }
        Ok(response)
    }
}

/// An in-stream error for Responses clients: `event: error` with the OpenAI error event payload.
pub fn stream_error_frame(err: &GatewayError, out: &mut Vec<u8>) {
    let payload = json!({
        "type": "error",
        "code": err.code.clone().unwrap_or_else(|| "upstream_error".into()),
        "message": err.message,
        "param": err.param,
    });
    if let Ok(bytes) = serde_json::to_vec(&payload) {
        crate::sse::write_event(out, "error", &bytes);
    }
}
