//! How a response ended, in dialect-neutral terms, and the client error for an upstream failure event.

use crate::error::GatewayError;

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
    pub fn from_incomplete(reason: &crate::responses::event::IncompleteReason) -> Finish {
        use crate::responses::event::IncompleteReason;
        match reason {
            IncompleteReason::ContentFilter => Finish::ContentFilter,
            IncompleteReason::MaxOutputTokens | IncompleteReason::Other(_) => Finish::Length,
        }
    }
}

/// The error a client sees for an upstream `response.failed` / `error` event: the one classifier
/// ([`crate::failure::classify_event`]) decides, as for an HTTP error answer.
pub fn upstream_failure(code: Option<&str>, message: &str) -> GatewayError {
    crate::failure::classify_event(code, message).to_error()
}

pub use crate::failure::retry_after_from_message;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
