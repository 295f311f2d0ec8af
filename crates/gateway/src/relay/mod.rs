//! The relay engine: one upstream exchange with failover (exchange/, by phase; a conversation that moves to another
//! account leaves its sealed state behind, moves.rs), reading the upstream SSE stream
//! (reader.rs), pumping it through a dialect encoder to the client (pump.rs), and the unary calls that answer
//! JSON rather than a stream (unary.rs: compaction, images). The routes in `server/`
//! decode a request, hand it here, and render what comes back.
//!
//! Its one dependency on `server` is `AppState` (exchange/ reads the config, pool, upstream client and
//! catalog from it).

pub mod exchange;
pub mod moves;
pub mod pump;
pub mod reader;
pub mod unary;
