//! The gateway-wide model catalog: the union of what the accounts serve (their plans' catalogs, fetched from
//! the upstream's `/models?client_version=`, and the models configured for API-key and relay accounts), with a
//! built-in fallback until one is known. Decides which model ids are known (unknown ones get a clear 404), what a
//! model takes (`reasoning.context`, its efforts: [`TurnFacts`]) and which models a client's own model families
//! stand for (the [`Lineup`] of the Anthropic and Gemini dialects). Nothing else in the gateway holds a model
//! list: every model, window, effort and tier a client sees comes from here.
//!
//! It reads the accounts through [`CatalogSource`], which the account pool implements
//! (`accounts/catalog.rs`), so it depends on neither the pool's internals nor the server's state, and its
//! rules are tested here against a plain source. Entries are typed once, when fetched ([`entry`]).

use std::future::Future;
use std::sync::Arc;

use dialects::GatewayError;
use dialects::models::{EffortSet, Lineup, Tier, is_small};
use serde_json::json;

pub mod entry;

pub use entry::{ModelEntry, find};

/// BUILT-IN FALLBACK, used only while no account's catalog is known (before the first fetch, or when every fetch
/// failed) and no model is configured: Codex slugs of mid-2026 (spec/codex-upstream.md). It goes stale by design,
/// which is why it is used for nothing else: once one catalog is fetched, the models, their windows, efforts
/// and tiers are the backend's own, and the families' lineup follows them.
const FALLBACK_MODELS: [(&str, &str, u64, bool); 5] = [
    ("gpt-5.5", "GPT-5.5", 272_000, true),
    ("gpt-5.4", "GPT-5.4", 272_000, true),
    ("gpt-5.4-mini", "GPT-5.4 mini", 272_000, false),
    ("gpt-5.3-codex", "GPT-5.3 Codex", 272_000, true),
    ("gpt-5.2", "GPT-5.2", 272_000, true),
];

/// The efforts of the built-in fallback's models (the catalogs of mid-2026).
const FALLBACK_EFFORTS: [&str; 4] = ["low", "medium", "high", "xhigh"];

/// The built-in fallback ([`FALLBACK_MODELS`]) in the Codex catalog shape (it is also what Codex CLI gets before a
/// catalog is known).
pub fn default_entries() -> Vec<Arc<ModelEntry>> {
    FALLBACK_MODELS
        .iter()
        .enumerate()
        .filter_map(|(i, (slug, name, ctx, fast))| {
            let tiers = if *fast { json!([{"id":"priority","name":"Fast"}]) } else { json!([]) };
            let levels: Vec<_> = FALLBACK_EFFORTS.iter().map(|e| json!({"effort": e, "description": e})).collect();
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
    /// Every catalog that lists it flags it `supports_reasoning_effort_updates` (`upstream::identity::efforts`):
    /// any account may serve the turn, and one whose model does not take the update item would refuse it (the
    /// official client's gate is the serving login's model entry).
    pub effort_updates: bool,
    /// The efforts every catalog that lists efforts for it lists (any account may serve the turn, so only those
    /// all of them take); empty when none lists any, and an effort is then held to the efforts every model took
    /// before catalogs listed them ([`EffortSet::clamp`]).
    pub efforts: EffortSet,
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
            // period when the catalog endpoint fails, see `Pool::catalog_wanted`).
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
        let mut effort_updates = None;
        self.source.any_active(&mut |offer| {
            if let Some(e) = offer.fetched.and_then(|fetched| find(fetched, slug)) {
                facts.minimal_client_version = facts.minimal_client_version.max(e.minimal_client_version);
                facts.responses_lite |= e.use_responses_lite;
                effort_updates = Some(effort_updates.unwrap_or(true) && e.supports_reasoning_effort_updates);
                if facts.default_verbosity.is_none() && e.support_verbosity {
                    facts.default_verbosity = e.default_verbosity.clone();
                }
                let efforts = e.efforts();
                facts.efforts = match (facts.efforts.is_empty(), efforts.is_empty()) {
                    (_, true) => facts.efforts,
                    (true, false) => efforts,
                    // Two plans that disagree: what both take, unless they share nothing (then the first's).
                    (false, false) => {
                        Some(facts.efforts.intersect(efforts)).filter(|s| !s.is_empty()).unwrap_or(facts.efforts)
                    }
                };
            }
            false
        });
        facts.effort_updates = effort_updates.unwrap_or(false);
        facts
    }

    /// Whether some active account lists `slug` (configured or in its known catalog), read in place like the model
    /// check's fast path; no fetch.
    pub fn lists(&self, slug: &str) -> bool {
        self.source.any_active(&mut |offer| {
            offer.configured.into_iter().flatten().any(|m| m == slug)
                || offer.fetched.is_some_and(|fetched| find(fetched, slug).is_some())
        })
    }

    /// Ok if some account can be asked for `slug`. An API-key account without a model list accepts any id
    /// (the OpenAI API decides).
    pub async fn check(&self, slug: &str) -> Result<(), GatewayError> {
        // Fast path (every request checks its model): an active account that lists the slug in its configured
        // models or its known catalog, which is what `entries` would merge, without copying the catalogs.
        if self.lists(slug) || self.source.open_ended() {
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

/// The tiers of the client families come from the active accounts' catalogs (read in place, no fetch: the
/// model check that follows fetches, and a later request sees its catalog): their models by `priority` (lower
/// first; configured models, which have none, after them), in the union's order where equal; models the catalog
/// hides from pickers (`visibility` other than `list`) are not picked. With no catalog known, the built-in
/// fallback's order.
impl<S: CatalogSource> Lineup for Catalog<S> {
    fn slug(&self, tier: Tier) -> String {
        let mut seen: Vec<(i64, usize, String)> = Vec::new();
        self.source.any_active(&mut |offer| {
            let listed = offer.fetched.into_iter().flatten().filter(|e| e.visibility == entry::Visibility::List);
            let configured = offer.configured.into_iter().flatten().map(|slug| (i64::MAX, slug));
            for (priority, slug) in listed.map(|e| (e.priority.unwrap_or(i64::MAX), &e.slug)).chain(configured) {
                if !seen.iter().any(|(_, _, s)| s == slug) {
                    seen.push((priority, seen.len(), slug.clone()));
                }
            }
            false
        });
        if seen.is_empty() {
            seen = FALLBACK_MODELS.iter().enumerate().map(|(i, m)| (i as i64, i, m.0.to_string())).collect();
        }
        seen.sort();
        let next = seen.get(1).or(seen.first()).map(|(_, _, s)| s.clone()).unwrap_or_default();
        match tier {
            Tier::Top => seen.first().map(|(_, _, s)| s.clone()).unwrap_or_default(),
            Tier::Next => next,
            Tier::Small => seen.iter().find(|(_, _, s)| is_small(s)).map(|(_, _, s)| s.clone()).unwrap_or(next),
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
