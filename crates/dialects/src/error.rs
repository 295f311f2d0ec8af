//! One error type for every failure a client can see, and its rendering in each dialect.
//!
//! The gateway builds a [`GatewayError`] wherever something goes wrong (bad input, upstream refusal, pool
//! exhausted); the dialect modules turn it into their own status code and body. Keeping the kind separate from
//! the rendering means a new dialect only adds a renderer, and a new kind forces every renderer to decide.

use serde_json::{Value, json};

/// What went wrong, independent of any dialect. Decides the HTTP status and the retry hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent something malformed or unsupported.
    InvalidRequest,
    /// Missing or wrong client API key.
    Unauthorized,
    /// Authenticated but not allowed (upstream 403, account disabled for this use).
    PermissionDenied,
    /// Unknown model or route.
    NotFound,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The conversation does not fit the model's context window.
    ContextTooLong,
    /// A quota or rate limit; `retry_after` says when to come back.
    RateLimited,
    /// The gateway has no usable credentials (not logged in, every account needs login).
    NotLoggedIn,
    /// The upstream is overloaded or every account is busy.
    Overloaded,
    /// The upstream failed (5xx, cut stream, unreachable).
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// A bug or an unexpected condition inside the gateway.
    Internal,
}

impl ErrorKind {
    /// A stable snake_case name, for logs and the usage ledger.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::ContextTooLong => "context_too_long",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::NotLoggedIn => "not_logged_in",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }

    /// The HTTP status used by the OpenAI-style dialects; others map from this where they agree.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::PermissionDenied => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::ContextTooLong => 400,
            ErrorKind::RateLimited => 429,
            ErrorKind::NotLoggedIn => 401,
            ErrorKind::Overloaded => 503,
            ErrorKind::UpstreamUnavailable => 502,
            ErrorKind::Timeout => 504,
            ErrorKind::Internal => 500,
        }
    }
}

/// A client-visible error: kind, human message, and the optional OpenAI-style `code` / `param`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    pub code: Option<String>,
    pub param: Option<String>,
    /// Seconds until a retry may succeed (rendered as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError { kind, message: message.into(), code: None, param: None, retry_after: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::invalid(message);
        e.param = Some(param.to_string());
        e
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist or is not served by this gateway. GET /v1/models lists the available models."),
        )
        .with_code("model_not_found")
    }
    pub fn status(&self) -> u16 {
        self.kind.http_status()
    }

    /// OpenAI `error.type` for this kind.
    fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::ContextTooLong
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge => "invalid_request_error",
            ErrorKind::Unauthorized | ErrorKind::NotLoggedIn => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded | ErrorKind::UpstreamUnavailable | ErrorKind::Timeout | ErrorKind::Internal => {
                "server_error"
            }
        }
    }

    /// The OpenAI error object `{"message","type","param","code"}` (without the `error` wrapper).
    pub fn openai_object(&self) -> Value {
        json!({
            "message": self.message,
            "type": self.openai_type(),
            "param": self.param,
            "code": self.code,
        })
    }

    /// The full OpenAI error body `{"error":{...}}`.
    pub fn openai_body(&self) -> Value {
        json!({ "error": self.openai_object() })
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_body_shape() {
        let e = GatewayError::invalid_param("messages", "messages must be an array");
        assert_eq!(
            e.openai_body(),
            json!({"error":{"message":"messages must be an array","type":"invalid_request_error","param":"messages","code":null}})
        );
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn rate_limit_status() {
        let e = GatewayError::new(ErrorKind::RateLimited, "quota").with_retry_after(30);
        assert_eq!(e.status(), 429);
        assert_eq!(e.openai_object()["type"], "rate_limit_error");
    }
}
