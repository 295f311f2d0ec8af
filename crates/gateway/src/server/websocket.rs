//! `GET /v1/responses` (and `/responses`) with `Upgrade: websocket`: the Responses WebSocket handshake, which
//! the official Codex client tries first on providers that support it (issue 25). The gateway does not speak
//! WebSocket yet, so it answers the way the backend tells a client to use HTTP instead: `426 Upgrade
//! Required`, on which the official client falls back to HTTP SSE (a 405 made it retry the handshake five times
//! first). A plain GET is still the route's 405 with `Allow: POST`, as before.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::record::{Api, Recorder};
use crate::server::errors::Shape;
use crate::server::{AppState, method_not_allowed_response, method_route, request_id};

pub async fn handshake(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let record = Recorder::new(state.records.clone(), Api::Other, method_route(&req), request_id(req.headers()));
    let upgrade = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let response = if upgrade {
        let body = json!({"error": {
            "message": "WebSocket is not supported on this endpoint yet; send POST /v1/responses (HTTP with SSE).",
            "type": "invalid_request_error",
            "param": null,
            "code": "websocket_not_supported",
        }});
        (StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response()
    } else {
        let path = req.uri().path();
        let mut r = method_not_allowed_response(Shape::OpenAi, req.method(), path, record.request_id());
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        r
    };
    record.finish(response.status().as_u16());
    response
}
