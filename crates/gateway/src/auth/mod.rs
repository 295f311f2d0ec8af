//! Credentials: ChatGPT OAuth tokens (with refresh) and API keys; the Codex CLI's auth.json; JWT claims.

pub mod codex_file;
pub mod jwt;
pub mod login;
pub mod refresh;

/// The OAuth client id of the official Codex CLI (spec/codex-upstream.md).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// The machine-readable code of an OAuth error body (`{"error":{"code":..}}`, `{"error":"invalid_grant"}` or
/// `{"code":..}`), read in one place for the refresh and the login flows; only `refresh::classify` decides on it.
pub(crate) fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error");
    err.and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .or_else(|| err.and_then(|e| e.as_str()))
        .or_else(|| v.get("code").and_then(|c| c.as_str()))
        .map(str::to_string)
}

/// ChatGPT login tokens of one account.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    pub account_id: String,
    /// Unix seconds of the last successful refresh (or import).
    pub last_refresh: i64,
}

impl std::fmt::Debug for Tokens {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("account_id", &self.account_id)
            .field("access_token", &redact(&self.access_token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("last_refresh", &self.last_refresh)
            .finish()
    }
}

/// Show only enough of a secret to tell two apart.
pub fn redact(secret: &str) -> String {
    if secret.len() <= 8 {
        "***".to_string()
    } else {
        format!("{}…({} chars)", secret.chars().take(4).collect::<String>(), secret.len())
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
