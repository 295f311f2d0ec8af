//! The provider as the gateway talks to it: its discovery document, its key set (kept, fetched again when a token
//! names a key it lacks), the token endpoint and the userinfo endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::SsoError;
use crate::config::OidcConfig;

/// How long a discovery document is kept before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The key set is fetched again for an unknown key at most this often (bounds what a provider in a bad state costs).
pub const JWKS_REFETCH: Duration = Duration::from_secs(2);
/// One call to the provider, connect to last byte.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of a provider's answer read.
const MAX_ANSWER: usize = 1 << 20;

/// The discovery document's fields the sign-in uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: Option<String>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

#[derive(Default)]
struct Cache {
    discovery: Option<(Arc<Discovery>, Instant)>,
    keys: Option<(Arc<Vec<Jwk>>, Instant)>,
}

/// What the token endpoint answered.
pub struct Tokens {
    pub id_token: String,
    pub access_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens")
    }
}

/// The provider of `[dashboard.oidc]`.
pub struct Provider {
    pub config: OidcConfig,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
    None,
}

impl Provider {
    pub fn new(config: OidcConfig, http: reqwest::Client) -> Provider {
        Provider { config, http, cache: tokio::sync::Mutex::new(Cache::default()) }
    }

    async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, SsoError> {
        let mut req = self.http.get(url).header("accept", "application/json").timeout(CALL_TIMEOUT);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.map_err(|e| SsoError::Unreachable(e.without_url().to_string()))?;
        read_json(resp).await
    }

