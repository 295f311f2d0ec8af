//! The accept loop: HTTP/1.1 connections served by hyper with the axum router, the request-body deadline, and
//! graceful shutdown (bounded: connections still open after `shutdown_timeout_secs` are dropped).
//!
//! Written here instead of `axum::serve` for memory per open stream (bench/notes.md): axum's loop sniffs every
//! connection for an HTTP/2 preface first, and the 24 sniffed bytes make hyper grow the connection's read buffer
//! from 8 to 16 KB. Every client the gateway serves (SDKs, CLIs, IDEs) speaks HTTP/1.1 to an `http://` URL, so
//! connections are served as HTTP/1.1 directly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Uri};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::guard::{Guard, Policy};

/// How long a client may take to send a request's headers (slowloris guard; bodies are bounded separately).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The server's drain, shared with what outlives its connection: an upgraded WebSocket session
/// (server/websocket.rs) holds a [`Drain::token`] so the shutdown waits for it, watches [`Drain::draining`] to
/// finish its turn and close, and is dropped at [`Drain::stopped`] like any connection.
#[derive(Clone, Default)]
pub struct Drain {
    /// Cancelled when the shutdown begins: connections finish their response and close.
    draining: CancellationToken,
    /// Cancelled when the shutdown's bound passes: whatever is still open is dropped.
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    /// Begin the shutdown: connections finish their response and close, sessions their turn.
    pub fn begin(&self) {
        self.draining.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves when the shutdown begins.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves when the shutdown's bound passes.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Held by a task the shutdown must wait for (within its bound).
    pub fn token(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.tracker.token()
    }
}

/// Serve `router` on `listener` until `shutdown` resolves, then let open connections (and upgraded sessions that
/// hold a `drain` token) finish their responses for up to `limits.shutdown`, and drop the rest. Every request
/// passes `guard` first (guard.rs), here rather than as a router layer: axum boxes each route layer's service
/// clone and future per request, this wrapper costs neither.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    guard: Arc<Policy>,
    shutdown: impl Future<Output = ()>,
    limits: &crate::config::Timeouts,
    drain: Drain,
) -> io::Result<()> {
    let body_limit = limits.request_body;
    let Drain { draining, stop, tracker } = drain.clone();
    // hyper's own HTTP/1 builder, not hyper-util's `auto` one: an `auto` connection future keeps room for an
    // HTTP/2 connection inline even when limited to HTTP/1 (1,528 against 648 bytes per open connection).
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // Connections are served `with_upgrades` (the Responses WebSocket, server/websocket.rs). hyper-util's
    // `GracefulShutdown` cannot watch an upgradeable HTTP/1 connection, so the drain is done here: `draining`
    // asks each connection to finish its response and close, `tracker` waits for them.
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    on_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small SSE writes must go out at once, not wait for the client's delayed ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        // The guard looks at the head before the copies below, so a refused request costs no copy.
        let service = Guard::new(
            router.clone().map_request(move |req| TimedBody::wrap(detach_from_read_buffer(req), body_limit)),
            guard.clone(),
        );
        let service = TowerToHyperService::new(service);
        let conn = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
        let (stop, draining) = (stop.clone(), draining.clone());
        tracker.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                // Dropping the connection closes it, with the response (and its upstream stream) it was writing.
                () = stop.cancelled() => return,
                () = draining.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        served = conn.as_mut() => served,
                        () = stop.cancelled() => return,
                    }
                }
            };
            if let Err(e) = served {
                debug!("connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    drain.begin();
    tracker.close();
    if tokio::time::timeout(limits.shutdown, tracker.wait()).await.is_err() {
        warn!(
            "connections still open {} s after the shutdown began (shutdown_timeout_secs); closing them",
            limits.shutdown.as_secs_f64()
        );
        stop.cancel();
    }
    Ok(())
}

/// A request body that must arrive within a deadline (`request_body_timeout_secs`), counted from the first time
/// it has to wait for bytes: a client that stalls mid-body gets an error (its handler answers 400
/// `request_body_timeout` and the connection closes) instead of holding the connection forever.
///
/// The timer is made only when the body has to wait: a body that came with its headers, as most do, costs
/// nothing more than hyper's own (the wrapper is boxed inside axum's body like `Incoming` was).
pub struct TimedBody {
    inner: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn wrap(req: Request<Incoming>, limit: Duration) -> Request<TimedBody> {
        req.map(|inner| TimedBody { inner, limit, timer: None })
    }
}

/// The request body did not arrive within `request_body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s (request_body_timeout_secs)", .0.as_secs_f64())]
pub struct BodyTimedOut(pub Duration);

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
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

/// The [`BodyTimedOut`] behind a body-read failure, if that was the cause.
pub fn body_timed_out<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        cause = e.source();
    }
    None
}

/// Give the request its own copies of the target and header values.
///
/// hyper parses them as slices of the connection's 8 KB read buffer, so while a handler holds the headers (all
/// through the upstream exchange, until the first answer event) the whole buffer stays allocated next to the one
/// hyper has already reserved for the next read. With thousands of streams opening at once that was ~8 KB per
/// stream at the memory peak (bench/notes.md); the copies are a few hundred bytes. Handlers drop the body
/// bytes, the other slice of that buffer, right after decoding them.
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

/// Errors of one incoming connection (reset before it was accepted) are skipped at once; anything else (out of
/// file descriptors, most often) is logged and retried after a pause instead of spinning.
async fn on_accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copies carry the same target and headers: repeated ones, query strings and non-ASCII bytes included.
    #[tokio::test]
    async fn detached_requests_keep_their_target_and_headers() {
        // A real hyper request (its parts sliced from the read buffer), served over a loopback connection.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
        let seen_tx = std::sync::Mutex::new(Some(seen_tx));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let before = (req.uri().clone(), req.headers().clone());
                let after = detach_from_read_buffer(req);
                let result = (before, (after.uri().clone(), after.headers().clone()));
                if let Some(tx) = seen_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(result);
                }
                async { Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new())) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("{e}"));
        let request = "GET /v1/models?x=%20y&z=1 HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer k\r\n\
                       x-stainless-os: Linux\r\nx-tag: a\r\nx-tag: b\r\nx-bin: café\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        let (before, after) = seen_rx.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(after.0, before.0);
        assert_eq!(after.0.to_string(), "/v1/models?x=%20y&z=1");
        assert_eq!(after.1, before.1);
        let tags: Vec<_> = after.1.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(after.1.get("x-bin").map(HeaderValue::as_bytes), Some("café".as_bytes()));
    }
}
