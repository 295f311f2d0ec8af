//! The upstream WebSocket's opening handshake (RFC 6455 §4.1), as the official client makes it: its request
//! fields in tungstenite's order (the official client's WebSocket library, codex-rs `codex-api/src/endpoint/
//! responses_websocket.rs`) with the `permessage-deflate` offer it makes (RFC 7692, [`DEFLATE_OFFER`]). The
//! exchange is hyper's HTTP/1.1 client connection, switched with `hyper::upgrade`; what it leaves is the socket,
//! the answer's head, and what the server agreed to, for the frames that follow (yawc, `ws_pool.rs`). A server
//! that does not switch protocols has answered as the HTTP endpoint would: its status, headers and body come back
//! whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};

use crate::TransportError;

/// The extension offer of the official client: permessage-deflate with context takeover both ways and windows of
/// the protocol's largest size, the server free to ask for a smaller client window (tungstenite's
/// `DeflateConfig::default()`, as codex-rs configures it).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The largest body of a refused handshake that is read (a refusal is a short JSON error).
const MAX_REFUSAL: usize = 256 * 1024;
/// The header fields the request line is followed by, in tungstenite's order; the caller's may not repeat them.
const OWN_FIELDS: [header::HeaderName; 5] =
    [header::HOST, header::CONNECTION, header::UPGRADE, header::SEC_WEBSOCKET_VERSION, header::SEC_WEBSOCKET_KEY];

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
    #[error("the upstream's WebSocket handshake switched to a connection hyper did not hand back")]
    NotHandedBack,
}

/// hyper's connection task, ended when the handshake is given up (a deadline dropped it): its socket closes.
struct Driving(tokio::task::JoinHandle<()>);

impl Drop for Driving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Open the WebSocket at `uri` on `io`, with `headers` (credentials and identity) after the handshake's own.
pub async fn handshake<S>(io: S, uri: &Uri, headers: &HeaderMap) -> Result<Handshake<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = generate_key();
    let request = request(uri, headers, &key);
    let mut builder = hyper::client::conn::http1::Builder::new();
    builder.max_headers(crate::http1::MAX_FIELDS);
    let (mut send, connection) = builder.handshake(TokioIo::new(io)).await.map_err(TransportError::of)?;
    let _driving = Driving(tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("the upstream's WebSocket handshake connection ended: {e}");
        }
    }));
    let response = send.send_request(request).await.map_err(TransportError::of)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        let body = match Limited::new(body, MAX_REFUSAL).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => match e.downcast::<hyper::Error>() {
                Ok(e) => return Err(TransportError::of(*e)),
                Err(_) => return Err(TransportError::of(BadSwitch::LargeRefusal)),
            },
        };
        return Ok(Handshake::Refused { status: parts.status, headers: parts.headers, body });
    }
    let h = response.headers();
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
    let headers = h.clone();
    let upgraded = hyper::upgrade::on(response).await.map_err(TransportError::of)?;
    let parts = upgraded.downcast::<TokioIo<S>>().map_err(|_| TransportError::of(BadSwitch::NotHandedBack))?;
    Ok(Handshake::Open { io: Prefixed::new(parts.read_buf, parts.io.into_inner()), headers, extensions })
}

/// The request: the handshake's fields, then the caller's in the order tungstenite writes them (its request holds
/// the handshake's five fields first and the caller's after them; it writes the five and removes them from the
/// map, which moves the map's last fields into their places), then the extension offer, which tungstenite
/// appends to the map. hyper writes the fields in this order. The parity suite compares the order with the
/// official client's.
fn request(uri: &Uri, headers: &HeaderMap, key: &str) -> Request<Empty<Bytes>> {
    let host = uri.authority().map_or("", |a| a.as_str());
    let own = [host, "Upgrade", "websocket", "13", key];
    let mut map = HeaderMap::with_capacity(headers.len() + own.len() + 1);
    for (name, value) in OWN_FIELDS.iter().zip(own) {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name.clone(), value);
        }
    }
    for (name, value) in headers {
        if !OWN_FIELDS.contains(name) && name != header::SEC_WEBSOCKET_EXTENSIONS {
            map.append(name.clone(), value.clone());
        }
    }
    let mut fields = HeaderMap::with_capacity(map.len() + 1);
    for name in &OWN_FIELDS {
        if let Some(value) = map.remove(name) {
            fields.insert(name.clone(), value);
        }
    }
    map.append(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(DEFLATE_OFFER));
    for (name, value) in map {
        if let Some(name) = name {
            fields.append(name, value);
        }
    }
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri.path_and_query().cloned().map_or_else(|| Uri::from_static("/"), Uri::from);
    *request.headers_mut() = fields;
    request
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

