//! HTTP/2 to the upstream on the h2 crate, over TLS (ALPN `h2`) or in clear text by prior knowledge (h2c). This
//! file is the pool: connections by origin, a stream slot per request, and sending again what the server did not
//! process. The connection (settings, handshake, its task) is `connection.rs`; the response body `body.rs`.
//!
//! The pool heals itself (issue 58): a connection that ended leaves it at once (its task removes it), one that
//! got a GOAWAY leaves it at the first request that finds it so (h2 refuses the stream before anything is sent);
//! a request the server did not process (never sent, REFUSED_STREAM, above a GOAWAY's last stream id) goes again
//! to a live or new connection, as often as the caller's deadline allows. A connection takes requests only once
//! the server's SETTINGS came and never more at once than its SETTINGS_MAX_CONCURRENT_STREAMS; a request that
//! finds every connection full opens another, up to [`MAX_CONNECTIONS_PER_ORIGIN`], because a stream waits for
//! a reply that can take minutes. Past that it waits in h2's queue on the least busy connection.
//!
//! Request bodies go to h2 whole (`send_data` of the whole body), so each asks for its whole length of window at
//! once and h2 hands reopened window to waiting bodies in turn: the body leaves in frames as large as the window
//! allows, never as the 1-byte DATA frame per waiting stream that hyper's client sent at each reopening (it
//! reserves one byte first), which h2's servers answer with GOAWAY `ENHANCE_YOUR_CALM` (docs/performance.md, "HTTP/2 upstream settings").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use hyper_util::client::legacy::connect::HttpConnector;
use tower::Service;

mod body;
mod connection;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wire_tests;

pub use body::resets_sent;
use connection::{End, Shared};

use crate::{POOL_IDLE_TIMEOUT, TransportError, UpstreamResponse};

/// Connections to one origin; past this, requests wait for a stream on the least busy one.
const MAX_CONNECTIONS_PER_ORIGIN: usize = 16;
/// Sends of one request past which each further one waits a little first (doubling up to [`MAX_BACKOFF`]): a
/// server that keeps refusing streams, or closes every new connection, is not hammered until the deadline.
const SENDS_WITHOUT_BACKOFF: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
    /// A connection without a stream this long is closed ([`POOL_IDLE_TIMEOUT`]; tests shorten it).
    idle: Duration,
}

/// One origin's connections, and what is known about it.
#[derive(Default)]
struct Origin {
    connections: parking_lot::Mutex<Vec<Conn>>,
    /// Held while a connection is being made, so a burst of requests makes one connection, not one each.
    connecting: tokio::sync::Mutex<Option<Failure>>,
    http1_only: AtomicBool,
}

/// A connection in the pool. Dropping the last handle to it (the pool's, and each request's clone) lets h2
/// close it once no stream is left.
#[derive(Clone)]
struct Conn {
    id: u64,
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

/// One stream on a connection: taken before the request is sent, given back when its response body ends or is
/// dropped (after the drain, see `body.rs`), or the request failed.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// A stream on this connection if the server allows one more at once (its SETTINGS_MAX_CONCURRENT_STREAMS,
    /// as h2 last heard it).
    fn take_slot(&self) -> Option<Slot> {
        let limit = self.send.current_max_send_streams();
        self.shared.open.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).ok()?;
        self.shared.used.store(true, Ordering::Relaxed);
        Some(Slot(self.shared.clone()))
    }

    /// A stream regardless of the server's limit: h2 holds the request until one is free.
    fn queue_slot(&self) -> Slot {
        self.shared.open.fetch_add(1, Ordering::Relaxed);
        self.shared.used.store(true, Ordering::Relaxed);
        Slot(self.shared.clone())
    }
}

/// The last failed attempt to connect: requests that waited for it get its error instead of trying again one
/// after another (a timeout each).
struct Failure {
    at: Instant,
    error: TransportError,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// How one send of a request failed.
enum SendError {
    /// The server did not act on it: sending it again is safe. `leave`: the connection is done for new streams.
    Unprocessed { error: h2::Error, leave: bool },
    /// It may have been processed (or the answer was cut): the request's failure.
    Failed(h2::Error),
}

/// Whether the server declined a stream without processing it (RFC 9113 §8.7), from h2's error: it reset the
/// stream with REFUSED_STREAM, or its GOAWAY named a last stream below this one (h2 fails those streams with the
/// GOAWAY itself; a stream at or below it that the closing connection cut fails as an I/O error instead).
fn unprocessed(error: &h2::Error) -> bool {
    match error.reason() {
        Some(h2::Reason::REFUSED_STREAM) if error.is_reset() => error.is_remote(),
        Some(_) if error.is_go_away() => error.is_remote(),
        Some(_) | None => false,
    }
}

impl Http2Connections {
    /// `tcp`: the connector with the transport's socket options. `tls`: the client configuration, with ALPN
    /// `h2` and `http/1.1`.
    pub fn new(tcp: HttpConnector, tls: Arc<rustls::ClientConfig>) -> Http2Connections {
        Http2Connections {
            tcp,
            tls: tokio_rustls::TlsConnector::from(tls),
            origins: parking_lot::Mutex::new(HashMap::new()),
            idle: POOL_IDLE_TIMEOUT,
        }
    }

    /// The same pool with connections closed after `idle` without a stream.
    #[cfg(test)]
    pub(crate) fn with_idle_timeout(self, idle: Duration) -> Http2Connections {
        Http2Connections { idle, ..self }
    }

