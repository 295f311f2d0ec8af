//! The Responses WebSocket on `GET /backend-api/codex/responses` (ChatGPT mode), as the official client speaks
//! it (codex-rs `codex-api/src/endpoint/responses_websocket.rs`): a handshake carrying the same credentials and
//! headers as the HTTP endpoint plus `OpenAI-Beta: responses_websockets=2026-02-06`, then
//! `{"type":"response.create", ...Responses body...}` text messages, each answered with the same events the SSE
//! endpoint streams, one per text frame, preceded by a `codex.rate_limits` frame and a `codex.response.metadata`
//! frame and followed by a `responsesapi.websocket_timing` frame (the backend's own, not events). An answer the HTTP endpoint
//! gives as an error status comes as the backend's wrapped error frame (`{"type":"error","status":429,
//! "error":{...},"headers":{...}}`); the connection lives at most a configured time (60 minutes by default)
//! and then ends with `websocket_connection_limit_reached`. A switch refuses the handshake with 426 (the
//! official client then uses HTTP SSE).
//!
//! Each message is answered by the HTTP endpoint's own code (`responses::chatgpt_answer`: validation, quota,
//! scenarios, token accounting), so this endpoint is exactly as strict. Messages are recorded like HTTP
//! requests (method `POST`, `http_version` `"websocket"`); the handshake itself is not recorded.

use crate::server::{chatgpt_auth, detail};
use crate::state::Shared;
use crate::tokens::now_ms;
use crate::types::RecordedRequest;
use crate::ws_chain::{self, Chain};
use axum::body::to_bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use yawc::close::CloseCode;
use yawc::{Frame, HttpStream, IncomingUpgrade, OpCode, Options};

type WebSocket = yawc::WebSocket<HttpStream>;

/// A text frame.
fn text_frame(t: impl Into<bytes::Bytes>) -> Frame {
    Frame::text(t)
}

/// The beta header value the official client sends on the handshake.
pub const BETA: &str = "responses_websockets=2026-02-06";
const LIMIT_CODE: &str = "websocket_connection_limit_reached";
/// The handshake answer's header with the largest message the connection takes (Codex CLI 0.171 reads it).
pub const MAX_MESSAGE_HEADER: &str = "x-codex-websocket-max-message-bytes";
/// The error code of a message over that size, as the official client (0.171) names the failure.
const TOO_LARGE_CODE: &str = "websocket_message_too_large";
/// The largest message advertised by default. The real backend's number is not known; this one is the size of
/// tungstenite's default read limit (64 MiB), which no test request reaches unless it sets a smaller one.
const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;
const LIMIT_MESSAGE: &str =
    "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.";
/// The backend's connection lifetime.
const DEFAULT_LIMIT: Duration = Duration::from_secs(60 * 60);

/// Marks a handshake response: the recorder leaves it out (the messages are recorded instead).
#[derive(Clone, Copy)]
pub(crate) struct NotRecorded;

/// A WebSocket broken where the origin is reached, as a proxy or middlebox in front of the backend breaks it
/// while the HTTP endpoints still work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WsFault {
    /// Every handshake is answered 101 with a `Sec-WebSocket-Accept` that is not the one for the client's key.
    BadSwitch = 1,
    /// Every connection switches, then closes before answering anything.
    Closing = 2,
}

/// The WebSocket endpoint's switches and counters.
#[derive(Default)]
pub(crate) struct WsState {
    /// Refuse every handshake with 426.
    refuse: AtomicBool,
    /// Answer every handshake 404, as an origin that serves the HTTP endpoints only (a proxy in front of the
    /// backend, a compatible server without the WebSocket).
    absent: AtomicBool,
    /// Hold no response for chaining: every `previous_response_id` is refused (`previous_response_not_found`).
    forget: AtomicBool,
    /// How the WebSocket breaks where the origin is reached ([`WsFault`]); 0: it does not.
    fault: std::sync::atomic::AtomicU8,
    /// Connection lifetime in ms; 0 means the backend's 60 minutes.
    limit_ms: AtomicU64,
    /// Connections upgraded since start.
    opened: AtomicU64,
    /// The largest message a connection takes (advertised on the handshake); 0 means the default.
    max_message: AtomicU64,
    /// Messages refused for their size.
    too_large: AtomicU64,
    /// Every message received, as sent (`type` included), oldest first.
    messages: Mutex<Vec<Value>>,
    /// Models whose catalog entry says `prefer_websockets: true` (the official client then uses the WebSocket).
    preferred: Mutex<Vec<String>>,
}

