//! The one classifier: an upstream error, whether an HTTP answer or a failure event inside a 200 stream, to a
//! [`Reason`]. An event carries no status, so its code stands for the status the same failure has as an HTTP
//! answer, and both go through the same decisions (spec/codex-upstream.md "HTTP errors" and `response.failed`).

use serde_json::Value;

use super::{PolicyKind, Reason, Refusal, UpstreamFailure, Via};

/// An HTTP error answer, as plain values (the gateway reads them off its HTTP types).
#[derive(Debug, Clone, Copy)]
pub struct HttpAnswer<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// The `content-type` says `text/html`.
    pub html: bool,
    /// A `cf-mitigated` header is present (Cloudflare's mark on a challenge).
    pub cf_mitigated: bool,
    /// The `Retry-After` header.
    pub retry_after: Option<&'a str>,
}

/// Classify a non-success HTTP answer; `now` (unix seconds) turns a `resets_at` into seconds from now.
pub fn classify_http(answer: &HttpAnswer, now: i64) -> UpstreamFailure {
    let HttpAnswer { status, body, .. } = *answer;
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let err = json.as_ref().and_then(|j| j.get("error"));
    let text = |key: &str| err.and_then(|e| e.get(key)).and_then(Value::as_str).map(str::to_string);
    let code = text("code").or_else(|| text("type"));
    let message = text("message")
        .or_else(|| json.as_ref().and_then(|j| j.get("detail")).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            if text.trim().is_empty() || text.trim_start().starts_with('<') {
                format!("HTTP {status}")
            } else {
                text.chars().take(300).collect()
            }
        });
    let signals = Signals {
        cloudflare: status == 403 && is_cloudflare_challenge(answer),
        retry_after: retry_after(answer.retry_after, err, now),
        plan: text("plan_type"),
    };
    let reason = reason(status, code.as_deref(), &message, signals);
    // Only a plain refusal of the request names a field.
    let param = match reason {
        Reason::ContextTooLong if status != 413 => text("param"),
        Reason::ModelNotFound
        | Reason::NotFound
        | Reason::ForeignReasoning
        | Reason::InvalidRequest
        | Reason::PolicyRefused { .. } => text("param"),
        _ => None,
    };
    UpstreamFailure::Refused(Refusal { reason, via: Via::Http(status), message, code, param })
}

/// Classify a `response.failed` / `error` event (`code` and `message` as the event carries them).
pub fn classify_event(code: Option<&str>, message: &str) -> UpstreamFailure {
    UpstreamFailure::Refused(classify_event_refusal(code.map(str::to_string), message.to_string()))
}

/// [`classify_event`] taking the event's own strings (`Event::parse` classifies a failure event as it parses it).
/// An event the relay could not parse is not classified here: the reader builds that failure typed
/// ([`Refusal::malformed_event`]), so no code is made up to be read back.
pub fn classify_event_refusal(code: Option<String>, message: String) -> Refusal {
    let signals = Signals { cloudflare: false, retry_after: retry_after_from_message(&message), plan: None };
    let reason = reason(event_status(code.as_deref()), code.as_deref(), &message, signals);
    Refusal { reason, via: Via::Event, message, code, param: None }
}

/// The HTTP status the upstream gives the failure an event's code names; a code it does not know is a failure
/// of the upstream (500).
fn event_status(code: Option<&str>) -> u16 {
    match code.unwrap_or("") {
        "context_length_exceeded" | "invalid_request_error" | WEBSOCKET_MESSAGE_TOO_LARGE => 400,
        c if policy_kind(Some(c)).is_some() => 400,
        "model_not_found" => 404,
        "rate_limit_exceeded" | "usage_limit_reached" | "insufficient_quota" | "usage_not_included" => 429,
        "server_is_overloaded" | "slow_down" => 503,
        c if c.contains("deactivated") => 403,
        _ => 500,
    }
}

/// The code of a message larger than the upstream WebSocket connection takes (Codex CLI 0.171's name for it).
const WEBSOCKET_MESSAGE_TOO_LARGE: &str = "websocket_message_too_large";

/// What the body and headers said besides the status and code.
struct Signals {
    cloudflare: bool,
    retry_after: Option<u64>,
    plan: Option<String>,
}

