//! The non-streaming `GenerateContentResponse`, finish reasons, usage metadata and the Gemini error body.

use serde_json::{Value, json};

use super::encode::{function_call_part, inline_data_part};
use super::signature::encode_signature;
use crate::assemble::{Collected, MESSAGE_SEPARATOR, OutputItem};
use crate::error::{ErrorKind, GatewayError};
use crate::outcome::Finish;
use crate::responses::event::Usage;

/// The Gemini `finishReason` for an outcome (spec C4).
pub fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
        Finish::ContentFilter => "SAFETY",
    }
}

/// `usageMetadata` (spec C3): candidates exclude reasoning, which is reported as thoughts; the prompt count is the
/// whole input, of which `cachedContentTokenCount` came from the cache. Gemini has no count of tokens written to
/// a cache: those stay in the prompt count only.
pub fn usage_metadata(u: &Usage) -> Value {
    let mut v = json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens.saturating_sub(u.reasoning_tokens),
        "totalTokenCount": u.total_tokens,
    });
    if u.reasoning_tokens > 0 {
        v["thoughtsTokenCount"] = json!(u.reasoning_tokens);
    }
    if u.cached_tokens > 0 {
        v["cachedContentTokenCount"] = json!(u.cached_tokens);
    }
    v
}

/// The whole response for `generateContent`. Part order follows the output: thoughts, text, calls; the reasoning
/// signature goes on the next function call part, else on a signature-only thought part at the end.
pub fn render_response(c: &Collected, response_id: &str, model: &str, include_thoughts: bool) -> Value {
    let mut parts = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut calls = 0;
    let (mut texts, mut thoughts) = (0, 0);
    for item in &c.items {
        match item {
            OutputItem::Reasoning { id, summary, encrypted_content } => {
                if include_thoughts && !summary.is_empty() {
                    let text = if thoughts > 0 { format!("{MESSAGE_SEPARATOR}{summary}") } else { summary.clone() };
                    thoughts += 1;
                    parts.push(json!({"text": text, "thought": true}));
                }
                if let Some(ec) = encrypted_content {
                    pending.push(encode_signature(id, ec));
                }
            }
            // One part per message; a later message's part starts with a blank line, since clients join the
            // text parts of an answer (`response.text`).
            OutputItem::Text(t) | OutputItem::Refusal(t) if !t.is_empty() => {
                let text = if texts > 0 { format!("{MESSAGE_SEPARATOR}{t}") } else { t.clone() };
                texts += 1;
                parts.push(json!({"text": text}));
            }
            OutputItem::Image { b64, mime } => parts.push(inline_data_part(b64, mime)),
            OutputItem::FunctionCall { call_id, name, arguments } => {
                let sig = pending.pop();
                for s in pending.drain(..) {
                    parts.push(json!({"text": "", "thought": true, "thoughtSignature": s}));
                }
                parts.push(function_call_part(call_id, name, arguments, sig));
                calls += 1;
            }
            _ => {}
        }
    }
    for s in pending {
        parts.push(json!({"text": "", "thought": true, "thoughtSignature": s}));
    }
    if parts.is_empty() {
        parts.push(json!({"text": ""}));
    }
    let finish = match c.finish.clone().unwrap_or(Finish::Stop) {
        Finish::Stop if calls > 0 => Finish::ToolCalls,
        f => f,
    };
    json!({
        "candidates": [{
            "content": {"parts": parts, "role": "model"},
            "finishReason": finish_reason(&finish),
            "index": 0,
        }],
        "usageMetadata": usage_metadata(&c.usage),
        "modelVersion": model,
        "responseId": response_id,
    })
}

/// HTTP status and `google.rpc.Code` name for an error kind.
pub fn error_status(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextTooLong => (400, "INVALID_ARGUMENT"),
        ErrorKind::Unauthorized | ErrorKind::NotLoggedIn => (401, "UNAUTHENTICATED"),
        ErrorKind::PermissionDenied => (403, "PERMISSION_DENIED"),
        ErrorKind::NotFound => (404, "NOT_FOUND"),
        ErrorKind::PayloadTooLarge => (413, "INVALID_ARGUMENT"),
        ErrorKind::RateLimited => (429, "RESOURCE_EXHAUSTED"),
        ErrorKind::Overloaded => (503, "UNAVAILABLE"),
        ErrorKind::UpstreamUnavailable => (502, "UNAVAILABLE"),
        ErrorKind::Timeout => (504, "DEADLINE_EXCEEDED"),
        ErrorKind::Internal => (500, "INTERNAL"),
    }
}

/// `(status, {"error":{code, message, status, details}})`. A retry hint becomes a `google.rpc.RetryInfo` detail
/// (Gemini CLI and the SDKs read `retryDelay` from it); the field that was wrong becomes a `BadRequest` detail.
pub fn error_body(err: &GatewayError) -> (u16, Value) {
    let (code, status) = error_status(err.kind);
    let mut details = Vec::new();
    if let Some(secs) = err.retry_after {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}));
    }
    if let Some(param) = &err.param {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": param, "description": err.message}],
        }));
    }
    if let Some(reason) = &err.code {
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason.to_ascii_uppercase(),
            "domain": "codex-gateway",
        }));
    }
    (code, json!({"error": {"code": code, "message": err.message, "status": status, "details": details}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_carries_retry_info() {
        let e =
            GatewayError::new(ErrorKind::RateLimited, "quota").with_retry_after(42).with_code("usage_limit_reached");
        let (status, body) = error_body(&e);
        assert_eq!(status, 429);
        assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(body["error"]["code"], 429);
        assert_eq!(
            body["error"]["details"][0],
            json!({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"42s"})
        );
        assert_eq!(body["error"]["details"][1]["reason"], "USAGE_LIMIT_REACHED");
    }

    #[test]
    fn usage_splits_thoughts() {
        let u = Usage {
            input_tokens: 10,
            cached_tokens: 4,
            cache_write_tokens: 3,
            output_tokens: 7,
            reasoning_tokens: 2,
            total_tokens: 17,
            budget_units: Some(1.5),
        };
        assert_eq!(
            usage_metadata(&u),
            json!({"promptTokenCount":10,"candidatesTokenCount":5,"totalTokenCount":17,"thoughtsTokenCount":2,"cachedContentTokenCount":4})
        );
    }
}