    /// POST `body` and wait for the response headers. A request the server did not process is sent again, on a
    /// live or a new connection, until it is answered or the caller's deadline drops this future.
    pub async fn post(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Outcome, TransportError> {
        let origin = self.origin(uri);
        let mut sends = 0u32;
        loop {
            if origin.http1_only.load(Ordering::Relaxed) {
                return Ok(Outcome::Http1Only);
            }
            let Some((conn, slot)) = self.connection(&origin, uri).await? else {
                return Ok(Outcome::Http1Only);
            };
            match send(&conn, slot, uri, headers, body).await {
                Ok(response) => return Ok(Outcome::Sent(response)),
                Err(SendError::Failed(error)) => return Err(TransportError::of(error)),
                Err(SendError::Unprocessed { error, leave }) => {
                    if leave {
                        origin.forget(conn.id);
                    }
                    sends += 1;
                    tracing::debug!("the upstream did not process the request; sending it again: {error}");
                    if sends >= SENDS_WITHOUT_BACKOFF {
                        let wait = Duration::from_millis(25 << (sends - SENDS_WITHOUT_BACKOFF).min(6));
                        tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
                    }
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
    async fn connection(&self, origin: &Arc<Origin>, uri: &Uri) -> Result<Option<(Conn, Slot)>, TransportError> {
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
        // Boxed: the connect future (TCP, TLS with its session state, the HTTP/2 handshake) is several KB and runs
        // once per connection; inline, it sized every request's future while it waits for its response headers
        // (thousands at once on one connection).
        match Box::pin(self.connect(origin, uri)).await {
            Ok(Some(conn)) => {
                *last_failure = None;
                // A connection this request made: its first stream is this request's, whatever the limit.
                let slot = conn.take_slot().unwrap_or_else(|| conn.queue_slot());
                origin.connections.lock().push(conn.clone());
                Ok(Some((conn, slot)))
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

    /// TCP, then TLS with ALPN for `https` (`None` if the server chose HTTP/1.1), then the HTTP/2 handshake up to
    /// the server's SETTINGS, all within [`CONNECT_TIMEOUT`](crate::CONNECT_TIMEOUT).
    async fn connect(&self, origin: &Arc<Origin>, uri: &Uri) -> Result<Option<Conn>, TransportError> {
        let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(origin);
        let on_end = move |_: End| forget(&weak, id);
        let connecting = async {
            let mut tcp = self.tcp.clone();
            std::future::poll_fn(|cx| tcp.poll_ready(cx)).await.map_err(TransportError::of)?;
            let stream = tcp.call(uri.clone()).await.map_err(TransportError::of)?.into_inner();
            let (send, shared) = if uri.scheme_str() != Some("https") {
                connection::handshake(stream, self.idle, on_end).await.map_err(TransportError::of)?
            } else {
                let stream = crate::tls::connect(&self.tls, uri, stream).await?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Ok(None);
                }
                connection::handshake(stream, self.idle, on_end).await.map_err(TransportError::of)?
            };
            if !shared.settled().await {
                return Err(TransportError::described(
                    crate::TransportKind::Reset,
                    "the upstream closed the HTTP/2 connection before its SETTINGS",
                ));
            }
            Ok(Some(Conn { id, send, shared }))
        };
        crate::tls::within_connect_timeout(connecting).await
    }
}

/// Take connection `id` out of its origin's pool (it ended, went idle, or refuses new streams).
fn forget(origin: &Weak<Origin>, id: u64) {
    if let Some(origin) = origin.upgrade() {
        origin.forget(id);
    }
}

impl Origin {
    fn free_stream(&self) -> Option<(Conn, Slot)> {
        let connections = self.connections.lock();
        connections.iter().find_map(|c| c.take_slot().map(|slot| (c.clone(), slot)))
    }

    /// With every allowed connection made and busy, the one with the fewest open streams.
    fn least_busy_at_the_limit(&self) -> Option<(Conn, Slot)> {
        let connections = self.connections.lock();
        if connections.len() < MAX_CONNECTIONS_PER_ORIGIN {
            return None;
        }
        let least = connections.iter().min_by_key(|c| c.shared.open.load(Ordering::Relaxed))?;
        Some((least.clone(), least.queue_slot()))
    }

    fn forget(&self, id: u64) {
        self.connections.lock().retain(|c| c.id != id);
    }
}

/// Send one request on `conn`; returns once the response headers arrive.
async fn send(
    conn: &Conn,
    slot: Slot,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<UpstreamResponse, SendError> {
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.clone();
    *request.headers_mut() = headers.clone();
    // As hyper's client adds it for a body of known length (after the caller's fields).
    request.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let mut send = conn.send.clone();
    let (response, mut stream) = match send.send_request(request, body.is_empty()) {
        Ok(sent) => sent,
        // Refused before anything was sent: the connection is going away (GOAWAY), ended, or out of stream ids.
        Err(error) => return Err(SendError::Unprocessed { error, leave: true }),
    };
    let pending = body::Pending;
    if !body.is_empty() {
        // An error here means the stream already failed; the response future says how.
        let _ = stream.send_data(body.clone(), true);
    }
    drop(stream);
    match response.await {
        Ok(response) => {
            pending.disarm();
            let (parts, recv) = response.into_parts();
            let body: crate::BodyStream = Box::pin(body::Body::new(recv, slot));
            Ok(UpstreamResponse { status: parts.status, headers: parts.headers, body })
        }
        Err(error) => {
            // The stream is closed: nothing to reset.
            pending.disarm();
            if unprocessed(&error) {
                let leave = error.is_go_away();
                return Err(SendError::Unprocessed { error, leave });
            }
            Err(SendError::Failed(error))
        }
    }
}
