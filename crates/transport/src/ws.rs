//! The upstream Responses WebSocket: its settings (`[upstream] transport`) and the wire facts, as the official
//! client speaks them (codex-rs `core/src/client.rs`, `codex-api/src/endpoint/responses_websocket.rs`): the
//! handshake's `OpenAI-Beta` value, the `response.create` message, and the frames that come back (events one
//! per text frame, `codex.rate_limits` frames, the backend's wrapped error frames, the connection time limit).
//! Pure functions only; the connections live in `ws_pool.rs`, which hands each event frame's JSON to the relay as
//! one piece of the answer's body.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The handshake's `OpenAI-Beta` header value.
pub const BETA: &str = "responses_websockets=2026-02-06";
/// The wrapped error code with which the backend ends a connection that has lived its 60 minutes.
const LIMIT_REACHED: &str = "websocket_connection_limit_reached";

/// `[upstream] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// As the official client (0.169) does for a ChatGPT login: the WebSocket for every request, whatever the
    /// catalog's `prefer_websockets` says (the client no longer reads it), HTTP SSE for an account behind a proxy
    /// and once the backend refuses the handshake (426).
    #[default]
    Auto,
    /// The WebSocket for every ChatGPT-account request (HTTP SSE when the backend refuses the handshake).
    Websocket,
    /// HTTP SSE only.
    Sse,
}

/// The resolved WebSocket settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WsSettings {
    pub transport: Transport,
    /// Open WebSocket connections per account (idle and busy); a request beyond goes over HTTP SSE.
    pub max_per_account: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
}

/// Default of `[upstream] websocket_max_per_account`: one connection per live conversation, and an account
/// rarely serves more conversations at once.
const DEFAULT_MAX_PER_ACCOUNT: usize = 32;
/// Default of `[upstream] websocket_idle_timeout_secs`: a coding agent's turn rarely waits longer for its user.
const DEFAULT_IDLE_SECS: f64 = 300.0;

impl WsSettings {
    /// The settings from the configuration's `[upstream]` keys (`transport`, `websocket_max_per_account`,
    /// `websocket_idle_timeout_secs`), defaults for those not set, checked.
    pub fn resolve(
        transport: Option<Transport>,
        max_per_account: Option<usize>,
        idle_timeout_secs: Option<f64>,
    ) -> anyhow::Result<WsSettings> {
        let transport = transport.unwrap_or_default();
        let max_per_account = max_per_account.unwrap_or(DEFAULT_MAX_PER_ACCOUNT);
        anyhow::ensure!(max_per_account > 0, "[upstream] websocket_max_per_account must be at least 1");
        let idle = idle_timeout_secs.unwrap_or(DEFAULT_IDLE_SECS);
        anyhow::ensure!(
            idle.is_finite() && idle > 0.0 && idle <= 86_400.0,
            "[upstream] websocket_idle_timeout_secs must be a number of seconds above 0 (at most a day)"
        );
        Ok(WsSettings { transport, max_per_account, idle_timeout: Duration::from_secs_f64(idle) })
    }

    /// Whether requests go over the WebSocket (where the account allows it: `Upstream::send`).
    pub fn wants(&self) -> bool {
        match self.transport {
            Transport::Auto | Transport::Websocket => true,
            Transport::Sse => false,
        }
    }
}

/// The negotiated permessage-deflate parameters as the gateway applies them to its own side: each message it sends
/// compressed on its own (`client_no_context_takeover`). RFC 7692 leaves context takeover to the sender, so the
/// handshake stays as the official client sends it and the backend inflates the messages as before; the gateway then
/// holds no compressor between messages (yawc's is ~320 KB at a 15-bit window: 290 KB per stream at 10,000 paced
/// streams, bench/notes.md, 2026-11-27 — The default path's cost) and borrows one from [`deflate_pool`] per message.
/// The backend's messages still arrive with context takeover (that side is the backend's choice).
pub fn own_compression(negotiated: &str) -> String {
    if negotiated.split(';').any(|p| p.trim() == "client_no_context_takeover") {
        negotiated.to_string()
    } else {
        format!("{negotiated}; client_no_context_takeover")
    }
}