/// The usage-policy refusal an error code names (codex-rs: the codes its client shows and never retries).
fn policy_kind(code: Option<&str>) -> Option<PolicyKind> {
    match code? {
        "cyber_policy" => Some(PolicyKind::Cyber),
        "bio_policy" => Some(PolicyKind::Bio),
        "invalid_prompt" => Some(PolicyKind::InvalidPrompt),
        "misalignment_policy_violation" => Some(PolicyKind::Misalignment),
        _ => None,
    }
}

/// The decision shared by both paths.
fn reason(status: u16, code: Option<&str>, message: &str, signals: Signals) -> Reason {
    // A policy code decides whatever 4xx status carries it: read as a plain 403 it would cool the account down
    // and send the flagged request on to the next account.
    if (400..=499).contains(&status)
        && let Some(kind) = policy_kind(code)
    {
        return Reason::PolicyRefused { kind };
    }
    match status {
        401 => Reason::Unauthorized,
        403 if signals.cloudflare => Reason::CloudflareChallenge,
        403 if code.is_some_and(|c| c.contains("deactivated")) => Reason::AccountDeactivated,
        403 => Reason::Forbidden,
        429 => match code {
            Some("usage_not_included") => Reason::UsageNotIncluded,
            Some("usage_limit_reached") => {
                Reason::QuotaExhausted { resets_in: signals.retry_after, plan: signals.plan }
            }
            _ => Reason::RateLimited { retry_after: signals.retry_after },
        },
        // Before 413: the size is the message's on the WebSocket, not the conversation's.
        400..=499 if code == Some(WEBSOCKET_MESSAGE_TOO_LARGE) => Reason::WebsocketMessageTooLarge,
        413 => Reason::ContextTooLong,
        400..=499 => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("not supported when using codex with a chatgpt account") {
                Reason::ModelNotSupportedByPlan
            } else if code == Some("context_length_exceeded")
                || lower.contains("context window")
                || lower.contains("context length")
            {
                Reason::ContextTooLong
            } else if status == 404 && code == Some("model_not_found") {
                Reason::ModelNotFound
            } else if status == 404 {
                Reason::NotFound
            } else if code == Some("invalid_encrypted_content")
                || lower.contains("encrypted content")
                || lower.contains("encrypted_content")
            {
                // The ChatGPT backend words this refusal without a code.
                Reason::ForeignReasoning
            } else {
                Reason::InvalidRequest
            }
        }
        503 => Reason::Overloaded,
        _ => Reason::ServerError,
    }
}

/// `resets_at` (unix s) / `resets_in_seconds` in the body, else the `Retry-After` header.
fn retry_after(header: Option<&str>, err: Option<&Value>, now: i64) -> Option<u64> {
    let from_body = err.and_then(|e| {
        e.get("resets_at")
            .and_then(Value::as_i64)
            .map(|at| at.saturating_sub(now).max(1) as u64)
            .or_else(|| e.get("resets_in_seconds").and_then(Value::as_u64))
    });
    from_body.or_else(|| header.and_then(|v| v.trim().parse::<f64>().ok()).map(|s| s.ceil() as u64))
}

/// A Cloudflare challenge page: Cloudflare's marks, on an HTML answer.
fn is_cloudflare_challenge(answer: &HttpAnswer) -> bool {
    let body = String::from_utf8_lossy(answer.body);
    let cf = answer.cf_mitigated
        || body.contains("challenge-platform")
        || body.contains("Just a moment")
        || body.contains("cf-chl");
    cf && (answer.html || body.trim_start().starts_with('<'))
}

/// "Please try again in 11.054s" -> 12 (rounded up). The backend documents this phrasing for rate limits.
pub fn retry_after_from_message(message: &str) -> Option<u64> {
    let idx = message.find("try again in ")?;
    let rest = &message[idx + "try again in ".len()..];
    let num: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let value: f64 = num.parse().ok()?;
    let unit = &rest[num.len()..];
    let secs = if unit.starts_with("ms") { value / 1000.0 } else { value };
    Some(secs.ceil().max(1.0) as u64)
}
