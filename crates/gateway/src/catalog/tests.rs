//! The catalog's rules against a plain [`CatalogSource`] (no pool, store or upstream): union order and
//! de-duplication, configured models, the built-in fallback, when a first fetch happens, the model check.

use std::sync::atomic::{AtomicUsize, Ordering};

use dialects::ErrorKind;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::*;

/// One account of the test source.
#[derive(Default)]
struct Acct {
    inactive: bool,
    chatgpt: bool,
    configured: Option<Vec<String>>,
    fetched: Mutex<Option<Vec<Arc<ModelEntry>>>>,
    /// What a fetch brings (`None`: the fetch fails).
    upstream: Option<Vec<Arc<ModelEntry>>>,
    /// A fetch was tried (a failed one is not tried again, as the pool remembers failures).
    tried: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Source {
    accounts: Vec<Acct>,
    fetches: AtomicUsize,
}

impl CatalogSource for Source {
    fn open_ended(&self) -> bool {
        self.accounts.iter().any(|a| !a.chatgpt && a.configured.is_none())
    }

    fn any_active(&self, visit: &mut dyn FnMut(Offer<'_>) -> bool) -> bool {
        self.accounts.iter().filter(|a| !a.inactive).any(|a| {
            let fetched = a.fetched.lock();
            visit(Offer { configured: a.configured.as_deref(), fetched: fetched.as_deref(), fetchable: a.chatgpt })
        })
    }

    async fn fetch_one_missing(&self) -> bool {
        for a in self.accounts.iter().filter(|a| a.chatgpt && !a.inactive) {
            let mut fetched = a.fetched.lock();
            if fetched.is_none() && !a.tried.swap(true, Ordering::Relaxed) {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                *fetched = a.upstream.clone();
                return true;
            }
        }
        false
    }
}

fn entry(slug: &str, display: &str) -> Arc<ModelEntry> {
    let e = ModelEntry::from_json(
        json!({"slug": slug, "display_name": display, "supports_reasoning_context": display == "ctx"}),
    );
    Arc::new(e.unwrap_or_else(|| panic!("{slug}")))
}

fn chatgpt(fetched: Option<Vec<Arc<ModelEntry>>>) -> Acct {
    Acct { chatgpt: true, fetched: Mutex::new(fetched), ..Acct::default() }
}

fn relay(models: &[&str]) -> Acct {
    Acct { configured: Some(models.iter().map(|m| m.to_string()).collect()), ..Acct::default() }
}

fn catalog(accounts: Vec<Acct>) -> Catalog<Source> {
    Catalog::new(Arc::new(Source { accounts, ..Source::default() }))
}

fn listed(entries: &[Arc<ModelEntry>]) -> Vec<(&str, &str)> {
    entries.iter().map(|e| (e.slug.as_str(), e.display_name_or_slug())).collect()
}

#[tokio::test]
async fn union_keeps_the_first_entry_of_a_slug_then_adds_configured_models() {
    let c = catalog(vec![
        chatgpt(Some(vec![entry("a", "A"), entry("b", "B")])),
        relay(&["c", "d"]),
        chatgpt(Some(vec![entry("b", "B on another plan"), entry("c", "C")])),
        Acct { inactive: true, ..chatgpt(Some(vec![entry("e", "E")])) },
    ]);
    assert_eq!(listed(&c.entries().await), [("a", "A"), ("b", "B"), ("c", "C"), ("d", "d")]);
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn the_built_in_list_until_a_catalog_is_known() {
    let c = catalog(vec![]);
    let slugs: Vec<String> = c.entries().await.iter().map(|e| e.slug.clone()).collect();
    assert_eq!(slugs, ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex", "gpt-5.2"]);
    assert!(c.check("gpt-5.4").await.is_ok());
    assert_eq!(c.check("gpt-4o").await.map_err(|e| e.kind), Err(ErrorKind::NotFound));
    // A failing fetch leaves the built-in list too.
    let c = catalog(vec![chatgpt(None)]);
    assert_eq!(c.entries().await.len(), FALLBACK_MODELS.len());
    let fast: Vec<bool> =
        default_entries().iter().map(|e| e.service_tiers.iter().any(|t| t.id == "priority")).collect();
    assert_eq!(fast, [true, true, false, true, true]);
}

#[tokio::test]
async fn first_use_fetches_when_no_catalog_is_known_only() {
    let c = catalog(vec![Acct { upstream: Some(vec![entry("a", "A")]), ..chatgpt(None) }]);
    assert_eq!(listed(&c.entries().await), [("a", "A")]);
    assert_eq!(listed(&c.entries().await), [("a", "A")]);
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 1);
    // One account's catalog is known: listing does not wait for another's (leasing fetches those).
    let c = catalog(vec![
        chatgpt(Some(vec![entry("a", "A")])),
        Acct { upstream: Some(vec![entry("b", "B")]), ..chatgpt(None) },
    ]);
    assert_eq!(listed(&c.entries().await), [("a", "A")]);
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 0);
}

/// The accounts' catalogs are fetched one at a time, as they are needed: the first use fetches one account's; a
/// model no known catalog lists fetches the others' one by one until one lists it (another plan may).
#[tokio::test]
async fn catalogs_are_fetched_one_account_at_a_time_until_one_lists_the_model() {
    let c = catalog(vec![
        Acct { upstream: Some(vec![entry("a", "A")]), ..chatgpt(None) },
        Acct { upstream: Some(vec![entry("b", "B")]), ..chatgpt(None) },
        Acct { upstream: Some(vec![entry("c", "C")]), ..chatgpt(None) },
    ]);
    assert!(c.check("a").await.is_ok());
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 1, "one account's catalog answers the first use");
    assert!(c.check("b").await.is_ok());
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 2);
    assert_eq!(c.check("z").await.map_err(|e| e.kind), Err(ErrorKind::NotFound));
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 3, "every catalog asked once before a model is refused");
    assert_eq!(c.check("z").await.map_err(|e| e.kind), Err(ErrorKind::NotFound));
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn check_reads_the_known_catalogs_in_place() {
    let c = catalog(vec![chatgpt(Some(vec![entry("a", "A")])), relay(&["r"])]);
    assert!(c.check("a").await.is_ok());
    assert!(c.check("r").await.is_ok());
    assert_eq!(c.check("b").await.map_err(|e| e.kind), Err(ErrorKind::NotFound));
    assert_eq!(c.source.fetches.load(Ordering::Relaxed), 0);
    // Not fetched yet: the check fetches, then knows.
    let c = catalog(vec![Acct { upstream: Some(vec![entry("a", "A")]), ..chatgpt(None) }]);
    assert!(c.check("a").await.is_ok());
    assert_eq!(
        c.check("gpt-5.4").await.map_err(|e| e.kind),
        Err(ErrorKind::NotFound),
        "the plan's list, not the built-in"
    );
    // An API key without a model list takes any id.
    let c = catalog(vec![chatgpt(Some(vec![entry("a", "A")])), Acct::default()]);
    assert!(c.check("anything").await.is_ok());
}

