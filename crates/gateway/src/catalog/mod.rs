//! The gateway-wide model catalog: the union of what the accounts serve (their plans' catalogs, fetched from
//! the upstream's `/models?client_version=`, and the models configured for API-key and relay accounts), with a
//! built-in list until one is known. Decides which model ids are known (unknown ones get a clear 404) and what
//! a model takes (`reasoning.context`).
//!
//! It reads the accounts through [`CatalogSource`], which the account pool implements
//! (`accounts/catalog.rs`), so it depends on neither the pool's internals nor the server's state, and its
//! rules are tested here against a plain source. Entries are typed once, when fetched ([`entry`]).

use std::future::Future;
use std::sync::Arc;

use dialects::GatewayError;
use serde_json::json;

pub mod entry;

pub use entry::{ModelEntry, find};

/// Known Codex slugs mid-2026 (spec/codex-upstream.md), used until the upstream catalog is fetched.
const DEFAULT_MODELS: [(&str, &str, u64, bool); 5] = [
    ("gpt-5.5", "GPT-5.5", 272_000, true),
    ("gpt-5.4", "GPT-5.4", 272_000, true),
    ("gpt-5.4-mini", "GPT-5.4 mini", 272_000, false),
    ("gpt-5.3-codex", "GPT-5.3 Codex", 272_000, true),
    ("gpt-5.2", "GPT-5.2", 272_000, true),
];

/// The built-in list, in the Codex catalog shape (it is also what Codex CLI gets before a catalog is known).
pub fn default_entries() -> Vec<Arc<ModelEntry>> {
    DEFAULT_MODELS
        .iter()
        .enumerate()
        .filter_map(|(i, (slug, name, ctx, fast))| {
            let tiers = if *fast { json!([{"id":"priority","name":"Fast"}]) } else { json!([]) };
            let levels: Vec<_> =
                ["low", "medium", "high", "xhigh"].iter().map(|e| json!({"effort": e, "description": e})).collect();
            ModelEntry::from_json(json!({
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
            }))
        })
        .map(Arc::new)
        .collect()
}

/// One active account as the catalog sees it.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The models configured for it (API-key and relay accounts); `None`: not restricted by configuration.
    pub configured: Option<&'a [String]>,
    /// Its plan's fetched catalog; `None`: not fetched (yet, or the fetch failed).
    pub fetched: Option<&'a [Arc<ModelEntry>]>,
    /// Whether it has a catalog to fetch (ChatGPT accounts).
    pub fetchable: bool,
}

/// What the catalog needs from the accounts.
pub trait CatalogSource: Send + Sync {
    /// Whether some account takes any model id (an API-key or relay account without a model list): the
    /// upstream decides then.
    fn open_ended(&self) -> bool;

    /// Calls `visit` with each active account's offer, in the pool's order, until it returns `true`; whether
    /// one did. (A visitor rather than a list: every request checks its model, and the offers borrow each
    /// account's catalog under its lock, so nothing is copied.)
    fn any_active(&self, visit: &mut dyn FnMut(Offer<'_>) -> bool) -> bool;

    /// Fetch the catalog of one account that has none yet; whether there was one. Bounded in time; a failure
    /// leaves it unknown and is remembered by the source, so this does not fetch on every call. One at a time, so
    /// that the accounts' catalogs are not all asked for at once (docs/security.md).
    fn fetch_one_missing(&self) -> impl Future<Output = bool> + Send;
}

/// What the catalogs say about a model that shapes each of its turns ([`Catalog::turn_facts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnFacts {
    /// issue 25: the newest `minimal_client_version` any of them gives (the backend refuses older clients).
    pub minimal_client_version: Option<entry::ClientVersion>,
    /// Some catalog flags it `use_responses_lite` (`upstream::identity::lite`).
    pub responses_lite: bool,
    /// The verbosity the official client sends when its user set none: the `default_verbosity` of the first
    /// catalog that says the model supports verbosity.
    pub default_verbosity: Option<String>,
    /// Some catalog flags it `supports_reasoning_effort_updates` (`upstream::identity::efforts`).
    pub effort_updates: bool,
}

/// The gateway-wide catalog over a source of accounts.
pub struct Catalog<S> {
    source: Arc<S>,
}

impl<S: CatalogSource> Catalog<S> {
    pub fn new(source: Arc<S>) -> Catalog<S> {
        Catalog { source }
    }

