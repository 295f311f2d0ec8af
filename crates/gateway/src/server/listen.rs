//! The listener: connections accepted here and served by hyper's HTTP/1.1 server connection (with upgrades, for
//! the Responses WebSocket), every request through the guard (guard.rs) to the router, and the graceful shutdown
//! with its bound (`app::Drain`: connections finish their response, WebSocket sessions their turn).
//!
//! hyper's own HTTP/1 builder, not hyper-util's `auto` one: every client the gateway serves (SDKs, CLIs, IDEs)
//! speaks HTTP/1.1 to an `http://` URL, and `auto` waits for a connection's first 24 bytes (is it the HTTP/2
//! preface?) with no deadline, so a connection that sends nothing would be held until the shutdown.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request, Uri};
use axum::response::Response;
use bytes::Bytes;
use futures_util::future::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{debug, warn};

use super::errors::BodyTimedOut;
use super::guard::{Guard, Policy};
use crate::app::Drain;
use crate::metrics::accepts::Cause;

mod refusals;
mod socket;
#[cfg(test)]
mod tests;
mod unread;

use refusals::Refusals;
use socket::Socket;
use unread::{CloseIfUnread, Tracked};

/// How long a client may take to send a request's head, counted from when the connection waits for one (an idle
/// keep-alive connection is closed after it too): the slowloris guard (docs/security.md).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a connection's read buffer (and queue of writes) grows to; a request head larger than this is
/// answered 431. hyper's default lets one connection's buffers grow to ~400 KB.
const MAX_BUF: usize = 64 * 1024;

/// Serve `router` on `listener` until `shutdown` resolves, then let open connections (and upgraded sessions that
/// hold a `drain` token) finish their responses for up to `limits.shutdown`, and drop the rest. Every request
/// passes `guard` first (guard.rs), wrapped around the router as a service: an axum router layer would box a
/// service clone and a future per request, this wrapper costs neither.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    guard: Arc<Policy>,
    shutdown: impl Future<Output = ()>,
    limits: &crate::config::Timeouts,
    drain: Drain,
) {
    let front = Front { guard: Guard::new(router, guard), body_timeout: limits.request_body };
    accept(listener, front, shutdown, HEADER_READ_TIMEOUT, limits.shutdown, drain).await;
}

/// What every connection of a listener serves: the guard in front of the router, and the body deadline.
#[derive(Clone)]
struct Front {
    guard: Guard<Router>,
    /// `request_body_timeout_secs`.
    body_timeout: Duration,
}

/// The accept loop, with the header deadline as a parameter (the tests shorten it).
async fn accept(
    listener: TcpListener,
    front: Front,
    shutdown: impl Future<Output = ()>,
    header_timeout: Duration,
    bound: Duration,
    drain: Drain,
) {
    let Drain { draining, stop, tracker } = drain.clone();
    let mut http = http1::Builder::new();
    // Body chunks are written from the handler's own bytes (`writev`), not copied into a buffer that grows.
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_BUF).writev(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refusals = Refusals::default();
    let slots = SLOTS.get().map(|(slots, _)| slots);
    // Cancelled when the loop finds no free slot: the connections accepted until then close once their response is
    // written, an idle keep-alive one at once (nginx closes its idle keep-alive connections when it runs out of
    // connections, `ngx_drain_connections`), so a waiting connection is not held up by idle ones until their
    // header deadline. A fresh token for those accepted after.
    let mut pressure = slots.map(|_| CancellationToken::new());
    loop {
        // A slot first, when the process has a connection limit: at the limit, connections wait in the kernel's
        // backlog (refusals.rs says so once per interval) rather than be accepted to fail for want of an upstream
        // descriptor.
        let slot = match slots.map(|s| s.clone().try_acquire_owned()) {
            None => None,
            Some(Ok(slot)) => Some(slot),
            Some(Err(_)) => {
                if let Some(pressed) = pressure.replace(CancellationToken::new()) {
                    pressed.cancel();
                }
                if let Some(line) = refusals.failed(Cause::Limit, std::time::Instant::now()) {
                    refusals::log(&line, None);
                }
                tokio::select! {
                    slot = wait_for_slot(slots) => slot,
                    () = &mut shutdown => break,
                }
            }
        };
        let summary_due = refusals.due_at();
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    refusals.accepted();
                    accepted
                }
                Err(e) => {
                    on_accept_error(&mut refusals, e).await;
                    continue;
                }
            },
            () = until(summary_due) => {
                if let Some(line) = refusals.summary(std::time::Instant::now()) {
                    refusals::log(&line, None);
                }
                continue;
            }
            () = &mut shutdown => break,
        };
        // Small SSE writes must go out at once, not wait for the client's delayed ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        let held = Held { slot, pressure: pressure.clone() };
        tracker.spawn(connection(tcp, held, peer, &http, front.clone(), draining.clone(), stop.clone()));
    }
    drop(listener);
    drain.begin();
    tracker.close();
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        warn!(
            "connections still open {} s after the shutdown began (shutdown_timeout_secs); closing them",
            bound.as_secs_f64()
        );
        stop.cancel();
    }
}

