//! Ollama (`/api/chat`, `/api/generate` and the model listing routes), as spec/dialects.md §4 describes it.
//!
//! - [`request`]: chat and generate request types and `decode_chat` / `decode_generate` (-> [`Decoded`]).
//! - [`encode`]: [`OllamaEncoder`], a pure state machine from upstream [`crate::Event`]s to NDJSON lines, the
//!   non-streaming answer, `done_reason`, and the `{"error":"..."}` body.
//! - [`catalog`]: the `/api/tags`, `/api/show` and `/api/ps` entries built from the gateway's model catalog.
//!
//! Ollama model names carry a tag (`gpt-5.4:latest`); [`model_name`] strips `:latest` before the name is resolved
//! like any other Codex model id.

mod catalog;
mod encode;
mod request;
#[cfg(test)]
mod tests;

pub use catalog::{VERSION, model_details, ps_entry, rfc3339, show_response, tag_entry};
pub use encode::{Endpoint, OllamaEncoder, done_reason, error_body, image_note, render_chat, render_generate};
pub use request::{ChatRequest, Decoded, GenerateRequest, OllamaOptions, decode_chat, decode_generate};

/// The Codex model id for an Ollama model name: `:latest` is dropped, other tags are kept (and will not resolve).
pub fn model_name(name: &str) -> &str {
    let name = name.trim();
    name.strip_suffix(":latest").unwrap_or(name)
}
