//! `relay --websocket`: the floor of the default path. The gateway's default upstream is the Responses WebSocket
//! with permessage-deflate over TLS, so a floor that relays plain HTTP SSE bytes leaves out work any proxy in the
//! gateway's place must do. This relay does that work and nothing more:
//!
//! - reads the load's HTTP/1.1 POST of a Responses body (Content-Length; keep-alive);
//! - keeps one TLS WebSocket to the upstream per client connection, opened on its first request with the
//!   request's own headers (credentials, account, originator) and the official client's permessage-deflate offer,
//!   reused for its next requests, as the gateway keeps one per conversation;
//! - sends each body as one `response.create` text message (the body with its `type` in front, no parsing);
//! - writes each text message back as one SSE event (`data: <payload>\n\n`) on a chunked answer, events that are
//!   ready together in one write, until the response's terminal event.
//!
//! Nothing is parsed beyond the `type` the backend writes first (to end the answer and to drop the backend's own
//! frames around a turn, which no client expects); nothing is translated.
//!
//! The client's side is a few lines of its own over httparse; with `--hyper` it is hyper's HTTP/1.1 server instead
//! (`websocket/hyper_server.rs`), as in the gateway, which has no HTTP code of its own: the floor of a proxy on the
//! ecosystem's crates.

use std::fmt::Write as _;
use std::future::poll_fn;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use yawc::{Frame, OpCode, Options, Role, WebSocket};

use crate::RelayArgs;

mod hyper_server;

/// The handshake's `OpenAI-Beta` value, added when the request has none (fake-codex requires it).
const BETA: &str = "responses_websockets=2026-02-06";
/// The official client's extension offer, as the gateway sends it (crates/transport/src/ws_handshake.rs).
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";
/// The largest message read, as the gateway's pool reads them.
const MAX_MESSAGE: usize = 64 << 20;
/// The largest request head or handshake answer head.
const MAX_HEAD: usize = 64 << 10;
/// Request fields a relay does not pass on to the handshake: the HTTP request's own framing and hop-by-hop
/// fields, and those the handshake writes itself.
const NOT_FORWARDED: [&str; 14] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "expect",
    "accept",
    "accept-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];
const ANSWER_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocket<Box<dyn Io>>;

/// Where the WebSocket goes.
struct Upstream {
    host: String,
    port: u16,
    authority: String,
    path: String,
    /// `None`: `ws://`, no TLS.
    tls: Option<tokio_rustls::TlsConnector>,
    /// Shared by the connections for one message at a time, as the gateway's compressor pool is.
    deflate: yawc::DeflatePool,
}

pub async fn relay(a: RelayArgs) -> anyhow::Result<()> {
    let url = a.upstream.as_deref().context("--websocket needs --upstream wss://HOST:PORT/PATH")?;
    let up = Arc::new(upstream(url, a.ca.as_deref())?);
    let listener = super::listen(a.port).await?;
    loop {
        let client = super::accept(&listener).await;
        let up = up.clone();
        match a.hyper {
            true => {
                tokio::spawn(hyper_server::serve(client, up));
            }
            false => {
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &up).await {
                        eprintln!("loadgen relay: {e:#}");
                    }
                });
            }
        }
    }
}

fn upstream(url: &str, ca: Option<&Path>) -> anyhow::Result<Upstream> {
    let (tls, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => bail!("--upstream wants a ws:// or wss:// URL, got {url}"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().with_context(|| format!("the port of {url}"))?),
        _ => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tls = if tls {
        let ca = ca.context("a wss:// upstream needs --ca FILE (the PEM certificate it is trusted through)")?;
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.with_context(|| format!("{} is not a PEM bundle", ca.display()))?)?;
        }
        anyhow::ensure!(!roots.is_empty(), "{} holds no certificate", ca.display());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    Ok(Upstream {
        host,
        port,
        authority: authority.to_string(),
        path: path.to_string(),
        tls,
        deflate: yawc::DeflatePool::new(16),
    })
}