/// The compressors the connections borrow for one message at a time, shared by the process: sized for the messages
/// compressed at the same moment (a few per core), not for the connections.
pub fn deflate_pool() -> yawc::DeflatePool {
    static POOL: std::sync::LazyLock<yawc::DeflatePool> = std::sync::LazyLock::new(|| yawc::DeflatePool::new(16));
    POOL.clone()
}

/// The `response.create` message for a serialized Responses body: the body's own fields after a `type`. One
/// copy of the body; it is never parsed again.
pub fn create_message(body: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"{"type":"response.create""#;
    let rest = body.strip_prefix(b"{").unwrap_or(body);
    let mut out = BytesMut::with_capacity(HEAD.len() + rest.len() + 1);
    out.put_slice(HEAD);
    // `{}` would leave `..."response.create"}`: a comma only when a field follows.
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        out.put_u8(b',');
    }
    out.put_slice(rest);
    out.freeze()
}

/// What one text frame is, for the transport.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A Responses event (`kind` is its `type`, empty when it has none).
    Event { kind: &'a str, terminal: bool },
    /// `codex.rate_limits`: the account's limits, as the `x-codex-*` headers an HTTP answer would carry.
    RateLimits(HeaderMap),
    /// A wrapped error with an HTTP status: what the HTTP endpoint would have answered instead of a stream.
    Refused { status: StatusCode, headers: HeaderMap, body: Bytes },
    /// The connection has lived its time (`websocket_connection_limit_reached`): a new one takes the request.
    LimitReached,
    /// `codex.response.metadata`: the answer's headers as the backend reports them over the WebSocket. Not a
    /// Responses event: before the first event they join the answer's headers, later they are dropped.
    Metadata(HeaderMap),
    /// A frame of the backend's own that carries nothing the gateway uses (`responsesapi.websocket_timing`, sent
    /// around every turn): dropped, never passed on as an event (clients do not expect it) nor a failure.
    Private,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct Wrapped {
    #[serde(alias = "status_code")]
    status: Option<u16>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
}

/// Classify a text frame. Events are recognised by the `type` the backend writes first, without parsing
/// (one prefix test per event); anything else is parsed once.
pub fn classify(text: &str) -> Frame<'_> {
    let kind = match text.strip_prefix(r#"{"type":""#).and_then(|rest| rest.split_once('"')) {
        Some((kind, _)) => kind,
        None => match serde_json::from_str::<Kind>(text) {
            // A `type` that needed unescaping is not one the transport acts on: passed on as it is.
            Ok(Kind { kind: std::borrow::Cow::Borrowed(k) }) => k,
            Ok(_) | Err(_) => "",
        },
    };
    match kind {
        "codex.rate_limits" => Frame::RateLimits(rate_limit_headers(text)),
        "codex.response.metadata" => Frame::Metadata(metadata_headers(text)),
        "responsesapi.websocket_timing" => Frame::Private,
        "error" => wrapped_error(text).unwrap_or(Frame::Event { kind, terminal: true }),
        "response.completed" | "response.failed" | "response.incomplete" => Frame::Event { kind, terminal: true },
        _ => Frame::Event { kind, terminal: false },
    }
}

/// A wrapped error frame: the connection limit, or a refusal with its status. Without a status (or with a
/// success one) it is an in-stream error event like the SSE one (`None`).
fn wrapped_error(text: &str) -> Option<Frame<'static>> {
    let w: Wrapped = serde_json::from_str(text).ok()?;
    if w.error.as_ref().and_then(|e| e.get("code")).and_then(Value::as_str) == Some(LIMIT_REACHED) {
        return Some(Frame::LimitReached);
    }
    let status = StatusCode::from_u16(w.status?).ok().filter(|s| !s.is_success())?;
    let headers = json_headers(w.headers.unwrap_or_default());
    let body = serde_json::json!({ "error": w.error.unwrap_or(Value::Null) }).to_string();
    Some(Frame::Refused { status, headers, body: Bytes::from(body) })
}

/// A JSON object of header names and values as a header map (values that are not strings, numbers or booleans,
/// and names or values HTTP does not allow, are left out).
fn json_headers(map: Map<String, Value>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in map {
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(n, v);
        }
    }
    headers
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    headers: Option<Map<String, Value>>,
}

