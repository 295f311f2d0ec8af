//! HTTP/2 to the upstream, driven with the h2 crate directly: one connection per origin, shared by every
//! request, over TLS (ALPN `h2`) or in clear text by prior knowledge (h2c).
//!
//! Why not hyper's client: hyper sends a request body by first reserving one byte of the connection's send
//! window and asking for the rest only once it has that byte. When many requests wait for the upstream to reopen
//! its window (their bodies together larger than it, as when thousands of streams start at once), each reopening
//! hands every waiting stream its one byte, and each sends it as a DATA frame of its own. h2's servers count such
//! frames as a small-frame flood and close the connection, with every stream on it (GOAWAY `ENHANCE_YOUR_CALM`):
//! bench/notes.md, and the test below. Here a body asks for its whole length at once, so the window goes to the
//! waiting bodies in turn and each leaves in as few frames as the window allows.
//!
//! A connection carries as many streams at once as the server allows (SETTINGS_MAX_CONCURRENT_STREAMS, often
//! 100–256); a request that would have to wait for a free stream goes on another connection to the same origin
//! instead, up to [`MAX_CONNECTIONS_PER_ORIGIN`], because a stream waits for a reply that can take minutes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, Request, Uri, header};
use bytes::Bytes;
use h2::client::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use super::transport::{
    CONNECT_TIMEOUT, TransportError, UPSTREAM_H2_CONNECTION_WINDOW, UPSTREAM_H2_STREAM_WINDOW, UpstreamResponse,
};

/// Sends of one request the upstream refused unprocessed, on top of the first.
const MAX_RETRIES_OF_REFUSED: u32 = 2;
/// Connections to one origin; past this, requests share the least busy one and wait there for a free stream.
const MAX_CONNECTIONS_PER_ORIGIN: usize = 16;
/// Streams this side reset that a connection remembers (for h2's one second) so that frames the server sent
/// before it saw the reset are ignored. The gateway resets (cancels) a stream whenever it drops an answer before
/// its END_STREAM arrived: every completed answer whose END_STREAM is a frame of its own still on the way (the
/// pump is done at `response.completed`), and every client that leaves. h2 remembers 50 by default; a frame for
/// a forgotten stream is a protocol error that h2 answers with a reset of its own, and after 1,024 of those
/// over the connection's life it closes the connection with every stream on it (`ENHANCE_YOUR_CALM`,
/// "too_many_internal_resets"): 329 of 10,000 paced streams failed so (bench/notes.md). This covers a
/// connection's whole stream limit ending within the second; each remembered stream costs a few hundred bytes
/// for that second.
const MAX_REMEMBERED_RESETS: usize = 16 * 1024;

/// What the caller does with a request this module did not send.
pub enum Outcome {
    Sent(UpstreamResponse),
    /// The origin chose HTTP/1.1 in the TLS handshake: send it over HTTP/1.1.
    Http1Only,
}

/// The HTTP/2 connections of one transport, by origin.
pub struct Http2Connections {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
    origins: parking_lot::Mutex<HashMap<String, Arc<Origin>>>,
}

/// One origin's connections, and what is known about it.
#[derive(Default)]
struct Origin {
    connections: parking_lot::Mutex<Vec<Connection>>,
    /// Held while a connection is being made, so a burst of requests makes one connection, not one each.
    connecting: tokio::sync::Mutex<Option<Failure>>,
    http1_only: AtomicBool,
}

#[derive(Clone)]
struct Connection {
    send: SendRequest<Bytes>,
    id: u64,
    /// Streams open on it, counted by [`StreamSlot`]s.
    open: Arc<AtomicUsize>,
}

/// One open stream on a connection: taken before the request is sent, given back when its response body is
/// finished or dropped, or the request failed.
struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    /// A stream on this connection if the server allows one more at once.
    fn take_slot(&self) -> Option<StreamSlot> {
        let limit = self.send.current_max_send_streams();
        self.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(StreamSlot(self.open.clone()))
    }

    /// A stream on this connection regardless of the server's limit (h2 holds the request until one is free).
    fn queue_slot(&self) -> StreamSlot {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamSlot(self.open.clone())
    }
}