/// One client connection: its requests one after another over one upstream WebSocket, opened on the first.
async fn serve(mut client: TcpStream, up: &Upstream) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let mut input = BytesMut::with_capacity(8 << 10);
    let mut out = BytesMut::with_capacity(16 << 10);
    let mut socket: Option<Socket> = None;
    loop {
        let Some((fields, body)) = read_request(&mut client, &mut input, socket.is_none()).await? else {
            return Ok(());
        };
        let ws = match &mut socket {
            Some(ws) => ws,
            None => match connect(up, &fields).await {
                Ok(ws) => socket.insert(ws),
                Err(e) => {
                    let text = format!("{e:#}");
                    let answer = format!(
                        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    client.write_all(answer.as_bytes()).await?;
                    return Err(e);
                }
            },
        };
        ws.send(Frame::text(create_message(&body))).await.context("sending to the upstream WebSocket")?;
        if !answer(ws, &mut client, &mut out).await? {
            // Ended without a clean terminal event: the connection is not reused (a new one for the next request).
            socket = None;
        }
    }
}

/// Read one request: its forwarded header fields (only when `fields` is asked for: the WebSocket is opened with
/// them) and its body. `None` at a clean end of the connection.
async fn read_request(
    client: &mut TcpStream,
    input: &mut BytesMut,
    fields: bool,
) -> anyhow::Result<Option<(String, Bytes)>> {
    let (head, length, forwarded) = loop {
        if !input.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(head) = req.parse(input).context("a malformed request")? {
                let mut length = None;
                let mut forwarded = String::new();
                let mut beta = false;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let text = std::str::from_utf8(h.value).unwrap_or_default();
                        length = Some(text.trim().parse::<usize>().context("a bad Content-Length")?);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("a chunked request body (the load sends Content-Length)");
                    } else if fields && !NOT_FORWARDED.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
                        beta |= h.name.eq_ignore_ascii_case("openai-beta");
                        forwarded.push_str(h.name);
                        forwarded.push_str(": ");
                        forwarded.push_str(std::str::from_utf8(h.value).context("a header value that is not text")?);
                        forwarded.push_str("\r\n");
                    }
                }
                if fields && !beta {
                    forwarded.push_str("openai-beta: ");
                    forwarded.push_str(BETA);
                    forwarded.push_str("\r\n");
                }
                break (head, length.unwrap_or(0), forwarded);
            }
            anyhow::ensure!(input.len() < MAX_HEAD, "a request head over {MAX_HEAD} bytes");
        }
        if client.read_buf(input).await? == 0 {
            anyhow::ensure!(input.is_empty(), "the client left in the middle of a request");
            return Ok(None);
        }
    };
    while input.len() < head + length {
        input.reserve(head + length - input.len());
        if client.read_buf(input).await? == 0 {
            bail!("the client left in the middle of a request body");
        }
    }
    let mut request = input.split_to(head + length);
    let body = request.split_off(head).freeze();
    Ok(Some((forwarded, body)))
}

