//! What exactly goes upstream for a model call, in one place and without I/O: the dialect-neutral request every
//! decoder produces and its finalisation (`request.rs`), the shape of a turn for its model (`shape.rs`: the
//! verbosity and effort the model takes, the Responses Lite shape of `lite.rs` for a model the catalog flags so,
//! the thread id of `thread.rs`), the one list of the body's members the gateway knows (`members.rs`), the body's
//! bytes in the official client's member order (`order.rs`), and the digests (`digest.rs`) and plan that chain a
//! conversation's turns on one upstream WebSocket (`chain.rs`). The gateway reads the catalog and the caller's
//! headers and hands in what they say; the transport sends the bytes and keeps each connection's lineage, asking
//! [`chain::ChainRequest::turn`] how each turn goes.

pub mod chain;
mod digest;
pub mod lite;
pub mod members;
pub mod order;
mod request;
mod shape;
pub mod thread;

pub use request::{OutputLimits, UpstreamRequest, developer_message, stable_prefix_key};
pub use shape::{ModelFacts, Shaped, Written, is_warm_up, shape, write};
pub use thread::{account_thread_id, thread_id_for};
