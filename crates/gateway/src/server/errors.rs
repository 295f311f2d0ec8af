//! Rendering a [`GatewayError`] as an HTTP response in the client's own dialect.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;

/// The error shape of a route (which dialect's error body a client there parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

impl Shape {
    /// Best guess from the path, for errors raised before a handler runs (auth, body limit, 404).
    pub fn from_path(path: &str) -> Shape {
        if path.starts_with("/v1/messages") {
            Shape::Anthropic
        } else if path.starts_with("/v1beta/")
            || path.starts_with("/v1alpha/")
            || (path.starts_with("/v1/models/") && path.contains(':'))
        {
            Shape::Gemini
        } else {
            Shape::OpenAi
        }
    }
}

/// The error response for `dialect`. Adds `Retry-After` when the error carries one.
pub fn error_response(dialect: Shape, err: &GatewayError, request_id: &str) -> Response {
    let (status, body) = match dialect {
        Shape::OpenAi => (err.status(), err.openai_body()),
        Shape::Gemini => dialects::gemini::error_body(err),
        Shape::Ollama => dialects::ollama::error_body(err),
        Shape::Anthropic => dialects::anthropic::error_response(err, request_id),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = err.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if dialect == Shape::Anthropic
        && let Ok(v) = HeaderValue::from_str(request_id)
    {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// Map a body-read failure (too large, broken connection) to an error.
pub fn body_error(rejection: axum::extract::rejection::BytesRejection, limit: usize) -> GatewayError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        GatewayError::new(
            dialects::ErrorKind::PayloadTooLarge,
            format!(
                "The request body is larger than the gateway's limit of {} MiB (body_limit_mb).",
                limit / (1024 * 1024)
            ),
        )
        .with_code("request_too_large")
    } else if let Some(timed_out) = crate::server::http1::body_timed_out(&rejection) {
        let mut err = GatewayError::invalid(format!("Could not read the request body: {timed_out}."));
        err.code = Some("request_body_timeout".into());
        err
    } else {
        GatewayError::invalid(format!("Could not read the request body: {rejection}"))
    }
}