/// Open the upstream WebSocket: TCP, TLS, the handshake with `fields` after its own, then frames with the
/// permessage-deflate parameters the server agreed to (the relay's own messages each compressed on its own, as the
/// gateway compresses them).
async fn connect(up: &Upstream, fields: &str) -> anyhow::Result<Socket> {
    let tcp = TcpStream::connect((up.host.as_str(), up.port))
        .await
        .with_context(|| format!("connecting to {}:{}", up.host, up.port))?;
    tcp.set_nodelay(true)?;
    let mut io: Box<dyn Io> = match &up.tls {
        Some(tls) => {
            let name = ServerName::try_from(up.host.clone())?;
            Box::new(tls.connect(name, tcp).await.context("the upstream's TLS handshake")?)
        }
        None => Box::new(tcp),
    };
    let key = generate_key();
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: {key}\r\n{fields}sec-websocket-extensions: {DEFLATE_OFFER}\r\n\r\n",
        up.path, up.authority
    );
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    // Read byte by byte to the head's end, once per connection: the upstream sends nothing after its answer until
    // a message arrives, and nothing read past the head may be lost to the frames.
    let mut head = Vec::with_capacity(512);
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(head.len() < MAX_HEAD, "the upstream's handshake answer head is over {MAX_HEAD} bytes");
        let byte = io.read_u8().await.context("reading the upstream's handshake answer")?;
        head.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut answer = httparse::Response::new(&mut headers);
    answer.parse(&head).context("a malformed handshake answer")?;
    if answer.code != Some(101) {
        bail!("the upstream refused the WebSocket: {}", String::from_utf8_lossy(&head).trim_end());
    }
    let field = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    anyhow::ensure!(
        field("sec-websocket-accept") == Some(derive_accept_key(key.as_bytes()).as_str()),
        "the upstream's handshake answer has a wrong or no Sec-WebSocket-Accept"
    );
    let extensions = field("sec-websocket-extensions").map(|agreed| {
        if agreed.split(';').any(|p| p.trim() == "client_no_context_takeover") {
            agreed.to_string()
        } else {
            format!("{agreed}; client_no_context_takeover")
        }
    });
    let options = Options::default()
        .with_compression_level(yawc::CompressionLevel::default())
        .with_deflate_pool(up.deflate.clone())
        .with_max_payload_read(MAX_MESSAGE)
        .with_max_read_buffer(MAX_MESSAGE);
    Ok(WebSocket::from_stream_with_extensions(io, Role::Client, extensions.as_deref(), options)?)
}

/// The `response.create` message: the body's own fields after a `type` (one copy, no parsing).
fn create_message(body: &[u8]) -> Bytes {
    const HEAD: &[u8] = br#"{"type":"response.create""#;
    let rest = body.strip_prefix(b"{").unwrap_or(body);
    let mut out = BytesMut::with_capacity(HEAD.len() + rest.len() + 1);
    out.put_slice(HEAD);
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        out.put_u8(b',');
    }
    out.put_slice(rest);
    out.freeze()
}

/// What a text message is to the relay.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A Responses event, passed on.
    Event,
    /// The response's last event: passed on, then the answer ends (`true`: the connection can take the next
    /// request).
    Terminal(bool),
    /// The backend's own frames around a turn (`codex.rate_limits`, `codex.response.metadata`,
    /// `responsesapi.websocket_timing`): not events, no client expects them.
    Own,
}

/// The message's kind from its `type`: the backend writes it first (one prefix test); a writer that orders its
/// keys otherwise (fake-codex sorts them) is searched for the `"type":"` values with one SIMD scan, which finds
/// the top-level one among those of nested objects by value: no nested object of a Responses event has a terminal
/// or backend-own type. Escaped quotes inside strings cannot match. A message with no such type is passed on.
fn kind(text: &[u8]) -> Kind {
    const KEY: &[u8] = br#""type":""#;
    if let Some(rest) = text.strip_prefix(b"{").and_then(|t| t.strip_prefix(KEY)) {
        return kind_of(rest);
    }
    for at in memchr::memmem::find_iter(text, KEY) {
        match kind_of(&text[at + KEY.len()..]) {
            Kind::Event => {}
            k => return k,
        }
    }
    Kind::Event
}

/// The kind a `type` value names (`value`: from the value's first byte on).
fn kind_of(value: &[u8]) -> Kind {
    let end = memchr::memchr(b'"', value).unwrap_or(value.len());
    match &value[..end] {
        b"response.completed" | b"response.incomplete" => Kind::Terminal(true),
        b"response.failed" | b"error" => Kind::Terminal(false),
        t if t.starts_with(b"codex.") || t.starts_with(b"responsesapi.") => Kind::Own,
        _ => Kind::Event,
    }
}

