//! `GET /v1/responses` (and `/responses`) with `Upgrade: websocket`: the Responses WebSocket, which the official
//! Codex client uses when its provider says `supports_websockets = true` (issue 25, docs/protocol.md).
//!
//! The handshake passed the guard like any request (host, origin, client key: a bad key is the guard's 401
//! before any upgrade); here it is upgraded and the socket handed to `session.rs`, which relays each
//! `response.create` through the HTTP route's own path. With `[server] websocket = false` the handshake is
//! answered the way the backend tells a client to use HTTP instead: `426 Upgrade Required`, on which the official
//! client falls back to HTTP SSE at once. A plain GET is the route's 405 with `Allow: POST`. While the gateway
//! shuts down, a handshake is refused with 503 (the session could not outlive the drain), and open sessions
//! finish their turn and close with 1001 (`session.rs`).

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use dialects::{ErrorKind, GatewayError};

use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::server::errors::{error_response, error_response_with_status, method_not_allowed_response};
use crate::server::openai;
use crate::server::others::method_route;

mod conversation;
mod frames;
mod session;

pub async fn handshake(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let record = Recorder::new(state.records.clone(), Api::Other, method_route(&req), request_id(req.headers()));
    let upgrade = req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let response = if !upgrade {
        let path = req.uri().path();
        let mut r = method_not_allowed_response(openai::SHAPE, req.method(), path, record.request_id());
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        r
    } else if !state.config.inbound_ws.enabled {
        let err = GatewayError::invalid(
            "WebSocket is turned off on this gateway ([server] websocket = false); send POST /v1/responses (HTTP \
             with SSE).",
        )
        .with_code("websocket_not_supported");
        error_response_with_status(openai::SHAPE, &err, record.request_id(), StatusCode::UPGRADE_REQUIRED)
    } else if state.drain.is_draining() {
        let err = GatewayError::new(ErrorKind::Overloaded, "The gateway is shutting down; connect again shortly.")
            .with_code("shutting_down");
        error_response(openai::SHAPE, &err, record.request_id())
    } else {
        upgrade_to_session(state.clone(), req, record.request_id()).await
    };
    record.finish(response.status().as_u16());
    response
}

async fn upgrade_to_session(state: Arc<AppState>, req: Request, rid: &str) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let (mut parts, _) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws,
        Err(rejection) => {
            let err = GatewayError::invalid(format!("Bad WebSocket handshake: {}", rejection.body_text()))
                .with_code("invalid_websocket_handshake");
            return error_response_with_status(openai::SHAPE, &err, rid, rejection.status());
        }
    };
    let limit = state.config.body_limit;
    let settings = state.config.inbound_ws.clone();
    let headers = turn_headers(parts.headers);
    let request_id = rid.to_string();
    // Taken before the upgrade, so a shutdown that begins in between still waits for the session.
    let joined = state.drain.token();
    let drain = state.drain.clone();
    let session = session::Session { state, caller, headers, settings, request_id };
    ws.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| async move {
        tokio::select! {
            () = session::run(socket, session, &drain) => {}
            // The shutdown's bound passed: dropped like an HTTP connection, with its turn and upstream stream.
            () = drain.stopped() => {}
        }
        drop(joined);
    })
}

/// The handshake's headers as each turn's request headers: the client's identity (originator, User-Agent,
/// version, session and thread ids) stays, the upgrade's own headers go.
fn turn_headers(mut headers: HeaderMap) -> HeaderMap {
    for name in [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::CONTENT_LENGTH,
    ] {
        headers.remove(name);
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}
