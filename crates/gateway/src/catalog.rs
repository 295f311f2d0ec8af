//! The model catalog: fetched from the upstream (`/models?client_version=`) with an account's token, cached,
//! with a built-in list as fallback. Decides which model ids are known (unknown ones get a clear 404).

use dialects::GatewayError;
use serde_json::{Value, json};

use crate::server::AppState;
use crate::store::AccountKind;

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

/// The gateway-wide catalog: the union of what the accounts' plans serve.
#[derive(Default)]
pub struct Catalog;

impl Catalog {
    /// Catalog entries in the Codex shape (`slug`, `context_window`, ...), best first: the union of the
    /// accounts' fetched catalogs, or the built-in list when none is known.
    pub async fn entries(&self, state: &AppState) -> Vec<Value> {
        let list = state.pool.accounts();
        let known: Vec<Vec<Value>> =
            list.iter().filter(|a| a.is_active()).filter_map(|a| a.catalog_entries()).collect();
        let known = if known.is_empty() && list.iter().any(|a| a.kind == AccountKind::Chatgpt && a.is_active()) {
            // First use: fetch now rather than advertise models a plan may not have (once per retry period when
            // the catalog endpoint fails, see `Pool::fetch_missing_catalogs`).
            state.pool.fetch_missing_catalogs(&list).await;
            list.iter().filter(|a| a.is_active()).filter_map(|a| a.catalog_entries()).collect()
        } else {
            known
        };
        let mut out: Vec<Value> = Vec::new();
        for entry in known.into_iter().flatten() {
            let slug = entry.get("slug").and_then(Value::as_str).unwrap_or_default();
            if !slug.is_empty() && !out.iter().any(|e| e.get("slug").and_then(Value::as_str) == Some(slug)) {
                out.push(entry);
            }
        }
        for a in list.iter().filter(|a| a.is_active()) {
            for m in a.models.iter().flatten() {
                if !out.iter().any(|e| e.get("slug").and_then(Value::as_str) == Some(m.as_str())) {
                    out.push(json!({"slug": m, "display_name": m, "visibility": "list", "supported_in_api": true}));
                }
            }
        }
        if out.is_empty() { default_entries() } else { out }
    }

    /// Whether the catalog entry of `slug` says the model takes `reasoning.context`
    /// (`supports_reasoning_context: true`) in some active account's catalog. No entry or no field: no.
    /// Reads the fetched catalogs in place like `check`'s fast path (call `check` first so they are fetched).
    pub fn supports_reasoning_context(&self, state: &AppState, slug: &str) -> bool {
        state.pool.accounts().iter().filter(|a| a.is_active()).any(|a| {
            a.catalog.read().as_ref().is_some_and(|c| {
                c.entries.iter().any(|e| {
                    e.get("slug").and_then(Value::as_str) == Some(slug)
                        && e.get("supports_reasoning_context").and_then(Value::as_bool) == Some(true)
                })
            })
        })
    }

    /// Ok if some account can be asked for `slug`. An API-key account without a model list accepts any id
    /// (the OpenAI API decides).
    pub async fn check(&self, state: &AppState, slug: &str) -> Result<(), GatewayError> {
        let accounts = state.pool.accounts();
        let open_ended = accounts.iter().any(|a| a.kind != AccountKind::Chatgpt && a.models.is_none());
        if open_ended {
            return Ok(());
        }
        // Fast path (every request checks its model): an active account that lists the slug in its configured
        // models or its known catalog, which is what `entries` would merge, without copying the catalogs.
        let listed = accounts.iter().filter(|a| a.is_active()).any(|a| {
            a.models.iter().flatten().any(|m| m == slug)
                || a.catalog
                    .read()
                    .as_ref()
                    .is_some_and(|c| c.entries.iter().any(|e| e.get("slug").and_then(Value::as_str) == Some(slug)))
        });
        if listed {
            return Ok(());
        }
        // Boxed: every request's future would otherwise carry room for a catalog fetch inline.
        let entries = Box::pin(self.entries(state)).await;
        if entries.iter().any(|e| e.get("slug").and_then(Value::as_str) == Some(slug)) {
            Ok(())
        } else {
            Err(GatewayError::model_not_found(slug))
        }
    }
}