/// Relay one answer: each event as one SSE event in its own chunk, the events that are ready together in one
/// write. `Ok(true)` when it ended with a clean terminal event (the connection is kept).
async fn answer(ws: &mut Socket, client: &mut TcpStream, out: &mut BytesMut) -> anyhow::Result<bool> {
    out.clear();
    let mut started = false;
    loop {
        // The first frame waited for; then those already read or decoded, until one is not ready.
        let mut frame = Some(ws.next_frame().await);
        let mut end = None;
        while let Some(next) = frame.take() {
            let f = match next {
                Ok(f) => f,
                Err(e) => {
                    end = Some(Err(anyhow::Error::from(e).context("reading the upstream WebSocket")));
                    break;
                }
            };
            match f.opcode() {
                OpCode::Text => {
                    let payload = f.payload();
                    match kind(payload) {
                        Kind::Own => {}
                        k => {
                            if !started {
                                out.put_slice(ANSWER_HEAD);
                                started = true;
                            }
                            event(out, payload);
                            if let Kind::Terminal(clean) = k {
                                out.put_slice(b"0\r\n\r\n");
                                end = Some(Ok(clean));
                                break;
                            }
                        }
                    }
                }
                OpCode::Close => {
                    end = Some(Err(anyhow::anyhow!("the upstream closed the WebSocket mid-answer")));
                    break;
                }
                OpCode::Binary => {
                    end = Some(Err(anyhow::anyhow!("the upstream sent a binary message")));
                    break;
                }
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
            }
            frame = poll_fn(|cx| match ws.poll_next_frame(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
        }
        if !out.is_empty() {
            client.write_all(out).await.context("writing to the client")?;
            out.clear();
        }
        if let Some(end) = end {
            return end;
        }
    }
}

/// One SSE event in one chunk: `<hex length>\r\ndata: <payload>\n\n\r\n`.
fn event(out: &mut BytesMut, payload: &[u8]) {
    let size = payload.len() + 8;
    let _ = write!(out, "{size:x}\r\n");
    out.put_slice(b"data: ");
    out.put_slice(payload);
    out.put_slice(b"\n\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_told_apart_by_their_leading_type() {
        assert_eq!(kind(br#"{"type":"response.output_text.delta","delta":"x"}"#), Kind::Event);
        assert_eq!(kind(br#"{"type":"response.completed","response":{}}"#), Kind::Terminal(true));
        assert_eq!(kind(br#"{"type":"error","status":429}"#), Kind::Terminal(false));
        assert_eq!(kind(br#"{"type":"codex.rate_limits"}"#), Kind::Own);
        assert_eq!(kind(br#"{"type":"responsesapi.websocket_timing"}"#), Kind::Own);
        assert_eq!(kind(br#"{"a":1}"#), Kind::Event);
        // Keys in another order (fake-codex sorts them): found among the nested objects' types.
        assert_eq!(kind(br#"{"item":{"type":"message"},"type":"response.output_item.added"}"#), Kind::Event);
        assert_eq!(
            kind(br#"{"response":{"id":"r"},"sequence_number":9,"type":"response.completed"}"#),
            Kind::Terminal(true)
        );
        assert_eq!(kind(br#"{"headers":{},"type":"codex.response.metadata"}"#), Kind::Own);
        assert_eq!(kind(br#"{"delta":"\"type\":\"error\"","type":"response.output_text.delta"}"#), Kind::Event);
    }

    #[test]
    fn the_create_message_is_the_body_after_its_type_and_events_are_chunks() {
        assert_eq!(&create_message(br#"{"model":"m"}"#)[..], br#"{"type":"response.create","model":"m"}"#);
        assert_eq!(&create_message(b"{}")[..], br#"{"type":"response.create"}"#);
        let mut out = BytesMut::new();
        event(&mut out, br#"{"a":1}"#);
        assert_eq!(&out[..], b"f\r\ndata: {\"a\":1}\n\n\r\n");
    }
}
