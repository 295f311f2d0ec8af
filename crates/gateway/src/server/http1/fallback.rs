//! The connections hyper serves: those whose next request the gateway's own path hands over (head.rs says which),
//! with the bytes already read replayed first. hyper answers malformed heads, streams large or chunked bodies,
//! sends `100 Continue`, and upgrades the Responses WebSocket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Request, Uri};
use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower::ServiceExt;
use tracing::debug;

use super::Server;
use crate::server::errors::BodyTimedOut;
use crate::server::guard::Guard;

/// Serve the rest of the connection with hyper, `read` (a head and what came after it) first.
pub async fn serve(tcp: TcpStream, read: Bytes, server: &Server) {
    let body_limit = server.body_timeout;
    let service = Guard::new(
        server.router.clone().map_request(move |req| TimedBody::wrap(detach_from_read_buffer(req), body_limit)),
        server.policy.clone(),
    );
    let io = TokioIo::new(Rewind { read, tcp });
    let conn = server.hyper.serve_connection(io, TowerToHyperService::new(service)).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        // The connection first: its first poll parses the replayed request. Asked to shut down before that,
        // hyper would take it for an idle connection and close it unanswered (the drain may have begun while
        // the own path read the head).
        biased;
        served = conn.as_mut() => served,
        () = server.draining.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = served {
        debug!("connection ended with an error: {e}");
    }
}

/// The connection with the bytes the own path already read put back in front.
struct Rewind {
    read: Bytes,
    tcp: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.read.is_empty() {
            return Pin::new(&mut self.tcp).poll_read(cx, buf);
        }
        let n = self.read.len().min(buf.remaining());
        buf.put_slice(&self.read[..n]);
        self.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
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

/// Give the request its own copies of the target and header values.
///
/// hyper parses them as slices of the connection's 8 KB read buffer, so while a handler holds the headers (all
/// through the upstream exchange, until the first answer event) the whole buffer stays allocated next to the one
/// hyper has already reserved for the next read. With thousands of streams opening at once that was ~8 KB per
/// stream at the memory peak (docs/performance.md, "Small waiting requests"); the copies are a few hundred bytes. Handlers drop the body
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

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
