//! The headers of the gateway's own calls beside the turns, as the official client sends them (recorded from
//! Codex CLI 0.169 against fake-codex; docs/protocol.md "Identity"): the model catalog (a provider call:
//! `version`, the credentials, then the client's default `originator` and `User-Agent`), the backend client's
//! `wham/*` reads (`wham/usage`, `wham/accounts/check`: the `User-Agent` first, no `originator`, no `version`),
//! and the OAuth refresh (the JSON body's type, then `originator` and `User-Agent`). Each ends with `Accept: */*`,
//! where reqwest would put it, and from 0.171 (recorded from Codex CLI 0.171 likewise) `accept-encoding:
//! zstd,gzip` after it: the answers may then come compressed, and [`answer`] reads them decoded. Written in the
//! official order, field by field.

use bytes::Bytes;
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::config::client::{ACCEPTED_CODINGS, ASKS_COMPRESSED, ClientIdentity, ORIGINATOR};

/// Which side call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideCall {
    /// `GET {codex base}/models?client_version=`.
    Models,
    /// `GET {chatgpt base}/wham/usage`, `/wham/accounts/check`.
    Backend,
}

/// An account's credentials for a side call: the bearer token and the ChatGPT account id (none for API keys).
pub struct SideCredentials<'a> {
    pub token: &'a str,
    pub account_id: Option<&'a str>,
}

/// `req` with the official client's headers for `call`.
pub fn side_headers(
    req: RequestBuilder,
    call: SideCall,
    client: &ClientIdentity,
    creds: SideCredentials<'_>,
) -> RequestBuilder {
    let bearer = format!("Bearer {}", creds.token);
    let with_account = |req: RequestBuilder| match creds.account_id {
        Some(id) => req.header("chatgpt-account-id", id),
        None => req,
    };
    let req = match call {
        SideCall::Models => {
            let req = with_account(req.header("version", &client.version_text).header(AUTHORIZATION, bearer));
            req.header("originator", ORIGINATOR).header(USER_AGENT, &client.user_agent)
        }
        SideCall::Backend => with_account(req.header(USER_AGENT, &client.user_agent).header(AUTHORIZATION, bearer)),
    };
    accepts(req.header(ACCEPT, "*/*"), client)
}

/// `req` (a POST to the token endpoint) with the official client's headers and the JSON `body`.
pub fn token_headers(req: RequestBuilder, client: &ClientIdentity, body: Vec<u8>) -> RequestBuilder {
    let req = req.header(CONTENT_TYPE, "application/json").header("originator", ORIGINATOR);
    accepts(req.header(USER_AGENT, &client.user_agent).header(ACCEPT, "*/*"), client).body(body)
}

/// The codings a client of 0.171 or newer accepts, after the other headers.
fn accepts(req: RequestBuilder, client: &ClientIdentity) -> RequestBuilder {
    match client.version >= ASKS_COMPRESSED {
        true => req.header(ACCEPT_ENCODING, ACCEPTED_CODINGS),
        false => req,
    }
}

/// The most a side call's answer may decode to (a model catalog is ~100 KB).
const MOST_DECODED: u64 = 32 * 1024 * 1024;

/// Why a side call's answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// It broke off, or never came.
    #[error("the answer broke off")]
    Transport(#[source] reqwest::Error),
    /// It came compressed and did not decode.
    #[error("the answer's compressed body could not be decoded")]
    Undecodable(#[source] std::io::Error),
}

/// A side call's answer: its status and its body, decoded when it came compressed.
pub async fn answer(resp: Response) -> Result<(StatusCode, Bytes), AnswerError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| AnswerError::Transport(e.without_url()))?;
    let body =
        upstream_transport::decode::decode_whole(&headers, body, MOST_DECODED).map_err(AnswerError::Undecodable)?;
    Ok((status, body))
}

/// Send a side call and read a success answer's JSON; `None` when it fails, is refused, or does not parse (the
/// callers keep what they had and try again later).
pub async fn success_json<T: serde::de::DeserializeOwned>(req: RequestBuilder) -> Option<T> {
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let (_, body) = answer(resp).await.ok()?;
    serde_json::from_slice(&body).ok()
}
