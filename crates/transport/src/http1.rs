//! HTTP/1.1 to the upstream, with the answer read in the task that consumes it: `http://` origins (the
//! benchmark's and the tests' fake unless `upstream_h2c`) and `https` origins that chose HTTP/1.1 in ALPN.
//!
//! Why not hyper-util's pooled client: hyper runs each connection on a task of its own and hands the body over
//! one chunk at a time through a one-slot channel, so an answer whose events come one per chunk (as the real
//! backend flushes them) cost two cross-task wake-ups per event, and the reader could never see a second ready
//! event without yielding: one client write per event (issue 26, docs/performance.md, "Own HTTP/1.1 upstream reader"). Here the
//! body is the socket itself: one read takes every byte the kernel has, the chunked framing is removed from all of
//! it at once, and the reader gets one buffer per read, so a burst becomes one write to the client.
//!
//! Connections are kept per origin while idle (up to [`POOL_MAX_IDLE_PER_HOST`], for [`POOL_IDLE_TIMEOUT`]) and
//! reused once an answer was read to its end; a body dropped before its end closes its connection, so the
//! upstream sees a client that left at once. A request that finds a reused connection closed by the server
//! before any byte of an answer is sent again once on a new connection (the server had not processed it).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower::Service;

use super::chunked::Framing;
use crate::head::{copy_head, slice_of};
use crate::{
    Body as UpstreamBody, CONNECT_TIMEOUT, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, TransportError, UpstreamResponse,
};

/// Largest response head accepted: hyper's client's (its read buffer's largest size, 8 KB + 100 x 4 KB).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Most header fields in a response head: ten times hyper's default of 100 (an upstream behind a proxy or CDN
/// may add dozens). Heads of up to [`COMMON_FIELDS`] are parsed into an array on the stack.
const MAX_FIELDS: usize = 1000;
const COMMON_FIELDS: usize = 100;
/// Bytes taken from the socket per read: a burst of deltas is a few KB.
const READ_SIZE: usize = 16 * 1024;

/// A connection's byte stream: plain TCP, or TLS over it.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An idle connection in the pool.
struct Idle {
    io: Io,
    since: Instant,
}

/// Idle connections by origin.
#[derive(Default)]
struct Pool {
    idle: parking_lot::Mutex<HashMap<Arc<str>, Vec<Idle>>>,
}

impl Pool {
    /// The most recently used idle connection of `origin` that has not been idle too long.
    fn take(&self, origin: &str) -> Option<Io> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(origin)?;
        while let Some(conn) = list.pop() {
            if conn.since.elapsed() < POOL_IDLE_TIMEOUT {
                return Some(conn.io);
            }
        }
        None
    }

    fn put(&self, origin: Arc<str>, io: Io) {
        let mut idle = self.idle.lock();
        let list = idle.entry(origin).or_default();
        // Connections idle past the timeout go first (they are at the front: the list is used from its end).
        let now = Instant::now();
        list.retain(|c| now.duration_since(c.since) < POOL_IDLE_TIMEOUT);
        if list.len() < POOL_MAX_IDLE_PER_HOST {
            list.push(Idle { io, since: now });
        }
    }
}

/// HTTP/1.1 connections to upstream origins.
pub struct Http1Connections {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
    pool: Arc<Pool>,
}

