//! The OAuth refresh call: `POST {issuer}/oauth/token` with the single-use refresh token.
//!
//! Callers must hold the account's refresh lock and commit the returned tokens before using them: the old
//! refresh token is dead the moment the issuer answers. For the same reason a failed commit must not drop them
//! (`Pool::commit_tokens` keeps them in memory, flags the account and retries).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{CLIENT_ID, Tokens, jwt, now_unix};

/// Why a refresh failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// The login is gone (reused, expired or revoked refresh token): the user must log in again.
    #[error("the login is no longer valid ({0}); log in again")]
    Permanent(String),
    /// Network trouble or a server error: the refresh token is probably still good.
    #[error("token refresh failed temporarily: {0}")]
    Transient(String),
    /// No answer within the limit: transient too (the login stays), but the client hears it was a timeout.
    #[error("the token endpoint did not answer within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// The bound of a refresh when the caller sets none (the gateway passes `token_refresh_timeout_secs`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Exchange `current.refresh_token` for new tokens. Fields the issuer omits keep their old values.
pub async fn refresh(http: &reqwest::Client, issuer: &str, current: &Tokens) -> Result<Tokens, RefreshError> {
    refresh_within(http, issuer, current, DEFAULT_TIMEOUT).await
}

/// [`refresh`] bounded by `limit`, from the first byte sent to the last one read. Callers hold the account's
/// refresh lock meanwhile, so a call that never ends would wedge the account.
pub async fn refresh_within(
    http: &reqwest::Client,
    issuer: &str,
    current: &Tokens,
    limit: Duration,
) -> Result<Tokens, RefreshError> {
    match tokio::time::timeout(limit, call(http, issuer, current)).await {
        Ok(result) => result,
        Err(_) => Err(RefreshError::TimedOut(limit)),
    }
}

async fn call(http: &reqwest::Client, issuer: &str, current: &Tokens) -> Result<Tokens, RefreshError> {
    let url = format!("{issuer}/oauth/token");
    let body = json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": current.refresh_token});
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| RefreshError::Transient(format!("cannot reach the token endpoint: {}", e.without_url())))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| RefreshError::Transient(e.without_url().to_string()))?;
    if status.is_success() {
        let t: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| RefreshError::Transient("the token endpoint returned an unreadable answer".into()))?;
        let id_token = t.id_token.unwrap_or_else(|| current.id_token.clone());
        let account_id =
            jwt::claims(&id_token).and_then(|c| c.account_id).unwrap_or_else(|| current.account_id.clone());
        return Ok(Tokens {
            id_token,
            access_token: t.access_token.unwrap_or_else(|| current.access_token.clone()),
            refresh_token: t.refresh_token.unwrap_or_else(|| current.refresh_token.clone()),
            account_id,
            last_refresh: now_unix(),
        });
    }
    let code = error_code(&bytes);
    let permanent = status == reqwest::StatusCode::UNAUTHORIZED
        || matches!(
            code.as_deref(),
            Some("refresh_token_expired" | "refresh_token_reused" | "refresh_token_invalidated" | "invalid_grant")
        );
    let reason = code.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    if permanent { Err(RefreshError::Permanent(reason)) } else { Err(RefreshError::Transient(reason)) }
}

/// `{"error":{"code":..}}`, `{"error":"invalid_grant"}` or `{"code":..}`.
fn error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error");
    err.and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .or_else(|| err.and_then(|e| e.as_str()))
        .or_else(|| v.get("code").and_then(|c| c.as_str()))
        .map(str::to_string)
}

/// Refresh ahead of use: the access token expires within 5 minutes, or (no `exp`) the last refresh is over
/// 8 days old (spec/codex-upstream.md).
pub fn needs_refresh(tokens: &Tokens, now: i64) -> bool {
    due(tokens, jwt::claims(&tokens.access_token).and_then(|c| c.exp), now)
}

/// [`needs_refresh`] with the access token's `exp` already decoded.
pub fn due(tokens: &Tokens, access_exp: Option<i64>, now: i64) -> bool {
    if tokens.refresh_token.is_empty() {
        return false;
    }
    match access_exp {
        Some(exp) => exp - now < 300,
        None => now - tokens.last_refresh > 8 * 86400,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn tokens_with_exp(exp: Option<i64>, last_refresh: i64) -> Tokens {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = match exp {
            Some(x) => format!(r#"{{"exp":{x}}}"#),
            None => "{}".to_string(),
        };
        Tokens {
            id_token: String::new(),
            access_token: format!("{}.{}.s", e.encode("{}"), e.encode(payload)),
            refresh_token: "r".into(),
            account_id: "a".into(),
            last_refresh,
        }
    }

    #[test]
    fn creds_decode_the_expiry_when_tokens_are_set() {
        let now = 1_700_000_000;
        let mut c = crate::accounts::Creds::new(Some(tokens_with_exp(Some(now + 3600), now)), None);
        assert_eq!(c.access_token(now).map(|(_, due)| due), Some(false));
        assert_eq!(c.access_token(now + 3500).map(|(_, due)| due), Some(true));
        c.set_tokens(tokens_with_exp(Some(now + 60), now));
        assert_eq!(c.access_token(now).map(|(_, due)| due), Some(true));
        assert!(crate::accounts::Creds::new(None, Some("k".into())).access_token(now).is_none());
    }

    /// The prebuilt `Authorization` value follows the tokens and is withheld once a refresh is due.
    #[test]
    fn creds_keep_a_bearer_value_for_the_current_token() {
        let now = 1_700_000_000;
        let first = tokens_with_exp(Some(now + 3600), now);
        let mut c = crate::accounts::Creds::new(Some(first.clone()), None);
        let value = c.fresh_bearer(now).unwrap_or_else(|| panic!("no bearer value"));
        assert_eq!(value.to_str().ok(), Some(format!("Bearer {}", first.access_token).as_str()));
        assert!(value.is_sensitive());
        assert!(c.fresh_bearer(now + 3500).is_none(), "a token due for refresh is not handed out");
        let mut second = tokens_with_exp(Some(now + 7200), now + 1);
        second.access_token.push('2');
        c.set_tokens(second.clone());
        let value = c.fresh_bearer(now).and_then(|v| v.to_str().ok().map(str::to_string));
        assert_eq!(value, Some(format!("Bearer {}", second.access_token)));
        assert!(crate::accounts::Creds::new(None, Some("k".into())).fresh_bearer(now).is_none());
    }

    #[test]
    fn refresh_policy() {
        let now = 1_000_000;
        assert!(needs_refresh(&tokens_with_exp(Some(now + 100), now), now));
        assert!(!needs_refresh(&tokens_with_exp(Some(now + 3600), now), now));
        assert!(needs_refresh(&tokens_with_exp(None, now - 9 * 86400), now));
        assert!(!needs_refresh(&tokens_with_exp(None, now - 86400), now));
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            error_code(br#"{"error":{"code":"refresh_token_reused"}}"#).as_deref(),
            Some("refresh_token_reused")
        );
        assert_eq!(error_code(br#"{"error":"invalid_grant"}"#).as_deref(), Some("invalid_grant"));
        assert_eq!(error_code(b"<html>"), None);
    }
}
