//! The accept loop: connections served by the gateway's HTTP/1.1 path (server/http1/), and graceful shutdown
//! (bounded: connections still open after `shutdown_timeout_secs` are dropped).
//!
//! Written here instead of `axum::serve` for memory per open stream (docs/performance.md, "Own accept loop"): axum's loop sniffs every
//! connection for an HTTP/2 preface and serves it with hyper. Every client the gateway serves (SDKs, CLIs, IDEs)
//! speaks HTTP/1.1 to an `http://` URL, so connections are served as HTTP/1.1 directly.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tracing::warn;

use super::guard::Policy;
use super::http1::{HEADER_READ_TIMEOUT, Server};
use crate::app::{AppState, Drain};

/// Serve `router` on `listener` (with the model calls served directly when `models` is the main listener's
/// state: server/direct.rs) until `shutdown` resolves, then let open connections (and upgraded sessions that
/// hold a `drain` token) finish their responses for up to `limits.shutdown`, and drop the rest. Every request
/// passes `guard` first (guard.rs; the connection puts it in front of the router), not as a router layer: axum
/// boxes each route layer's service clone and future per request, this wrapper costs neither.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    guard: Arc<Policy>,
    shutdown: impl Future<Output = ()>,
    limits: &crate::config::Timeouts,
    drain: Drain,
    models: Option<Arc<AppState>>,
) -> io::Result<()> {
    let Drain { draining, stop, tracker } = drain.clone();
    // hyper's own HTTP/1 builder, not hyper-util's `auto` one, for the connections handed to hyper: an `auto`
    // connection future keeps room for an HTTP/2 connection inline even when limited to HTTP/1.
    let mut hyper = http1::Builder::new();
    hyper.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    // Connections are served `with_upgrades` when hyper has them (the Responses WebSocket, server/websocket.rs).
    // hyper-util's `GracefulShutdown` cannot watch an upgradeable HTTP/1 connection, so the drain is done here:
    // `draining` asks each connection to finish its response and close, `tracker` waits for them.
    let server = Arc::new(Server { router, policy: guard, body_timeout: limits.request_body, hyper, draining, models });
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
        let (server, stop) = (server.clone(), stop.clone());
        tracker.spawn(async move {
            // Dropping the connection closes it, with the response (and its upstream stream) it was writing.
            let mut serve = std::pin::pin!(super::http1::serve(tcp, server));
            let mut stopped = std::pin::pin!(stop.cancelled());
            let mut registered = false;
            std::future::poll_fn(|cx| {
                if serve.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                // The stop is asked only when it happened, or to register once: its waker is this task's and
                // stays registered until it fires. Polled on every wake-up (as `select!` did), it locked the
                // list of waiters all connections share once per event a stream relayed.
                if !registered || stop.is_cancelled() {
                    registered = true;
                    return stopped.as_mut().poll(cx);
                }
                Poll::Pending
            })
            .await
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