/// The response head failed to parse, broke a rule of HTTP/1.1, or passed one of the gateway's limits.
#[derive(Debug, thiserror::Error)]
enum BadResponse {
    #[error("the upstream sent an invalid HTTP/1.1 response: {0}")]
    Invalid(&'static str),
    #[error("the upstream's HTTP/1.1 response head has more than {MAX_FIELDS} header fields (the gateway's limit)")]
    TooManyFields,
    #[error("the upstream's HTTP/1.1 response head is larger than {MAX_HEAD} bytes (the gateway's limit)")]
    TooLarge,
}

fn bad(what: &'static str) -> TransportError {
    TransportError::of(BadResponse::Invalid(what))
}

/// Why an attempt on a reused connection failed: before any byte of the answer (send it again on a new
/// connection), or otherwise.
enum AttemptError {
    ClosedBeforeAnswer(TransportError),
    Other(TransportError),
}

impl Http1Connections {
    /// `tcp`: the connector with the transport's socket options; `tls`: the shared client configuration (ALPN
    /// is set to `http/1.1` here).
    pub fn new(tcp: HttpConnector, mut tls: rustls::ClientConfig) -> Http1Connections {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Http1Connections { tcp, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)), pool: Arc::new(Pool::default()) }
    }

    /// POST `body`; returns once the response head arrived, with the body streaming from the socket.
    pub async fn post(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<UpstreamResponse, TransportError> {
        let origin: Arc<str> =
            format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map_or("", |a| a.as_str())).into();
        let request = request_bytes(uri, headers, body);
        if let Some(io) = self.pool.take(&origin) {
            match attempt(io, &request).await {
                Ok((io, head)) => return Ok(self.response(io, head, origin)),
                Err(AttemptError::ClosedBeforeAnswer(e)) => {
                    tracing::debug!("a pooled upstream connection was closed; sending on a new one: {e}");
                }
                Err(AttemptError::Other(e)) => return Err(e),
            }
        }
        // Boxed: the connect future (TCP, TLS) is ~1 KB, inline it sized every request's future while it waits.
        let io = Box::pin(self.connect(uri)).await?;
        match attempt(io, &request).await {
            Ok((io, head)) => Ok(self.response(io, head, origin)),
            Err(AttemptError::ClosedBeforeAnswer(e) | AttemptError::Other(e)) => Err(e),
        }
    }

    fn response(&self, io: Io, head: Head, origin: Arc<str>) -> UpstreamResponse {
        let mut body = Body {
            io: Some(io),
            framing: head.framing,
            unread_head_rest: !head.rest.is_empty(),
            carry: head.rest,
            keep_alive: head.keep_alive,
            pool: self.pool.clone(),
            origin,
        };
        if body.framing.is_done() {
            // No body at all (a zero length): the connection is free now. Decoding nothing only hands it back.
            let _ = body.decode(&[]);
        }
        UpstreamResponse { status: head.status, headers: head.headers, body: Box::pin(body) }
    }

    async fn connect(&self, uri: &Uri) -> Result<Io, TransportError> {
        let connecting = async {
            let mut tcp = self.tcp.clone();
            std::future::poll_fn(|cx| tcp.poll_ready(cx)).await.map_err(TransportError::of)?;
            let stream = tcp.call(uri.clone()).await.map_err(TransportError::of)?.into_inner();
            if uri.scheme_str() != Some("https") {
                return Ok(Io::Plain(stream));
            }
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(TransportError::of)?;
            let stream = self.tls.connect(name, stream).await.map_err(TransportError::of)?;
            Ok(Io::Tls(Box::new(stream)))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(result) => result,
            Err(_) => {
                Err(TransportError::described(crate::TransportKind::Timeout, "connecting to the upstream timed out"))
            }
        }
    }
}

/// The request's bytes: head and body in one buffer, so it leaves in one write.
fn request_bytes(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Vec<u8> {
    // Sized for the whole request: a head that outgrew a guess was copied again on the way (the official client's
    // headers, a bearer token and the turn metadata, are 2-3 KB).
    let head: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    let mut out = Vec::with_capacity(64 + target + head + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(uri.authority().map_or("", |a| a.as_str()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // Set here from the body, or by this module.
        if name == header::HOST || name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// A parsed response head and the bytes read after it.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) framing: Framing,
    keep_alive: bool,
    pub(crate) rest: Vec<u8>,
}

/// Send a request on `io` and read its response head: the WebSocket's opening handshake (`ws_handshake.rs`) is one
/// such exchange.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    request: &[u8],
) -> Result<(S, Head), TransportError> {
    attempt(io, request).await.map_err(|(AttemptError::ClosedBeforeAnswer(e) | AttemptError::Other(e))| e)
}

/// Send the request on `io` and read the response head.
async fn attempt<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, request: &[u8]) -> Result<(S, Head), AttemptError> {
    if let Err(e) = async {
        io.write_all(request).await?;
        io.flush().await
    }
    .await
    {
        return Err(AttemptError::ClosedBeforeAnswer(TransportError::of(e)));
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let before = buf.len();
        if buf.capacity() - before < 1024 {
            buf.reserve(4096);
        }
        let read = tokio::io::AsyncReadExt::read_buf(&mut io, &mut buf).await;
        match read {
            Ok(0) | Err(_) if before == 0 => {
                let e = read.err().unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into());
                return Err(AttemptError::ClosedBeforeAnswer(TransportError::of(e)));
            }
            Ok(0) => {
                return Err(AttemptError::Other(TransportError::of(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection inside the response head",
                ))));
            }
            Err(e) => return Err(AttemptError::Other(TransportError::of(e))),
            Ok(_) => {}
        }
        match parse_head(&buf) {
            Ok(Parsed::Final(used, head)) => {
                let rest = buf.split_off(used);
                return Ok((io, Head { rest, ..head }));
            }
            Ok(Parsed::Interim(used)) => {
                // The real answer follows.
                buf.drain(..used);
            }
            Ok(Parsed::Partial) if buf.len() > MAX_HEAD => {
                return Err(AttemptError::Other(TransportError::of(BadResponse::TooLarge)));
            }
            Ok(Parsed::Partial) => {}
            Err(e) => return Err(AttemptError::Other(e)),
        }
    }
}

