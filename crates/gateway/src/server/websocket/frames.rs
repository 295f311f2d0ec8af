//! What the inbound Responses WebSocket writes, built from what the HTTP request path produced: the SSE body cut
//! into one text frame per event (the same JSON as the SSE `data`), an HTTP error answer as the backend's wrapped
//! error frame, and the serving account's `x-codex-*` headers as a `codex.rate_limits` frame. Pure functions; the
//! socket loop is `session.rs`.
//!
//! Wire facts from the official client (openai/codex, `codex-rs/codex-api/src/endpoint/responses_websocket.rs`:
//! `parse_wrapped_websocket_error_event`, `map_wrapped_websocket_error_event`; `codex-rs/codex-api/src/
//! rate_limits.rs`: `parse_rate_limit_event`).

use axum::http::HeaderMap;
use memchr::memmem;
use serde_json::{Map, Value, json};

/// One complete SSE event of the answer's body.
#[derive(Debug, PartialEq)]
pub enum SseItem {
    /// An event: its name (from the `event:` line, if any) and its data (the `data:` lines joined).
    Event { name: Option<String>, data: String },
    /// A comment-only block (the gateway's keepalive).
    Comment,
}

/// Cuts an SSE byte stream into events. The pump writes whole events per chunk, but nothing here relies on it:
/// an event split across chunks waits in `carry` for its end.
#[derive(Debug, Default)]
pub struct SseSplitter {
    carry: Vec<u8>,
}

impl SseSplitter {
    /// Add a chunk and take every event it completes, in order.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseItem>) {
        self.carry.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = memmem::find(&self.carry[start..], b"\n\n") {
            let block = &self.carry[start..start + end];
            if let Some(item) = parse_block(block) {
                out.push(item);
            }
            start += end + 2;
        }
        self.carry.drain(..start);
    }
}

fn parse_block(block: &[u8]) -> Option<SseItem> {
    let text = String::from_utf8_lossy(block);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim_start().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_string()),
            }
        }
    }
    match data {
        Some(data) => Some(SseItem::Event { name, data }),
        None if text.trim().is_empty() => None,
        None => Some(SseItem::Comment),
    }
}

/// The `x-codex-*` headers of an answer as a JSON object, for the `headers` of a wrapped error frame (the
/// official client reads the limit headers from there).
fn codex_headers(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-codex-"))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), Value::String(v.to_str().ok()?.to_string()))))
        .collect()
}

/// An HTTP error answer (`status`, its OpenAI-shaped JSON body) as the backend's wrapped error frame:
/// `{"type":"error","status":N,"error":{...},"headers":{...}}`. The official client maps it to the same error
/// as an HTTP answer with that status and body.
pub fn wrapped_error(status: u16, body: &[u8], headers: &HeaderMap) -> String {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut("error").map(Value::take))
        .unwrap_or_else(|| json!({"type": "server_error", "message": String::from_utf8_lossy(body)}));
    let mut frame = json!({"type": "error", "status": status, "error": error});
    let h = codex_headers(headers);
    if !h.is_empty() {
        frame["headers"] = Value::Object(h);
    }
    frame.to_string()
}

/// A wrapped error frame the socket itself raises (a bad message): an `invalid_request_error` with `code`.
pub fn request_error(status: u16, code: &str, message: &str, param: Option<&str>) -> String {
    json!({"type": "error", "status": status, "error": {
        "type": "invalid_request_error", "code": code, "message": message, "param": param,
    }})
    .to_string()
}

/// The serving account's limit headers as a `codex.rate_limits` frame (`rate_limits.primary/secondary` with
/// `used_percent`, `window_minutes`, `reset_at`; `credits`), or `None` when the answer carried no limits.
pub fn rate_limits(headers: &HeaderMap) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let window = |which: &str| {
        let used = get(&format!("x-codex-{which}-used-percent"))?.parse::<f64>().ok().filter(|v| v.is_finite())?;
        let mut w = json!({"used_percent": used});
        if let Some(m) = get(&format!("x-codex-{which}-window-minutes")).and_then(|v| v.parse::<i64>().ok()) {
            w["window_minutes"] = json!(m);
        }
        if let Some(r) = get(&format!("x-codex-{which}-reset-at")).and_then(|v| v.parse::<i64>().ok()) {
            w["reset_at"] = json!(r);
        }
        Some(w)
    };
    let (primary, secondary) = (window("primary"), window("secondary"));
    let flag = |name: &str| get(name).map(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let credits = match (flag("x-codex-credits-has-credits"), flag("x-codex-credits-unlimited")) {
        (Some(has_credits), Some(unlimited)) => {
            Some(json!({"has_credits": has_credits, "unlimited": unlimited, "balance": get("x-codex-credits-balance")}))
        }
        _ => None,
    };
    if primary.is_none() && secondary.is_none() && credits.is_none() {
        return None;
    }
    let mut frame = json!({"type": "codex.rate_limits", "rate_limits": {"primary": primary, "secondary": secondary}});
    if let Some(c) = credits {
        frame["credits"] = c;
    }
    Some(frame.to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn splits_events_across_chunks_and_skips_keepalives() {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        s.push(b"event: response.created\ndata: {\"a\":1}\n\n: keepalive\n\nevent: x\nda", &mut out);
        s.push(b"ta: {\"b\":2}\n\n", &mut out);
        assert_eq!(
            out,
            vec![
                SseItem::Event { name: Some("response.created".into()), data: "{\"a\":1}".into() },
                SseItem::Comment,
                SseItem::Event { name: Some("x".into()), data: "{\"b\":2}".into() },
            ]
        );
    }

    #[test]
    fn error_answers_become_wrapped_error_frames_with_the_limit_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-codex-primary-used-percent", HeaderValue::from_static("100"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let body = br#"{"error":{"type":"usage_limit_reached","message":"limit"}}"#;
        let v = parse(&wrapped_error(429, body, &h));
        assert_eq!(v["type"], "error");
        assert_eq!(v["status"], 429);
        assert_eq!(v["error"]["type"], "usage_limit_reached");
        assert_eq!(v["headers"]["x-codex-primary-used-percent"], "100");
        assert!(v["headers"].get("content-type").is_none());
    }

    #[test]
    fn limit_headers_become_a_rate_limits_frame() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-codex-primary-used-percent", "12.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1704069000"),
            ("x-codex-secondary-used-percent", "40"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let v = parse(&rate_limits(&h).unwrap_or_default());
        assert_eq!(v["type"], "codex.rate_limits");
        assert_eq!(v["rate_limits"]["primary"]["used_percent"], 12.5);
        assert_eq!(v["rate_limits"]["primary"]["window_minutes"], 300);
        assert_eq!(v["rate_limits"]["primary"]["reset_at"], 1704069000);
        assert_eq!(v["rate_limits"]["secondary"]["used_percent"], 40.0);
        assert!(rate_limits(&HeaderMap::new()).is_none());
    }
}