    /// The discovery document, kept for [`DISCOVERY_TTL`]; its `issuer` must be the configured one.
    pub async fn discovery(&self) -> Result<Arc<Discovery>, SsoError> {
        let mut cache = self.cache.lock().await;
        if let Some((d, at)) = &cache.discovery
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let doc = self.get_json(&url, None).await?;
        let d: Discovery =
            serde_json::from_value(doc).map_err(|e| SsoError::Provider(format!("a bad discovery document: {e}")))?;
        if d.issuer != self.config.issuer {
            return Err(SsoError::IssuerMismatch);
        }
        if d.code_challenge_methods_supported.as_ref().is_some_and(|m| !m.iter().any(|m| m == "S256")) {
            return Err(SsoError::Provider("the provider does not offer PKCE with S256".into()));
        }
        let d = Arc::new(d);
        cache.discovery = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    /// The provider's signing keys; fetched again when `refresh` and the last fetch is old enough.
    pub async fn keys(&self, refresh: bool) -> Result<Arc<Vec<Jwk>>, SsoError> {
        let d = self.discovery().await?;
        let mut cache = self.cache.lock().await;
        if let Some((k, at)) = &cache.keys
            && (!refresh || at.elapsed() < JWKS_REFETCH)
        {
            return Ok(k.clone());
        }
        let set = self.get_json(&d.jwks_uri, None).await?;
        let keys = Arc::new(super::id_token::signing_keys(&set));
        cache.keys = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    fn client_auth(&self, d: &Discovery) -> ClientAuth {
        if self.config.client_secret.is_none() {
            return ClientAuth::None;
        }
        // Absent, the list means client_secret_basic alone (Discovery 1.0, section 3).
        match &d.token_endpoint_auth_methods_supported {
            Some(m) if !m.iter().any(|m| m == "client_secret_basic") && m.iter().any(|m| m == "client_secret_post") => {
                ClientAuth::Post
            }
            _ => ClientAuth::Basic,
        }
    }

    /// Exchange the authorization code (RFC 6749 section 4.1.3, with the RFC 7636 verifier).
    pub async fn exchange(&self, code: &str, verifier: &str, redirect_uri: &str) -> Result<Tokens, SsoError> {
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let secret = self.config.client_secret.as_deref().unwrap_or_default();
        let auth = self.client_auth(&d);
        match auth {
            ClientAuth::Basic => {}
            ClientAuth::Post => form.extend([("client_id", self.config.client_id.as_str()), ("client_secret", secret)]),
            ClientAuth::None => form.push(("client_id", self.config.client_id.as_str())),
        }
        let mut req = self.http.post(&d.token_endpoint).form(&form).timeout(CALL_TIMEOUT);
        if auth == ClientAuth::Basic {
            // RFC 6749 section 2.3.1: the id and secret are form-encoded before they go into the Basic header.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&self.config.client_id), Some(enc(secret)));
        }
        let resp = req.send().await.map_err(|e| SsoError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let body = read_json(resp).await;
        if !status.is_success() {
            // The provider's error code (RFC 6749 section 5.2) says why; its description may echo input, so only
            // the code is kept.
            let code = body.ok().and_then(|b| b.get("error").and_then(Value::as_str).map(short)).unwrap_or_default();
            return Err(SsoError::TokenExchange(format!("HTTP {} {code}", status.as_u16())));
        }
        let body = body?;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let id_token = text("id_token").ok_or_else(|| SsoError::TokenExchange("the answer has no id_token".into()))?;
        Ok(Tokens { id_token, access_token: text("access_token") })
    }

    /// The userinfo answer for `access_token`, when the provider has the endpoint; its `sub` must be `subject`
    /// (Core 1.0, section 5.3.2).
    pub async fn userinfo(&self, access_token: &str, subject: &str) -> Result<Option<Map<String, Value>>, SsoError> {
        let d = self.discovery().await?;
        let Some(url) = &d.userinfo_endpoint else { return Ok(None) };
        let Value::Object(info) = self.get_json(url, Some(access_token)).await? else {
            return Err(SsoError::Provider("the userinfo answer is not a JSON object".into()));
        };
        if info.get("sub").and_then(Value::as_str) != Some(subject) {
            return Err(SsoError::Provider("the userinfo answer is about another user".into()));
        }
        Ok(Some(info))
    }
}

/// A provider's error code, cut short and kept to the characters RFC 6749 allows in it.
pub(super) fn short(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).take(64).collect()
}

async fn read_json(resp: reqwest::Response) -> Result<Value, SsoError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| SsoError::Unreachable(e.without_url().to_string()))?;
    if bytes.len() > MAX_ANSWER {
        return Err(SsoError::Provider("the provider's answer is too large".into()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| SsoError::Provider(format!("the provider answered HTTP {} without JSON", status.as_u16())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(methods: Option<&[&str]>) -> Discovery {
        Discovery {
            issuer: "https://idp".into(),
            authorization_endpoint: "https://idp/auth".into(),
            token_endpoint: "https://idp/token".into(),
            jwks_uri: "https://idp/jwks".into(),
            userinfo_endpoint: None,
            token_endpoint_auth_methods_supported: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            code_challenge_methods_supported: None,
        }
    }

    #[test]
    fn the_client_authenticates_as_the_provider_allows() {
        let raw: crate::config::RawConfig =
            toml::from_str("[dashboard.oidc]\nissuer = \"https://idp\"\nclient_id = \"gw\"\nclient_secret = \"s\"")
                .unwrap_or_else(|e| panic!("{e}"));
        let env = std::collections::HashMap::<String, String>::new();
        let config = crate::config::Config::resolve(raw, &crate::config::Overrides::default(), &env)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut oidc = config.dashboard.oidc.unwrap_or_else(|| panic!("no oidc"));
        let p = Provider::new(oidc.clone(), reqwest::Client::new());
        assert_eq!(p.client_auth(&discovery(None)), ClientAuth::Basic);
        assert_eq!(p.client_auth(&discovery(Some(&["client_secret_post", "private_key_jwt"]))), ClientAuth::Post);
        assert_eq!(p.client_auth(&discovery(Some(&["client_secret_post", "client_secret_basic"]))), ClientAuth::Basic);
        oidc.client_secret = None;
        let p = Provider::new(oidc, reqwest::Client::new());
        assert_eq!(p.client_auth(&discovery(None)), ClientAuth::None);
    }
}
