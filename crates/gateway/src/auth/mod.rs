//! Credentials: ChatGPT OAuth tokens (with refresh) and API keys; the Codex CLI's auth.json; JWT claims.

pub mod codex_file;
pub mod jwt;
pub mod login;
pub mod refresh;
pub mod side;

pub use crate::store::{Tokens, redact};

/// The OAuth client id of the official Codex CLI (spec/codex-upstream.md).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// The code of an OAuth error body (`{"error":{"code":..}}`, `{"error":"invalid_grant"}` or `{"code":..}`).
pub(crate) fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error");
    err.and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .or_else(|| err.and_then(|e| e.as_str()))
        .or_else(|| v.get("code").and_then(|c| c.as_str()))
        .map(str::to_string)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
