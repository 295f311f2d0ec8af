//! Connections the listener did not accept at once (server/listen/refusals.rs counts each time its loop waits: for
//! a connection slot, or after a failed `accept`, retried every 100 ms): the `accepts_refused` counter and
//! `accepts_refused` in `/admin/status` read [`refusals`]. Relaxed atomics, as streams.rs: written only while the
//! listener waits, read once per scrape.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why an `accept` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// As many connections open as the open files limit allows streams (descriptors.rs): the listener waits for
    /// one to close, new ones wait in the kernel's backlog.
    Limit,
    /// Out of file descriptors all the same, the process's (EMFILE) or the system's (ENFILE): docs/operations.md, "Open files".
    Descriptors,
    /// Anything else that is not one connection's own failure (out of memory or socket buffers).
    Other,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Limit => "limit",
            Cause::Descriptors => "descriptors",
            Cause::Other => "other",
        }
    }
}

static LIMIT: AtomicU64 = AtomicU64::new(0);
static DESCRIPTORS: AtomicU64 = AtomicU64::new(0);
static OTHER: AtomicU64 = AtomicU64::new(0);

/// Count one wait of the listener.
pub fn refused(cause: Cause) {
    let counter = match cause {
        Cause::Limit => &LIMIT,
        Cause::Descriptors => &DESCRIPTORS,
        Cause::Other => &OTHER,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The listener's waits since start, by cause.
pub fn refusals() -> [(Cause, u64); 3] {
    [(Cause::Limit, &LIMIT), (Cause::Descriptors, &DESCRIPTORS), (Cause::Other, &OTHER)]
        .map(|(cause, n)| (cause, n.load(Ordering::Relaxed)))
}