#[test]
fn reasoning_context_where_an_active_catalog_says_so() {
    let c = catalog(vec![
        chatgpt(Some(vec![entry("a", "A"), entry("sol", "ctx")])),
        Acct { inactive: true, ..chatgpt(Some(vec![entry("a", "ctx")])) },
        relay(&["sol-relay"]),
    ]);
    assert!(c.supports_reasoning_context("sol"));
    assert!(!c.supports_reasoning_context("a"), "only an inactive account's catalog says so");
    assert!(!c.supports_reasoning_context("sol-relay"), "configured models: unknown, so no");
    assert!(!c.supports_reasoning_context("missing"));
}

#[test]
fn minimal_client_version_is_the_newest_an_active_catalog_gives() {
    let with_min = |slug: &str, v: &str| {
        Arc::new(
            ModelEntry::from_json(json!({"slug": slug, "minimal_client_version": v}))
                .unwrap_or_else(|| panic!("{slug}")),
        )
    };
    let c = catalog(vec![
        chatgpt(Some(vec![with_min("sol", "0.144.0"), entry("a", "A")])),
        chatgpt(Some(vec![with_min("sol", "0.170.0")])),
        Acct { inactive: true, ..chatgpt(Some(vec![with_min("sol", "0.999.0")])) },
    ]);
    let v = |s: &str| crate::catalog::entry::ClientVersion::parse(s);
    assert_eq!(c.turn_facts("sol").minimal_client_version, v("0.170.0"));
    assert_eq!(c.turn_facts("a").minimal_client_version, None);
    assert_eq!(c.turn_facts("missing").minimal_client_version, None);
}

