//! HTTP/2 to the upstream: one connection per origin, shared by every request, over TLS (ALPN `h2`) or in clear
//! text by prior knowledge (h2c). This file is the pool (connections by origin, retries); the protocol is the
//! gateway's own client in the submodules: `frame` (the wire format), `hpack` and `hpack_decoder` (header
//! blocks), `connection` (streams and windows; `connection/receive`: what each frame does), `driver` (the
//! socket's task), `stream` (requests and bodies).
//!
//! Why an own client and not the h2 crate (used before, and still the test servers' implementation): the
//! real backend sends every SSE event as a DATA frame of its own, and h2 spent ~1.5 K instructions on each
//! (its connection task's turn, moving its frame enum by value, a lock and queue pop per frame in the body's
//! poll) against ~200 for the HTTP/1.1 path's chunk decoder, and ~63 K per request on HPACK (Huffman coding of
//! every literal): an HTTP/2 burst cost about twice the HTTP/1.1 one (bench/notes.md, thirty-sixth session).
//! Here a read's frames are applied under one lock, a body takes all of its ready frames at once, and the
//! request's header block is plain literals. Nothing of that was reachable through h2's API.
//!
//! Request bodies ask for their whole length at once: the window goes to the waiting bodies in turn and each
//! leaves in as few frames as the window allows. (hyper's client sent a 1-byte DATA frame per waiting stream
//! at each reopening of the window, which h2's servers take for a small-frame flood: GOAWAY `ENHANCE_YOUR_CALM`,
//! every stream on the connection lost; bench/notes.md and the test in `transport.rs`.)
//!
//! A connection carries as many streams at once as the server allows (SETTINGS_MAX_CONCURRENT_STREAMS, often
//! 100–256); a request that would have to wait for a free stream goes on another connection to the same origin
//! instead, up to [`MAX_CONNECTIONS_PER_ORIGIN`], because a stream waits for a reply that can take minutes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, Uri};
use bytes::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

mod connection;
mod driver;
mod error;
mod frame;
mod hpack;
mod hpack_decoder;
mod stream;
#[cfg(test)]
mod tests;

pub use error::H2Error;
use stream::Handle;

use super::transport::{
    CONNECT_TIMEOUT, TransportError, UPSTREAM_H2_CONNECTION_WINDOW, UPSTREAM_H2_STREAM_WINDOW, UpstreamResponse,
};

/// Sends of one request the upstream refused unprocessed, on top of the first.
const MAX_RETRIES_OF_REFUSED: u32 = 2;
/// Connections to one origin; past this, requests share the least busy one and wait there for a free stream.
const MAX_CONNECTIONS_PER_ORIGIN: usize = 16;

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
    send: Arc<Handle>,
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
        let limit = self.send.max_streams();
        self.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(StreamSlot(self.open.clone()))
    }

    /// A stream on this connection regardless of the server's limit (the request waits there until one is free).
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
    ConnectionEnded(H2Error),
    Stream(H2Error),
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
            match send(&connection.send, slot, uri, headers, body).await {
                Ok(response) => return Ok(Outcome::Sent(response)),
                Err(SendError::ConnectionEnded(e)) => {
                    origin.forget(connection.id);
                    if reconnects >= 1 {
                        return Err(TransportError::of(e));
                    }
                    reconnects += 1;
                }
                Err(SendError::Stream(e)) => {
                    if e.ends_connection() {
                        origin.forget(connection.id);
                    }
                    if refusals >= MAX_RETRIES_OF_REFUSED || !e.unprocessed() {
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
                    send: Arc::new(send),
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
    async fn connect(&self, uri: &Uri) -> Result<Option<Handle>, TransportError> {
        let connecting = async {
            let mut tcp = self.tcp.clone();
            std::future::poll_fn(|cx| tcp.poll_ready(cx)).await.map_err(TransportError::of)?;
            let stream = tcp.call(uri.clone()).await.map_err(TransportError::of)?.into_inner();
            if uri.scheme_str() != Some("https") {
                return Ok(Some(handshake(stream)));
            }
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(TransportError::of)?;
            let stream = self.tls.connect(name, stream).await.map_err(TransportError::of)?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Ok(None);
            }
            Ok(Some(handshake(stream)))
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

/// Start the connection: the client preface and SETTINGS with the gateway's fixed windows (see `transport.rs`)
/// are queued, and the connection runs on its own task. Like h2's handshake this does not wait for the server's
/// SETTINGS: the first requests go out with the preface.
fn handshake<T>(io: T) -> Handle
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = connection::Shared::new(UPSTREAM_H2_STREAM_WINDOW, UPSTREAM_H2_CONNECTION_WINDOW);
    tokio::spawn(driver::run(io, shared.clone()));
    Handle::new(shared)
}

/// Send one request on `send`'s connection; returns once the response headers arrive.
async fn send(
    send: &Handle,
    slot: StreamSlot,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<UpstreamResponse, SendError> {
    let stream = send.open(uri, headers, body).await.map_err(SendError::ConnectionEnded)?;
    let (status, headers) = stream.head().await.map_err(SendError::Stream)?;
    Ok(UpstreamResponse { status, headers, body: Box::pin(stream::Body::new(stream, slot)) })
}
