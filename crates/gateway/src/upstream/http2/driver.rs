//! The task that owns an HTTP/2 connection's socket: it writes the frames the connection's state queued and
//! reads what the server sends, applying every complete frame of a read under one lock and waking each stream
//! that got something once, after the lock is released.
//!
//! DATA payloads are handed on as slices of the read buffer (no copy). The socket is read until it has nothing
//! more before any stream is woken, so a stream whose burst came in several reads (interleaved with other
//! streams' frames) is woken once and its body takes all of its frames at once: one write to the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::connection::Shared;
use super::error::H2Error;
use super::frame::{HEADER_LEN, Head, MAX_RECEIVED_FRAME, Reason};

/// Room asked for before each read: a burst of small frames, or one largest frame and its header.
const READ_ROOM: usize = 64 * 1024;

/// Drive the connection until it ends.
pub async fn run<T: AsyncRead + AsyncWrite + Unpin>(io: T, shared: Arc<Shared>) {
    let mut driver = Driver {
        io,
        shared,
        read: BytesMut::new(),
        writing: Vec::new(),
        written: 0,
        wake: Vec::new(),
        closing: false,
        unflushed: false,
    };
    std::future::poll_fn(|cx| driver.poll(cx)).await;
    tracing::debug!("upstream HTTP/2 connection ended");
}

struct Driver<T> {
    io: T,
    shared: Arc<Shared>,
    read: BytesMut,
    /// The frames being written, and how much of them is written.
    writing: Vec<u8>,
    written: usize,
    /// Wakers to wake once the state's lock is released (kept to reuse its allocation).
    wake: Vec<Waker>,
    /// The connection ended on an error this side found; what is queued is written, then the task ends.
    closing: bool,
    /// Bytes were written since the last completed flush.
    unflushed: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut progressed = false;
            if self.written == self.writing.len() {
                self.writing.clear();
                self.written = 0;
                let mut state = self.shared.state.lock();
                std::mem::swap(&mut state.out, &mut self.writing);
                if state.driver.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
                    state.driver = Some(cx.waker().clone());
                }
                let idle = state.streams.is_empty();
                if self.writing.is_empty() && (state.ended.is_some() || (idle && state.abandoned)) {
                    drop(state);
                    self.wake.drain(..).for_each(Waker::wake);
                    return Poll::Ready(());
                }
                if idle && state.going_away.is_some() && self.writing.is_empty() {
                    // Nothing more will be sent on it: close it.
                    state.end(H2Error::Closed, &mut self.wake);
                    drop(state);
                    self.wake.drain(..).for_each(Waker::wake);
                    return Poll::Ready(());
                }
            }
            while self.written < self.writing.len() {
                match Pin::new(&mut self.io).poll_write(cx, &self.writing[self.written..]) {
                    Poll::Ready(Ok(0)) => return self.fail(std::io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return self.fail(e),
                    Poll::Pending => break,
                }
            }
            // Flushed until it says done: TLS holds written bytes in its session until flushed.
            self.unflushed |= progressed;
            if self.unflushed && self.written == self.writing.len() {
                match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(e)) => return self.fail(e),
                    Poll::Pending => {}
                }
            }
            if self.closing {
                // A connection error was found: its GOAWAY goes out, then the connection ends.
                if self.written == self.writing.len() || !progressed {
                    self.wake.drain(..).for_each(Waker::wake);
                    return if self.written == self.writing.len() { Poll::Ready(()) } else { Poll::Pending };
                }
                continue;
            }
            if self.read.capacity() - self.read.len() < READ_ROOM / 2 {
                self.read.reserve(READ_ROOM);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read) {
                Poll::Ready(Ok(0)) => return self.fail_with(H2Error::Closed),
                Poll::Ready(Ok(_)) => {
                    self.closing = !self.frames();
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => {}
            }
            if !progressed {
                // The socket is drained: only now are the streams that got frames woken, each once however many
                // reads brought its frames (a burst interleaved with other streams' spans several reads).
                self.wake.drain(..).for_each(Waker::wake);
                return Poll::Pending;
            }
        }
    }

    /// Apply every complete frame in the read buffer; `false` once the connection is over.
    fn frames(&mut self) -> bool {
        let mut state = self.shared.state.lock();
        while let Some(head) = Head::parse(&self.read) {
            if head.len > MAX_RECEIVED_FRAME {
                frame_too_large(&mut state, &mut self.wake);
                break;
            }
            if self.read.len() < HEADER_LEN + head.len {
                break;
            }
            self.read.advance(HEADER_LEN);
            let payload = self.read.split_to(head.len).freeze();
            let settings = head.kind == super::frame::kind::SETTINGS;
            let open = state.receive(head, payload, &mut self.wake);
            if settings {
                state.publish(&self.shared);
            }
            if !open {
                break;
            }
        }
        state.ended.is_none()
    }

    fn fail(&mut self, e: std::io::Error) -> Poll<()> {
        self.fail_with(H2Error::Io(Arc::new(e)))
    }

    fn fail_with(&mut self, error: H2Error) -> Poll<()> {
        self.shared.state.lock().end(error, &mut self.wake);
        self.wake.drain(..).for_each(Waker::wake);
        Poll::Ready(())
    }
}

fn frame_too_large(state: &mut super::connection::State, wake: &mut Vec<Waker>) {
    super::frame::put_goaway(&mut state.out, 0, Reason::FRAME_SIZE_ERROR);
    state.end(H2Error::Protocol("a frame larger than SETTINGS_MAX_FRAME_SIZE"), wake);
}
