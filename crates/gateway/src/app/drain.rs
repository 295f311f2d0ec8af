//! The shutdown's drain: the accept loop (server/listen.rs) begins it, connections and upgraded WebSocket
//! sessions (server/websocket.rs) finish their turn within its bound.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The server's drain (server/listen.rs), shared with what outlives its connection: an upgraded WebSocket
/// session (server/websocket.rs) holds a [`Drain::token`] so the shutdown waits for it, watches [`Drain::draining`] to
/// finish its turn and close, and is dropped at [`Drain::stopped`] like any connection.
#[derive(Clone, Default)]
pub struct Drain {
    /// Cancelled when the shutdown begins: connections finish their response and close.
    pub(crate) draining: CancellationToken,
    /// Cancelled when the shutdown's bound passes: whatever is still open is dropped.
    pub(crate) stop: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Drain {
    /// Begin the shutdown: connections finish their response and close, sessions their turn.
    pub fn begin(&self) {
        self.draining.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Resolves when the shutdown begins.
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves when the shutdown's bound passes.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Held by a task the shutdown must wait for (within its bound).
    pub fn token(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.tracker.token()
    }
}
