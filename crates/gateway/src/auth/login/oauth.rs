//! What every login flow shares with the issuer: PKCE S256, the `state`, the authorize URL, reading the
//! authorization code from a callback, and the code exchange that turns it into [`Tokens`].

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::LoginError;
use crate::auth::{CLIENT_ID, Tokens, jwt, now_unix, oauth_error_code as error_code};

pub(super) const TOKEN_ENDPOINT: &str = "the token endpoint";

/// A PKCE S256 pair (RFC 7636).
#[derive(Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce").field("challenge", &self.challenge).finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh verifier: 64 random bytes, base64url (86 characters).
    pub fn generate() -> Pkce {
        Pkce::from_verifier(random_base64url(64))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        Pkce { challenge: s256(&verifier), verifier }
    }
}

/// The S256 challenge of `verifier` (RFC 7636 §4.2): its SHA-256, base64url.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh `state` (and the body of a gateway session or access token, users/): 32 random bytes, base64url.
pub fn random_state() -> String {
    random_base64url(32)
}

fn random_base64url(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `{issuer}/oauth/authorize?...` with the parameters (and their order) of the official client.
pub fn authorize_url(issuer: &str, redirect_uri: &str, challenge: &str, state: &str) -> Result<String, LoginError> {
    let issuer = issuer.trim_end_matches('/');
    let mut url =
        url::Url::parse(&format!("{issuer}/oauth/authorize")).map_err(|_| LoginError::BadIssuer(issuer.into()))?;
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile email offline_access"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
        ("originator", "codex_cli_rs"),
    ];
    // Percent-encode like the official client (`%20`, not `+`, for spaces). `byte_serialize` escapes a literal
    // `+` as `%2B`, so every `+` it leaves stands for a space.
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
        .collect::<Vec<_>>()
        .join("&")
        .replace('+', "%20");
    url.set_query(Some(&query));
    Ok(url.to_string())
}

/// The authorization code from a callback's query, `state` checked first (nothing of a forged request is trusted).
pub fn code_from_callback(params: &HashMap<String, String>, expected_state: &str) -> Result<String, LoginError> {
    if params.get("state").map(String::as_str) != Some(expected_state) {
        return Err(LoginError::StateMismatch);
    }
    if let Some(error) = params.get("error") {
        let detail = params.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        return Err(LoginError::Denied(format!("{error}{detail}")));
    }
    match params.get("code") {
        Some(code) if !code.is_empty() => Ok(code.clone()),
        _ => Err(LoginError::MissingCode),
    }
}

#[derive(Deserialize)]
struct CodeTokens {
    id_token: String,
    access_token: String,
    refresh_token: String,
}

/// `POST {issuer}/oauth/token` (form-encoded, grant_type=authorization_code) -> [`Tokens`].
pub async fn exchange_code(
    http: &reqwest::Client,
    issuer: &str,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<Tokens, LoginError> {
    let url = format!("{}/oauth/token", issuer.trim_end_matches('/'));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", CLIENT_ID),
        ("code_verifier", code_verifier),
    ];
    let t: CodeTokens = answer(TOKEN_ENDPOINT, http.post(&url).form(&form)).await?;
    let account_id = jwt::claims(&t.id_token)
        .and_then(|c| c.account_id)
        .or_else(|| jwt::claims(&t.access_token).and_then(|c| c.account_id))
        .unwrap_or_default();
    Ok(Tokens {
        id_token: t.id_token,
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        account_id,
        last_refresh: now_unix(),
    })
}

pub(super) fn network(endpoint: &'static str, e: reqwest::Error) -> LoginError {
    LoginError::Network { endpoint, cause: e.without_url() }
}

pub(super) fn refused(endpoint: &'static str, status: reqwest::StatusCode, body: &[u8]) -> LoginError {
    LoginError::Refused { endpoint, status: status.as_u16(), code: error_code(body) }
}

