//! Streaming responses being written now, across the gateway: the pump (relay/pump.rs) holds an [`OpenStream`]
//! per streaming body; the `active_streams` gauge and the dashboard's overview read
//! [`open_streams`]. A relaxed atomic: read once per scrape or page, never a lock.

use std::sync::atomic::{AtomicUsize, Ordering};

static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// Streaming responses being written now (the `active_streams` metric).
pub fn open_streams() -> usize {
    OPEN_STREAMS.load(Ordering::Relaxed)
}

/// Counts one streaming response in [`OPEN_STREAMS`] while it lives.
pub struct OpenStream(());

impl OpenStream {
    pub fn open() -> OpenStream {
        OPEN_STREAMS.fetch_add(1, Ordering::Relaxed);
        OpenStream(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}