/// What the bytes received so far hold.
enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) answer of this many bytes.
    Interim(usize),
    /// The answer's head, this many bytes long.
    Final(usize, Head),
}

fn parse_head(buf: &[u8]) -> Result<Parsed, TransportError> {
    let mut fields = [httparse::EMPTY_HEADER; COMMON_FIELDS];
    match parse_into(buf, &mut fields) {
        Err(httparse::Error::TooManyHeaders) => {
            // Rare: more fields than the array holds. Parsed again into room for the limit.
            let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
            match parse_into(buf, &mut fields) {
                Err(httparse::Error::TooManyHeaders) => Err(TransportError::of(BadResponse::TooManyFields)),
                Err(_) => Err(bad("malformed response head")),
                Ok(parsed) => parsed,
            }
        }
        Err(_) => Err(bad("malformed response head")),
        Ok(parsed) => parsed,
    }
}

/// [`parse_head`] with room for `fields.len()` header fields; httparse's error is the caller's to decide on.
fn parse_into<'b>(
    buf: &'b [u8],
    fields: &mut [httparse::Header<'b>],
) -> Result<Result<Parsed, TransportError>, httparse::Error> {
    let mut response = httparse::Response::new(fields);
    let used = match response.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(Ok(Parsed::Partial)),
    };
    Ok(head_of(buf, used, &response))
}

/// The head `response` parsed from the first `used` bytes of `buf`.
fn head_of(buf: &[u8], used: usize, response: &httparse::Response<'_, '_>) -> Result<Parsed, TransportError> {
    let code = response.code.unwrap_or_default();
    if (100..200).contains(&code) && code != 101 {
        return Ok(Parsed::Interim(used));
    }
    let status = StatusCode::from_u16(code).map_err(|_| bad("invalid status code"))?;
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    let (mut chunked, mut length, mut close) = (false, None, response.version == Some(0));
    // The values are slices of one copy of the head, not a copy each: two allocations for the whole head instead of
    // one per field (a dozen `x-codex-*` limits on every answer), and the names the backend always sends are
    // constants (`names::known`). A value kept past the head (the rate-limit headers, until the client's head is
    // written) keeps this copy alive, which is no larger than the values' own copies were together.
    let head = copy_head(buf, used);
    for field in response.headers.iter() {
        let name = match super::names::known(field.name.as_bytes()) {
            Some(name) => name,
            None => HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad("invalid header name"))?,
        };
        let value = HeaderValue::from_maybe_shared(slice_of(&head, buf, field.value))
            .map_err(|_| bad("invalid header value"))?;
        if name == header::TRANSFER_ENCODING {
            // The last coding decides (RFC 9112 §6.3): chunked or the body runs to the end of the connection.
            chunked = field
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(field.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| bad("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting content-length"));
            }
            length = Some(n);
        } else if name == header::CONNECTION {
            close = field.value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        headers.append(name, value);
    }
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Length(0)
    } else if chunked {
        Framing::chunked()
    } else if has_te {
        Framing::UntilClose
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = !close && !matches!(framing, Framing::UntilClose);
    Ok(Parsed::Final(used, Head { status, headers, framing, keep_alive, rest: Vec::new() }))
}

/// The response body: the connection's socket, its framing removed as bytes arrive. Given back to the pool
/// when the body ended cleanly; closed when dropped before.
struct Body {
    /// `None` once the body ended (the connection went back to the pool or was closed).
    io: Option<Io>,
    framing: Framing,
    /// Received bytes not consumed yet: what came with the head, then framing cut off mid-line.
    carry: Vec<u8>,
    /// `carry` holds body bytes that came with the head, not decoded yet.
    unread_head_rest: bool,
    keep_alive: bool,
    pool: Arc<Pool>,
    origin: Arc<str>,
}

