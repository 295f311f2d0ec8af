//! Pure translation between client API dialects and the OpenAI Responses API spoken by the Codex backend.
//!
//! Every dialect module has the same four parts: request types, `decode` (client body -> [`UpstreamRequest`]),
//! a streaming encoder (upstream [`Event`]s -> client frames) and a non-streaming renderer built on
//! [`assemble::Collected`]. Nothing here does I/O: the gateway crate drives these state machines.

pub mod anthropic;
pub mod assemble;
pub mod chat;
pub mod encoder;
pub mod error;
pub mod failure;
pub mod gemini;
pub mod images;
pub mod json;
pub mod limits;
pub mod models;
pub mod ollama;
pub mod outcome;
pub mod reasoning_ref;
pub mod responses;
pub mod sse;
pub mod upstream_request;

#[cfg(test)]
mod answer_tests;

pub use error::{ErrorKind, GatewayError};
pub use failure::UpstreamFailure;
pub use responses::event::{DoneItem, Event, ItemStart, Terminal, Usage};
pub use upstream_request::{OutputLimits, UpstreamRequest};
