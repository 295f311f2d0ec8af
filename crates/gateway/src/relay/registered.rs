//! The contract between a streaming response body and the connection that writes it, for the one thing
//! `http_body::Body` cannot say: "this chunk came with my next wake-up already registered".
//!
//! The body's side (the pump, `pump.rs`): it may call [`promise`] while it makes a chunk only when, in that same
//! poll, it polled its source to pending with the task's own waker and armed its timer (`reader::Ready::Waiting`),
//! so the task will be woken when there is more, exactly as if the body had returned pending.
//!
//! The connection's side (server/http1/write.rs): it calls [`take`] right before polling the body (clearing a
//! promise any other body polled on this thread left) and again after a chunk came; `true` lets it treat the body
//! as pending, write, and wait for the wake-up instead of polling the body once more. Polling it anyway is always
//! correct, only slower: a connection that never calls [`take`] (hyper's, for an upgraded or fallback
//! connection) loses nothing. Why it pays: docs/performance.md, "Registered chunks".
//!
//! A per-thread flag, because the body reaches the connection boxed inside axum's `Body`: both sides run in one
//! poll on one thread, and nothing can come between the promise and its reading.

use std::cell::Cell;

thread_local! {
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The body's promise: the chunk it is about to hand over came with its next wake-up registered.
pub(crate) fn promise() {
    REGISTERED.set(true);
}

/// The connection's reading: whether the body polled last on this thread made the promise; clears it.
pub fn take() -> bool {
    REGISTERED.replace(false)
}
