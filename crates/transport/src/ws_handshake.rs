//! The upstream WebSocket's opening handshake (RFC 6455 §4.1), as the official client makes it: its request
//! head in tungstenite's order (the official client's WebSocket library, codex-rs `codex-api/src/endpoint/
//! responses_websocket.rs`) with the `permessage-deflate` offer it makes (RFC 7692, [`DEFLATE_OFFER`]). The
//! handshake is the one HTTP/1.1 exchange `http1.rs` already reads; what it leaves is the socket, the answer's
//! head, and what the server agreed to, for the frames that follow (yawc, `ws_pool.rs`). A server that does not
//! switch protocols has answered as the HTTP endpoint would: its status, headers and body come back whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, Uri, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

use crate::TransportError;
use crate::chunked::Framing;

/// The extension offer of the official client: permessage-deflate with context takeover both ways and windows of
/// the protocol's largest size, the server free to ask for a smaller client window (tungstenite's
/// `DeflateConfig::default()`, as codex-rs configures it).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The largest body of a refused handshake that is read (a refusal is a short JSON error).
const MAX_REFUSAL: usize = 256 * 1024;
/// The header fields the request line is followed by, in tungstenite's order; the caller's may not repeat them.
const OWN_FIELDS: [&str; 6] =
    ["host", "connection", "upgrade", "sec-websocket-version", "sec-websocket-key", "sec-websocket-extensions"];

/// How a handshake ended.
pub enum Handshake<S> {
    /// Switched to the WebSocket: the socket (with any bytes that came after the head), the answer's headers,
    /// and the extensions the server agreed to (`None`: no compression).
    Open { io: Prefixed<S>, headers: HeaderMap, extensions: Option<String> },
    /// Answered without switching: what the HTTP endpoint would have answered.
    Refused { status: StatusCode, headers: HeaderMap, body: Bytes },
}

/// Why a server's switch could not be accepted.
#[derive(Debug, thiserror::Error)]
enum BadSwitch {
    #[error("the upstream's WebSocket handshake answer lacks {0}")]
    Missing(&'static str),
    #[error("the upstream's WebSocket handshake answer has a wrong Sec-WebSocket-Accept")]
    WrongAccept,
    #[error("the upstream agreed to a WebSocket extension that was not offered: {0}")]
    Unoffered(String),
    #[error("the upstream's refusal of the WebSocket handshake is larger than {MAX_REFUSAL} bytes")]
    LargeRefusal,
    #[error("the upstream's refusal of the WebSocket handshake has a malformed body: {0}")]
    Malformed(&'static str),
}

/// Open the WebSocket at `uri` on `io`, with `headers` (credentials and identity) after the handshake's own.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Handshake<S>, TransportError> {
    let key = generate_key();
    let request = request_head(uri, headers, &key);
    let (mut io, head) = crate::http1::exchange(io, &request).await?;
    if head.status != StatusCode::SWITCHING_PROTOCOLS {
        let body = refusal_body(&mut io, head.framing, head.rest).await?;
        return Ok(Handshake::Refused { status: head.status, headers: head.headers, body });
    }
    let h = &head.headers;
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))))
    };
    if !has(header::UPGRADE, "websocket") {
        return Err(TransportError::of(BadSwitch::Missing("Upgrade: websocket")));
    }
    if !has(header::CONNECTION, "upgrade") {
        return Err(TransportError::of(BadSwitch::Missing("Connection: upgrade")));
    }
    match h.get(header::SEC_WEBSOCKET_ACCEPT) {
        None => return Err(TransportError::of(BadSwitch::Missing("Sec-WebSocket-Accept"))),
        Some(accept) if accept.as_bytes() != derive_accept_key(key.as_bytes()).as_bytes() => {
            return Err(TransportError::of(BadSwitch::WrongAccept));
        }
        Some(_) => {}
    }
    let extensions = match h.get(header::SEC_WEBSOCKET_EXTENSIONS).map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) if is_deflate(text) => Some(text.to_string()),
        Some(other) => {
            let text = other.map(str::to_string).unwrap_or_default();
            return Err(TransportError::of(BadSwitch::Unoffered(text)));
        }
    };
    let headers = head.headers;
    Ok(Handshake::Open { io: Prefixed { rest: Bytes::from(head.rest), io }, headers, extensions })
}

