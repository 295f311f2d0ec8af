//! Turning an upstream HTTP error answer into the client-visible error and a retry decision.

use dialects::{ErrorKind, GatewayError};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// What the caller should do about a failed upstream answer.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamFailure {
    /// 401: refresh the token once and retry.
    Unauthorized(GatewayError),
    /// The account cannot serve now (quota, overload, 5xx, Cloudflare): another account might.
    AccountUnavailable(GatewayError),
    /// The request itself was refused: never retried, passed to the client as an invalid request.
    Rejected(GatewayError),
}

impl UpstreamFailure {
    pub fn into_error(self) -> GatewayError {
        match self {
            UpstreamFailure::Unauthorized(e)
            | UpstreamFailure::AccountUnavailable(e)
            | UpstreamFailure::Rejected(e) => e,
        }
    }
}

/// Classify a non-success upstream answer (status, headers, body).
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: i64) -> UpstreamFailure {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let err = json.as_ref().and_then(|j| j.get("error"));
    let code = err.and_then(|e| e.get("code").or_else(|| e.get("type"))).and_then(Value::as_str).map(str::to_string);
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| json.as_ref().and_then(|j| j.get("detail")).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            if text.trim().is_empty() || text.trim_start().starts_with('<') {
                format!("HTTP {}", status.as_u16())
            } else {
                text.chars().take(300).collect()
            }
        });
    let with_code = |e: GatewayError| match &code {
        Some(c) => e.with_code(c.clone()),
        None => e,
    };
    match status.as_u16() {
        401 => UpstreamFailure::Unauthorized(with_code(GatewayError::new(
            ErrorKind::NotLoggedIn,
            format!("The upstream refused the account's login: {message}"),
        ))),
        403 => {
            let text = String::from_utf8_lossy(body);
            if is_cloudflare_challenge(headers, &text) {
                UpstreamFailure::AccountUnavailable(
                    GatewayError::new(
                        ErrorKind::UpstreamUnavailable,
                        "The upstream answered with a Cloudflare challenge (not an account ban); try again later or use a different network/proxy.",
                    )
                    .with_code("cloudflare_challenge"),
                )
            } else {
                UpstreamFailure::AccountUnavailable(with_code(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    format!("The upstream refused access: {message}"),
                )))
            }
        }
        429 => {
            if code.as_deref() == Some("usage_not_included") {
                return UpstreamFailure::AccountUnavailable(with_code(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    format!("This account's plan does not include Codex usage: {message}"),
                )));
            }
            let retry = retry_after(headers, err, now);
            let mut e =
                with_code(GatewayError::new(ErrorKind::RateLimited, format!("Upstream limit reached: {message}")));
            e.retry_after = retry;
            UpstreamFailure::AccountUnavailable(e)
        }
        413 => UpstreamFailure::Rejected(with_code(GatewayError::new(ErrorKind::ContextTooLong, message))),
        400..=499 => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("not supported when using codex with a chatgpt account") {
                return UpstreamFailure::Rejected(
                    GatewayError::new(
                        ErrorKind::NotFound,
                        format!("The account's plan does not serve this model: {message}"),
                    )
                    .with_code("model_not_supported_by_plan"),
                );
            }
            let kind = if code.as_deref() == Some("context_length_exceeded")
                || lower.contains("context window")
                || lower.contains("context length")
            {
                ErrorKind::ContextTooLong
            } else if status == StatusCode::NOT_FOUND {
                ErrorKind::NotFound
            } else {
                ErrorKind::InvalidRequest
            };
            let mut e = GatewayError::new(kind, format!("The upstream rejected the request: {message}"));
            e.code = code.or_else(|| (kind == ErrorKind::ContextTooLong).then(|| "context_length_exceeded".into()));
            e.param = err.and_then(|e| e.get("param")).and_then(Value::as_str).map(str::to_string);
            UpstreamFailure::Rejected(e)
        }
        503 => UpstreamFailure::AccountUnavailable(with_code(GatewayError::new(
            ErrorKind::Overloaded,
            format!("The upstream is overloaded: {message}"),
        ))),
        _ => UpstreamFailure::AccountUnavailable(with_code(GatewayError::new(
            ErrorKind::UpstreamUnavailable,
            format!("The upstream failed (HTTP {}): {message}", status.as_u16()),
        ))),
    }
}

/// `resets_at` (unix s) / `resets_in_seconds` in the body, else the `Retry-After` header.
fn retry_after(headers: &HeaderMap, err: Option<&Value>, now: i64) -> Option<u64> {
    let from_body = err.and_then(|e| {
        e.get("resets_at")
            .and_then(Value::as_i64)
            .map(|at| (at - now).max(1) as u64)
            .or_else(|| e.get("resets_in_seconds").and_then(Value::as_u64))
    });
    from_body.or_else(|| {
        headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| s.ceil() as u64)
    })
}

fn is_cloudflare_challenge(headers: &HeaderMap, body: &str) -> bool {
    let html = headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.contains("text/html"));
    let cf = headers.contains_key("cf-mitigated")
        || body.contains("challenge-platform")
        || body.contains("Just a moment")
        || body.contains("cf-chl");
    cf && (html || body.trim_start().starts_with('<'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_limit_uses_resets_at() {
        let body = br#"{"error":{"type":"usage_limit_reached","message":"limit","resets_at":1100}}"#;
        let f = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body, 1000);
        let e = f.clone().into_error();
        assert!(matches!(f, UpstreamFailure::AccountUnavailable(_)));
        assert_eq!(
            (e.kind, e.retry_after, e.code.as_deref()),
            (ErrorKind::RateLimited, Some(100), Some("usage_limit_reached"))
        );
    }

    #[test]
    fn bad_request_passes_through_as_rejected() {
        let f = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"detail":"Unsupported parameter: temperature"}"#,
            0,
        );
        match f {
            UpstreamFailure::Rejected(e) => {
                assert_eq!(e.kind, ErrorKind::InvalidRequest);
                assert!(e.message.contains("temperature"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cloudflare_is_not_a_ban() {
        let mut h = HeaderMap::new();
        h.insert("content-type", reqwest::header::HeaderValue::from_static("text/html"));
        let f = classify(StatusCode::FORBIDDEN, &h, b"<html>Just a moment... challenge-platform</html>", 0);
        assert_eq!(f.into_error().code.as_deref(), Some("cloudflare_challenge"));
    }
}
