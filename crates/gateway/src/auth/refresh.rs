//! The OAuth refresh call: `POST {issuer}/oauth/token` with the single-use refresh token. Callers must hold the
//! account's refresh lock and commit the returned tokens before using them (nor drop them when the commit fails):
//! the old refresh token is dead the moment the issuer answers. A failure is classified once, here ([`classify`]).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::side;
use super::{CLIENT_ID, Tokens, jwt, now_unix, oauth_error_code as error_code};
use crate::config::client::ClientIdentity;

/// Why a refresh failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// The issuer refused the refresh token: the login is gone and only a new login brings it back.
    #[error("the login is no longer valid ({0}); log in again")]
    LoginGone(LoginGone),
    /// The token endpoint failed (5xx) or asked the gateway to slow down (429). The refresh token was not spent.
    #[error("the token endpoint is unavailable (HTTP {status}{})", shown_code(.code))]
    Unavailable { status: u16, code: Option<String> },
    /// The token endpoint refused the gateway's request, not the login (400 `invalid_client`, a 403): logging in
    /// again would not help; the refresh is tried again later.
    #[error("the token endpoint refused the request (HTTP {status}{})", shown_code(.code))]
    Rejected { status: u16, code: Option<String> },
    /// The token endpoint could not be reached, or its answer broke off (the cause kept as the source).
    #[error("cannot reach the token endpoint")]
    Transport(#[source] Arc<reqwest::Error>),
    #[error("the token endpoint returned an unreadable answer")]
    Malformed(#[source] Arc<serde_json::Error>),
    /// The refresh token may have been spent: as for a broken answer, the login is kept and the refresh retried.
    #[error("the token endpoint's compressed answer could not be decoded")]
    Undecodable(#[source] Arc<std::io::Error>),
    /// No answer within the limit: the login stays, but the client hears it was a timeout.
    #[error("the token endpoint did not answer within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

/// How the issuer said the login is gone (spec/codex-upstream.md "Refresh": permanent failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginGone {
    /// Spent already (by another process or host).
    Reused,
    /// Its life is over.
    Expired,
    /// Revoked (a logout, a password change).
    Revoked,
    /// The OAuth standard's word for a refresh token the issuer does not accept.
    InvalidGrant,
    /// A 401 with any other code (or none), kept to be shown.
    Unauthorized { code: Option<String> },
}

impl LoginGone {
    /// The issuer's code, as stored in the account's status reason and shown by `accounts list`.
    pub fn code(&self) -> &str {
        match self {
            LoginGone::Reused => "refresh_token_reused",
            LoginGone::Expired => "refresh_token_expired",
            LoginGone::Revoked => "refresh_token_invalidated",
            LoginGone::InvalidGrant => "invalid_grant",
            LoginGone::Unauthorized { code: Some(code) } => code,
            LoginGone::Unauthorized { code: None } => "HTTP 401",
        }
    }
}

impl std::fmt::Display for LoginGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

fn shown_code(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

/// Why a token is refreshed, sent as the official client sends it (`refresh_reason` in the token call's body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshReason {
    /// A request found the access token about to expire.
    ProactiveExpiry,
    /// The background round refreshed it ahead of expiry.
    Scheduled,
    /// The upstream refused the access token (401).
    UnauthorizedRecovery,
    /// Asked for (the admin's refresh, a bare refresh token imported).
    Forced,
}

impl RefreshReason {
    fn as_str(self) -> &'static str {
        match self {
            RefreshReason::ProactiveExpiry => "proactive_expiry",
            RefreshReason::Scheduled => "scheduled",
            RefreshReason::UnauthorizedRecovery => "unauthorized_recovery",
            RefreshReason::Forced => "forced",
        }
    }
}

/// Where and as whom a refresh is asked for.
#[derive(Debug, Clone, Copy)]
pub struct TokenCall<'a> {
    pub issuer: &'a str,
    /// The official client the gateway presents (`[upstream] client_version`, `user_agent`).
    pub client: &'a ClientIdentity,
    pub reason: RefreshReason,
}

