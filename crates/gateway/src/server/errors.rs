//! Rendering a [`GatewayError`] as an HTTP response in the client's own dialect, and the errors of reading a
//! request's body (too large, too slow: [`BodyTimedOut`], which the HTTP/1.1 connection fails a late body with).

use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;
use serde_json::json;

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
    } else if let Some(timed_out) = body_timed_out(&rejection) {
        let mut err = GatewayError::invalid(format!("Could not read the request body: {timed_out}."));
        err.code = Some("request_body_timeout".into());
        err
    } else {
        GatewayError::invalid(format!("Could not read the request body: {rejection}"))
    }
}

/// The 405 body in `dialect`'s error shape (an invalid-request error with the 405 status). Routes that refuse a
/// method themselves (a GET on a Gemini method path) set `Allow` on the response.
pub fn method_not_allowed_response(dialect: Shape, method: &Method, path: &str, request_id: &str) -> Response {
    let err =
        GatewayError::invalid(format!("Method {method} is not allowed on {path}")).with_code("method_not_allowed");
    if dialect == Shape::Gemini {
        // Gemini's body repeats the HTTP status in `error.code`.
        let (_, mut body) = dialects::gemini::error_body(&err);
        body["error"]["code"] = json!(StatusCode::METHOD_NOT_ALLOWED.as_u16());
        return (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    }
    let mut resp = error_response(dialect, &err, request_id);
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// The request body did not arrive within `request_body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (request_body_timeout_secs)", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

/// The [`BodyTimedOut`] behind a body-read failure, if that was the cause.
pub fn body_timed_out<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        cause = e.source();
    }
    None
}
