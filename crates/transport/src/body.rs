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

    /// Whether a piece of this body that is not ready now may be once the reading task has yielded, with no new
    /// I/O: true where another task hands the pieces over one at a time. hyper's HTTP/1.1 client connection decodes
    /// a chunk, passes it through a channel that holds one, and decodes the next only after the reader took it, so
    /// a burst that arrived in one read of the socket reaches the reader one wake-up per chunk
    /// (docs/performance.md, "Bursts"). HTTP/2 (h2 queues every frame of a read on its stream) and the WebSocket
    /// (read on the reader's own task) have their pieces ready at once.
    fn handed_over_one_at_a_time(&self) -> bool {
        false
    }

    /// Whether each piece is one whole event's JSON (the upstream WebSocket's text frames) rather than bytes of an
    /// SSE stream: the reader then takes each piece as an event, with no SSE text made and parsed in between
    /// (docs/performance.md, "Bursts").
    fn pieces_are_events(&self) -> bool {
        false
    }
}

/// The response body as it arrives.
pub type BodyStream = Pin<Box<dyn Body>>;

pin_project_lite::pin_project! {
    /// A body from any stream of bytes, with nothing to do when its answer is complete.
    pub struct Plain<S> {
        #[pin]
        stream: S,
        pieces: Pieces,
    }
}

/// What a [`Plain`] body's pieces are and how they come.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pieces {
    /// SSE bytes, ready as they were read.
    Ready,
    /// SSE bytes another task hands over one at a time ([`Body::handed_over_one_at_a_time`]).
    OneAtATime,
    /// One whole event's JSON each ([`Body::pieces_are_events`]).
    Events,
}

impl<S> Plain<S> {
    pub fn new(stream: S) -> Plain<S> {
        Plain { stream, pieces: Pieces::Ready }
    }

    /// A body whose pieces another task hands over one at a time (hyper's HTTP/1.1 `Incoming`, and reqwest's on
    /// it): see [`Body::handed_over_one_at_a_time`].
    pub fn one_at_a_time(stream: S) -> Plain<S> {
        Plain { stream, pieces: Pieces::OneAtATime }
    }

    /// A body whose every piece is one event's JSON: see [`Body::pieces_are_events`].
    pub fn events(stream: S) -> Plain<S> {
        Plain { stream, pieces: Pieces::Events }
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Stream for Plain<S> {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx)
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Body for Plain<S> {
    fn handed_over_one_at_a_time(&self) -> bool {
        self.pieces == Pieces::OneAtATime
    }

    fn pieces_are_events(&self) -> bool {
        self.pieces == Pieces::Events
    }
}

/// An upstream response whose headers have arrived; the body streams.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}
