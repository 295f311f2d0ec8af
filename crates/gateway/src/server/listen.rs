//! The accept loop: HTTP/1.1 connections served by hyper with the axum router, and graceful shutdown.
//!
//! Written here instead of `axum::serve` for memory per open stream (bench/notes.md): axum's loop sniffs every
//! connection for an HTTP/2 preface first, and the 24 sniffed bytes make hyper grow the connection's read buffer
//! from 8 to 16 KB. Every client the gateway serves (SDKs, CLIs, IDEs) speaks HTTP/1.1 to an `http://` URL, so
//! connections are served as HTTP/1.1 directly.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// How long a client may take to send a request's headers (slowloris guard; bodies are bounded separately).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown` resolves, then let open connections finish their responses.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
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
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service).into_owned());
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
