//! How a response ended, in dialect-neutral terms, and the mapping of upstream failures to client errors.

use crate::error::{ErrorKind, GatewayError};

/// The reason generation stopped. Each dialect maps this to its own stop/finish reason (spec C4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// Natural end of the answer.
    Stop,
    /// The answer ended with at least one function call.
    ToolCalls,
    /// Cut at the output token cap (upstream `max_output_tokens` or the gateway's emulated cap).
    Length,
    /// Upstream `content_filter`.
    ContentFilter,
    /// The gateway emulated a stop sequence and cut the stream there.
    StopSequence(String),
}

impl Finish {
    /// How a response that ended with `terminal` finished; `had_calls` turns a normal end into `ToolCalls`.
    pub fn from_terminal(terminal: &crate::responses::event::Terminal, had_calls: bool) -> Finish {
        use crate::responses::event::Terminal;
        match terminal {
            Terminal::Completed if had_calls => Finish::ToolCalls,
            Terminal::Completed => Finish::Stop,
            Terminal::Incomplete { reason } => Finish::from_incomplete(reason),
            Terminal::Cut(f) => f.clone(),
        }
    }

    /// Map an upstream `incomplete_details.reason`.
    pub fn from_incomplete(reason: &str) -> Finish {
        match reason {
            "content_filter" => Finish::ContentFilter,
            _ => Finish::Length,
        }
    }
}

/// Turn an upstream `response.failed` / `error` event into the error a client should see.
pub fn upstream_failure(code: Option<&str>, message: &str) -> GatewayError {
    let (kind, msg) = match code.unwrap_or("") {
        "context_length_exceeded" => (ErrorKind::ContextTooLong, message.to_string()),
        "rate_limit_exceeded" | "usage_limit_reached" | "insufficient_quota" => {
            let mut e = GatewayError::new(ErrorKind::RateLimited, message);
            if let Some(secs) = retry_after_from_message(message) {
                e = e.with_retry_after(secs);
            }
            e.code = code.map(str::to_string);
            return e;
        }
        "usage_not_included" => (ErrorKind::PermissionDenied, message.to_string()),
        "server_is_overloaded" | "slow_down" => (ErrorKind::Overloaded, message.to_string()),
        "invalid_prompt" | "invalid_request_error" | "cyber_policy" => (ErrorKind::InvalidRequest, message.to_string()),
        _ => (ErrorKind::UpstreamUnavailable, format!("The upstream response failed: {message}")),
    };
    let mut e = GatewayError::new(kind, msg);
    e.code = code.map(str::to_string);
    e
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_failures() {
        assert_eq!(upstream_failure(Some("context_length_exceeded"), "x").kind, ErrorKind::ContextTooLong);
        let e = upstream_failure(Some("rate_limit_exceeded"), "Rate limit reached. Please try again in 11.054s.");
        assert_eq!((e.kind, e.retry_after), (ErrorKind::RateLimited, Some(12)));
        assert_eq!(upstream_failure(Some("server_is_overloaded"), "busy").kind, ErrorKind::Overloaded);
        assert_eq!(upstream_failure(None, "boom").kind, ErrorKind::UpstreamUnavailable);
    }

    #[test]
    fn parses_retry_hints() {
        assert_eq!(retry_after_from_message("try again in 250ms"), Some(1));
        assert_eq!(retry_after_from_message("try again in 3s"), Some(3));
        assert_eq!(retry_after_from_message("no hint"), None);
    }
}
