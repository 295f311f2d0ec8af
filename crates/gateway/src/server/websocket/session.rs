//! One inbound Responses WebSocket, after the handshake: read a message, relay a turn, write its events, until
//! the client closes, goes idle, or the connection reaches its lifetime.
//!
//! Each `response.create` goes through the HTTP route's own path (`handler::handle::<Responses>`: decode, the
//! client key's limits, the exchange on whatever upstream transport is in use, the pump, one request record per
//! turn), and its SSE answer is written back one text frame per event (the `data`, unchanged). One turn at a
//! time: a `response.create` during a turn is refused with an error frame. While a turn runs the socket is still
//! read, so a client that goes away drops the turn, and with it the upstream stream, at once. The frame shapes
//! are `frames.rs`; the conversation state behind `previous_response_id` is `conversation.rs`.
//!
//! When the gateway shuts down (`app::Drain`), an idle socket is closed at once with 1001 (going away) and a
//! socket mid-turn finishes that turn first, so nothing accepted is lost; the official client reconnects on 1001.
//!
//! A client's Close frame is answered with a Close frame echoing its status code before the connection is dropped
//! (RFC 6455, 5.5.1): without the reply, clients report the close as abnormal (1006) even after a normal 1000.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, close_code};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use super::conversation::{Conversation, Message};
use super::frames::{self, SseItem, SseSplitter};
use crate::app::AppState;
use crate::app::Drain;
use crate::config::WebSocketSettings;
use crate::keys::Caller;
use crate::server::handler::handle;
use crate::server::openai::Responses;

/// The route a WebSocket turn's record names (the HTTP route's records say `/v1/responses`).
pub const ROUTE: &str = "/v1/responses (websocket)";

/// The largest error answer read into a wrapped error frame (they are a few hundred bytes).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How long the reply to a client's Close frame may take to go out before the connection is dropped anyway.
const CLOSE_REPLY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a socket needs for its turns: the gateway, and the handshake's caller and headers.
pub struct Session {
    pub state: Arc<AppState>,
    pub caller: Option<Caller>,
    /// The handshake's headers without the WebSocket ones: each turn is relayed with them.
    pub headers: HeaderMap,
    pub settings: WebSocketSettings,
    /// The handshake's request id: turn `n` is recorded as `<id>-<n>`.
    pub request_id: String,
}

/// The client is gone (closed, reset, or a write failed).
struct Gone;

type Tx = SplitSink<WebSocket, WsMessage>;
type Rx = SplitStream<WebSocket>;

/// Serve the socket until it ends (or, between turns, until the gateway begins to shut down).
pub async fn run(socket: WebSocket, session: Session, drain: &Drain) {
    let (mut tx, mut rx) = socket.split();
    let opened = Instant::now();
    let owner = session.caller.as_ref().map(|c| &*c.0.id);
    let mut conversation = Conversation::new(session.state.config.body_limit, session.state.stored.clone(), owner);
    let mut turns: u64 = 0;
    loop {
        let idle = tokio::time::sleep(session.settings.idle);
        let msg = tokio::select! {
            // First: a message that arrives once the shutdown has begun is not started.
            biased;
            () = drain.draining() => {
                let _ = close(&mut tx, close_code::AWAY, "server shutting down").await;
                return;
            }
            msg = rx.next() => msg,
            () = idle => {
                let _ = close(&mut tx, close_code::NORMAL, "idle timeout").await;
                return;
            }
        };
        let text = match msg {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Binary(_))) => {
                let err = frames::request_error(400, "invalid_message", "Messages must be JSON text frames.", None);
                if send(&mut tx, err).await.is_err() {
                    return;
                }
                continue;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Close(_))) => {
                reply_to_close(&mut tx).await;
                return;
            }
            Some(Err(_)) | None => return,
        };
        if opened.elapsed() >= session.settings.max_lifetime {
            // The backend's words for it: the official client opens a new connection and goes on.
            let minutes = session.settings.max_lifetime.as_secs() / 60;
            let message = format!(
                "Responses websocket connection limit reached ({minutes} minutes). Create a new websocket \
                 connection to continue."
            );
            let err = frames::request_error(400, "websocket_connection_limit_reached", &message, None);
            let _ = send(&mut tx, err).await;
            let _ = close(&mut tx, close_code::NORMAL, "connection limit reached").await;
            return;
        }
        let result = match conversation.read(text.as_str()) {
            Ok(Message::Processed) => Ok(()),
            Ok(Message::Create { body, store }) => {
                turns += 1;
                turn(&mut tx, &mut rx, &session, &mut conversation, body, store, turns).await
            }
            Err(e) => {
                let (code, message, param) = e.parts();
                send(&mut tx, frames::request_error(400, code, &message, param)).await
            }
        };
        if result.is_err() {
            return;
        }
    }
}