#[test]
fn a_model_is_responses_lite_when_an_active_catalog_flags_it() {
    let lite = |slug: &str, flag: Value| {
        Arc::new(
            ModelEntry::from_json(json!({"slug": slug, "use_responses_lite": flag}))
                .unwrap_or_else(|| panic!("{slug}")),
        )
    };
    let c = catalog(vec![
        chatgpt(Some(vec![lite("l", json!(false)), lite("n", json!(null)), entry("a", "A")])),
        chatgpt(Some(vec![lite("l", json!(true))])),
        Acct { inactive: true, ..chatgpt(Some(vec![lite("a", json!(true))])) },
    ]);
    assert!(c.turn_facts("l").responses_lite, "one active catalog says so");
    assert!(!c.turn_facts("n").responses_lite, "null reads as no");
    assert!(!c.turn_facts("a").responses_lite, "only an inactive account's catalog says so");
    assert!(!c.turn_facts("missing").responses_lite);
}

/// An entry with its efforts and priority, as the backend lists them.
fn ranked(slug: &str, priority: i64, efforts: &[&str]) -> Arc<ModelEntry> {
    let levels: Vec<Value> = efforts.iter().map(|e| json!({"effort": e, "description": e})).collect();
    let e = ModelEntry::from_json(json!({"slug": slug, "priority": priority, "supported_reasoning_levels": levels}));
    Arc::new(e.unwrap_or_else(|| panic!("{slug}")))
}

/// A model's efforts are what every active catalog that lists efforts for it lists: the request may go to any
/// of those accounts. No catalog listing any leaves the set empty (the classic efforts then, `EffortSet::clamp`).
#[test]
fn a_models_efforts_are_what_every_active_catalog_lists() {
    use dialects::models::Effort;
    let six = ["low", "medium", "high", "xhigh", "max", "ultra"];
    let c = catalog(vec![
        chatgpt(Some(vec![ranked("sol", 0, &six), ranked("old", 1, &["low", "medium", "high", "xhigh"])])),
        chatgpt(Some(vec![ranked("sol", 0, &["low", "medium", "high", "xhigh", "max"])])),
        chatgpt(Some(vec![ranked("sol", 0, &[])])),
        Acct { inactive: true, ..chatgpt(Some(vec![ranked("old", 1, &six)])) },
        relay(&["relayed"]),
    ]);
    let efforts = |slug: &str| c.turn_facts(slug).efforts.iter().map(Effort::as_str).collect::<Vec<_>>();
    assert_eq!(efforts("sol"), ["low", "medium", "high", "xhigh", "max"], "both plans take these");
    assert_eq!(efforts("old"), ["low", "medium", "high", "xhigh"], "an inactive account's catalog says nothing");
    assert!(efforts("relayed").is_empty() && efforts("missing").is_empty());
    assert_eq!(c.turn_facts("sol").efforts.clamp(Effort::Ultra), Effort::Max);
    assert_eq!(c.turn_facts("old").efforts.clamp(Effort::Max), Effort::Xhigh);
    assert!(c.lists("sol") && c.lists("relayed") && !c.lists("missing"));
}

/// The client families' tiers follow the catalogs: the first model by priority, the next one, the first small
/// one; hidden models are not picked; configured models come after ranked ones; nothing known: the fallback.
#[test]
fn the_lineup_follows_the_catalogs() {
    use dialects::models::{Lineup, Tier};
    let hidden = Arc::new(
        ModelEntry::from_json(json!({"slug": "secret", "priority": -1, "visibility": "hide"}))
            .unwrap_or_else(|| panic!("hidden")),
    );
    let c = catalog(vec![
        chatgpt(Some(vec![ranked("gpt-5.5", 3, &[]), ranked("gpt-5.4-mini", 5, &[]), hidden])),
        chatgpt(Some(vec![ranked("gpt-6.2-sol", 0, &[]), ranked("gpt-6.2-astra", 1, &[])])),
        relay(&["relayed-nano"]),
    ]);
    let tiers = [Tier::Top, Tier::Next, Tier::Small].map(|t| c.slug(t));
    assert_eq!(tiers, ["gpt-6.2-sol", "gpt-6.2-astra", "gpt-5.4-mini"]);
    // No small model listed: the next one.
    let c = catalog(vec![chatgpt(Some(vec![ranked("b", 2, &[]), ranked("a", 1, &[])]))]);
    assert_eq!([Tier::Top, Tier::Next, Tier::Small].map(|t| c.slug(t)), ["a", "b", "b"]);
    let c = catalog(vec![relay(&["only"])]);
    assert_eq!([Tier::Top, Tier::Next, Tier::Small].map(|t| c.slug(t)), ["only", "only", "only"]);
    // Nothing known yet: the built-in fallback's order.
    let c = catalog(vec![chatgpt(None)]);
    assert_eq!([Tier::Top, Tier::Next, Tier::Small].map(|t| c.slug(t)), ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"]);
}