/// The bound of a refresh when the caller sets none (an import's one exchange of a bare refresh token).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// [`refresh_within`] bounded by [`DEFAULT_TIMEOUT`].
pub async fn refresh(http: &reqwest::Client, to: TokenCall<'_>, current: &Tokens) -> Result<Tokens, RefreshError> {
    refresh_within(http, to, current, DEFAULT_TIMEOUT).await
}

/// Exchange `current.refresh_token` for new tokens (fields the issuer omits keep their old values), bounded by
/// `limit` from the first byte sent to the last one read: callers hold the account's refresh lock meanwhile, so a
/// call that never ends would wedge the account.
pub async fn refresh_within(
    http: &reqwest::Client,
    to: TokenCall<'_>,
    current: &Tokens,
    limit: Duration,
) -> Result<Tokens, RefreshError> {
    tokio::time::timeout(limit, call(http, to, current)).await.unwrap_or(Err(RefreshError::TimedOut(limit)))
}

async fn call(http: &reqwest::Client, to: TokenCall<'_>, current: &Tokens) -> Result<Tokens, RefreshError> {
    let url = format!("{}/oauth/token", to.issuer);
    // Members in the official client's order (sorted).
    let body = json!({
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_reason": to.reason.as_str(),
        "refresh_token": current.refresh_token,
    });
    let transport = |e: reqwest::Error| RefreshError::Transport(Arc::new(e.without_url()));
    let req = side::token_headers(http.post(&url), to.client, body.to_string().into_bytes());
    let resp = req.send().await.map_err(transport)?;
    let (status, bytes) = match side::answer(resp).await {
        Ok((status, bytes)) => (status.as_u16(), bytes),
        Err(side::AnswerError::Transport(e)) => return Err(transport(e)),
        Err(side::AnswerError::Undecodable(e)) => return Err(RefreshError::Undecodable(Arc::new(e))),
    };
    if !(200..300).contains(&status) {
        return Err(classify(status, &bytes));
    }
    let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| RefreshError::Malformed(Arc::new(e)))?;
    let id_token = t.id_token.unwrap_or_else(|| current.id_token.clone());
    let account_id = jwt::claims(&id_token).and_then(|c| c.account_id).unwrap_or_else(|| current.account_id.clone());
    Ok(Tokens {
        id_token,
        access_token: t.access_token.unwrap_or_else(|| current.access_token.clone()),
        refresh_token: t.refresh_token.unwrap_or_else(|| current.refresh_token.clone()),
        account_id,
        last_refresh: now_unix(),
    })
}