impl Body {
    /// Remove the framing from `input` (prefixed by the carried bytes): the body's bytes in it, in one buffer
    /// (`None` if there were none).
    fn decode(&mut self, input: &[u8]) -> Result<Option<Bytes>, TransportError> {
        let mut out = BytesMut::with_capacity(self.carry.len() + input.len());
        self.decode_into(input, &mut out)?;
        let data = out.freeze();
        if self.framing.is_done() {
            let io = self.io.take();
            // Bytes past the end would be a second answer nobody asked for: not a connection to reuse.
            if let Some(io) = io
                && self.keep_alive
                && self.carry.is_empty()
            {
                self.pool.put(self.origin.clone(), io);
            }
        }
        Ok((!data.is_empty()).then_some(data))
    }

    fn decode_into(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), TransportError> {
        if self.carry.is_empty() {
            let consumed = self.framing.decode(input, out).map_err(bad)?;
            self.carry.extend_from_slice(&input[consumed..]);
        } else {
            self.carry.extend_from_slice(input);
            let carried = std::mem::take(&mut self.carry);
            let consumed = self.framing.decode(&carried, out).map_err(bad)?;
            self.carry = carried;
            self.carry.drain(..consumed);
        }
        Ok(())
    }

    /// Read once and decode what came; `Ready(None)` at the end.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, TransportError>>> {
        if std::mem::take(&mut self.unread_head_rest) {
            // Bytes that came with the head: decode them before reading more.
            match self.decode(&[]) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
        }
        loop {
            if self.framing.is_done() {
                return Poll::Ready(None);
            }
            let Some(io) = self.io.as_mut() else { return Poll::Ready(None) };
            // Uninitialised: zeroing 16 KB before every read was ~250 instructions per event at one event per
            // read (callgrind, docs/performance.md, "Own HTTP/1.1 upstream reader"); the socket's read writes what it fills.
            let mut space = [std::mem::MaybeUninit::<u8>::uninit(); READ_SIZE];
            let mut buf = ReadBuf::uninit(&mut space);
            match Pin::new(io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return self.fail(TransportError::of(e)),
                Poll::Ready(Ok(())) => {}
            }
            if buf.filled().is_empty() {
                if self.framing.ends_at_close() && self.carry.is_empty() {
                    self.io = None;
                    return Poll::Ready(None);
                }
                return self.fail(TransportError::of(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before the end of the response body",
                )));
            }
            match self.decode(buf.filled()) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
        }
    }

    fn fail(&mut self, e: TransportError) -> Poll<Option<Result<Bytes, TransportError>>> {
        self.io = None;
        self.framing = Framing::Length(0);
        Poll::Ready(Some(Err(e)))
    }
}

impl UpstreamBody for Body {}

impl futures_util::Stream for Body {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_body(cx)
    }
}

impl Drop for Body {
    /// Dropped before its end (the reader stopped after the terminal event, or the client left): if the rest of
    /// the body has already arrived (the chunked terminator usually comes with the last event), read it without
    /// waiting and keep the connection; otherwise it closes here, and the upstream sees it at once.
    fn drop(&mut self) {
        if self.io.is_none() || !self.keep_alive {
            return;
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..2 {
            match self.poll_body(&mut cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) | Poll::Pending => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn client() -> Http1Connections {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let tls = super::super::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
        Http1Connections::new(tcp, tls)
    }

    /// Read one request (head and `content-length` body) from `tcp`; false at the end of the connection.
    async fn read_request(tcp: &mut TcpStream) -> bool {
        let mut buf = Vec::new();
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut fields);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                    .unwrap_or(0);
                if buf.len() >= n + len {
                    return true;
                }
            }
            let mut more = [0u8; 4096];
            match tcp.read(&mut more).await {
                Ok(0) | Err(_) => return false,
                Ok(k) => buf.extend_from_slice(&more[..k]),
            }
        }
    }

    /// A server on a loopback port answering every request on a connection with `answer` (written in one
    /// write); counts connections; closes a connection after `per_connection` answers.
    async fn server(answer: &'static [u8], per_connection: usize) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        if !read_request(&mut tcp).await || tcp.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://127.0.0.1:{port}/responses").parse().unwrap_or_else(|e| panic!("{e}")), connections)
    }

    const EVENTS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
        9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n9\r\ndata: 3\n\n\r\n0\r\n\r\n";

    /// Chunks that arrived together (one event each, as the real backend flushes them) come out of the body as
    /// one buffer: one read, one hand-off, where hyper's client handed them over one chunk at a time.
    #[tokio::test]
    async fn chunks_received_together_come_out_as_one_buffer() {
        let (uri, _) = server(EVENTS, 1).await;
        let mut response =
            client().post(&uri, &HeaderMap::new(), &Bytes::from_static(b"{}")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers.get("content-type").map(HeaderValue::as_bytes), Some(&b"text/event-stream"[..]));
        let first = response.body.next().await.and_then(Result::ok);
        assert_eq!(first.as_deref(), Some(&b"data: 1\n\ndata: 2\n\ndata: 3\n\n"[..]));
        assert!(response.body.next().await.is_none());
    }