/// The request head: the request line, the handshake's fields, then the caller's fields in the order
/// tungstenite writes them (its request holds the handshake's five fields first and the caller's after them; it
/// writes the five and removes them from the map, which moves the map's last fields into their places), then
/// the extension offer, which tungstenite appends to the map. The parity suite compares the order with the
/// official client's.
fn request_head(uri: &Uri, headers: &HeaderMap, key: &str) -> Vec<u8> {
    let host = uri.authority().map_or("", |a| a.as_str());
    let own: [(&str, &str); 5] = [
        ("host", host),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", key),
    ];
    let mut map = HeaderMap::with_capacity(headers.len() + own.len() + 1);
    for (name, value) in own {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            map.insert(name, value);
        }
    }
    for (name, value) in headers {
        if !OWN_FIELDS.contains(&name.as_str()) {
            map.append(name.clone(), value.clone());
        }
    }
    let mut out = Vec::with_capacity(256 + map.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let fields = ["Host", "Connection", "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Key"];
    for (field, (name, _)) in fields.iter().zip(own) {
        if let Some(value) = map.remove(name) {
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    map.append(header::SEC_WEBSOCKET_EXTENSIONS, http::HeaderValue::from_static(DEFLATE_OFFER));
    for (name, value) in &map {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether an agreed `Sec-WebSocket-Extensions` is the one extension offered (its parameters are read by yawc,
/// which refuses values RFC 7692 does not allow).
fn is_deflate(text: &str) -> bool {
    let mut parts = text.split(';').map(str::trim);
    parts.next() == Some("permessage-deflate")
        && parts.all(|p| {
            let name = p.split('=').next().unwrap_or_default().trim();
            matches!(
                name,
                "server_no_context_takeover"
                    | "client_no_context_takeover"
                    | "server_max_window_bits"
                    | "client_max_window_bits"
            )
        })
}

/// The body of a refused handshake, read to its end.
async fn refusal_body<S: AsyncRead + Unpin>(
    io: &mut S,
    mut framing: Framing,
    rest: Vec<u8>,
) -> Result<Bytes, TransportError> {
    let mut body = BytesMut::new();
    let mut pending = rest;
    loop {
        let used = framing.decode(&pending, &mut body).map_err(|e| TransportError::of(BadSwitch::Malformed(e)))?;
        pending.drain(..used);
        if framing.is_done() {
            return Ok(body.freeze());
        }
        if body.len() + pending.len() > MAX_REFUSAL {
            return Err(TransportError::of(BadSwitch::LargeRefusal));
        }
        let mut chunk = [0u8; 4096];
        match io.read(&mut chunk).await {
            Ok(0) if framing.ends_at_close() => return Ok(body.freeze()),
            Ok(0) => {
                return Err(TransportError::of(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection inside its refusal of the WebSocket handshake",
                )));
            }
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(TransportError::of(e)),
        }
    }
}

/// The socket after the handshake: the bytes that came after the answer's head are read first.
pub struct Prefixed<S> {
    rest: Bytes,
    io: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            let n = this.rest.len().min(buf.remaining());
            buf.put_slice(&this.rest.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_is_in_tungstenites_order_with_the_offer_last() {
        let mut h = HeaderMap::new();
        h.insert("authorization", http::HeaderValue::from_static("Bearer t"));
        h.insert("host", http::HeaderValue::from_static("elsewhere"));
        h.insert("session-id", http::HeaderValue::from_static("s1"));
        let uri = Uri::from_static("ws://127.0.0.1:9/backend-api/codex/responses");
        let head = request_head(&uri, &h, "a2V5");
        let text = String::from_utf8_lossy(&head);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "GET /backend-api/codex/responses HTTP/1.1",
                "Host: 127.0.0.1:9",
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: a2V5",
                // The caller's two fields moved into the places of the handshake's removed ones, last first.
                "session-id: s1",
                "authorization: Bearer t",
                "sec-websocket-extensions: permessage-deflate; client_max_window_bits",
                "",
                "",
            ]
        );
    }

    #[test]
    fn only_permessage_deflate_with_its_own_parameters_is_accepted() {
        assert!(is_deflate("permessage-deflate"));
        assert!(is_deflate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"));
        assert!(is_deflate("permessage-deflate;client_no_context_takeover"));
        assert!(!is_deflate("x-webkit-deflate-frame"));
        assert!(!is_deflate("permessage-deflate; unknown=1"));
    }
}