/// The one place the issuer's error answer is read: its status and code, to a [`RefreshError`]. A code that
/// says the refresh token is dead ends the login whatever the status; so does any 401 (spec/codex-upstream.md).
/// 429 and 5xx are the endpoint's trouble; any other refusal is the request's.
pub fn classify(status: u16, body: &[u8]) -> RefreshError {
    let code = error_code(body);
    let known = [LoginGone::Reused, LoginGone::Expired, LoginGone::Revoked, LoginGone::InvalidGrant];
    let gone = known.into_iter().find(|g| code.as_deref() == Some(g.code()));
    match (gone, status) {
        (Some(gone), _) => RefreshError::LoginGone(gone),
        (None, 401) => RefreshError::LoginGone(LoginGone::Unauthorized { code }),
        (None, 429 | 500..) => RefreshError::Unavailable { status, code },
        (None, _) => RefreshError::Rejected { status, code },
    }
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

    /// What a row of the table expects.
    #[derive(Debug)]
    enum Want {
        Gone(LoginGone, &'static str),
        Unavailable(u16, Option<&'static str>),
        Rejected(u16, Option<&'static str>),
    }

    /// Every error answer of the token endpoint the specs and the fake know, classified once: which ones end the
    /// login (and the status reason `accounts list` shows), which ones keep it.
    #[test]
    fn the_issuers_error_answers_are_classified_once() {
        let oauth = |code: &str, message: &str| {
            format!(
                r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{code}"}}}}"#
            )
        };
        let reused = oauth(
            "refresh_token_reused",
            "Your refresh token has already been used to generate a new access token. Please try signing in again.",
        );
        let expired = oauth("refresh_token_expired", "Your refresh token has expired. Please try signing in again.");
        let revoked =
            oauth("refresh_token_invalidated", "Your refresh token has been invalidated. Please try signing in again.");
        let grant_object = oauth("invalid_grant", "Invalid authorization code.");
        let client_401 = oauth("invalid_client", "Unknown or missing client_id.");
        let client_400 = oauth("invalid_client", "Unknown or missing client_id.");
        let missing = oauth("invalid_request", "Missing refresh_token.");
        let grant_type = oauth("unsupported_grant_type", "Unsupported grant_type.");
        let cloudflare = "<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>cf-chl</body></html>";
        let rows: Vec<(u16, &str, Want)> = vec![
            // spec/codex-upstream.md "Refresh": the permanent failures, and field note 22 (`refresh_token_reused`).
            (401, &reused, Want::Gone(LoginGone::Reused, "refresh_token_reused")),
            (401, &expired, Want::Gone(LoginGone::Expired, "refresh_token_expired")),
            (401, &revoked, Want::Gone(LoginGone::Revoked, "refresh_token_invalidated")),
            (400, r#"{"code":"refresh_token_reused"}"#, Want::Gone(LoginGone::Reused, "refresh_token_reused")),
            // The OAuth standard's shape, and the issuer's own.
            (
                400,
                r#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#,
                Want::Gone(LoginGone::InvalidGrant, "invalid_grant"),
            ),
            (400, &grant_object, Want::Gone(LoginGone::InvalidGrant, "invalid_grant")),
            // Any 401 ends the login; its code (or the status) is what the account shows.
            (401, r#"{"detail":"Unauthorized"}"#, Want::Gone(LoginGone::Unauthorized { code: None }, "HTTP 401")),
            (401, "", Want::Gone(LoginGone::Unauthorized { code: None }, "HTTP 401")),
            (
                401,
                &client_401,
                Want::Gone(LoginGone::Unauthorized { code: Some("invalid_client".into()) }, "invalid_client"),
            ),
            // The endpoint's trouble: the refresh token was not spent.
            (
                429,
                r#"{"error":{"code":"rate_limit_exceeded","message":"slow down"}}"#,
                Want::Unavailable(429, Some("rate_limit_exceeded")),
            ),
            (500, "Internal Server Error", Want::Unavailable(500, None)),
            (502, "<html>Bad Gateway</html>", Want::Unavailable(502, None)),
            (
                503,
                r#"{"error":{"code":"server_is_overloaded","message":"busy"}}"#,
                Want::Unavailable(503, Some("server_is_overloaded")),
            ),
            // The request's fault, not the login's: a new login would not help.
            (400, &client_400, Want::Rejected(400, Some("invalid_client"))),
            (400, &missing, Want::Rejected(400, Some("invalid_request"))),
            (400, &grant_type, Want::Rejected(400, Some("unsupported_grant_type"))),
            (403, "", Want::Rejected(403, None)),
            (403, "Unknown error", Want::Rejected(403, None)),
            (403, cloudflare, Want::Rejected(403, None)),
        ];
        for (status, body, want) in rows {
            let got = classify(status, body.as_bytes());
            let ok = match (&got, &want) {
                (RefreshError::LoginGone(gone), Want::Gone(expected, reason)) => {
                    gone == expected && gone.code() == *reason
                }
                (RefreshError::Unavailable { status: s, code }, Want::Unavailable(es, ec))
                | (RefreshError::Rejected { status: s, code }, Want::Rejected(es, ec)) => {
                    s == es && code.as_deref() == *ec
                }
                _ => false,
            };
            assert!(ok, "HTTP {status} {body}: got {got:?}, want {want:?}");
        }
    }

    /// An answer on a local port, once: `status` and `body` as raw HTTP/1.1.
    async fn answer_once(status: &'static str, body: &'static str) -> String {
        answer_once_with(status, "", body.as_bytes().to_vec()).await
    }

    /// [`answer_once`] with more header lines (each ending in CRLF) and a body of any bytes.
    async fn answer_once_with(status: &'static str, extra: &'static str, body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            if let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let head =
                    format!("HTTP/1.1 {status}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = tcp.write_all(&[head.as_bytes(), &body].concat()).await;
            }
        });
        format!("http://{addr}")
    }

    const LIMIT: Duration = Duration::from_secs(30);

    static CLIENT: std::sync::LazyLock<ClientIdentity> = std::sync::LazyLock::new(ClientIdentity::default);

    fn to(issuer: &str) -> TokenCall<'_> {
        TokenCall { issuer, client: &CLIENT, reason: RefreshReason::Forced }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// An unreachable token endpoint used to be reported as "error sending request" and nothing more: the cause
    /// (here, a refused connection) was flattened away. Now it is kept: in the text and as the error's source.
    #[tokio::test]
    async fn an_unreachable_token_endpoint_keeps_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let tokens = tokens_with_exp(None, 0);
        let err = refresh_within(&client(), to(&format!("http://127.0.0.1:{port}")), &tokens, LIMIT).await.err();
        let Some(err @ RefreshError::Transport(_)) = err else { panic!("not a transport failure: {err:?}") };
        let text = upstream_transport::with_causes(&err);
        assert!(text.starts_with("cannot reach the token endpoint: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        let mut source = std::error::Error::source(&err);
        let mut refused = false;
        while let Some(cause) = source {
            refused |= cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
            source = cause.source();
        }
        assert!(refused, "the io error is reachable through the cause chain: {err:?}");
    }

    /// A 200 that is not a token answer is its own failure, with the parser's error as its source; a 503 keeps
    /// the login.
    #[tokio::test]
    async fn an_unreadable_or_failing_answer_keeps_the_login() {
        let tokens = tokens_with_exp(None, 0);
        let err = refresh_within(&client(), to(&answer_once("200 OK", "<html>").await), &tokens, LIMIT).await.err();
        let Some(err @ RefreshError::Malformed(_)) = err else { panic!("not malformed: {err:?}") };
        assert!(std::error::Error::source(&err).is_some());
        let err = refresh_within(&client(), to(&answer_once("503 Service Unavailable", "").await), &tokens, LIMIT)
            .await
            .err();
        assert!(matches!(err, Some(RefreshError::Unavailable { status: 503, code: None })), "{err:?}");
    }

    /// From 0.171 the refresh asks for a compressed answer: a zstd token answer is read decoded; one that does not
    /// decode is its own failure, and the login is kept.
    #[tokio::test]
    async fn a_compressed_token_answer_is_read_and_a_broken_one_keeps_the_login() {
        let tokens = tokens_with_exp(None, 0);
        let answer = br#"{"access_token":"fresh-access","refresh_token":"fresh-refresh"}"#;
        let zstd = zstd::stream::encode_all(&answer[..], 3).unwrap_or_default();
        let url = answer_once_with("200 OK", "content-encoding: zstd\r\n", zstd).await;
        let got = refresh_within(&client(), to(&url), &tokens, LIMIT).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.access_token.as_str(), got.refresh_token.as_str()), ("fresh-access", "fresh-refresh"));
        let url = answer_once_with("200 OK", "content-encoding: zstd\r\n", b"not zstd".to_vec()).await;
        let err = refresh_within(&client(), to(&url), &tokens, LIMIT).await.err();
        assert!(matches!(err, Some(RefreshError::Undecodable(_))), "{err:?}");
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