/// A connection's place under the process's connection limit (`None`s: no limit): its slot, and the token that
/// asks it to close after its response when the listener needs the slot.
struct Held {
    slot: Option<OwnedSemaphorePermit>,
    pressure: Option<CancellationToken>,
}

/// Serve one connection until the client closes it, it fails, the drain (or the connection limit: [`Held`]) has it
/// close after its response, or the shutdown's bound drops it (with the response, and its upstream stream, it was
/// writing).
fn connection(
    tcp: TcpStream,
    Held { slot, pressure }: Held,
    peer: SocketAddr,
    http: &http1::Builder,
    front: Front,
    draining: CancellationToken,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let (socket, heads) = Socket::new(tcp, slot, draining.clone());
    let calls = Arc::new(AtomicU32::new(0));
    let service = PerConnection { front, peer, ambiguous_at: heads, calls: calls.clone(), body: Tracked::default() };
    let conn = http.serve_connection(TokioIo::new(socket), service).with_upgrades();
    async move {
        let mut conn = std::pin::pin!(conn);
        let mut on_drain = std::pin::pin!(draining.cancelled());
        let mut on_stop = std::pin::pin!(stop.cancelled());
        let mut on_pressure = std::pin::pin!(async {
            match &pressure {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        });
        let (mut watching, mut drained) = (false, false);
        let served = std::future::poll_fn(|cx| {
            // The tokens are polled once, to register this task's waker (it stays registered until they fire), then
            // only read: polled on every wake-up, they would lock the list of waiters all connections share once
            // per event a stream relays.
            let draining_now = if watching { draining.is_cancelled() } else { on_drain.as_mut().poll(cx).is_ready() };
            let pressed = match watching {
                true => pressure.as_ref().is_some_and(CancellationToken::is_cancelled),
                false => on_pressure.as_mut().poll(cx).is_ready(),
            };
            // Pressed, a connection closes once it has had a request: one that has not, its first request perhaps
            // on its way, would close without an answer.
            let pressed = pressed && calls.load(Ordering::Relaxed) > 0;
            if (draining_now || pressed) && !drained {
                drained = true;
                // hyper finishes the response in flight and closes; an idle connection closes at once.
                conn.as_mut().graceful_shutdown();
            }
            if let Poll::Ready(served) = conn.as_mut().poll(cx) {
                return Poll::Ready(Some(served));
            }
            let stopped = if watching { stop.is_cancelled() } else { on_stop.as_mut().poll(cx).is_ready() };
            watching = true;
            if stopped { Poll::Ready(None) } else { Poll::Pending }
        })
        .await;
        if let Some(Err(e)) = served {
            debug!("connection ended with an error: {e}");
        }
    }
}

/// Errors of one incoming connection (reset before it was accepted) are skipped at once; anything else (out of
/// file descriptors, most often) is counted and retried after a pause instead of spinning, and logged at most once
/// per interval (refusals.rs): a retry every 100 ms logged each time made 79 lines in 8 s.
async fn on_accept_error(refusals: &mut Refusals, e: io::Error) {
    let Some(cause) = refusals::cause(&e) else { return };
    if let Some(line) = refusals.failed(cause, std::time::Instant::now()) {
        refusals::log(&line, Some(&e));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Connections the process holds at once, set by `serve` from the open files limit (descriptors.rs,
/// [`limit_connections`]); unset (the tests' in-process servers), no limit. One for every listener of the
/// process, as the limit is the process's. A slot is held by the socket (socket.rs), so it is given back when the
/// descriptor closes, after an upgraded WebSocket session too.
static SLOTS: OnceLock<(Arc<Semaphore>, usize)> = OnceLock::new();

/// Hold the process to `connections` open client connections (the streams its open files limit allows, each
/// with its upstream connection: descriptors.rs). Set once, before serving; a second call changes nothing.
pub fn limit_connections(connections: usize) {
    let connections = connections.clamp(1, Semaphore::MAX_PERMITS);
    let _ = SLOTS.set((Arc::new(Semaphore::new(connections)), connections));
}

/// A slot of `slots` once one is free (`None`: no limit).
async fn wait_for_slot(slots: Option<&Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match slots {
        // The semaphore is never closed.
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// Resolves at `at`; never when `None`.
async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The service of one connection: a request whose head gave its body's length twice is refused (socket.rs
/// sees it, [`ambiguous_length`]); every other one goes through the guard to the router, its body under the
/// deadline ([`TimedBody`]).
struct PerConnection {
    front: Front,
    /// The client's address, on every request as axum's `ConnectInfo` (the audit trail's source).
    peer: SocketAddr,
    /// The index of the connection's first head that gave its body's length twice (`u32::MAX`: none yet).
    ambiguous_at: Arc<AtomicU32>,
    /// Requests hyper has handed over so far: the index of the next one.
    calls: Arc<AtomicU32>,
    /// Whether the current request's body was read to its end: an answer before says `Connection: close` (unread.rs).
    body: Tracked,
}

type Guarded = <Guard<Router> as Service<Request<TimedBody>>>::Future;

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, CloseIfUnread<Guarded>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // hyper hands requests over in the order of their heads, each read (and looked at by socket.rs) before.
        let index = self.calls.fetch_add(1, Ordering::Relaxed);
        if index == self.ambiguous_at.load(Ordering::Acquire) {
            return Either::Left(ready(Ok(ambiguous_length())));
        }
        let limit = self.front.body_timeout;
        let mut req = req;
        req.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        self.body.start(req.body().is_end_stream());
        let body = self.body.clone();
        let req = detach_from_read_buffer(req).map(|inner| TimedBody { inner, limit, timer: None, read: body });
        // axum's router is always ready (its `poll_ready` returns `Ready` at once), and so the guard in front.
        Either::Right(CloseIfUnread { inner: self.front.guard.clone().call(req), body: self.body.clone() })
    }
}

/// The answer to a head whose body's length two fields could each decide (`Content-Length` with
/// `Transfer-Encoding`, either of them twice): a 400, and the connection closes, as nginx does. A proxy in front
/// that read the length the other way would otherwise see a second request where this server sees a body
/// (request smuggling). hyper would serve them (by `Transfer-Encoding`, or one of two equal lengths).
fn ambiguous_length() -> Response {
    let error = dialects::GatewayError::new(
        dialects::ErrorKind::InvalidRequest,
        "The request gives its body's length twice (Content-Length with Transfer-Encoding, or either of them \
         twice); send one.",
    )
    .with_code("ambiguous_body_length");
    let mut response = super::errors::error_response(super::openai::SHAPE, &error, "");
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that must arrive within a deadline (`request_body_timeout_secs`), counted from the first time
/// it has to wait for bytes: a client that stalls mid-body gets an error (its handler answers 400
/// `request_body_timeout`, errors.rs, and hyper closes the connection, whose body was not read to its end)
/// instead of holding the connection forever.
///
/// The timer is made only when the body has to wait: a body that came with its headers, as most do, costs
/// nothing more than hyper's own (the wrapper is boxed inside axum's body like `Incoming` would be).
struct TimedBody {
    inner: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Marked when the body's end is read (unread.rs).
    read: Tracked,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || (matches!(frame, Some(Ok(_))) && this.inner.is_end_stream()) {
                this.read.ended();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Give the request its own copies of the target and header values.
///
/// hyper parses them as slices of the connection's 8 KB read buffer, so while a handler holds the headers (all
/// through the upstream exchange, until the first answer event) the whole buffer stays allocated next to the one
/// hyper reserves for the next read: ~8 KB more per stream when thousands open at once. The copies are a few
/// hundred bytes. Handlers drop the body bytes, the other slice of that buffer, right after decoding them.
fn detach_from_read_buffer(mut req: Request<Incoming>) -> Request<Incoming> {
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
    for value in req.headers_mut().values_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
    }
    req
}
