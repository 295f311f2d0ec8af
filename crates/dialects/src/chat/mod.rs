//! OpenAI Chat Completions: request decoding and response encoding.

mod encode;
mod request;

pub use encode::{ChatEncoder, finish_reason, render_completion, usage_json};
pub use request::{ChatOptions, ChatRequest, decode, translate};

#[cfg(test)]
mod tests;
