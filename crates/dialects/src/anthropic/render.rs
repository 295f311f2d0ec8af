//! The non-streaming Anthropic message, and the pieces the stream encoder shares with it: stop reasons, usage,
//! tool inputs, web search blocks and errors.

use serde::Serialize;
use serde_json::{Value, json};

use super::AnthropicOptions;
use super::signature::encode_signature;
use crate::assemble::{Collected, OutputItem};
use crate::error::{ErrorKind, GatewayError};
use crate::outcome::Finish;
use crate::responses::event::Usage;

/// Anthropic `stop_reason` and `stop_sequence` for an outcome (spec C4). `any_tool_use` turns a natural stop
/// into `tool_use`: the client must run the tools.
pub fn stop_reason(finish: &Finish, any_tool_use: bool) -> (&'static str, Option<&str>) {
    match finish {
        Finish::Stop if any_tool_use => ("tool_use", None),
        Finish::Stop => ("end_turn", None),
        Finish::ToolCalls => ("tool_use", None),
        Finish::Length => ("max_tokens", None),
        Finish::ContentFilter => ("refusal", None),
        Finish::StopSequence(s) => ("stop_sequence", Some(s.as_str())),
    }
}

/// Anthropic usage: three input counts that add up to the whole input, where Codex's `input_tokens` is the whole
/// and its details say which part came from the cache (`cache_read_input_tokens`) and which was written to it
/// (`cache_creation_input_tokens`); `input_tokens` is the rest (without the subtraction Claude Code shows the
/// context at twice its size).
#[derive(Serialize, Clone, Copy, Debug)]
pub(crate) struct UsageOut {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
}

pub(crate) fn usage_out(u: &Usage) -> UsageOut {
    UsageOut {
        input_tokens: u.input_tokens.saturating_sub(u.cached_tokens).saturating_sub(u.cache_write_tokens),
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cached_tokens,
    }
}

/// The Anthropic usage object for upstream usage.
pub fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(usage_out(u)).unwrap_or(Value::Null)
}

/// The `input` object of a tool_use block from the call's argument string. Empty arguments are `{}`; arguments
/// that are not a JSON object (the model produced broken JSON) are kept as `{"_raw": "<arguments>"}` so the
/// client's validation error shows what the model sent, instead of silently calling the tool with `{}`.
pub(crate) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"_raw": arguments}),
    }
}

/// [`tool_input`] as the JSON text streamed in one `input_json_delta`; the arguments themselves when they are
/// already a JSON object (byte for byte).
pub(crate) fn tool_input_json(arguments: &str) -> String {
    match tool_input(arguments) {
        Value::Object(o) if o.contains_key("_raw") || o.is_empty() => Value::Object(o).to_string(),
        _ => arguments.to_string(),
    }
}

/// One Anthropic `web_search_result`.
#[derive(Serialize, Debug)]
pub(crate) struct WebSearchResult<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
    title: &'a str,
    encrypted_content: &'static str,
    page_age: Option<()>,
}

/// The results of a Codex web search as Anthropic `web_search_result` entries. Codex sources carry a URL and
/// sometimes a title; there is no encrypted content or page age to give.
pub(crate) fn web_search_results(sources: &[Value]) -> Vec<WebSearchResult<'_>> {
    sources
        .iter()
        .filter_map(|s| {
            let url = s.get("url").and_then(Value::as_str)?;
            let title = s.get("title").and_then(Value::as_str).unwrap_or(url);
            Some(WebSearchResult { kind: "web_search_result", url, title, encrypted_content: "", page_age: None })
        })
        .collect()
}

/// The `server_tool_use` input of a web search.
pub(crate) fn web_search_input(query: Option<&str>) -> Value {
    match query {
        Some(q) => json!({"query": q}),
        None => json!({}),
    }
}

/// A generated image's `source`: an `image` content block as Anthropic carries images everywhere else (base64
/// with its media type). The Messages API defines no image output; docs/protocol.md "Images" says why this shape.
#[derive(serde::Serialize)]
pub(crate) struct ImageSource<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    media_type: &'a str,
    data: &'a str,
}

pub(crate) fn image_source<'a>(b64: &'a str, mime: &'a str) -> ImageSource<'a> {
    ImageSource { kind: "base64", media_type: mime, data: b64 }
}

/// The thinking block signature for a reasoning item: empty when the upstream sent no encrypted content
/// (such a block is dropped when the client sends it back).
pub(crate) fn signature_for(id: &str, encrypted_content: Option<&str>) -> String {
    encrypted_content.map(|ec| encode_signature(id, ec)).unwrap_or_default()
}

