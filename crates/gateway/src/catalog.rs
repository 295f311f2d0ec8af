//! The model catalog: fetched from the upstream (`/models?client_version=`) with an account's token, cached,
//! with a built-in list as fallback. Decides which model ids are known (unknown ones get a clear 404).

use std::time::{Duration, Instant};

use dialects::GatewayError;
use parking_lot::RwLock;
use serde_json::{Value, json};
use tracing::debug;

use crate::server::AppState;
use crate::store::AccountKind;

const TTL: Duration = Duration::from_secs(600);

/// Known Codex slugs mid-2026 (spec/codex-upstream.md), used until the upstream catalog is fetched.
const DEFAULT_MODELS: [(&str, &str, u64, bool); 5] = [
    ("gpt-5.5", "GPT-5.5", 272_000, true),
    ("gpt-5.4", "GPT-5.4", 272_000, true),
    ("gpt-5.4-mini", "GPT-5.4 mini", 272_000, false),
    ("gpt-5.3-codex", "GPT-5.3 Codex", 272_000, true),
    ("gpt-5.2", "GPT-5.2", 272_000, true),
];

pub fn default_entries() -> Vec<Value> {
    DEFAULT_MODELS
        .iter()
        .enumerate()
        .map(|(i, (slug, name, ctx, fast))| {
            let tiers = if *fast { json!([{"id":"priority","name":"Fast"}]) } else { json!([]) };
            let levels: Vec<Value> =
                ["low", "medium", "high", "xhigh"].iter().map(|e| json!({"effort": e, "description": e})).collect();
            json!({
                "slug": slug,
                "display_name": name,
                "supported_reasoning_levels": levels,
                "default_reasoning_level": "medium",
                "context_window": ctx,
                "service_tiers": tiers,
                "visibility": "list",
                "supported_in_api": true,
                "priority": i,
                "supports_parallel_tool_calls": true,
            })
        })
        .collect()
}

#[derive(Default)]
pub struct Catalog {
    cache: RwLock<Option<(Instant, Vec<Value>)>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Catalog entries in the Codex shape (`slug`, `context_window`, ...).
    pub async fn entries(&self, state: &AppState) -> Vec<Value> {
        if let Some((at, entries)) = self.cache.read().as_ref()
            && at.elapsed() < TTL
        {
            return entries.clone();
        }
        let _guard = self.fetch_lock.lock().await;
        if let Some((at, entries)) = self.cache.read().as_ref()
            && at.elapsed() < TTL
        {
            return entries.clone();
        }
        match fetch(state).await {
            Some(entries) if !entries.is_empty() => {
                *self.cache.write() = Some((Instant::now(), entries.clone()));
                entries
            }
            _ => default_entries(),
        }
    }

    /// Ok if `slug` can be served. API-key-only pools accept any id (the OpenAI API decides).
    pub async fn check(&self, state: &AppState, slug: &str) -> Result<(), GatewayError> {
        let pool = &state.pool;
        let chatgpt = pool.accounts().iter().any(|a| a.kind == AccountKind::Chatgpt);
        if !chatgpt && !pool.accounts().is_empty() {
            return Ok(());
        }
        let entries = self.entries(state).await;
        if entries.iter().any(|e| e.get("slug").and_then(Value::as_str) == Some(slug)) {
            Ok(())
        } else {
            Err(GatewayError::model_not_found(slug))
        }
    }
}

async fn fetch(state: &AppState) -> Option<Vec<Value>> {
    let account = state
        .pool
        .accounts()
        .iter()
        .find(|a| a.kind == AccountKind::Chatgpt && a.status().0 == crate::store::AccountStatus::Active)?
        .clone();
    let token = state.pool.access_token(&account, None).await.ok()?;
    let url =
        format!("{}/models?client_version={}", state.config.upstream_base_url, crate::upstream::CODEX_CLIENT_VERSION);
    let mut req = state.upstream.http().get(&url).bearer_auth(token).header("originator", "codex_cli_rs");
    if let Some(id) = account.chatgpt_account_id() {
        req = req.header("chatgpt-account-id", id);
    }
    let resp = req.timeout(Duration::from_secs(15)).send().await.ok()?;
    if !resp.status().is_success() {
        debug!(status = resp.status().as_u16(), "model catalog fetch failed; using the built-in list");
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    v.get("models").and_then(Value::as_array).cloned()
}