/// The socket after the handshake: the bytes that came after the answer's head are read first.
pub struct Prefixed<S> {
    rest: Bytes,
    io: S,
}

impl<S> Prefixed<S> {
    fn new(rest: Bytes, io: S) -> Prefixed<S> {
        Prefixed { rest: unshared(rest), io }
    }
}

/// `rest`, or when it is empty no buffer at all: an emptied slice of hyper's read buffer still holds all of it (8 KB)
/// for the WebSocket's life (docs/performance.md, "Small WebSocket buffers").
fn unshared(rest: Bytes) -> Bytes {
    if rest.is_empty() { Bytes::new() } else { rest }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.rest.is_empty() {
            let n = this.rest.len().min(buf.remaining());
            buf.put_slice(&this.rest.split_to(n));
            this.rest = unshared(std::mem::take(&mut this.rest));
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// The request head as it reached the server end of `io`, read to its blank line.
    async fn request_head(io: &mut DuplexStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            match io.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    fn caller_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("host", HeaderValue::from_static("elsewhere"));
        h.insert("session-id", HeaderValue::from_static("s1"));
        h.insert("sec-websocket-extensions", HeaderValue::from_static("x-other"));
        h
    }

    /// The request in tungstenite's order with the offer last, and a refusal read whole (chunked), with its
    /// status and headers.
    #[tokio::test]
    async fn the_request_is_in_tungstenites_order_and_a_refusal_comes_back_whole() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let uri = Uri::from_static("ws://127.0.0.1:9/backend-api/codex/responses");
        let answer = async move {
            let head = request_head(&mut server).await;
            let refusal = "HTTP/1.1 426 Upgrade Required\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n";
            let _ = server.write_all(refusal.as_bytes()).await;
            (head, server)
        };
        let (done, (head, _server)) = {
            let headers = caller_headers();
            tokio::join!(handshake(client, &uri, &headers), answer)
        };
        let lines: Vec<&str> = head.split("\r\n").collect();
        let key = lines.iter().find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or_default();
        assert_eq!(
            lines,
            [
                "GET /backend-api/codex/responses HTTP/1.1",
                "host: 127.0.0.1:9",
                "connection: Upgrade",
                "upgrade: websocket",
                "sec-websocket-version: 13",
                &format!("sec-websocket-key: {key}"),
                // The caller's two fields moved into the places of the handshake's removed ones, last first.
                "session-id: s1",
                "authorization: Bearer t",
                "sec-websocket-extensions: permessage-deflate; client_max_window_bits",
                "",
                "",
            ]
        );
        match done {
            Ok(Handshake::Refused { status, headers, body }) => {
                assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
                assert_eq!(headers.get("content-type").map(|v| v.as_bytes()), Some(&b"application/json"[..]));
                assert_eq!(&body[..], b"{\"a\":1}");
            }
            Ok(Handshake::Open { .. }) => panic!("switched"),
            Err(e) => panic!("{e}"),
        }
    }

    /// A switch: the answer's headers and the agreed extension come back, and the bytes that came with the head
    /// are read first from the socket.
    #[tokio::test]
    async fn a_switch_hands_back_the_socket_with_the_bytes_after_the_head() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let uri = Uri::from_static("ws://127.0.0.1:9/backend-api/codex/responses");
        let answer = async move {
            let head = request_head(&mut server).await;
            let key = head.split("\r\n").find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or_default();
            let switch = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                sec-websocket-accept: {}\r\nsec-websocket-extensions: permessage-deflate; server_max_window_bits=12\r\n\
                x-codex-websocket-max-message-bytes: 1000\r\n\r\nfirst frame",
                derive_accept_key(key.as_bytes())
            );
            let _ = server.write_all(switch.as_bytes()).await;
            server
        };
        let none = HeaderMap::new();
        let (done, mut server) = tokio::join!(handshake(client, &uri, &none), answer);
        let Ok(Handshake::Open { mut io, headers, extensions }) = done else { panic!("not switched") };
        assert_eq!(extensions.as_deref(), Some("permessage-deflate; server_max_window_bits=12"));
        assert_eq!(headers.get("x-codex-websocket-max-message-bytes").map(|v| v.as_bytes()), Some(&b"1000"[..]));
        let _ = server.write_all(b", then more").await;
        let mut read = vec![0u8; 22];
        io.read_exact(&mut read).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&read[..], b"first frame, then more");
        io.write_all(b"back").await.unwrap_or_else(|e| panic!("{e}"));
        let mut back = [0u8; 4];
        server.read_exact(&mut back).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, b"back");
    }

    /// A switch without the right accept key, or with an extension never offered, is an error.
    #[tokio::test]
    async fn a_switch_with_a_wrong_key_or_an_unoffered_extension_is_an_error() {
        for (accept, extension, expected) in [
            ("d3Jvbmc=", "permessage-deflate", "wrong Sec-WebSocket-Accept"),
            ("", "x-webkit-deflate-frame", "not offered: x-webkit-deflate-frame"),
        ] {
            let (client, mut server) = tokio::io::duplex(1 << 16);
            let uri = Uri::from_static("ws://127.0.0.1:9/r");
            let answer = async move {
                let head = request_head(&mut server).await;
                let key = head.split("\r\n").find_map(|l| l.strip_prefix("sec-websocket-key: ")).unwrap_or_default();
                let accept = if accept.is_empty() { derive_accept_key(key.as_bytes()) } else { accept.to_string() };
                let switch = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
                    sec-websocket-accept: {accept}\r\nsec-websocket-extensions: {extension}\r\n\r\n"
                );
                let _ = server.write_all(switch.as_bytes()).await;
                server
            };
            let none = HeaderMap::new();
            let (done, _server) = tokio::join!(handshake(client, &uri, &none), answer);
            let err = done.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn only_permessage_deflate_with_its_own_parameters_is_accepted() {
        assert!(is_deflate("permessage-deflate"));
        assert!(is_deflate("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"));
        assert!(is_deflate("permessage-deflate;client_no_context_takeover"));
        assert!(!is_deflate("x-webkit-deflate-frame"));
        assert!(!is_deflate("permessage-deflate; unknown=1"));
    }

    /// The bytes read with the handshake's answer come first; once they are read, no slice of hyper's read buffer is
    /// kept (it would hold the whole buffer for the connection's life).
    #[tokio::test]
    async fn the_handshake_buffer_goes_once_read() -> io::Result<()> {
        let mut buffer = bytes::BytesMut::with_capacity(8192);
        buffer.extend_from_slice(b"abc");
        let rest = buffer.freeze();
        let held = rest.as_ptr() as usize..rest.as_ptr() as usize + 8192;
        let (client, mut server) = tokio::io::duplex(64);
        let mut io = Prefixed::new(rest, client);
        server.write_all(b"def").await?;
        let mut read = [0u8; 6];
        io.read_exact(&mut read).await?;
        assert_eq!(&read, b"abcdef");
        assert!(!held.contains(&(io.rest.as_ptr() as usize)), "the drained prefix still points into the buffer");
        let empty = bytes::BytesMut::with_capacity(8192).freeze();
        let held = empty.as_ptr() as usize..empty.as_ptr() as usize + 8192;
        assert!(!held.contains(&(Prefixed::new(empty, tokio::io::empty()).rest.as_ptr() as usize)));
        Ok(())
    }
}
