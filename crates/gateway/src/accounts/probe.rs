//! The admin check of an account: can the upstream be reached through its connection, and how fast.

use std::time::Instant;

use serde_json::Value;

use super::pool::side_request;
use super::{Account, Pool, RefreshBudget};
use crate::auth::side::SideCall;
use crate::store::AccountKind;

impl Pool {
    /// Reachability and latency of the upstream through this account's connection (its proxy, if any): the
    /// workspace routing discovery (`wham/accounts/check`) for ChatGPT accounts, `/models` for API-key and relay
    /// accounts.
    pub async fn check(&self, account: &Account) -> Value {
        let started = Instant::now();
        let token = match self.token_within(account, None, &mut RefreshBudget::default()).await {
            Ok(t) => t,
            Err(e) => return serde_json::json!({"id": account.id, "ok": false, "error": e.message}),
        };
        // A ChatGPT account is checked as the official client checks its login: the workspace routing discovery.
        let (url, call) = match (&account.kind, &account.base_url) {
            (AccountKind::Chatgpt, _) => {
                (format!("{}/wham/accounts/check", self.config.chatgpt_base_url), SideCall::Backend)
            }
            (AccountKind::ApiKey | AccountKind::Relay, base) => {
                (format!("{}/models", base.as_deref().unwrap_or(&self.config.openai_base_url)), SideCall::Models)
            }
            (AccountKind::Unrecognized, _) => {
                return serde_json::json!({"id": account.id, "ok": false, "error": "the account's kind is unknown to this build"});
            }
        };
        let req = side_request(account, &self.config.client, call, &url, &token);
        match req.send().await {
            Ok(r) => serde_json::json!({
                "id": account.id,
                "ok": r.status().is_success(),
                "status": r.status().as_u16(),
                "latency_ms": started.elapsed().as_millis() as u64,
                "via": account.proxy.as_deref().or(self.config.proxy.as_deref()).map(super::redact_proxy),
            }),
            // With its causes: "error sending request" alone does not say that the proxy refused the connection.
            Err(e) => {
                serde_json::json!({"id": account.id, "ok": false, "error": upstream_transport::with_causes(&e.without_url()),
                "latency_ms": started.elapsed().as_millis() as u64})
            }
        }
    }
}