/// The last failed attempt to connect: requests that waited for it get its error instead of trying again one
/// after another (a timeout each).
struct Failure {
    at: Instant,
    error: TransportError,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Why sending on a connection failed: before the request left (the connection had ended; safe to send again
/// on a new one), or after.
enum SendError {
    ConnectionEnded(h2::Error),
    Stream(h2::Error),
    Request(TransportError),
}

impl Http2Connections {
    /// `tcp`: the connector with the transport's socket options. `tls`: the client configuration, with ALPN
    /// `h2` and `http/1.1`.
    pub fn new(tcp: HttpConnector, tls: Arc<rustls::ClientConfig>) -> Http2Connections {
        Http2Connections {
            tcp,
            tls: tokio_rustls::TlsConnector::from(tls),
            origins: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// POST `body` and wait for the response headers. A request the server refused without processing it
    /// (see [`refused_unprocessed`]) is sent again, up to twice; one that found its connection ended is sent on a
    /// new one.
    pub async fn post(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Outcome, TransportError> {
        let origin = self.origin(uri);
        if origin.http1_only.load(Ordering::Relaxed) {
            return Ok(Outcome::Http1Only);
        }
        let (mut refusals, mut reconnects) = (0, 0);
        loop {
            let Some((connection, slot)) = self.connection(&origin, uri).await? else {
                return Ok(Outcome::Http1Only);
            };
            match send(connection.send.clone(), slot, uri, headers, body).await {
                Ok(response) => return Ok(Outcome::Sent(response)),
                Err(SendError::Request(e)) => return Err(e),
                Err(SendError::ConnectionEnded(e)) => {
                    origin.forget(connection.id);
                    if reconnects >= 1 {
                        return Err(TransportError::of(e));
                    }
                    reconnects += 1;
                }
                Err(SendError::Stream(e)) => {
                    if e.is_go_away() || e.is_io() {
                        origin.forget(connection.id);
                    }
                    if refusals >= MAX_RETRIES_OF_REFUSED || !refused_unprocessed(&e) {
                        return Err(TransportError::of(e));
                    }
                    refusals += 1;
                    tracing::debug!("the upstream refused the request unprocessed; sending it again: {e}");
                }
            }
        }
    }

    fn origin(&self, uri: &Uri) -> Arc<Origin> {
        let key = format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().map_or("", |a| a.as_str()));
        self.origins.lock().entry(key).or_default().clone()
    }

    /// A live connection of the origin with a stream free, made if there is none (or, at the limit of
    /// connections, the least busy one); `None` if the origin speaks only HTTP/1.1.
    async fn connection(&self, origin: &Origin, uri: &Uri) -> Result<Option<(Connection, StreamSlot)>, TransportError> {
        if let Some(found) = origin.free_stream() {
            return Ok(Some(found));
        }
        let waited_from = Instant::now();
        let mut last_failure = origin.connecting.lock().await;
        if let Some(found) = origin.free_stream() {
            return Ok(Some(found));
        }
        if origin.http1_only.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if let Some(found) = origin.least_busy_at_the_limit() {
            return Ok(Some(found));
        }
        if let Some(failure) = last_failure.as_ref().filter(|f| f.at >= waited_from) {
            return Err(failure.error.clone());
        }
        // Boxed: the connect future (TCP, TLS with its session state, the HTTP/2 handshake) is ~4 KB and runs once
        // per connection; inline, it sized every request's future while it waits for its response headers
        // (thousands at once on one connection).
        match Box::pin(self.connect(uri)).await {
            Ok(Some(send)) => {
                let connection = Connection {
                    send,
                    id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
                    open: Arc::new(AtomicUsize::new(0)),
                };
                let slot = connection.queue_slot();
                origin.connections.lock().push(connection.clone());
                *last_failure = None;
                Ok(Some((connection, slot)))
            }
            Ok(None) => {
                origin.http1_only.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(error) => {
                *last_failure = Some(Failure { at: Instant::now(), error: error.clone() });
                Err(error)
            }
        }
    }

    /// TCP, then TLS with ALPN for `https` (`None` if the server chose HTTP/1.1), then the HTTP/2 handshake.
    async fn connect(&self, uri: &Uri) -> Result<Option<SendRequest<Bytes>>, TransportError> {
        let connecting = async {
            let mut tcp = self.tcp.clone();
            std::future::poll_fn(|cx| tcp.poll_ready(cx)).await.map_err(TransportError::of)?;
            let stream = tcp.call(uri.clone()).await.map_err(TransportError::of)?.into_inner();
            if uri.scheme_str() != Some("https") {
                return handshake(stream).await.map(Some);
            }
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(TransportError::of)?;
            let stream = self.tls.connect(name, stream).await.map_err(TransportError::of)?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Ok(None);
            }
            handshake(stream).await.map(Some)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::described(
                dialects::failure::TransportKind::Timeout,
                "connecting to the upstream timed out",
            )),
        }
    }
}

impl Origin {
    fn free_stream(&self) -> Option<(Connection, StreamSlot)> {
        let connections = self.connections.lock();
        connections.iter().find_map(|c| c.take_slot().map(|slot| (c.clone(), slot)))
    }

    /// With every allowed connection made and busy, the one with the fewest open streams.
    fn least_busy_at_the_limit(&self) -> Option<(Connection, StreamSlot)> {
        let connections = self.connections.lock();
        if connections.len() < MAX_CONNECTIONS_PER_ORIGIN {
            return None;
        }
        let least = connections.iter().min_by_key(|c| c.open.load(Ordering::Relaxed))?;
        Some((least.clone(), least.queue_slot()))
    }

    /// Drop connection `id`, which has ended (it may be gone already).
    fn forget(&self, id: u64) {
        self.connections.lock().retain(|c| c.id != id);
    }
}

/// The HTTP/2 handshake with the gateway's fixed windows (see `transport.rs`); the connection runs on its own task.
async fn handshake<T>(io: T) -> Result<SendRequest<Bytes>, TransportError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(UPSTREAM_H2_STREAM_WINDOW)
        .initial_connection_window_size(UPSTREAM_H2_CONNECTION_WINDOW)
        .enable_push(false)
        .max_concurrent_reset_streams(MAX_REMEMBERED_RESETS)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(TransportError::of)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("upstream HTTP/2 connection ended: {e}");
        }
    });
    Ok(send)
}