impl WsState {
    pub(crate) fn set_refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::Relaxed);
    }

    pub(crate) fn set_absent(&self, absent: bool) {
        self.absent.store(absent, Ordering::Relaxed);
    }

    pub(crate) fn set_fault(&self, fault: Option<WsFault>) {
        self.fault.store(fault.map_or(0, |f| f as u8), Ordering::Relaxed);
    }

    pub(crate) fn set_forget(&self, forget: bool) {
        self.forget.store(forget, Ordering::Relaxed);
    }

    pub(crate) fn set_limit(&self, limit: Option<Duration>) {
        let ms = limit.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        self.limit_ms.store(ms, Ordering::Relaxed);
    }

    /// The largest message a connection takes, advertised on the handshake; `None` for the default.
    pub(crate) fn set_max_message(&self, bytes: Option<u64>) {
        self.max_message.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    fn max_message(&self) -> u64 {
        match self.max_message.load(Ordering::Relaxed) {
            0 => DEFAULT_MAX_MESSAGE,
            n => n,
        }
    }

    pub(crate) fn too_large(&self) -> u64 {
        self.too_large.load(Ordering::Relaxed)
    }

    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub(crate) fn messages(&self) -> Vec<Value> {
        self.messages.lock().clone()
    }

    pub(crate) fn set_preferred(&self, slug: &str, prefer: bool) {
        let mut preferred = self.preferred.lock();
        preferred.retain(|s| s != slug);
        if prefer {
            preferred.push(slug.to_string());
        }
    }

    fn limit(&self) -> Duration {
        match self.limit_ms.load(Ordering::Relaxed) {
            0 => DEFAULT_LIMIT,
            ms => Duration::from_millis(ms),
        }
    }
}

/// Set `prefer_websockets` on the entries of a Codex catalog answer for the models a test chose.
pub(crate) fn mark_preferred(shared: &Shared, catalog: &mut Value) {
    let preferred = shared.ws.preferred.lock();
    if let Some(models) = catalog.get_mut("models").and_then(Value::as_array_mut) {
        for m in models {
            if m.get("slug").and_then(Value::as_str).is_some_and(|s| preferred.iter().any(|p| p == s)) {
                m["prefer_websockets"] = Value::Bool(true);
            }
        }
    }
}

/// The handshake: refused (426) or absent (404) when switched so, else authenticated and checked like the HTTP endpoint.
pub(crate) async fn chatgpt_ws(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    upgrade: IncomingUpgrade,
) -> Response {
    let mut resp = handshake(shared, headers, upgrade);
    resp.extensions_mut().insert(NotRecorded);
    resp
}

