//! Request bodies compressed as the official client sends them to the ChatGPT backend: zstd, with
//! `Content-Encoding: zstd` (codex-rs `enable_request_compression`, on by default for a ChatGPT login; HTTP only,
//! the WebSocket's messages are not compressed), for bodies of the official client's sizes ([`MIN_BODY`]).

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, HeaderMap, HeaderValue};

/// zstd's default level, the one the official client's encoder uses.
const LEVEL: i32 = 3;
/// Bodies below this size go as they are. The official client's are never this small (its base instructions and
/// tools alone are larger), and compressing a small body costs ~60 instructions per byte (a 1.8 KB body ~104 K,
/// 40% of a short request's whole cost, docs/performance.md) to save a kilobyte of upload.
pub(super) const MIN_BODY: usize = 4096;

/// The body compressed, and `Content-Encoding: zstd` placed before `Content-Type` as the official client orders
/// its headers; on the (unexpected) failure of the compressor, the body as it was.
pub(super) fn zstd_body(headers: HeaderMap, body: Bytes) -> (HeaderMap, Bytes) {
    if body.len() < MIN_BODY {
        return (headers, body);
    }
    let Ok(compressed) = zstd::bulk::compress(&body, LEVEL) else { return (headers, body) };
    let mut out = HeaderMap::with_capacity(headers.len() + 1);
    let mut placed = false;
    for (name, value) in &headers {
        if !placed && name == reqwest::header::CONTENT_TYPE {
            out.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            placed = true;
        }
        out.append(name.clone(), value.clone());
    }
    if !placed {
        out.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    }
    (out, Bytes::from(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_compressed_and_announced_before_its_content_type() {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        let body = Bytes::from(format!(r#"{{"input":"{}"}}"#, "hello ".repeat(1000)));
        let (h, compressed) = zstd_body(h, body.clone());
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept", "content-encoding", "content-type", "authorization"]);
        assert!(compressed.len() < body.len());
        assert_eq!(zstd::decode_all(&compressed[..]).ok().as_deref(), Some(&body[..]));
        let small = Bytes::from_static(br#"{"input":"hi"}"#);
        let (h, sent) = zstd_body(HeaderMap::new(), small.clone());
        assert!(h.get(CONTENT_ENCODING).is_none() && sent == small, "a small body goes as it is");
    }
}
