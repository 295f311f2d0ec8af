//! One request head, read from the connection's buffer: a request the gateway's own HTTP/1.1 path serves, or
//! one it hands to hyper together with the connection (everything unusual: see [`Head::Handoff`]).

use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, request};

use upstream_transport::head::{copy_head, slice_of};

/// Headers a request may carry on this path; more is hyper's to answer (its limit is 100, then 431).
const MAX_HEADERS: usize = 100;

/// A parsed head.
// Returned once per request and taken apart at once: boxing the parts would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Head {
    /// The head has not all arrived.
    Partial,
    /// A request this path serves. `head_len` bytes of the buffer are the head, `body_len` more the body.
    Serve { parts: request::Parts, head_len: usize, body_len: usize, close: bool },
    /// Served by hyper from here on: a malformed head (hyper answers it 400 or 431), HTTP/1.0, `HEAD` or
    /// `CONNECT`, an upgrade (the Responses WebSocket), `Expect: 100-continue`, a chunked body or an invalid
    /// `Content-Length`, or a body larger than this path buffers before the handler runs.
    Handoff,
    /// A body whose length two fields could each decide: `Content-Length` and `Transfer-Encoding` together,
    /// either of them twice. Answered 400 and the connection closed, as nginx does: a proxy in front that read
    /// the length the other way would otherwise see a second request where this server sees a body (request
    /// smuggling). hyper would serve them (by `Transfer-Encoding`, or one of two equal lengths).
    Ambiguous,
}

/// Parse the head at the start of `buf`. A body longer than `max_body` is hyper's, which streams it.
pub fn parse(buf: &[u8], max_body: usize) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Handoff,
    };
    let handoff = |req: &httparse::Request| if ambiguous_length(req.headers) { Head::Ambiguous } else { Head::Handoff };
    if req.version != Some(1) {
        return handoff(&req);
    }
    let Some(Ok(method)) = req.method.map(|m| Method::from_bytes(m.as_bytes())) else {
        return handoff(&req);
    };
    if method == Method::HEAD || method == Method::CONNECT {
        return handoff(&req);
    }
    // The path and the header values are slices of one copy of the head instead of a copy each (an allocation
    // per field, about ten on a client's request). A value the handler keeps keeps this copy alive, which is no
    // larger than the values' own copies were together.
    let head = copy_head(buf, head_len);
    let Some(Ok(uri)) = req.path.map(|path| Uri::from_maybe_shared(slice_of(&head, buf, path.as_bytes()))) else {
        return Head::Handoff;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut body_len = None;
    let mut close = false;
    for h in req.headers.iter() {
        let value = HeaderValue::from_maybe_shared(slice_of(&head, buf, h.value));
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(h.name.as_bytes()), value) else {
            return handoff(&req);
        };
        if name == CONTENT_LENGTH {
            match (body_len, content_length(h.value)) {
                (None, Some(n)) => body_len = Some(n),
                _ => return handoff(&req),
            }
        } else if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return handoff(&req);
        } else if name == CONNECTION {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Head::Handoff;
                }
                close |= token.eq_ignore_ascii_case(b"close");
            }
        }
        map.append(name, value);
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > max_body {
        return Head::Handoff;
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Head::Serve { parts, head_len, body_len, close }
}

/// Whether two fields could each decide the body's length (see [`Head::Ambiguous`]). Asked only of requests
/// handed to hyper: this path hands off at the first `Transfer-Encoding` or second `Content-Length`.
fn ambiguous_length(fields: &[httparse::Header]) -> bool {
    let count = |name: &str| fields.iter().filter(|f| f.name.eq_ignore_ascii_case(name)).count();
    let (lengths, codings) = (count("content-length"), count("transfer-encoding"));
    lengths + codings > 1
}

/// A `Content-Length` value: digits only (no sign, no list), as RFC 9110 has it.
fn content_length(value: &[u8]) -> Option<usize> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0usize, |n, &d| n.checked_mul(10)?.checked_add(usize::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(raw: &str) -> (request::Parts, usize, usize, bool) {
        match parse(raw.as_bytes(), 1024) {
            Head::Serve { parts, head_len, body_len, close } => (parts, head_len, body_len, close),
            other => panic!("{raw:?} was {other:?}"),
        }
    }

    fn handed_off(raw: &str) -> bool {
        matches!(parse(raw.as_bytes(), 1024), Head::Handoff)
    }

    #[test]
    fn a_common_request_is_served_with_its_parts() {
        let raw = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\nX-Tag: a\r\n\
                   x-tag: b\r\nConnection: keep-alive\r\n\r\n{\"model\":1}\n";
        let (parts, head_len, body_len, close) = served(raw);
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "/v1/chat/completions?x=1");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers.get_all("x-tag").iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(&raw[head_len..], "{\"model\":1}\n");
        assert_eq!(body_len, 12);
        assert!(!close);
        let (_, _, body_len, close) = served("GET /v1/models HTTP/1.1\r\nconnection: Close\r\n\r\n");
        assert_eq!(body_len, 0);
        assert!(close);
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert!(matches!(parse(b"POST /v1/responses HTTP/1.1\r\nHost: g", 1024), Head::Partial));
        assert!(matches!(parse(b"", 1024), Head::Partial));
    }

    #[test]
    fn everything_unusual_goes_to_hyper() {
        for raw in [
            "GET / HTTP/1.0\r\n\r\n",
            "HEAD /v1/models HTTP/1.1\r\n\r\n",
            "GET /v1/responses HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET /v1/responses HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(handed_off(raw), "{raw:?} was served");
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x-a: 1\r\n".repeat(MAX_HEADERS + 1));
        assert!(handed_off(&many));
    }

    /// Two fields that could each give the body's length are refused, on this path and before a handoff alike.
    #[test]
    fn an_ambiguous_body_length_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HEAD / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\n",
        ] {
            assert!(matches!(parse(raw.as_bytes(), 1024), Head::Ambiguous), "{raw:?}");
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"0"), Some(0));
        for bad in [&b""[..], b"-1", b"4 2", b"0x10", b"1,1", b"9999999999999999999"] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }
}
