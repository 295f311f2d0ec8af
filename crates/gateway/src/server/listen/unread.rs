//! Answers given before the request's body was read to its end (a 413 over `body_limit_mb`, the guard's 401 and
//! 403, a 404 or 405, a body that timed out) carry `Connection: close`: hyper closes such a connection after the
//! answer rather than read the rest of a body nobody wants, and a client told nothing would send its next request
//! on a connection about to close ("Server disconnected without sending a response", httpx). listen.rs wraps every
//! request's body ([`Tracked`] marks its end) and answer ([`CloseIfUnread`]).
//!
//! Closing, not draining: nginx answers a 413 with `Connection: close` too, and reading a body of any size to keep
//! a connection would let a client make the gateway read what it has just refused. RFC 9112, section 9.6: a server
//! that does not read a whole body closes the connection, and says so with `close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

/// Whether the connection's current request body has been read to its end; one per connection (hyper hands an
/// HTTP/1.1 connection's requests over one at a time), set at each request's start.
#[derive(Clone, Default)]
pub(super) struct Tracked(Arc<AtomicBool>);

impl Tracked {
    /// A new request: read already when it has no body.
    pub(super) fn start(&self, no_body: bool) {
        self.0.store(no_body, Ordering::Relaxed);
    }

    /// Its body's end was read.
    pub(super) fn ended(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_read(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The answer of `inner`, with `Connection: close` when it is ready before the body was read to its end.
pub(super) struct CloseIfUnread<F> {
    pub(super) inner: F,
    pub(super) body: Tracked,
}

impl<F, E> Future for CloseIfUnread<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = ready!(Pin::new(&mut self.inner).poll(cx))?;
        // An upgrade's answer (101) is for a bodiless GET; a response that already says how the connection ends
        // is left as it is.
        if !self.body.is_read()
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
            && !response.headers().contains_key(CONNECTION)
        {
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}
