//! One HTTP/2 connection to the upstream on the h2 crate: the settings it is made with (the official client's,
//! which is reqwest 0.12 over hyper 1 over h2), the handshake up to the server's SETTINGS, and the task that
//! drives the connection, tells the pool when the server's SETTINGS came and closes it once idle.
//!
//! The pool (`mod.rs`) holds the [`SendRequest`] and counts streams in [`Shared`]; the driver owns the socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use tokio::io::{AsyncRead, AsyncWrite};

// The official client's HTTP/2 settings: reqwest 0.12 sets none of its own, so hyper 1's client defaults apply
// (hyper `proto/h2/client.rs`). They are what the server sees in the connection preface (SETTINGS and the first
// WINDOW_UPDATE), so they stay exactly these values (the test `the_preface_is_the_official_clients` compares the
// preface with reqwest's).
/// Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): hyper's 2 MB.
pub(super) const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Connection receive window: hyper's 5 MB.
pub(super) const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// SETTINGS_MAX_FRAME_SIZE: hyper's 16 KB (the protocol's smallest).
const MAX_FRAME_SIZE: u32 = 16 * 1024;
/// SETTINGS_MAX_HEADER_LIST_SIZE: hyper's 16 KB.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Request body bytes h2 buffers per stream before it stops asking for capacity: hyper's 1 MB.
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Streams h2 may reset for the server's protocol errors before it closes the connection: hyper's 1,024.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

// Local limits, invisible on the wire:
/// Streams this side reset that h2 remembers (for 1 s) so frames still arriving for them are ignored. h2's
/// default, 50, is too few when many clients leave at once: a frame for a forgotten stream is answered with a
/// reset of h2's own, and 1,024 of those close the connection with every stream on it (docs/performance.md, "HTTP/2 upstream settings").
const RESET_STREAMS_REMEMBERED: usize = 4096;
/// h2's budget for the framing overhead of received DATA frames not read yet (each frame under 256 bytes costs
/// 256 minus its length). Its default, half the connection window, ends the connection ("too_many_data_frames",
/// GOAWAY `ENHANCE_YOUR_CALM`) while the flow-control window still has room: 2.5 MB of budget is 24,000 unread
/// 150-byte SSE events, 3.6 MB, under the 5 MB window. Four windows let flow control bind first for any frame of
/// 52 bytes or more (an SSE event is longer), and still bound what a server flooding 1-byte frames could make
/// h2 hold (docs/performance.md, "HTTP/2 upstream settings").
const DATA_FRAME_BUDGET: usize = 4 * CONNECTION_WINDOW as usize;
/// How many times within the idle time the driver looks at whether its connection is idle (every 30 s for the
/// pool's 90 s): a connection is closed after 2 to 3 thirds of it without a stream.
const IDLE_CHECKS: u32 = 3;

/// The builder every upstream connection is made with.
fn builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        // No stream opens before the server's SETTINGS: until they come h2 holds requests back, and the pool
        // sees a limit of 0 (`Shared::settled`). A burst on a new connection would otherwise take the limit as
        // unlimited and be refused (REFUSED_STREAM) past the server's real one.
        .initial_max_send_streams(0)
        .max_concurrent_reset_streams(RESET_STREAMS_REMEMBERED)
        .data_frame_budget(DATA_FRAME_BUDGET);
    builder
}

/// What the pool and the driver share about one connection.
pub(super) struct Shared {
    /// Streams in use, counted by the pool's slots.
    pub(super) open: AtomicUsize,
    /// A stream was taken since the driver's last idle check.
    pub(super) used: AtomicBool,
    /// Set by the driver once the server's SETTINGS came, or the connection ended.
    settled: tokio::sync::watch::Sender<Settled>,
}

/// Whether the server's SETTINGS came.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settled {
    Waiting,
    Yes,
    /// The connection ended first.
    Ended,
}

impl Shared {
    /// Wait until the server's SETTINGS came (true) or the connection ended (false).
    pub(super) async fn settled(&self) -> bool {
        let mut watch = self.settled.subscribe();
        let settled = watch.wait_for(|s| *s != Settled::Waiting).await.map(|s| *s);
        matches!(settled, Ok(Settled::Yes))
    }
}

/// Why the driver lets go of its connection, for the pool.
pub(super) enum End {
    /// Idle for the pool's idle time: the pool drops its handle, and h2 closes the connection (GOAWAY) once no
    /// stream is left.
    Idle,
    /// The connection ended (closed by either side, or failed).
    Closed,
}

/// Start a connection on `io`: the preface and SETTINGS are written, the connection runs on a task of its own,
/// and `on_end` is told when it went idle or ended.
pub(super) async fn handshake<T>(
    io: T,
    idle_after: Duration,
    on_end: impl Fn(End) + Send + 'static,
) -> Result<(SendRequest<Bytes>, Arc<Shared>), h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = builder().handshake::<T, Bytes>(io).await?;
    let shared = Arc::new(Shared {
        open: AtomicUsize::new(0),
        used: AtomicBool::new(false),
        settled: tokio::sync::watch::Sender::new(Settled::Waiting),
    });
    let check = (idle_after / IDLE_CHECKS).max(Duration::from_millis(1));
    let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + check, check);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let driver = Driver {
        connection,
        shared: shared.clone(),
        settled: false,
        idle,
        idle_ticks: 0,
        ticks_to_close: IDLE_CHECKS,
        on_end: Box::new(on_end),
    };
    tokio::spawn(driver);
    Ok((send, shared))
}

/// The task that drives one connection.
struct Driver<T: AsyncRead + AsyncWrite + Unpin> {
    connection: Connection<T, Bytes>,
    shared: Arc<Shared>,
    /// The server's SETTINGS came (then the driver stops asking h2 for them).
    settled: bool,
    idle: tokio::time::Interval,
    /// Idle checks in a row that found no stream open and none taken.
    idle_ticks: u32,
    /// Idle checks in a row after which the connection is let go.
    ticks_to_close: u32,
    on_end: Box<dyn Fn(End) + Send>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Driver<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let done = Pin::new(&mut this.connection).poll(cx);
        if !this.settled && this.connection.max_concurrent_send_streams() > 0 {
            // Asked only until the server's SETTINGS came: h2 reports 0 before them (`initial_max_send_streams`).
            this.settled = true;
            this.shared.settled.send_replace(Settled::Yes);
        }
        if let Poll::Ready(result) = done {
            if let Err(e) = result {
                tracing::debug!("the upstream HTTP/2 connection ended: {e}");
            }
            (this.on_end)(End::Closed);
            return Poll::Ready(());
        }
        while this.idle.poll_tick(cx).is_ready() {
            let used = this.shared.used.swap(false, Ordering::Relaxed);
            if used || this.shared.open.load(Ordering::Relaxed) > 0 {
                this.idle_ticks = 0;
            } else {
                this.idle_ticks += 1;
                if this.idle_ticks == this.ticks_to_close {
                    (this.on_end)(End::Idle);
                }
            }
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drop for Driver<T> {
    fn drop(&mut self) {
        // Waiters for SETTINGS learn that the connection ended without them.
        self.shared.settled.send_replace(Settled::Ended);
    }
}