    /// The catalog entries, best first: the union of the active accounts' fetched catalogs (first occurrence of
    /// a slug wins), then their configured models, or the built-in list when none is known.
    pub async fn entries(&self) -> Vec<Arc<ModelEntry>> {
        let mut union = self.union();
        if !union.any_fetched && union.any_fetchable {
            // First use: fetch one account's now rather than advertise models a plan may not have (once per retry
            // period when the catalog endpoint fails, see `Pool::fetch_one_missing_catalog`).
            self.source.fetch_one_missing().await;
            union = self.union();
        }
        if union.entries.is_empty() { default_entries() } else { union.entries }
    }

    fn union(&self) -> Union {
        let mut entries: Vec<Arc<ModelEntry>> = Vec::new();
        let mut configured: Vec<String> = Vec::new();
        let (mut any_fetched, mut any_fetchable) = (false, false);
        self.source.any_active(&mut |offer| {
            any_fetchable |= offer.fetchable;
            if let Some(fetched) = offer.fetched {
                any_fetched = true;
                for e in fetched {
                    if find(&entries, &e.slug).is_none() {
                        entries.push(e.clone());
                    }
                }
            }
            configured.extend(offer.configured.into_iter().flatten().cloned());
            false
        });
        for slug in configured {
            if find(&entries, &slug).is_none() {
                entries.push(Arc::new(ModelEntry::configured(&slug)));
            }
        }
        Union { entries, any_fetched, any_fetchable }
    }

    /// Whether the catalog entry of `slug` says the model takes `reasoning.context` in some active account's
    /// catalog. No entry or no field: no. Reads the fetched catalogs in place like `check`'s fast path (call
    /// `check` first so they are fetched).
    pub fn supports_reasoning_context(&self, slug: &str) -> bool {
        self.source.any_active(&mut |offer| {
            offer.fetched.and_then(|fetched| find(fetched, slug)).is_some_and(|e| e.supports_reasoning_context)
        })
    }

    /// What the active accounts' catalogs say about `slug` that shapes each of its turns, in one pass over them
    /// (read in place like [`Catalog::supports_reasoning_context`]; every request asks).
    pub fn turn_facts(&self, slug: &str) -> TurnFacts {
        let mut facts = TurnFacts::default();
        self.source.any_active(&mut |offer| {
            if let Some(e) = offer.fetched.and_then(|fetched| find(fetched, slug)) {
                facts.minimal_client_version = facts.minimal_client_version.max(e.minimal_client_version);
                facts.responses_lite |= e.use_responses_lite;
                facts.effort_updates |= e.supports_reasoning_effort_updates;
                if facts.default_verbosity.is_none() && e.support_verbosity {
                    facts.default_verbosity = e.default_verbosity.clone();
                }
            }
            false
        });
        facts
    }

    /// issue 25: the newest `minimal_client_version` any active account's catalog gives `slug` (the backend
    /// refuses older clients).
    pub fn minimal_client_version(&self, slug: &str) -> Option<entry::ClientVersion> {
        self.turn_facts(slug).minimal_client_version
    }

    /// Ok if some account can be asked for `slug`. An API-key account without a model list accepts any id
    /// (the OpenAI API decides).
    pub async fn check(&self, slug: &str) -> Result<(), GatewayError> {
        // Fast path (every request checks its model): an active account that lists the slug in its configured
        // models or its known catalog, which is what `entries` would merge, without copying the catalogs.
        let listed = self.source.any_active(&mut |offer| {
            offer.configured.into_iter().flatten().any(|m| m == slug)
                || offer.fetched.is_some_and(|fetched| find(fetched, slug).is_some())
        });
        if listed || self.source.open_ended() {
            return Ok(());
        }
        // Boxed: every request's future would otherwise carry room for a catalog fetch inline.
        Box::pin(self.check_fetching(slug)).await
    }

    /// The model check when no known catalog lists the model: the accounts whose catalogs are not known yet are
    /// asked one by one until one lists it (another plan may), or none is left.
    async fn check_fetching(&self, slug: &str) -> Result<(), GatewayError> {
        loop {
            let entries = self.entries().await;
            if find(&entries, slug).is_some() {
                return Ok(());
            }
            if !self.source.fetch_one_missing().await {
                return Err(GatewayError::model_not_found(slug));
            }
        }
    }
}

/// What the active accounts offer together.
struct Union {
    entries: Vec<Arc<ModelEntry>>,
    /// Some active account has a fetched catalog (possibly empty).
    any_fetched: bool,
    /// Some active account has a catalog to fetch.
    any_fetchable: bool,
}

#[cfg(test)]
mod tests;
