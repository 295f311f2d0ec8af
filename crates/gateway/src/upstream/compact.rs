//! The backend's remote compaction endpoint (issue 25): `POST {base}/responses/compact`, a unary JSON call
//! (codex-rs `CompactClient`, path `responses/compact`) with the same credentials and official-client headers as
//! a Responses request, but `Accept: application/json`. Called by `server/compact.rs`; rare next to model calls,
//! so it goes through the account's reqwest client rather than the h2 fast path.

use bytes::Bytes;
use reqwest::header::{ACCEPT, HeaderValue};

use super::client::{CallContext, Transport, Upstream};
use super::transport::{TransportError, UpstreamResponse, post_via_reqwest};
use crate::accounts::Account;
use crate::store::AccountKind;

impl Upstream {
    /// POST a compaction body for `account`; the answer's headers and body as they come.
    pub async fn compact(
        &self,
        account: &Account,
        authorization: HeaderValue,
        body: Bytes,
        ctx: &CallContext,
    ) -> Result<UpstreamResponse, TransportError> {
        let responses = match (&account.kind, &account.base_url) {
            (AccountKind::Relay | AccountKind::ApiKey, Some(base)) => {
                reqwest::Url::parse(&format!("{base}/responses")).ok()
            }
            (AccountKind::Chatgpt, _) => self.codex_url.parsed.as_ref().map(|(url, _)| url.clone()),
            (AccountKind::ApiKey | AccountKind::Relay, None) => {
                self.openai_url.parsed.as_ref().map(|(url, _)| url.clone())
            }
            // Never leased (its status is `unrecognized`).
            (AccountKind::Unrecognized, _) => None,
        };
        let Some(url) = responses.and_then(|u| reqwest::Url::parse(&format!("{}/compact", u.as_str())).ok()) else {
            return Err(TransportError::described(
                super::transport::TransportKind::Other,
                "no valid compaction URL for the account",
            ));
        };
        let mut headers = self.headers(account, authorization, ctx, Transport::Http);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // Asked for compressed (a presented 0.171 or newer), the answer may come so.
        post_via_reqwest(account.http(), url, headers, body).await.map(super::transport::decode::decoded)
    }
}
