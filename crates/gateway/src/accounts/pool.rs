//! The account pool: the accounts the gateway serves from (the store's, else the linked Codex CLI login, then
//! `OPENAI_API_KEY`), re-read without losing their runtime state. What the pool does with them lives beside it:
//! `lease.rs` (which account serves a request), `tokens.rs` (token freshness and saving), `upkeep.rs` (the
//! background jobs, quota polling, catalog fetches), `probe.rs` (the admin check).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dialects::{ErrorKind, GatewayError};
use lru::LruCache;
use parking_lot::Mutex;
use planner::Policy;
use tracing::{info, warn};

use super::{Account, Source};
use crate::auth::codex_file::{self, FileCredentials};
use crate::auth::side::{SideCall, SideCredentials, side_headers};
use crate::config::{Config, Strategy};
use crate::store::{AccountKind, AccountStatus, Store, StoredAccount};

pub struct Pool {
    pub(super) accounts: ArcSwap<Vec<Arc<Account>>>,
    pub(super) store: Arc<Store>,
    pub(super) config: Arc<Config>,
    pub(super) base_http: reqwest::Client,
    /// Conversation key -> its account (`affinity.rs`).
    pub(super) affinity: Mutex<LruCache<String, super::affinity::Affine>>,
    pub(super) turn: AtomicUsize,
    pub(super) sticky: Mutex<Option<String>>,
    /// The rotation strategy: `[routing] strategy` at start, switchable at runtime (the dashboard's Settings).
    /// One relaxed load per lease.
    strategy: AtomicU8,
    /// When each account's last catalog fetch failed (by account id): not asked again before
    /// [`CATALOG_RETRY`](super::upkeep::CATALOG_RETRY).
    pub(super) catalog_failed: Mutex<HashMap<String, Instant>>,
    /// One catalog fetch round at a time: requests that arrive meanwhile wait for it and use its result instead
    /// of fetching again.
    pub(super) catalog_fetching: tokio::sync::Mutex<()>,
    /// Token refresh calls by outcome (the `token_refreshes_total` metric).
    pub refreshes: super::tokens::RefreshCounts,
    /// The scale of learnt capacity, shared with every account (`steward.rs`).
    pub(super) correction: Arc<super::steward::Correction>,
    /// Stored policies this build cannot read, by (account id, stored text): each is logged once, the account
    /// served as `normal` meanwhile.
    unknown_policies: Mutex<HashSet<(String, String)>>,
    /// Conversations held, as last counted (`hold.rs`).
    pub(super) held_total: AtomicUsize,
    /// Held through a whole [`Pool::reload`], so re-reads (after an admin change, the upkeep round, a team change)
    /// run one after another: a round that read the store before `accounts disable` cannot write the old status
    /// back after the disable's own re-read.
    reloading: Mutex<()>,
}

impl Pool {
    /// The store's accounts; if it has none, the linked auth.json; then `OPENAI_API_KEY`.
    pub fn load(config: Arc<Config>, store: Arc<Store>, base_http: reqwest::Client) -> anyhow::Result<Pool> {
        let cap = NonZeroUsize::new(config.routing.affinity_capacity).unwrap_or(NonZeroUsize::MIN);
        let strategy = config.routing.strategy;
        let pool = Pool {
            accounts: ArcSwap::from_pointee(Vec::new()),
            store,
            config,
            base_http,
            affinity: Mutex::new(LruCache::new(cap)),
            refreshes: Default::default(),
            held_total: AtomicUsize::new(0),
            turn: AtomicUsize::new(0),
            sticky: Mutex::new(None),
            strategy: AtomicU8::new(strategy.as_u8()),
            catalog_failed: Mutex::new(HashMap::new()),
            catalog_fetching: tokio::sync::Mutex::new(()),
            reloading: Mutex::new(()),
            correction: Arc::default(),
            unknown_policies: Mutex::new(HashSet::new()),
        };
        pool.reload()?;
        Ok(pool)
    }

    pub fn strategy(&self) -> Strategy {
        Strategy::from_u8(self.strategy.load(Ordering::Relaxed))
    }

    /// Switch the rotation strategy for the next leases (requests in flight keep their account).
    pub fn set_strategy(&self, strategy: Strategy) {
        self.strategy.store(strategy.as_u8(), Ordering::Relaxed);
    }

