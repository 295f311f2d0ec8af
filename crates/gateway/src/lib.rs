//! codex-gateway: serve the ChatGPT Codex backend to OpenAI, Anthropic, Gemini and Ollama clients.
//!
//! Request path (docs/architecture.md): server (routes, auth, limits) -> dialect decode (crate `dialects`) ->
//! catalog check -> account pool -> upstream client -> event reader -> dialect encoder -> client.

/// `println!` for what a command prints: a reader that has gone away ends the command quietly (cli/output.rs).
macro_rules! say {
    () => {
        $crate::cli::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod descriptors;
pub mod hosts;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod record;
pub mod relay;
pub mod server;
pub mod store;
pub mod stored_responses;
pub mod tokens;
pub mod upstream;
pub mod usage;
pub mod users;
