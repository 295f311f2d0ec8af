//! What every transport hands back: the response head and a [`Body`] of bytes as they arrive, which can be
//! told that the answer in it is complete (so HTTP/2 lets its stream end rather than cancel it).

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, StatusCode};

use crate::TransportError;

/// A response body: its bytes as they arrive, and a way to say the answer in it is complete.
pub trait Body: Stream<Item = Result<Bytes, TransportError>> + Send {
    /// The answer is complete (its terminal event was read), so a body dropped from now on may let its stream
    /// end by itself rather than cancel it: HTTP/2 reads on to END_STREAM for a moment (`http2/body.rs`). A
    /// body dropped without this call is cancelled at once (the client left, a deadline passed).
    fn answered(self: Pin<&mut Self>) {}
}

/// The response body as it arrives.
pub type BodyStream = Pin<Box<dyn Body>>;

pin_project_lite::pin_project! {
    /// A body from any stream of bytes, with nothing to do when its answer is complete.
    pub struct Plain<S> {
        #[pin]
        stream: S,
    }
}

impl<S> Plain<S> {
    pub fn new(stream: S) -> Plain<S> {
        Plain { stream }
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Stream for Plain<S> {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx)
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Body for Plain<S> {}

/// An upstream response whose headers have arrived; the body streams.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}
