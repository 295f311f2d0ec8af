//! The accept loop: HTTP/1.1 connections served by hyper with the axum router, and graceful shutdown.
//!
//! Written here instead of `axum::serve` for memory per open stream (bench/notes.md): axum's loop sniffs every
//! connection for an HTTP/2 preface first, and the 24 sniffed bytes make hyper grow the connection's read buffer
//! from 8 to 16 KB. Every client the gateway serves (SDKs, CLIs, IDEs) speaks HTTP/1.1 to an `http://` URL, so
//! connections are served as HTTP/1.1 directly.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::guard::{Guard, Policy};

/// How long a client may take to send a request's headers (slowloris guard; bodies are bounded separately).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown` resolves, then let open connections finish their responses.
/// Every request passes `guard` first (guard.rs), here rather than as a router layer: axum boxes each route layer's
/// service clone and future per request, this wrapper costs neither.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    guard: Arc<Policy>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // hyper's own HTTP/1 builder, not hyper-util's `auto` one: an `auto` connection future keeps room for an
    // HTTP/2 connection inline even when limited to HTTP/1 (1,528 against 648 bytes per open connection).
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
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
        let service = Guard::new(router.clone().map_request(detach_from_read_buffer), guard.clone());
        let service = TowerToHyperService::new(service);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!("connection ended with an error: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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