/// The headers a `codex.response.metadata` frame carries (none when it is not the shape expected).
fn metadata_headers(text: &str) -> HeaderMap {
    match serde_json::from_str::<Metadata>(text) {
        Ok(Metadata { headers: Some(map) }) => json_headers(map),
        Ok(Metadata { headers: None }) | Err(_) => HeaderMap::new(),
    }
}

#[derive(Deserialize, Default)]
struct Window {
    used_percent: Option<f64>,
    window_minutes: Option<i64>,
    reset_at: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Windows {
    primary: Option<Window>,
    secondary: Option<Window>,
}

#[derive(Deserialize)]
struct Credits {
    has_credits: Option<bool>,
    unlimited: Option<bool>,
    balance: Option<Value>,
}

#[derive(Deserialize)]
struct RateLimits {
    rate_limits: Option<Windows>,
    credits: Option<Credits>,
    metered_limit_name: Option<String>,
    limit_name: Option<String>,
}

/// A `codex.rate_limits` frame as the `x-codex-*` headers of the same family (what the client's status reads
/// and `accounts/quota.rs` turns into the account's quota).
fn rate_limit_headers(text: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Ok(frame) = serde_json::from_str::<RateLimits>(text) else {
        return out;
    };
    // The default family is `x-codex-`; another metered limit `x-<limit>-` (codex-rs `rate_limits.rs`).
    let limit = frame.metered_limit_name.or(frame.limit_name).map(|n| n.trim().to_ascii_lowercase().replace('_', "-"));
    let prefix = match limit.as_deref().filter(|name| !name.is_empty() && *name != "codex") {
        Some(other) => format!("x-{other}-"),
        None => "x-codex-".to_string(),
    };
    let mut put = |name: String, value: String| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            out.insert(n, v);
        }
    };
    let windows = frame.rate_limits.unwrap_or_default();
    for (family, window) in [("primary", windows.primary), ("secondary", windows.secondary)] {
        let Some(w) = window else { continue };
        if let Some(used) = w.used_percent {
            put(format!("{prefix}{family}-used-percent"), used.to_string());
        }
        if let Some(m) = w.window_minutes {
            put(format!("{prefix}{family}-window-minutes"), m.to_string());
        }
        if let Some(r) = w.reset_at {
            put(format!("{prefix}{family}-reset-at"), r.to_string());
        }
    }
    if let Some(c) = frame.credits {
        if let Some(v) = c.has_credits {
            put("x-codex-credits-has-credits".into(), v.to_string());
        }
        if let Some(v) = c.unlimited {
            put("x-codex-credits-unlimited".into(), v.to_string());
        }
        match c.balance {
            Some(Value::String(s)) => put("x-codex-credits-balance".into(), s),
            Some(Value::Number(n)) => put("x-codex-credits-balance".into(), n.to_string()),
            Some(_) | None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gateway_compresses_each_of_its_messages_on_its_own() {
        assert_eq!(
            super::own_compression("permessage-deflate; client_max_window_bits=15"),
            "permessage-deflate; client_max_window_bits=15; client_no_context_takeover"
        );
        let already = "permessage-deflate; client_no_context_takeover";
        assert_eq!(super::own_compression(already), already);
    }

    use super::*;

    #[test]
    fn the_create_message_is_the_body_after_its_type() {
        let m = create_message(br#"{"model":"m","input":[]}"#);
        assert_eq!(&m[..], br#"{"type":"response.create","model":"m","input":[]}"#);
        let v: Value = serde_json::from_slice(&create_message(b"{}")).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"type": "response.create"}));
    }

    #[test]
    fn frames_are_classified_as_the_official_client_reads_them() {
        assert_eq!(
            classify(r#"{"type":"response.output_text.delta","delta":"hi"}"#),
            Frame::Event { kind: "response.output_text.delta", terminal: false }
        );
        assert_eq!(
            classify(r#"{"sequence_number":3,"type":"response.completed"}"#),
            Frame::Event { kind: "response.completed", terminal: true }
        );
        let limit = r#"{"type":"error","status":400,"error":{"type":"invalid_request_error","code":"websocket_connection_limit_reached","message":"m"}}"#;
        assert_eq!(classify(limit), Frame::LimitReached);
        let refused = r#"{"type":"error","status":429,"error":{"type":"usage_limit_reached","resets_at":5},"headers":{"x-codex-primary-used-percent":"100.0","x-codex-primary-window-minutes":15}}"#;
        let Frame::Refused { status, headers, body } = classify(refused) else { panic!("not a refusal") };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers.get("x-codex-primary-window-minutes").map(|v| v.as_bytes()), Some(&b"15"[..]));
        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(body["error"]["type"], "usage_limit_reached");
        // Without a status the error is an in-stream event, as codex-rs treats it.
        assert_eq!(
            classify(r#"{"type":"error","error":{"message":"m"}}"#),
            Frame::Event { kind: "error", terminal: true }
        );
    }

    /// The backend's own per-turn frames are not events: passed on, they reached clients that do not expect
    /// them (issue 59).
    #[test]
    fn metadata_and_timing_frames_are_not_events() {
        let meta = r#"{"type":"codex.response.metadata","headers":{"x-codex-turn-state":"ts1","x-n":3,"bad":{}}}"#;
        let Frame::Metadata(h) = classify(meta) else { panic!("not metadata") };
        assert_eq!(h.get("x-codex-turn-state").map(|v| v.as_bytes()), Some(&b"ts1"[..]));
        assert_eq!(h.get("x-n").map(|v| v.as_bytes()), Some(&b"3"[..]));
        assert!(!h.contains_key("bad"));
        assert_eq!(classify(r#"{"type":"codex.response.metadata","headers":7}"#), Frame::Metadata(HeaderMap::new()));
        assert_eq!(classify(r#"{"type":"responsesapi.websocket_timing","timing":{"a":1}}"#), Frame::Private);
        // Sorted keys: still recognised from the parsed `type`.
        assert_eq!(classify(r#"{"timing":{},"type":"responsesapi.websocket_timing"}"#), Frame::Private);
    }

    #[test]
    fn a_rate_limits_frame_becomes_the_headers_of_the_same_family() {
        let text = r#"{"type":"codex.rate_limits","plan_type":"pro","rate_limits":{"primary":{"used_percent":12.5,"window_minutes":300,"reset_at":1704069000},"secondary":null},"credits":{"has_credits":true,"unlimited":false,"balance":"3"}}"#;
        let Frame::RateLimits(h) = classify(text) else { panic!("not rate limits") };
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(get("x-codex-primary-used-percent").as_deref(), Some("12.5"));
        assert_eq!(get("x-codex-primary-window-minutes").as_deref(), Some("300"));
        assert_eq!(get("x-codex-primary-reset-at").as_deref(), Some("1704069000"));
        assert_eq!(get("x-codex-credits-balance").as_deref(), Some("3"));
        assert!(get("x-codex-secondary-used-percent").is_none());
        let other = r#"{"type":"codex.rate_limits","metered_limit_name":"codex_other","rate_limits":{"primary":{"used_percent":80}}}"#;
        let Frame::RateLimits(h) = classify(other) else { panic!("not rate limits") };
        assert!(h.contains_key("x-codex-other-primary-used-percent"));
    }

    #[test]
    fn settings_are_validated() {
        let defaults = WsSettings {
            transport: Transport::Auto,
            max_per_account: DEFAULT_MAX_PER_ACCOUNT,
            idle_timeout: Duration::from_secs_f64(DEFAULT_IDLE_SECS),
        };
        assert_eq!(WsSettings::resolve(None, None, None).ok(), Some(defaults.clone()));
        let websocket = Some(Transport::Websocket);
        assert!(WsSettings::resolve(websocket, Some(0), None).is_err());
        assert!(WsSettings::resolve(websocket, None, Some(-1.0)).is_err());
        let ok = WsSettings::resolve(websocket, Some(2), Some(1.5)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ok.transport, ok.max_per_account, ok.idle_timeout),
            (Transport::Websocket, 2, Duration::from_millis(1500))
        );
        assert!(ok.wants());
        assert!(defaults.wants(), "auto: the WebSocket, as the official client");
        let sse = WsSettings { transport: Transport::Sse, ..defaults };
        assert!(!sse.wants());
    }
}
