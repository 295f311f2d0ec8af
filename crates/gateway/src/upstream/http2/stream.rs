//! Requests and response bodies on an HTTP/2 connection: a [`Handle`] opens a stream and waits for its response
//! head; the [`Body`] takes the stream's DATA frames a burst at a time (every frame ready, under one lock), gives
//! the window back as it goes, and resets the stream if it is dropped before the answer ended.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;

use super::connection::{End, Head2, Shared};
use super::error::H2Error;
use crate::upstream::transport::TransportError;

/// The pool's hold on a connection (shared by its clones of the connection through an `Arc`). The connection
/// ends once the handle is dropped and no stream is left.
pub struct Handle(Arc<Shared>);

impl Handle {
    pub fn new(shared: Arc<Shared>) -> Handle {
        Handle(shared)
    }

    /// The server's limit of streams at once (unlimited until its SETTINGS arrive).
    pub fn max_streams(&self) -> usize {
        self.0.max_streams.load(Ordering::Relaxed)
    }

    /// Open a stream for `POST uri` once the server's stream limit allows. Errs with the connection's error if
    /// it ended or is going away (nothing was sent: safe to send on another connection).
    pub async fn open(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<StreamRef, H2Error> {
        let mut ticket = Ticket { shared: &self.0, id: None };
        std::future::poll_fn(|cx| {
            let mut state = self.0.state.lock();
            match state.open(cx.waker(), &mut ticket.id, uri, headers, body) {
                Ok(Some(id)) => Poll::Ready(Ok(StreamRef { shared: self.0.clone(), id })),
                Ok(None) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

/// A request's place in the queue for a stream (see `connection::Waiting`), left when the request is dropped.
struct Ticket<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.state.lock().leave(id);
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.abandoned = true;
        state.wake_driver();
    }
}

/// One open stream; dropping it before the answer ended resets the stream.
pub struct StreamRef {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        self.shared.state.lock().drop_stream(self.id);
    }
}

impl StreamRef {
    /// Wait for the response head.
    pub async fn head(&self) -> Result<(StatusCode, HeaderMap), H2Error> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.state.lock();
            let ended = state.ended.clone();
            let Some(stream) = state.streams.get_mut(&self.id) else {
                return Poll::Ready(Err(ended.unwrap_or(H2Error::Closed)));
            };
            match std::mem::replace(&mut stream.head, Head2::Taken) {
                Head2::Ready(status, fields) => return Poll::Ready(Ok((status, fields))),
                Head2::Waiting => stream.head = Head2::Waiting,
                Head2::Taken => return Poll::Ready(Err(H2Error::Closed)),
            }
            if let End::Failed(e) = &stream.end {
                return Poll::Ready(Err(e.clone()));
            }
            if !stream.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                stream.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

/// A response body: DATA payloads as they came, one frame each (the real backend sends one event per frame).
pub struct Body<S> {
    stream: StreamRef,
    /// Frames taken from the connection's state and not handed on yet.
    ready: VecDeque<Bytes>,
    /// Bytes handed on whose window is not given back yet.
    taken: usize,
    /// Held until the body ends or is dropped (the pool's count of open streams).
    slot: Option<S>,
}

impl<S> Body<S> {
    pub fn new(stream: StreamRef, slot: S) -> Body<S> {
        Body { stream, ready: VecDeque::new(), taken: 0, slot: Some(slot) }
    }
}

impl<S> Drop for Body<S> {
    /// What the body took or holds counts as read: the connection's window gets it back (the stream itself is
    /// reset or gone, so its window no longer matters).
    fn drop(&mut self) {
        let held = self.taken + self.ready.iter().map(Bytes::len).sum::<usize>();
        if held > 0 {
            self.stream.shared.state.lock().consumed(self.stream.id, held);
        }
    }
}

impl<S: Unpin> futures_util::Stream for Body<S> {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(chunk) = this.ready.pop_front() {
            this.taken += chunk.len();
            return Poll::Ready(Some(Ok(chunk)));
        }
        if this.slot.is_none() {
            return Poll::Ready(None);
        }
        let id = this.stream.id;
        let mut state = this.stream.shared.state.lock();
        if this.taken > 0 {
            state.consumed(id, std::mem::take(&mut this.taken));
        }
        let ended = state.ended.clone();
        let Some(stream) = state.streams.get_mut(&id) else {
            this.slot = None;
            return Poll::Ready(Some(Err(TransportError::of(ended.unwrap_or(H2Error::Closed)))));
        };
        if !stream.data.is_empty() {
            std::mem::swap(&mut this.ready, &mut stream.data);
            drop(state);
            let chunk = this.ready.pop_front().unwrap_or_default();
            this.taken += chunk.len();
            return Poll::Ready(Some(Ok(chunk)));
        }
        match &stream.end {
            End::Done => {
                this.slot = None;
                Poll::Ready(None)
            }
            End::Failed(e) => {
                let e = e.clone();
                this.slot = None;
                Poll::Ready(Some(Err(TransportError::of(e))))
            }
            End::Open => {
                if !stream.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    stream.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
