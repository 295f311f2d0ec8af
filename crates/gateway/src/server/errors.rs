//! Rendering a [`GatewayError`] as an HTTP response in the client's own dialect, and the errors of reading a
//! request's body (too large, too slow: [`BodyTimedOut`], which the HTTP/1.1 connection fails a late body with).

use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;
use serde_json::{Value, json};

use super::dialect::Shape;

/// The error response in `shape`. Adds `Retry-After` when the error carries one.
pub fn error_response(shape: Shape, err: &GatewayError, request_id: &str) -> Response {
    let (status, body) = (shape.body)(err, request_id);
    respond(shape, err, request_id, status, body)
}

/// [`error_response`] with another status than the error's own (a 405, a 415). A body that repeats its status
/// (Gemini's `error.code`) repeats the one sent.
pub fn error_response_with_status(shape: Shape, err: &GatewayError, request_id: &str, status: StatusCode) -> Response {
    let (own, mut body) = (shape.body)(err, request_id);
    if let Some(code) = body.get_mut("error").and_then(|e| e.get_mut("code"))
        && *code == json!(own)
    {
        *code = json!(status.as_u16());
    }
    respond(shape, err, request_id, status.as_u16(), body)
}

fn respond(shape: Shape, err: &GatewayError, request_id: &str, status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(secs) = err.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    (shape.finish)(resp, request_id)
}

/// Map a body-read failure (too large, broken connection) to an error.
pub fn body_error(rejection: axum::extract::rejection::BytesRejection, limit: usize) -> GatewayError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else if let Some(timed_out) = body_timed_out(&rejection) {
        GatewayError::invalid(format!("Could not read the request body: {timed_out}."))
            .with_code("request_body_timeout")
    } else {
        GatewayError::invalid(format!("Could not read the request body: {rejection}"))
    }
}

/// A body past `body_limit_mb` (a plain body's or a multipart form's).
pub fn too_large(limit: usize) -> GatewayError {
    let mib = limit / (1024 * 1024);
    let message = format!("The request body is larger than the gateway's limit of {mib} MiB (body_limit_mb).");
    GatewayError::new(dialects::ErrorKind::PayloadTooLarge, message).with_code("request_too_large")
}

/// The 405 body in `dialect`'s error shape (an invalid-request error with the 405 status). Routes that refuse a
/// method themselves (a GET on a Gemini method path) set `Allow` on the response.
pub fn method_not_allowed_response(shape: Shape, method: &Method, path: &str, request_id: &str) -> Response {
    let err =
        GatewayError::invalid(format!("Method {method} is not allowed on {path}")).with_code("method_not_allowed");
    error_response_with_status(shape, &err, request_id, StatusCode::METHOD_NOT_ALLOWED)
}

/// The request body did not arrive within `request_body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (request_body_timeout_secs)", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

/// The [`BodyTimedOut`] behind a body-read failure, if that was the cause.
pub fn body_timed_out<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref::<BodyTimedOut>())
}