/// Send `req` to `endpoint` and read its success answer as a `T`.
pub(super) async fn answer<T: DeserializeOwned>(
    endpoint: &'static str,
    req: reqwest::RequestBuilder,
) -> Result<T, LoginError> {
    let resp = req.send().await.map_err(|e| network(endpoint, e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| network(endpoint, e))?;
    if !status.is_success() {
        return Err(refused(endpoint, status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|_| LoginError::BadResponse { endpoint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::login::callback_redirect_uri;

    /// A code exchange with an issuer that cannot be reached used to say "error sending request" and no more: the
    /// cause was flattened into a string. Now it is kept, in the text and as the error's source.
    #[tokio::test]
    async fn an_unreachable_issuer_keeps_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
        let err =
            exchange_code(&http, &format!("http://127.0.0.1:{port}"), "c", "http://localhost:1455/cb", "v").await.err();
        let Some(err @ LoginError::Network { .. }) = err else { panic!("not a network failure: {err:?}") };
        let mut source = std::error::Error::source(&err);
        let mut refused = false;
        while let Some(cause) = source {
            refused |= cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            source = cause.source();
        }
        assert!(refused, "the io error is reachable through the cause chain: {err:?}");
        // As the command line prints it (`{:#}`: the error, then its causes).
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(text.starts_with("cannot reach the token endpoint: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn pkce_matches_rfc7636_and_verifier_is_long_and_random() {
        // RFC 7636, appendix B.
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let (a, b) = (Pkce::generate(), Pkce::generate());
        assert_eq!(a.verifier.len(), 86);
        assert!(a.verifier.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(Pkce::from_verifier(a.verifier.clone()).challenge, a.challenge);
        assert!(!format!("{a:?}").contains(&a.verifier));
        assert_ne!(random_state(), random_state());
    }

    #[test]
    fn authorize_url_has_the_official_shape() -> Result<(), LoginError> {
        let url = authorize_url("https://auth.openai.com/", &callback_redirect_uri(1455), "CH", "ST")?;
        assert_eq!(
            url,
            "https://auth.openai.com/oauth/authorize?response_type=code&client_id=app_EMoamEEZ73f0CkXaXp7hrann\
             &redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback\
             &scope=openid%20profile%20email%20offline_access&code_challenge=CH&code_challenge_method=S256\
             &id_token_add_organizations=true&codex_cli_simplified_flow=true&state=ST&originator=codex_cli_rs"
        );
        // Values with reserved characters survive a round trip.
        let url = authorize_url("http://127.0.0.1:9", "http://x/cb?a=1&b=2", "a+b/c", "s t")?;
        let parsed = url::Url::parse(&url).map_err(|_| LoginError::BadIssuer(url.clone()))?;
        let q: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q.get("redirect_uri").map(String::as_str), Some("http://x/cb?a=1&b=2"));
        assert_eq!(q.get("code_challenge").map(String::as_str), Some("a+b/c"));
        assert_eq!(q.get("state").map(String::as_str), Some("s t"));
        assert!(matches!(authorize_url("not a url", "r", "c", "s"), Err(LoginError::BadIssuer(_))));
        Ok(())
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn callback_checks_state_before_anything_else() {
        assert_eq!(code_from_callback(&params(&[("code", "c"), ("state", "s")]), "s").ok(), Some("c".into()));
        assert!(matches!(
            code_from_callback(&params(&[("code", "c"), ("state", "other")]), "s"),
            Err(LoginError::StateMismatch)
        ));
        assert!(matches!(code_from_callback(&params(&[("code", "c")]), "s"), Err(LoginError::StateMismatch)));
        assert!(matches!(
            code_from_callback(&params(&[("error", "access_denied"), ("state", "x")]), "s"),
            Err(LoginError::StateMismatch)
        ));
        match code_from_callback(
            &params(&[("error", "access_denied"), ("error_description", "no"), ("state", "s")]),
            "s",
        ) {
            Err(LoginError::Denied(m)) => assert_eq!(m, "access_denied: no"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(code_from_callback(&params(&[("state", "s")]), "s"), Err(LoginError::MissingCode)));
    }
}