fn handshake(shared: Arc<Shared>, headers: HeaderMap, upgrade: IncomingUpgrade) -> Response {
    if shared.ws.refuse.load(Ordering::Relaxed) {
        return detail(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    }
    if shared.ws.absent.load(Ordering::Relaxed) {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    if shared.ws.fault.load(Ordering::Relaxed) == WsFault::BadSwitch as u8 {
        // A switch the client must not accept: the accept key is not the one for its key.
        let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = resp.headers_mut();
        h.insert(axum::http::header::UPGRADE, axum::http::HeaderValue::from_static("websocket"));
        h.insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("Upgrade"));
        h.insert(axum::http::header::SEC_WEBSOCKET_ACCEPT, axum::http::HeaderValue::from_static("bm90IHRoZSBrZXk="));
        return resp;
    }
    let account = match chatgpt_auth(&shared, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if headers.get("originator").is_none() {
        return detail(StatusCode::BAD_REQUEST, "missing originator");
    }
    let beta = headers.get("openai-beta").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !beta.split(',').any(|b| b.trim() == BETA) {
        return detail(StatusCode::BAD_REQUEST, "missing OpenAI-Beta: responses_websockets");
    }
    // permessage-deflate when the client offers it, with context takeover both ways and the protocol's largest
    // windows, as the official client's own test server accepts it (codex-rs `core/tests/common/responses.rs`,
    // `DeflateConfig::default()`); yawc alone would answer a window size left open with its smallest, 9 bits.
    // The compression level is the server's own choice (it is not on the wire): the fastest, so that the fake's
    // share of a benchmark's core stays small (bench/notes.md, 2026-11-27 — The default path's cost); every
    // message is still compressed, with context takeover, as before.
    let options = Options::default()
        .with_compression_level(yawc::CompressionLevel::fast())
        .with_client_max_window_bits(15)
        .with_server_max_window_bits(15)
        .with_max_payload_read(64 << 20)
        .with_max_read_buffer(64 << 20)
        .with_utf8();
    let (response, upgraded) = match upgrade.upgrade(options) {
        Ok(pair) => pair,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &format!("WebSocket handshake: {e}")),
    };
    shared.ws.opened.fetch_add(1, Ordering::Relaxed);
    // Each connection keeps the limit it was opened with, as it advertised it.
    let max_message = shared.ws.max_message();
    let closing = shared.ws.fault.load(Ordering::Relaxed) == WsFault::Closing as u8;
    tokio::spawn(async move {
        match upgraded.await {
            // Dropped at once: the connection closes before anything is answered.
            Ok(socket) if closing => drop(socket),
            Ok(socket) => serve(shared, account, headers, socket, max_message).await,
            Err(_) => {}
        }
    });
    let mut response = response.into_response();
    response.headers_mut().insert(MAX_MESSAGE_HEADER, axum::http::HeaderValue::from(max_message));
    response
}

/// One connection: answer `response.create` messages one at a time until the client leaves or the lifetime
/// ends (checked between answers, as the backend does).
async fn serve(shared: Arc<Shared>, account: String, headers: HeaderMap, mut socket: WebSocket, max_message: u64) {
    let end = tokio::time::Instant::now() + shared.ws.limit();
    let mut chain = Chain::default();
    loop {
        let msg = tokio::select! {
            msg = socket.next_frame() => msg,
            () = tokio::time::sleep_until(end) => {
                let frame = wrapped_error(400, json!({
                    "type": "invalid_request_error", "code": LIMIT_CODE, "message": LIMIT_MESSAGE,
                }), Map::new());
                let _ = socket.send(text_frame(frame.to_string())).await;
                let _ = socket.send(Frame::close(CloseCode::Normal, [])).await;
                return;
            }
        };
        let message = match msg {
            Ok(f) => match f.opcode() {
                // Checked UTF-8 by yawc (`with_utf8`).
                OpCode::Text => f.into_payload(),
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => continue,
                OpCode::Binary => {
                    let frame = invalid("binary messages are not supported");
                    let _ = socket.send(text_frame(frame.to_string())).await;
                    continue;
                }
                OpCode::Close => return,
            },
            Err(_) => return,
        };
        // Over the advertised size: refused, and the connection closed (1009, "message too big"), as a server that
        // states a limit ends a connection whose peer ignores it. The client is told first, in the backend's
        // wrapped error shape, with the code the official client names the failure by.
        if message.len() as u64 > max_message {
            shared.ws.too_large.fetch_add(1, Ordering::Relaxed);
            let frame = wrapped_error(
                400,
                json!({
                    "type": "invalid_request_error",
                    "code": TOO_LARGE_CODE,
                    "message": format!("The WebSocket message is {} bytes, more than the {max_message} this connection takes.", message.len()),
                }),
                Map::new(),
            );
            let _ = socket.send(text_frame(frame.to_string())).await;
            let _ = socket.send(Frame::close(CloseCode::Size, [])).await;
            return;
        }
        let message = std::str::from_utf8(&message).unwrap_or_default();
        if !answer(&shared, &account, &headers, message, &mut chain, &mut socket).await {
            return;
        }
    }
}

/// Answer one message. `false` when the connection is to end (the client left, or the scenario cut it).
async fn answer(
    shared: &Arc<Shared>,
    account: &str,
    headers: &HeaderMap,
    text: &str,
    chain: &mut Chain,
    socket: &mut WebSocket,
) -> bool {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(text) {
        shared.ws.messages.lock().push(Value::Object(m));
    }
    // Switched so, the connection holds no response (as after a backend-side reset): a chained message is refused.
    if shared.ws.forget.load(Ordering::Relaxed) {
        chain.forget();
    }
    let (body, generate, held) = match chain.read(text) {
        Ok(ws_chain::Message::Create { body, generate, held }) => (body, generate, held),
        Ok(ws_chain::Message::Processed) => return true,
        Err(refused) => {
            chain.forget();
            let frame = wrapped_error(400, refused.error(), Map::new());
            return socket.send(text_frame(frame.to_string())).await.is_ok();
        }
    };
    // Recorded as the client sent it (`previous_response_id` and only the new items, when it chains).
    let mut sent: Map<String, Value> = serde_json::from_str(text).unwrap_or_default();
    sent.shift_remove("type");
    let input: Vec<Value> = body.get("input").and_then(Value::as_array).cloned().unwrap_or_default();
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let raw = Value::Object(body).to_string();
    let chained_input = (held > 0 || sent.contains_key("previous_response_id")).then(|| Value::Array(input.clone()));
    let mut rec = RecordedRequest {
        seq: shared.next_seq(),
        method: "POST".into(),
        path: "/backend-api/codex/responses".into(),
        query: None,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: Value::Object(sent),
        account_id: Some(account.to_string()),
        status: 0,
        at_ms: now_ms(),
        http_version: "websocket".into(),
        connection: 0,
        chained_input,
    };
    // The handshake's access token is checked again for every message: one that expired since gets the 401
    // the HTTP endpoint gives (stricter than a check at the handshake alone).
    let refusal = match (chatgpt_auth(shared, headers), crate::versions::refuse(shared, headers, raw.as_bytes())) {
        (Err(refusal), _) | (Ok(_), Some(refusal)) => Some(refusal),
        (Ok(_), None) if !generate => crate::responses::chatgpt_refusal(shared, account, raw.as_bytes(), held),
        (Ok(_), None) => None,
    };
    if refusal.is_none() && !generate {
        rec.status = 200;
        shared.record_request(rec);
        let id = crate::tokens::random_id("resp_");
        for event in ws_chain::warmup_events(&id, &model, crate::tokens::now_secs()) {
            if socket.feed(text_frame(event.to_string())).await.is_err() {
                return false;
            }
        }
        chain.completed(id, input, Vec::new());
        return socket.flush().await.is_ok();
    }
    let resp = match refusal {
        Some(refusal) => refusal,
        None => crate::responses::chatgpt_answer(shared, account.to_string(), raw.as_bytes(), held).await,
    };
    rec.status = resp.status().as_u16();
    shared.record_request(rec);
    let (parts, body) = resp.into_parts();
    let limits = limit_headers(&parts.headers);
    if !parts.status.is_success() {
        // A frame is whole: an error body that stalls (a scripted hang) is cut after a short wait, and the frame
        // carries what came.
        let bytes = match tokio::time::timeout(Duration::from_millis(200), to_bytes(body, 1 << 20)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) | Err(_) => Default::default(),
        };
        let parsed: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let error = match parsed.get("error") {
            Some(e) => e.clone(),
            None => json!({
                "type": "invalid_request_error",
                "message": parsed.get("detail").cloned().unwrap_or_else(|| String::from_utf8_lossy(&bytes).into()),
            }),
        };
        chain.forget();
        let frame = wrapped_error(parts.status.as_u16(), error, limits);
        return socket.send(text_frame(frame.to_string())).await.is_ok();
    }
    if let Some(frame) = rate_limits_frame(&limits)
        && socket.send(text_frame(frame.to_string())).await.is_err()
    {
        return false;
    }
    // The backend's own frames around every turn, which are not Responses events: the answer's metadata first,
    // its timing after the terminal event (reported by users of other gateways; codex-rs reads neither as an
    // event). A gateway must not pass them on to clients nor fail on them.
    let started = now_ms();
    if socket.send(text_frame(metadata_frame(&parts.headers).to_string())).await.is_err() {
        return false;
    }
    // The SSE body, re-framed: each event's `data` is one text frame; comments (keepalives) have no frame.
    // Frames whose events are ready together share a socket write, and the socket is flushed whenever the
    // stream has to wait: the write pattern the HTTP endpoint has (hyper writes the chunks that are ready at
    // once, `sse::Framing::PerEvent`), so the two transports differ in framing only, not in how often a reader
    // is woken. A paced stream is flushed at every event.
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut outcome = Outcome::default();
    loop {
        let chunk = match stream.next().now_or_never() {
            Some(chunk) => chunk,
            None => {
                if socket.flush().await.is_err() {
                    return false;
                }
                stream.next().await
            }
        };
        let Some(chunk) = chunk else { break };
        let Ok(chunk) = chunk else {
            // A scripted cut: the connection drops without a close frame.
            return false;
        };
        pending.extend_from_slice(&chunk);
        // Blocks are cut from the front without moving the rest each time; the remainder moves once per chunk.
        let mut start = 0;
        while let Some(end) = find(&pending[start..], b"\n\n") {
            let block = &pending[start..start + end + 2];
            start += end + 2;
            let mut lines = std::str::from_utf8(block)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d));
            // One `data:` line (every event the fake writes) is taken as it is; several are joined.
            let data = match (lines.next(), lines.next()) {
                (None, _) => continue,
                (Some(one), None) => one.to_string(),
                (Some(first), Some(second)) => {
                    let mut joined = format!("{first}\n{second}");
                    for line in lines {
                        joined.push('\n');
                        joined.push_str(line);
                    }
                    joined
                }
            };
            outcome.see(&data);
            if socket.feed(text_frame(data)).await.is_err() {
                return false;
            }
        }
        pending.drain(..start);
    }
    match outcome.completed {
        Some(id) => chain.completed(id, input, outcome.output),
        None => chain.forget(),
    }
    let timing = json!({
        "type": "responsesapi.websocket_timing",
        "timing": {"engine_service_total_ms": now_ms().saturating_sub(started)},
    });
    socket.send(text_frame(timing.to_string())).await.is_ok()
}

