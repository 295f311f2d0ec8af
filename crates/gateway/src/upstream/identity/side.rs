//! The headers of the gateway's own calls beside the turns, as the official client sends them (recorded from
//! Codex CLI 0.169 against fake-codex; docs/protocol.md "Identity"): the model catalog (a provider call:
//! `version`, the credentials, then the client's default `originator` and `User-Agent`), the backend client's
//! `wham/*` reads (`wham/usage`, `wham/accounts/check`: the `User-Agent` first, no `originator`, no `version`),
//! and the OAuth refresh (the JSON body's type, then `originator` and `User-Agent`). Each ends with `Accept: */*`,
//! where reqwest would put it. Written in the official order, field by field.

use reqwest::RequestBuilder;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};

use super::{ClientIdentity, ORIGINATOR};

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
    req.header(ACCEPT, "*/*")
}

/// `req` (a POST to the token endpoint) with the official client's headers and the JSON `body`.
pub fn token_headers(req: RequestBuilder, user_agent: &str, body: Vec<u8>) -> RequestBuilder {
    req.header(CONTENT_TYPE, "application/json")
        .header("originator", ORIGINATOR)
        .header(USER_AGENT, user_agent)
        .header(ACCEPT, "*/*")
        .body(body)
}