/// The non-streaming message. Reasoning becomes a `thinking` block (summary text, or empty text when there is
/// only encrypted content) when the client enabled thinking.
pub fn render_message(c: &Collected, id: &str, model: &str, opts: &AnthropicOptions) -> Value {
    let mut content = Vec::new();
    let mut any_tool_use = false;
    for item in &c.items {
        match item {
            OutputItem::Reasoning { id, summary, encrypted_content } => {
                let summary = if summary.trim().is_empty() { "" } else { summary.as_str() };
                if opts.include_thinking && (!summary.is_empty() || encrypted_content.is_some()) {
                    content.push(json!({
                        "type":"thinking",
                        "thinking": summary,
                        "signature": signature_for(id, encrypted_content.as_deref()),
                    }));
                }
            }
            OutputItem::Text(t) | OutputItem::Refusal(t) => {
                if !t.is_empty() {
                    content.push(json!({"type":"text","text":t}));
                }
            }
            OutputItem::FunctionCall { call_id, name, arguments } => {
                any_tool_use = true;
                content.push(json!({"type":"tool_use","id":call_id,"name":name,"input":tool_input(arguments)}));
            }
            OutputItem::CustomToolCall { call_id, name, input } => {
                any_tool_use = true;
                content.push(json!({"type":"tool_use","id":call_id,"name":name,"input":{"input":input}}));
            }
            OutputItem::Image { b64, mime } => content.push(json!({"type":"image","source":image_source(b64, mime)})),
            OutputItem::WebSearch { id, query, sources } => {
                content.push(json!({
                    "type":"server_tool_use","id":id,"name":"web_search","input":web_search_input(query.as_deref()),
                }));
                content.push(json!({
                    "type":"web_search_tool_result","tool_use_id":id,"content":web_search_results(sources),
                }));
            }
        }
    }
    let finish = c.finish.clone().unwrap_or(Finish::Stop);
    let (reason, sequence) = stop_reason(&finish, any_tool_use);
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_json(&c.usage),
    })
}

/// HTTP status and Anthropic `error.type` for an error kind (spec §2).
pub fn error_status_and_type(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextTooLong => (400, "invalid_request_error"),
        ErrorKind::Unauthorized | ErrorKind::NotLoggedIn => (401, "authentication_error"),
        ErrorKind::PermissionDenied => (403, "permission_error"),
        ErrorKind::NotFound => (404, "not_found_error"),
        ErrorKind::PayloadTooLarge => (413, "request_too_large"),
        ErrorKind::RateLimited => (429, "rate_limit_error"),
        ErrorKind::Internal | ErrorKind::UpstreamUnavailable => (500, "api_error"),
        ErrorKind::Timeout => (504, "timeout_error"),
        ErrorKind::Overloaded => (529, "overloaded_error"),
    }
}

/// Claude Code compacts the conversation when an error message contains "prompt is too long" (a
/// case-insensitive substring test on the SDK error's message, streamed or not); the Anthropic API words it
/// "prompt is too long: N tokens > M maximum". A context overflow must carry that phrase.
fn error_message(err: &GatewayError) -> String {
    if err.kind == ErrorKind::ContextTooLong && !err.message.to_ascii_lowercase().starts_with("prompt is too long") {
        format!("prompt is too long: {}", err.message)
    } else {
        err.message.clone()
    }
}

/// `{"type":"error","error":{"type","message"}}`: the in-stream `error` event's data and the base of the HTTP
/// error body.
#[derive(Serialize, Debug)]
pub(crate) struct ErrorEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorInner,
}

#[derive(Serialize, Debug)]
struct ErrorInner {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
}

pub(crate) fn error_event(err: &GatewayError) -> ErrorEvent {
    let (_, kind) = error_status_and_type(err.kind);
    ErrorEvent { kind: "error", error: ErrorInner { kind, message: error_message(err) } }
}

/// The error body without `request_id`, as JSON.
pub fn error_body(err: &GatewayError) -> Value {
    serde_json::to_value(error_event(err)).unwrap_or(Value::Null)
}

/// HTTP status and body `{"type":"error","error":{"type","message"},"request_id"}` for an error before the
/// stream began (or a non-streaming request). The gateway also sends the `request-id` header.
pub fn error_response(err: &GatewayError, request_id: &str) -> (u16, Value) {
    let (status, _) = error_status_and_type(err.kind);
    let mut body = error_body(err);
    body["request_id"] = Value::String(request_id.to_string());
    (status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_inputs() {
        assert_eq!(tool_input(""), json!({}));
        assert_eq!(tool_input(" {\"a\":1} "), json!({"a":1}));
        assert_eq!(tool_input("{\"a\":"), json!({"_raw":"{\"a\":"}));
        assert_eq!(tool_input("[1]"), json!({"_raw":"[1]"}));
        assert_eq!(tool_input_json("{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(tool_input_json(""), "{}");
        assert_eq!(tool_input_json("x"), r#"{"_raw":"x"}"#);
    }

    #[test]
    fn context_overflow_says_prompt_is_too_long() {
        let e = GatewayError::new(ErrorKind::ContextTooLong, "Your input exceeds the context window of this model.");
        let (status, body) = error_response(&e, "req_1");
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: Your input exceeds the context window of this model."},"request_id":"req_1"})
        );
        let e = GatewayError::new(ErrorKind::ContextTooLong, "Prompt is too long: 300000 tokens > 272000 maximum");
        assert_eq!(error_body(&e)["error"]["message"], "Prompt is too long: 300000 tokens > 272000 maximum");
    }

    #[test]
    fn status_table() {
        use ErrorKind::*;
        for (kind, status, ty) in [
            (InvalidRequest, 400, "invalid_request_error"),
            (Unauthorized, 401, "authentication_error"),
            (NotLoggedIn, 401, "authentication_error"),
            (PermissionDenied, 403, "permission_error"),
            (NotFound, 404, "not_found_error"),
            (PayloadTooLarge, 413, "request_too_large"),
            (ContextTooLong, 400, "invalid_request_error"),
            (RateLimited, 429, "rate_limit_error"),
            (Internal, 500, "api_error"),
            (UpstreamUnavailable, 500, "api_error"),
            (Timeout, 504, "timeout_error"),
            (Overloaded, 529, "overloaded_error"),
        ] {
            let (s, body) = error_response(&GatewayError::new(kind, "m"), "r");
            assert_eq!((s, body["error"]["type"].as_str()), (status, Some(ty)), "{kind:?}");
        }
    }
}