    fn build(&self, stored: StoredAccount, source: Source) -> Arc<Account> {
        let http = match &stored.proxy {
            Some(p) => upstream_transport::reqwest_client(
                self.config.ca_bundle.as_deref(),
                Some(p),
                // An account's own proxy carries all of its traffic: `NO_PROXY` applies to the global one only.
                false,
                self.config.upstream_h2c,
            )
            .unwrap_or_else(|e| {
                warn!(account = %stored.id, "invalid proxy, using the global client: {e:#}");
                self.base_http.clone()
            }),
            None => self.base_http.clone(),
        };
        let kind = stored.kind;
        let policy = self.policy_of(&stored);
        let mut account = Account::new(stored, source, http, self.config.routing.max_concurrent_per_account);
        account.correction = self.correction.clone();
        account.steward.get_mut().policy = policy;
        if kind == AccountKind::Chatgpt {
            account.installation_id = self.installation_id(&account);
        }
        Arc::new(account)
    }

    /// The owner's policy of a stored row (docs/accounts.md, "Policies"). A value this build cannot read (a newer
    /// version's, a hand edit) is served as `normal` and logged once; the row keeps it (only `accounts policy`
    /// writes another).
    fn policy_of(&self, stored: &StoredAccount) -> Policy {
        let text = stored.policy.as_deref().unwrap_or("normal");
        Policy::parse(text).unwrap_or_else(|| {
            if self.unknown_policies.lock().insert((stored.id.clone(), text.to_string())) {
                warn!(
                    account = %stored.id,
                    policy = text,
                    "the stored account policy cannot be read: the account is used as `normal` (set one with \
                     `codex-gateway accounts policy ID normal|burn_first|preserve[:PERCENT]`)"
                );
            }
            Policy::Normal
        })
    }

    /// A ChatGPT account's installation id (upstream/identity): the store's for a stored account, the Codex CLI's
    /// own file beside a linked login's auth.json (the same machine, the same id, as the official client keeps it).
    fn installation_id(&self, account: &Account) -> Option<String> {
        let fresh = uuid::Uuid::new_v4().to_string();
        let found = match &account.source {
            Source::Store => self.store.installation_id(&account.id, &fresh),
            Source::Linked(auth_json) => super::installation::beside(auth_json, &fresh),
            Source::Env => return None,
        };
        found.unwrap_or_else(|e| {
            // Served with an id of this run only: the next start tries to keep one again.
            warn!(account = %account.id, "cannot keep the account's installation id: {e:#}");
            Some(fresh)
        })
    }

