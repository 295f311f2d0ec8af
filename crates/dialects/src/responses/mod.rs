//! OpenAI Responses: the backend's own protocol. Clients that speak it (Codex CLI, the AI SDK, LiteLLM) get a
//! passthrough: the request is normalised into what the backend accepts, the events go back unchanged.

pub mod event;
mod ignored;
mod passthrough;
mod stream;

pub use passthrough::{
    Chain, ResponsesAssembler, decode, drop_reasoning_context, has_reasoning_context, normalize_items,
    stream_error_frame,
};
pub use stream::Passthrough;
