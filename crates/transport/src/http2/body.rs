//! A response body on an h2 stream: DATA payloads as they came (one event each from the real backend), the
//! window given back a burst at a time, and a clean end. A body dropped once its answer was complete (the
//! terminal event was read: [`crate::Body::answered`]) is read on to its END_STREAM for up to
//! [`DRAIN`] on a task of its own; only one dropped before that (the client left, a deadline passed), or still
//! open after it, is reset (RST_STREAM CANCEL), and each such reset is counted ([`resets_sent`]). Servers'
//! rapid-reset protections count resets, so a gateway that cancelled every stream it had its answer from looked
//! like an attack (issue 58: 58 of 201 streams against hypercorn).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;

use super::Slot;
use crate::{Body as UpstreamBody, TransportError};

/// How long a complete answer's stream is read on for its END_STREAM before it is reset.
pub(super) const DRAIN: Duration = Duration::from_secs(2);

/// RST_STREAM frames this process sent to HTTP/2 upstreams (relaxed: a statistic).
static RESETS_SENT: AtomicU64 = AtomicU64::new(0);

/// Streams the gateway reset toward its HTTP/2 upstreams since start: a client that left, a deadline that passed,
/// an answer whose END_STREAM did not come within [`DRAIN`] of its last event. Shown in `/admin/status` and as the
/// `upstream_http2_resets_sent` metric.
pub fn resets_sent() -> u64 {
    RESETS_SENT.load(Ordering::Relaxed)
}

/// Dropping `stream` resets it when it is still open: count that.
fn count_reset_if_open(stream: &RecvStream) {
    if !stream.is_end_stream() {
        RESETS_SENT.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request whose response head is awaited: dropped before it came (the caller's deadline, a client that left),
/// h2 resets the stream; counted here.
pub(super) struct Pending;

impl Pending {
    /// The response head came, or the stream failed: nothing to reset.
    pub(super) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        RESETS_SENT.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) struct Body {
    /// `None` once ended (or handed to the drain task).
    stream: Option<RecvStream>,
    /// The terminal event was read: on drop, read on to END_STREAM instead of resetting.
    answered: bool,
    /// Held while the stream is open (the pool's count of open streams on the connection).
    slot: Option<Slot>,
}

impl Body {
    pub(super) fn new(stream: RecvStream, slot: Slot) -> Body {
        Body { stream: Some(stream), answered: false, slot: Some(slot) }
    }

    fn ended(&mut self) {
        self.stream = None;
        self.slot = None;
    }
}

impl futures_util::Stream for Body {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(stream) = &mut this.stream else { return Poll::Ready(None) };
        match stream.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                // Each frame's window is given back as it is handed on; h2 sends WINDOW_UPDATE only once half a
                // window is owed. An error means the stream is gone: h2 gives a closed stream's window back itself.
                let _ = stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(data)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended();
                Poll::Ready(Some(Err(TransportError::of(e))))
            }
            Poll::Ready(None) => {
                this.ended();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl UpstreamBody for Body {
    fn answered(self: Pin<&mut Self>) {
        self.get_mut().answered = true;
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else { return };
        if stream.is_end_stream() {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if self.answered => {
                runtime.spawn(drain(stream, self.slot.take()));
            }
            _ => count_reset_if_open(&stream),
        }
    }
}

/// Read a complete answer's stream on to its END_STREAM (bounded by [`DRAIN`]), giving the window back; reset it
/// only if it is still open then.
async fn drain(mut stream: RecvStream, slot: Option<Slot>) {
    let read = async {
        while let Some(Ok(data)) = stream.data().await {
            let _ = stream.flow_control().release_capacity(data.len());
        }
    };
    let _ = tokio::time::timeout(DRAIN, read).await;
    count_reset_if_open(&stream);
    drop(stream);
    drop(slot);
}