    /// Re-read the store (after login, import, enable/disable, remove). Accounts that stay keep their runtime
    /// state (quota, cooldowns, catalog, in-flight requests).
    pub fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock();
        let current = self.accounts.load_full();
        let mut next: Vec<Arc<Account>> = Vec::new();
        for stored in self.store.list_accounts()? {
            if stored.status == AccountStatus::Unrecognized
                && current.iter().find(|a| a.id == stored.id).is_none_or(|a| a.status().0 != stored.status)
            {
                // Logged when it is first seen, not at every re-read; `accounts list` shows it meanwhile.
                warn!(
                    account = %stored.id,
                    reason = stored.status_reason.as_deref().unwrap_or_default(),
                    "the stored account's status or kind cannot be read: the account is not used (a known status \
                     written by `accounts enable`, or a new login, repairs an unknown status; an unknown kind needs \
                     the build that wrote it)"
                );
            }
            // A changed proxy needs a new HTTP client, and a changed kind (one this build cannot read, say) other
            // credentials, so such an account is rebuilt (its runtime state resets).
            match current.iter().find(|a| {
                a.id == stored.id && a.source == Source::Store && a.proxy == stored.proxy && a.kind == stored.kind
            }) {
                Some(existing) => {
                    *existing.status.write() = (stored.status, stored.status_reason.clone());
                    *existing.label.write() = stored.label.clone();
                    existing.steward.lock().policy = self.policy_of(&stored);
                    if let Some(t) = stored.tokens.clone() {
                        // Never go back to older tokens than the ones in memory. Unsaved rotated tokens give way
                        // only to strictly newer ones (a new login): the store's are the spent ones they replaced,
                        // and may carry the same second.
                        let unsaved = existing.unsaved.lock().is_some();
                        let mut creds = existing.creds.write();
                        if creds.tokens.as_ref().is_none_or(|c| {
                            c.last_refresh < t.last_refresh || (!unsaved && c.last_refresh == t.last_refresh)
                        }) {
                            creds.set_tokens(t);
                        }
                    }
                    next.push(existing.clone());
                }
                None => {
                    let fresh = self.build(stored, Source::Store);
                    // Rebuilt (a new proxy): rotated tokens that are not saved yet are the only live ones, and
                    // the store's are spent, so they move to the new account with their flag.
                    if let Some(old) = current.iter().find(|a| a.id == fresh.id && a.source == Source::Store)
                        && let Some(unsaved) = old.unsaved_tokens()
                        && let Some(tokens) = old.tokens()
                    {
                        fresh.creds.write().set_tokens(tokens);
                        *fresh.unsaved.lock() = Some(unsaved);
                    }
                    next.push(fresh);
                }
            }
        }
        if next.is_empty() {
            let path = self.config.codex_auth_file();
            match codex_file::read(&path).map(|f| f.credentials()) {
                Ok(Some(FileCredentials::Chatgpt(tokens))) => {
                    let existing = current.iter().find(|a| matches!(&a.source, Source::Linked(_))).cloned();
                    next.push(existing.unwrap_or_else(|| {
                        info!(path = %path.display(), "using the Codex CLI login (linked mode)");
                        self.build(super::stored_from_tokens(tokens, Some("codex-cli".into())), Source::Linked(path))
                    }));
                }
                Ok(Some(FileCredentials::ApiKey(key))) => {
                    next.push(
                        self.build(super::stored_from_api_key(&key, Some("codex-cli key".into()), None), Source::Env),
                    );
                }
                Ok(None) => {}
                Err(e) if path.exists() => warn!("ignoring {}: {e:#}", path.display()),
                Err(_) => {}
            }
            // Rotated tokens not yet written back to auth.json are the only live ones: the linked account stays
            // while the file cannot give it tokens, so its commit can still be retried.
            if next.is_empty()
                && let Some(unsaved) =
                    current.iter().find(|a| matches!(&a.source, Source::Linked(_)) && a.unsaved_tokens().is_some())
            {
                next.push(unsaved.clone());
            }
        }
        if let Some(key) = &self.config.openai_api_key
            && !next.iter().any(|a| a.api_key().as_deref() == Some(key.as_str()))
        {
            let existing = current.iter().find(|a| a.source == Source::Env && a.api_key().as_deref() == Some(key));
            next.push(existing.cloned().unwrap_or_else(|| {
                self.build(super::stored_from_api_key(key, Some("OPENAI_API_KEY".into()), None), Source::Env)
            }));
        }
        self.accounts.store(Arc::new(next));
        // An account built anew (a new proxy) counts its held conversations from here.
        self.recount_holds();
        Ok(())
    }

    pub fn accounts(&self) -> Arc<Vec<Arc<Account>>> {
        self.accounts.load_full()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Account>> {
        self.accounts().iter().find(|a| a.id == id).cloned()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn has_usable(&self) -> bool {
        self.accounts().iter().any(|a| a.is_active())
    }

    pub(crate) fn no_account_error(&self) -> GatewayError {
        let list = self.accounts();
        if list.is_empty() {
            return GatewayError::new(
                ErrorKind::NotLoggedIn,
                "codex-gateway has no credentials. Log in with the Codex CLI (`codex login`, the gateway then uses \
                 ~/.codex/auth.json), or run `codex-gateway login` or `codex-gateway accounts import [PATH]`, or \
                 set OPENAI_API_KEY.",
            )
            .with_code("not_logged_in");
        }
        let needing: Vec<String> =
            list.iter().filter(|a| a.status().0 == AccountStatus::NeedsLogin).map(|a| a.describe()).collect();
        if !needing.is_empty() {
            return GatewayError::new(
                ErrorKind::NotLoggedIn,
                format!(
                    "The login of {} is no longer valid. Log in again (`codex-gateway login`, or `codex login` then \
                     `codex-gateway accounts import`).",
                    needing.join(", ")
                ),
            )
            .with_code("needs_login");
        }
        GatewayError::new(
            ErrorKind::Overloaded,
            "No account is enabled. Enable one with `codex-gateway accounts enable ID`.",
        )
        .with_code("no_account_available")
    }
}

/// A side call (the catalog, `wham/*`) through the account's own connection (its proxy, if any), with the
/// official client's headers for that call (`auth::side`).
pub(super) fn side_request(
    account: &Account,
    client: &crate::config::client::ClientIdentity,
    call: SideCall,
    url: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    let account_id = account.chatgpt_account_id();
    let creds = SideCredentials { token, account_id: account_id.as_deref() };
    side_headers(account.http().get(url), call, client, creds).timeout(Duration::from_secs(15))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AccountStatus;

    /// Once the re-read after `accounts disable` has returned, no re-read still running (the upkeep round's)
    /// makes the account active again with what it read before.
    #[test]
    fn a_reload_that_read_before_a_disable_does_not_undo_it() {
        let dir = std::env::temp_dir().join(format!("cgw-pool-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::open(&dir.join("gateway.db")).unwrap_or_else(|e| panic!("{e}")));
        let raw = crate::config::RawConfig::default();
        let env = HashMap::<String, String>::from([("HOME".into(), dir.display().to_string())]);
        let config = Config::resolve(raw, &crate::config::Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3 {
            let stored = super::super::stored_from_api_key(&format!("sk-test-{i}"), Some(format!("k{i}")), None);
            store.upsert_account(&stored).unwrap_or_else(|e| panic!("{e}"));
        }
        let http = reqwest::Client::new();
        let pool = Arc::new(Pool::load(Arc::new(config), store.clone(), http).unwrap_or_else(|e| panic!("{e}")));
        let ids: Vec<String> = pool.accounts().iter().map(|a| a.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rounds = {
            let (pool, stop) = (pool.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = pool.reload();
                }
            })
        };
        for round in 0..60 {
            let id = &ids[round % ids.len()];
            for enabled in [false, true] {
                crate::accounts::manage::set_enabled(&store, id, enabled).unwrap_or_else(|e| panic!("{e}"));
                pool.reload().unwrap_or_else(|e| panic!("{e}"));
                let want = if enabled { AccountStatus::Active } else { AccountStatus::Disabled };
                for _ in 0..20 {
                    let account = pool.accounts().iter().find(|a| &a.id == id).cloned();
                    let status = account.map(|a| a.status().0);
                    assert_eq!(status, Some(want), "{id} in round {round} after its own re-read");
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = rounds.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The stored policy is applied when the pool is built and at each re-read; one this build cannot read (a
    /// newer version's, a hand edit) leaves the account serving as `normal`, logged once however often it is read.
    #[test]
    fn the_stored_policy_is_applied_and_an_unknown_one_serves_as_normal() {
        let dir = std::env::temp_dir().join(format!("cgw-pool-policy-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::open(&dir.join("gateway.db")).unwrap_or_else(|e| panic!("{e}")));
        let raw = crate::config::RawConfig::default();
        let env = HashMap::<String, String>::from([("HOME".into(), dir.display().to_string())]);
        let config = Config::resolve(raw, &crate::config::Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"));
        let row = super::super::stored_from_api_key("sk-test-policy", None, None);
        store.upsert_account(&row).unwrap_or_else(|e| panic!("{e}"));
        store.set_policy(&row.id, "burn_first").unwrap_or_else(|e| panic!("{e}"));
        let pool =
            Pool::load(Arc::new(config), store.clone(), reqwest::Client::new()).unwrap_or_else(|e| panic!("{e}"));
        let policy = || pool.get(&row.id).map(|a| a.policy());
        assert_eq!(policy(), Some(Policy::BurnFirst), "applied when built");
        store.set_policy(&row.id, "preserve:40").unwrap_or_else(|e| panic!("{e}"));
        pool.reload().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(policy(), Some(Policy::Preserve { floor_percent: 40 }), "applied at a re-read");
        store.set_policy(&row.id, "lend:10").unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            pool.reload().unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(policy(), Some(Policy::Normal));
        assert_eq!(pool.unknown_policies.lock().len(), 1, "logged once");
        assert_eq!(
            store.get_account(&row.id).ok().flatten().and_then(|a| a.policy).as_deref(),
            Some("lend:10"),
            "the row keeps what it holds"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
