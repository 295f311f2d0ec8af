//! The backend's image endpoints (issue 59): `POST {base}/images/generations` and `{base}/images/edits` on the
//! Codex base URL (codex-rs `codex-api/src/endpoint/images.rs`), unary JSON with the credentials and
//! official-client headers of a Responses request and `Accept: application/json`. Called by
//! `server/images.rs`; rare next to model calls, so it goes through the account's reqwest client.

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};

use super::client::{CallContext, Transport, Upstream};
use super::transport::{TransportError, UpstreamResponse, post_via_reqwest};
use crate::accounts::Account;
use crate::store::AccountKind;

/// The header with which the official client names the turn an image call belongs to.
static IMAGE_TURN_ID: HeaderName = HeaderName::from_static("x-codex-image-turn-id");

impl Upstream {
    /// POST an image request (`path`: `images/generations` or `images/edits`) for a ChatGPT `account`; the
    /// answer's headers and body as they come.
    pub async fn images(
        &self,
        account: &Account,
        authorization: HeaderValue,
        path: &str,
        body: Bytes,
        ctx: &CallContext,
    ) -> Result<UpstreamResponse, TransportError> {
        let base = match account.kind {
            AccountKind::Chatgpt => self.codex_url.parsed.as_ref().map(|(url, _)| url.as_str()),
            // Leased only for ChatGPT logins (`Pool::lease_for_images`).
            AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => None,
        };
        let url = base
            .and_then(|responses| responses.strip_suffix("/responses"))
            .and_then(|base| reqwest::Url::parse(&format!("{base}/{path}")).ok());
        let Some(url) = url else {
            return Err(TransportError::described(
                super::transport::TransportKind::Other,
                "no image endpoint for the account (image generation needs a ChatGPT login)",
            ));
        };
        let mut headers = self.headers(account, authorization, ctx, Transport::Http);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(turn) = HeaderValue::from_str(&ctx.request_id) {
            headers.insert(IMAGE_TURN_ID.clone(), turn);
        }
        post_via_reqwest(account.http(), url, headers, body).await
    }
}