/// Send one request on `send`'s connection; returns once the response headers arrive.
async fn send(
    send: SendRequest<Bytes>,
    slot: StreamSlot,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<UpstreamResponse, SendError> {
    let mut send = send.ready().await.map_err(SendError::ConnectionEnded)?;
    let mut request = Request::post(uri.clone()).body(()).map_err(|e| SendError::Request(TransportError::of(e)))?;
    let fields = request.headers_mut();
    *fields = headers.clone();
    // Connection-specific fields are not allowed in HTTP/2 (RFC 9113 §8.2.2); the authority travels as a
    // pseudo-header.
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE, header::HOST] {
        fields.remove(name);
    }
    fields.remove("keep-alive");
    fields.remove("proxy-connection");
    fields.insert(header::CONTENT_LENGTH, body.len().into());
    let (response, mut stream) = send.send_request(request, body.is_empty()).map_err(SendError::Stream)?;
    if !body.is_empty() {
        // The whole body at once: h2 asks the connection for its full length (see the module's comment).
        stream.send_data(body.clone(), true).map_err(SendError::Stream)?;
    }
    let response = response.await.map_err(SendError::Stream)?;
    let (parts, recv) = response.into_parts();
    Ok(UpstreamResponse { status: parts.status, headers: parts.headers, body: Box::pin(body_stream(recv, slot)) })
}

/// The response body as it arrives, a DATA frame at a time (one event each, as the real backend sends them).
/// Frames are handed on as they are, not joined: the reader takes every ready frame before the pump writes, so a
/// burst still leaves in one write, and joining copied every byte once more (~4% of an HTTP/2 burst's CPU, perf).
/// The window is given back once per burst, when the stream has nothing more ready (or past [`RELEASE_AT`]),
/// rather than per frame: each release locks h2's shared stream state. The stream's slot is given back when the
/// body ends or is dropped.
fn body_stream(recv: h2::RecvStream, slot: StreamSlot) -> Body {
    Body { recv, slot: Some(slot), unreleased: 0 }
}

/// See [`body_stream`].
struct Body {
    recv: h2::RecvStream,
    /// `None` once the body ended.
    slot: Option<StreamSlot>,
    /// Bytes handed on whose window is not given back yet.
    unreleased: usize,
}

/// Window held back at most before it is given back even in the middle of a burst (the stream's window is
/// [`UPSTREAM_H2_STREAM_WINDOW`]: the upstream keeps sending meanwhile).
const RELEASE_AT: usize = 32 * 1024;

impl Body {
    fn release(&mut self) {
        if self.unreleased > 0 {
            let _ = self.recv.flow_control().release_capacity(std::mem::take(&mut self.unreleased));
        }
    }
}

impl futures_util::Stream for Body {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.slot.is_none() {
            return Poll::Ready(None);
        }
        match this.recv.poll_data(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.unreleased += chunk.len();
                if this.unreleased >= RELEASE_AT {
                    this.release();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.slot = None;
                Poll::Ready(Some(Err(TransportError::of(e))))
            }
            Poll::Ready(None) => {
                this.slot = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.release();
                Poll::Pending
            }
        }
    }
}

/// The HTTP/2 server declined the request before processing it, so it is safe to send again on another
/// stream or connection (RFC 9113 §8.7): the stream was refused (`REFUSED_STREAM`), or the connection is being
/// shut down gracefully (`GOAWAY` with `NO_ERROR`, as load balancers do to rotate connections).
fn refused_unprocessed(e: &h2::Error) -> bool {
    let reason = e.reason();
    e.is_remote()
        && ((e.is_go_away() && reason == Some(h2::Reason::NO_ERROR))
            || (e.is_reset() && reason == Some(h2::Reason::REFUSED_STREAM)))
}