/// Relay one turn and write its answer. `Err` only when the client is gone.
async fn turn(
    tx: &mut Tx,
    rx: &mut Rx,
    session: &Session,
    conversation: &mut Conversation,
    body: Value,
    store: bool,
    n: u64,
) -> Result<(), Gone> {
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return send(tx, frames::request_error(400, "invalid_json", "The request could not be encoded.", None)).await;
    };
    // Kept for the next turn's `previous_response_id` (the body itself is serialized and dropped).
    let input = match body.get("input") {
        Some(input) => serde_json::to_string(input).unwrap_or_else(|_| "[]".into()),
        None => "[]".to_string(),
    };
    drop(body);
    let mut headers = session.headers.clone();
    // One request id per turn, so each turn's record and log line stand on their own, traceable to the socket.
    if let Ok(v) = HeaderValue::from_str(&format!("{}-{n}", session.request_id)) {
        headers.insert("x-request-id", v);
    }
    let state = session.state.clone();
    let relayed = handle::<Responses>(state, (), ROUTE, session.caller.clone(), headers, Ok(Bytes::from(bytes)));
    let response = {
        let mut relayed = std::pin::pin!(relayed);
        loop {
            tokio::select! {
                r = &mut relayed => break r,
                msg = rx.next() => between_events(tx, msg).await?,
            }
        }
    };
    if response.status() != StatusCode::OK {
        conversation.forget();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, ERROR_BODY_LIMIT).await.unwrap_or_default();
        return send(tx, frames::wrapped_error(parts.status.as_u16(), &body, &parts.headers)).await;
    }
    if let Some(limits) = frames::rate_limits(response.headers()) {
        send(tx, limits).await?;
    }
    let completed = stream_events(tx, rx, response).await?;
    match completed {
        Some((id, output)) => conversation.completed(id, &input, &output, store),
        None => conversation.forget(),
    }
    Ok(())
}

/// Write the answer's events as text frames; the completed response's id and output (a JSON array's text) when it
/// completed.
async fn stream_events(tx: &mut Tx, rx: &mut Rx, response: Response) -> Result<Option<(String, String)>, Gone> {
    let mut body = Body::into_data_stream(response.into_body());
    let mut splitter = SseSplitter::default();
    let mut items = Vec::new();
    let mut completed = None;
    // Once the terminal event is out the client may send its next `response.create` before the body has ended:
    // from then on the socket is left unread until the turn is over (the message waits for the next turn).
    let mut terminal = false;
    loop {
        let chunk = if terminal {
            body.next().await
        } else {
            tokio::select! {
                chunk = body.next() => chunk,
                msg = rx.next() => {
                    between_events(tx, msg).await?;
                    continue;
                }
            }
        };
        let Some(Ok(chunk)) = chunk else {
            // The end of the answer (the pump ends a failed stream with its error event first).
            return Ok(completed);
        };
        splitter.push(&chunk, &mut items);
        for item in items.drain(..) {
            match item {
                SseItem::Event { name, data } => {
                    match name.as_deref() {
                        Some("response.completed") => {
                            completed = completed_response(&data);
                            terminal = true;
                        }
                        Some("response.failed" | "response.incomplete" | "error") => terminal = true,
                        _ => {}
                    }
                    tx.feed(WsMessage::Text(Utf8Bytes::from(data))).await.map_err(|_| Gone)?;
                }
                // The gateway's keepalive while the upstream is silent: a ping keeps proxies from closing the
                // socket (the official client answers it and does not count it as an event).
                SseItem::Comment => tx.feed(WsMessage::Ping(Bytes::new())).await.map_err(|_| Gone)?,
            }
        }
        // The chunk's events (what the pump had read together) leave in one write (docs/performance.md, "Bursts").
        tx.flush().await.map_err(|_| Gone)?;
    }
}

/// The id and output items (a JSON array's text) of a `response.completed` event.
fn completed_response(data: &str) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Completed<'a> {
        #[serde(borrow)]
        response: Inner<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Inner<'a> {
        id: String,
        #[serde(borrow, default)]
        output: Option<&'a serde_json::value::RawValue>,
    }
    let c: Completed = serde_json::from_str(data).ok()?;
    // The output as it came, unparsed: an array, or nothing kept.
    let output = c.response.output.map(|o| o.get()).filter(|o| o.trim_start().starts_with('[')).unwrap_or("[]");
    Some((c.response.id, output.to_string()))
}

/// A message that arrived while a turn runs: the client's acknowledgements pass, a second `response.create` is
/// refused (one turn at a time), a close or a broken socket ends the turn.
async fn between_events(tx: &mut Tx, msg: Option<Result<WsMessage, axum::Error>>) -> Result<(), Gone> {
    match msg {
        Some(Ok(WsMessage::Text(text))) => {
            #[derive(serde::Deserialize)]
            struct Kind<'a> {
                #[serde(rename = "type", borrow)]
                kind: &'a str,
            }
            if serde_json::from_str::<Kind>(text.as_str()).is_ok_and(|k| k.kind == "response.processed") {
                return Ok(());
            }
            let err = frames::request_error(
                400,
                "response_in_progress",
                "A response is already in progress on this connection; send the next request after it completes.",
                None,
            );
            send(tx, err).await
        }
        Some(Ok(WsMessage::Binary(_) | WsMessage::Ping(_) | WsMessage::Pong(_))) => Ok(()),
        Some(Ok(WsMessage::Close(_))) => {
            reply_to_close(tx).await;
            Err(Gone)
        }
        Some(Err(_)) | None => Err(Gone),
    }
}

/// The client sent a Close frame: the WebSocket library has queued the reply (the same status code), and this
/// sends it, so the client sees the closing handshake complete. The connection is dropped after it (the server
/// closes TCP first, RFC 6455 7.1.1).
async fn reply_to_close(tx: &mut Tx) {
    let _ = tokio::time::timeout(CLOSE_REPLY_LIMIT, tx.close()).await;
}

async fn send(tx: &mut Tx, text: String) -> Result<(), Gone> {
    tx.send(WsMessage::Text(Utf8Bytes::from(text))).await.map_err(|_| Gone)
}

async fn close(tx: &mut Tx, code: u16, reason: &'static str) -> Result<(), Gone> {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    tx.send(WsMessage::Close(Some(frame))).await.map_err(|_| Gone)
}