    /// A connection whose answer was read to its end carries the next request; one the server closed while idle
    /// is replaced, and the request sent on it goes again on a new connection.
    #[tokio::test]
    async fn connections_are_reused_and_a_closed_one_is_replaced() {
        let client = client();
        let (uri, connections) = server(EVENTS, 2).await;
        for round in 0..4 {
            let mut response = client
                .post(&uri, &HeaderMap::new(), &Bytes::from_static(b"{}"))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let mut body = Vec::new();
            while let Some(chunk) = response.body.next().await {
                body.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("round {round}: {e}")));
            }
            assert_eq!(body, b"data: 1\n\ndata: 2\n\ndata: 3\n\n");
            // Let the server's close of a connection after its second answer arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// A body dropped before its end closes its connection (the upstream sees the client leave at once), and a
    /// body cut by the upstream is an error, not a clean end.
    #[tokio::test]
    async fn a_dropped_body_closes_its_connection_and_a_cut_one_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            read_request(&mut tcp).await;
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n";
            let _ = tcp.write_all(head).await;
            let mut rest = [0u8; 16];
            let _ = closed_tx.send(tcp.read(&mut rest).await.map_or(true, |n| n == 0));
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            read_request(&mut tcp).await;
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1").await;
        });
        let uri: Uri = format!("http://127.0.0.1:{port}/r").parse().unwrap_or_else(|e| panic!("{e}"));
        let client = client();
        let mut response = client.post(&uri, &HeaderMap::new(), &Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(response.body.next().await.is_some_and(|r| r.is_ok()));
        drop(response);
        let closed = tokio::time::timeout(Duration::from_secs(2), closed_rx).await;
        assert!(matches!(closed, Ok(Ok(true))), "the upstream did not see the connection close: {closed:?}");

        let mut response = client.post(&uri, &HeaderMap::new(), &Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
        let mut last = None;
        while let Some(item) = response.body.next().await {
            last = Some(item);
        }
        let err = last.and_then(Result::err).unwrap_or_else(|| panic!("a cut body ended cleanly"));
        assert_eq!(err.kind(), crate::TransportKind::Reset, "{err}");
    }

    /// How a head decides the body's framing and whether the connection can carry another request.
    #[test]
    fn response_heads_decide_framing_and_reuse() {
        let parse = |head: &[u8]| match parse_head(head) {
            Ok(Parsed::Final(n, head)) => Some((n, head.status, head.framing, head.keep_alive)),
            Ok(Parsed::Interim(_) | Parsed::Partial) => None,
            Err(e) => panic!("{e}"),
        };
        let head = b"HTTP/1.1 429 Too Many\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(parse(head), Some((head.len(), StatusCode::TOO_MANY_REQUESTS, Framing::Length(12), true)));
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n";
        assert_eq!(parse(head), Some((head.len(), StatusCode::OK, Framing::chunked(), false)));
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(parse(head), Some((head.len(), StatusCode::OK, Framing::UntilClose, false)));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\ncontent-le"), None);
        assert!(matches!(parse_head(b"HTTP/1.1 100 Continue\r\n\r\n"), Ok(Parsed::Interim(25))));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    /// A head with more fields than hyper's default (100) is read whole, up to the gateway's limit, past which the
    /// error names the limit instead of calling the head malformed.
    #[test]
    fn heads_of_many_fields_are_read_up_to_a_named_limit() {
        let head = |fields: usize| {
            let lines: String = (0..fields).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{lines}\r\n").into_bytes()
        };
        for fields in [40, 150, MAX_FIELDS - 1] {
            let Ok(Parsed::Final(_, parsed)) = parse_head(&head(fields)) else { panic!("{fields} fields refused") };
            assert_eq!(parsed.headers.len(), fields + 1);
            assert_eq!(parsed.headers.get("x-field-7").map(|v| v.as_bytes()), Some(&b"7"[..]));
        }
        let err = parse_head(&head(MAX_FIELDS + 1)).err().unwrap_or_else(|| panic!("no limit"));
        assert_eq!(
            err.to_string(),
            format!(
                "the upstream's HTTP/1.1 response head has more than {MAX_FIELDS} header fields (the gateway's limit)"
            )
        );
    }
}
