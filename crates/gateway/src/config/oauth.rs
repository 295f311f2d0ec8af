//! Resolved `[oauth]`: the gateway's OAuth authorization server for the Codex CLI's gateway sign-in (oauth/,
//! docs/dashboard.md "The Codex CLI's sign-in").

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[oauth]` in the file.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub client_id: Option<String>,
    pub access_token_secs: Option<u64>,
    pub refresh_token_days: Option<u64>,
    pub header: Option<String>,
    pub redirect_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    /// The one public client (no secret: the CLI cannot keep one) the endpoints accept (default `codex-cli`).
    pub client_id: String,
    /// An access token's life (default 1 h); the CLI refreshes it when under 30 s remain.
    pub access_token: Duration,
    /// A refresh token's life (default 30 days); each use rotates it.
    pub refresh_token: Duration,
    /// The request header the CLI sends its token in, lower case (default `x-gateway-token`, as `Bearer <token>`).
    pub header: String,
    /// The loopback port `connect codex` writes as the CLI's `redirect_port` (default 1457).
    pub redirect_port: u16,
}

impl OAuthConfig {
    pub(super) fn resolve(raw: Option<RawOAuth>) -> anyhow::Result<OAuthConfig> {
        let raw = raw.unwrap_or_default();
        let client_id = raw.client_id.unwrap_or_else(|| "codex-cli".into());
        if client_id.is_empty() || client_id.len() > 100 || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("[oauth] client_id must be 1 to 100 printable characters without spaces");
        }
        let access = raw.access_token_secs.unwrap_or(3600);
        if !(5..=86_400).contains(&access) {
            bail!("[oauth] access_token_secs = {access} must be between 5 and 86400");
        }
        let days = raw.refresh_token_days.unwrap_or(30);
        if !(1..=366).contains(&days) {
            bail!("[oauth] refresh_token_days = {days} must be between 1 and 366");
        }
        let header = raw.header.unwrap_or_else(|| "x-gateway-token".into()).to_ascii_lowercase();
        // The names the Codex CLI refuses for its gateway token (and a header name at all).
        let reserved = header == "authorization" || header.starts_with("x-codex-") || header.starts_with("x-openai-");
        if reserved || axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            bail!(
                "[oauth] header = {header:?} must be a valid header name other than authorization, x-codex-* and x-openai-*"
            );
        }
        let redirect_port = raw.redirect_port.unwrap_or(1457);
        if redirect_port == 0 {
            bail!("[oauth] redirect_port must not be 0");
        }
        let (access_token, refresh_token) = (Duration::from_secs(access), Duration::from_secs(days * 86_400));
        Ok(OAuthConfig { client_id, access_token, refresh_token, header, redirect_port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() -> anyhow::Result<()> {
        let c = OAuthConfig::resolve(None)?;
        assert_eq!(
            (c.client_id.as_str(), c.access_token.as_secs(), c.header.as_str()),
            ("codex-cli", 3600, "x-gateway-token")
        );
        for header in ["Authorization", "x-codex-token", "X-OpenAI-Key", "bad header"] {
            let raw = RawOAuth { header: Some(header.into()), ..RawOAuth::default() };
            assert!(OAuthConfig::resolve(Some(raw)).is_err(), "{header}");
        }
        assert!(OAuthConfig::resolve(Some(RawOAuth { access_token_secs: Some(1), ..RawOAuth::default() })).is_err());
        Ok(())
    }
}