/// `codex.response.metadata`: the answer's own headers (`x-request-id`, `openai-model`, ...), as the backend
/// reports them over the WebSocket.
fn metadata_frame(h: &HeaderMap) -> Value {
    let headers: Map<String, Value> = ["x-request-id", "openai-model"]
        .iter()
        .filter_map(|k| Some((k.to_string(), Value::String(h.get(*k)?.to_str().ok()?.to_string()))))
        .collect();
    json!({"type": "codex.response.metadata", "headers": headers})
}

/// What a streamed answer's events say about the response, for the connection's chain.
#[derive(Default)]
struct Outcome {
    output: Vec<Value>,
    /// The response's id, once `response.completed` arrived.
    completed: Option<String>,
}

impl Outcome {
    fn see(&mut self, data: &str) {
        // Only two kinds of event matter here; the deltas (nearly all of a stream) are not parsed. A delta whose
        // text happens to hold one of the names is parsed and then told apart by its `type`.
        if !data.contains("response.output_item.done") && !data.contains("response.completed") {
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else { return };
        match event.get("type").and_then(Value::as_str) {
            Some("response.output_item.done") => {
                if let Some(item) = event.get("item") {
                    self.output.push(item.clone());
                }
            }
            Some("response.completed") => {
                self.completed = event.pointer("/response/id").and_then(Value::as_str).map(str::to_string);
            }
            _ => {}
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The backend's wrapped error frame.
fn wrapped_error(status: u16, error: Value, headers: Map<String, Value>) -> Value {
    let mut frame = json!({"type": "error", "status": status, "error": error});
    if !headers.is_empty() {
        frame["headers"] = Value::Object(headers);
    }
    frame
}

fn invalid(message: &str) -> Value {
    wrapped_error(400, json!({"type": "invalid_request_error", "message": message}), Map::new())
}

/// The `x-codex-*` headers the HTTP answer carried.
fn limit_headers(h: &HeaderMap) -> Map<String, Value> {
    h.iter()
        .filter(|(k, _)| k.as_str().starts_with("x-codex-"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), Value::String(v.to_str().ok()?.to_string()))))
        .collect()
}

/// The `codex.rate_limits` frame for the same limits (the shape codex-rs `rate_limits.rs` reads), or none
/// when the answer carried no limits.
fn rate_limits_frame(h: &Map<String, Value>) -> Option<Value> {
    let num = |k: &str| h.get(k).and_then(Value::as_str).and_then(|v| v.parse::<f64>().ok());
    let window = |family: &str| {
        let used = num(&format!("x-codex-{family}-used-percent"))?;
        Some(json!({
            "used_percent": used,
            "window_minutes": num(&format!("x-codex-{family}-window-minutes")).map(|m| m as i64),
            "reset_at": num(&format!("x-codex-{family}-reset-at")).map(|r| r as i64),
        }))
    };
    let (primary, secondary) = (window("primary"), window("secondary"));
    if primary.is_none() && secondary.is_none() {
        return None;
    }
    let flag = |k: &str| h.get(k).and_then(Value::as_str).map(|v| v == "true");
    Some(json!({
        "type": "codex.rate_limits",
        "rate_limits": {"primary": primary, "secondary": secondary},
        "credits": {
            "has_credits": flag("x-codex-credits-has-credits").unwrap_or(false),
            "unlimited": flag("x-codex-credits-unlimited").unwrap_or(false),
            "balance": h.get("x-codex-credits-balance").cloned(),
        },
    }))
}
