//! The account pool: which account serves the next request (strategy, plan priority, plan routing, conversation
//! affinity, quota, cooldowns, concurrency), token freshness (single-flight refresh per account), and the
//! background jobs (refresh ahead of expiry, quota polling, catalog refresh).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dialects::failure::{CooldownScope, StatusChange};
use dialects::{ErrorKind, GatewayError, UpstreamFailure};
use lru::LruCache;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{info, warn};

use super::select::{self, Candidate};
use super::{Account, AccountCatalog, Blocked, QuotaSnapshot, Source, UnsavedTokens, bearer_header, quota};
use crate::auth::codex_file::{self, FileCredentials};
use crate::auth::refresh::{RefreshError, needs_refresh, refresh_within};
use crate::auth::{Tokens, jwt, now_unix};
use crate::catalog::entry::ModelsAnswer;
use crate::config::Config;
use crate::store::{AccountKind, AccountStatus, Store, StoredAccount};
use crate::upstream::CODEX_CLIENT_VERSION;

/// How long a fetched model catalog is trusted.
const CATALOG_TTL: Duration = Duration::from_secs(600);
/// How long a failed catalog fetch is remembered before an account's catalog is asked for again: a failing or
/// hanging endpoint must not cost every request a fetch.
const CATALOG_RETRY: Duration = Duration::from_secs(30);
/// Refreshes slower than this are logged.
const SLOW_REFRESH: Duration = Duration::from_secs(3);
/// Commits of rotated tokens tried before the request goes on with them unsaved (the upkeep retries later).
/// SQLite already waits out a busy database (`busy_timeout`); a second try covers a passing I/O error.
const COMMIT_ATTEMPTS: u32 = 2;
const COMMIT_PAUSE: Duration = Duration::from_millis(100);

/// Why no account was leased.
#[derive(Debug)]
pub enum LeaseError {
    /// Every account that could serve was already tried for this request.
    Exhausted,
    /// No account's plan serves the model.
    UnknownModel(GatewayError),
    /// Accounts serve the model but none can now (cooling down, busy, none enabled, none logged in).
    Unavailable(GatewayError),
}

/// An account reserved for one request; the concurrency slot is released on drop.
pub struct Lease {
    pub account: Arc<Account>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.account.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Pool {
    accounts: ArcSwap<Vec<Arc<Account>>>,
    store: Arc<Store>,
    config: Arc<Config>,
    base_http: reqwest::Client,
    affinity: Mutex<LruCache<String, String>>,
    turn: AtomicUsize,
    sticky: Mutex<Option<String>>,
    /// When each account's last catalog fetch failed (by account id): not asked again before [`CATALOG_RETRY`].
    catalog_failed: Mutex<std::collections::HashMap<String, Instant>>,
    /// One catalog fetch round at a time: requests that arrive meanwhile wait for it and use its result instead
    /// of fetching again.
    catalog_fetching: tokio::sync::Mutex<()>,
}

impl Pool {
    /// The store's accounts; if it has none, the linked auth.json; then `OPENAI_API_KEY`.
    pub fn load(config: Arc<Config>, store: Arc<Store>, base_http: reqwest::Client) -> anyhow::Result<Pool> {
        let cap = NonZeroUsize::new(config.routing.affinity_capacity).unwrap_or(NonZeroUsize::MIN);
        let pool = Pool {
            accounts: ArcSwap::from_pointee(Vec::new()),
            store,
            config,
            base_http,
            affinity: Mutex::new(LruCache::new(cap)),
            turn: AtomicUsize::new(0),
            sticky: Mutex::new(None),
            catalog_failed: Mutex::new(std::collections::HashMap::new()),
            catalog_fetching: tokio::sync::Mutex::new(()),
        };
        pool.reload()?;
        Ok(pool)
    }

    fn build(&self, stored: StoredAccount, source: Source) -> Arc<Account> {
        let http = match &stored.proxy {
            Some(p) => match crate::upstream::build_http_client_with_proxy(&self.config, Some(p)) {
                Ok(c) => c,
                Err(e) => {
                    warn!(account = %stored.id, "invalid proxy, using the global client: {e:#}");
                    self.base_http.clone()
                }
            },
            None => self.base_http.clone(),
        };
        Arc::new(Account::new(stored, source, http, self.config.routing.max_concurrent_per_account))
    }

    /// Re-read the store (after login, import, enable/disable, remove). Accounts that stay keep their runtime
    /// state (quota, cooldowns, catalog, in-flight requests).
    pub fn reload(&self) -> anyhow::Result<()> {
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
                    "the stored account status cannot be read: the account is not used until it is enabled again"
                );
            }
            // A changed proxy needs a new HTTP client, so such an account is rebuilt (its runtime state resets).
            match current.iter().find(|a| a.id == stored.id && a.source == Source::Store && a.proxy == stored.proxy) {
                Some(existing) => {
                    *existing.status.write() = (stored.status, stored.status_reason.clone());
                    *existing.label.write() = stored.label.clone();
                    if let Some(t) = stored.tokens.clone() {
                        // Never go back to older tokens than the ones in memory. Unsaved rotated tokens give way
                        // only to strictly newer ones (a new login): the store's are the spent ones they replaced,
                        // and may carry the same second.
                        let unsaved = existing.unsaved.lock().is_some();
                        let mut creds = existing.creds.write();
                        if creds.tokens().is_none_or(|c| {
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

    /// Any account that can serve requests now.
    pub fn has_usable(&self) -> bool {
        self.accounts().iter().any(|a| a.is_active())
    }

    /// Reserve an account for a request for `model`. `conversation` keeps a conversation on one account while
    /// that account can serve (the upstream prompt cache is per account); `exclude` lists accounts already
    /// tried for this request. Waits (bounded) when every eligible account is at its concurrency limit.
    pub async fn lease(
        &self,
        model: &str,
        conversation: Option<&str>,
        exclude: &[String],
    ) -> Result<Lease, LeaseError> {
        let list = self.accounts();
        self.fetch_missing_catalogs(&list).await;
        let now = now_unix();
        let routing = &self.config.routing;
        let mut candidates = Vec::new();
        let mut any_active = false;
        let mut any_serving = false;
        let mut soonest: Option<Blocked> = None;
        for (index, a) in list.iter().enumerate() {
            if !a.is_active() || exclude.contains(&a.id) {
                continue;
            }
            any_active = true;
            if !a.serves(model) {
                continue;
            }
            any_serving = true;
            if let Some(blocked) = a.blocked(model, now) {
                if soonest.as_ref().is_none_or(|s| blocked.until < s.until) {
                    soonest = Some(blocked);
                }
                continue;
            }
            let (headroom, reset_at) = a.quota.read().headroom();
            candidates.push(Candidate {
                index,
                plan_rank: select::plan_rank(a.plan().as_deref(), &routing.plan_priority),
                headroom,
                reset_at,
                in_flight: a.in_flight(),
                last_used: a.last_used.load(Ordering::Relaxed),
            });
        }
        if candidates.is_empty() {
            return Err(match (any_active, any_serving, soonest) {
                (_, true, Some(Blocked { until, reason, note })) => {
                    let secs = (until - now).max(1) as u64;
                    let (kind, code) = reason.pool_error();
                    LeaseError::Unavailable(
                        GatewayError::new(
                            kind,
                            format!("Every account that serves `{model}` is unavailable ({note}); the soonest is available again in {secs} s."),
                        )
                        .with_code(code)
                        .with_retry_after(secs),
                    )
                }
                // Accounts were tried for this request: one of them served the model.
                _ if !exclude.is_empty() => LeaseError::Exhausted,
                (true, false, _) => LeaseError::UnknownModel(
                    GatewayError::new(
                        ErrorKind::NotFound,
                        format!(
                            "No account's plan serves the model `{model}`. GET /v1/models lists what your accounts can use."
                        ),
                    )
                    .with_code("model_not_found"),
                ),
                _ => LeaseError::Unavailable(self.no_account_error()),
            });
        }
        let affine = conversation.and_then(|k| self.affinity.lock().get(k).cloned());
        let affine_index = affine.and_then(|id| candidates.iter().find(|c| list[c.index].id == id).map(|c| c.index));
        let mut order: Vec<usize> = match affine_index {
            Some(i) => vec![i],
            None => Vec::new(),
        };
        let sticky = self.sticky.lock().clone().and_then(|id| list.iter().position(|a| a.id == id));
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for i in select::order(candidates, routing.strategy, turn, sticky) {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        // A free slot on the preferred accounts first; else wait in the first one's bounded queue.
        let mut chosen = None;
        for &i in &order {
            if let Ok(permit) = list[i].slots.clone().try_acquire_owned() {
                chosen = Some((i, permit));
                break;
            }
        }
        let (index, permit) = match chosen {
            Some(c) => c,
            None => {
                let i = order[0];
                let account = &list[i];
                if account.waiting.load(Ordering::Relaxed) >= routing.queue_per_account {
                    return Err(LeaseError::Unavailable(busy_error()));
                }
                account.waiting.fetch_add(1, Ordering::Relaxed);
                let waited = tokio::time::timeout(routing.queue_timeout, account.slots.clone().acquire_owned()).await;
                account.waiting.fetch_sub(1, Ordering::Relaxed);
                match waited {
                    Ok(Ok(p)) => (i, p),
                    _ => return Err(LeaseError::Unavailable(busy_error())),
                }
            }
        };
        let account = list[index].clone();
        if let Some(k) = conversation {
            self.affinity.lock().put(k.to_string(), account.id.clone());
        }
        *self.sticky.lock() = Some(account.id.clone());
        account.in_flight.fetch_add(1, Ordering::Relaxed);
        account.requests.fetch_add(1, Ordering::Relaxed);
        account.last_used.store(crate::auth::now_ms(), Ordering::Relaxed);
        Ok(Lease { account, _permit: permit })
    }

    fn no_account_error(&self) -> GatewayError {
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

    /// After a successful upstream answer: quota headers, last use.
    pub fn record_success(&self, account: &Account, headers: &HeaderMap) {
        if let Some(q) = QuotaSnapshot::from_headers(headers, now_unix()) {
            *account.quota.write() = q;
        }
    }

    /// After a failure that another account might not have: what the failure decides for the account (see
    /// `dialects::failure`): a cooldown, a status change, or nothing.
    pub fn record_failure(&self, account: &Account, model: &str, failure: &UpstreamFailure) {
        let now = now_unix();
        if let Some(rule) = failure.cooldown() {
            let until = now.saturating_add(i64::try_from(rule.secs).unwrap_or(i64::MAX));
            match rule.scope {
                CooldownScope::Account => account.cool_down(None, until, rule.reason, &rule.note),
                CooldownScope::Model => account.cool_down(Some(model), until, rule.reason, &rule.note),
                CooldownScope::AccountQuota => {
                    account.cool_down(None, until, rule.reason, &rule.note);
                    let mut q = account.quota.write();
                    q.primary_used_percent = Some(100.0);
                    q.primary_reset_at = Some(until);
                    q.updated_at = now;
                }
            }
        }
        if let Some(change) = failure.account_status() {
            match change {
                StatusChange::Deactivated => {
                    let message = failure.to_error().message;
                    *account.status.write() =
                        (AccountStatus::Disabled, Some(format!("deactivated upstream: {message}")));
                    self.persist_status(account, AccountStatus::Disabled, "deactivated upstream");
                }
            }
        }
    }

    fn persist_status(&self, account: &Account, status: AccountStatus, reason: &str) {
        if account.source == Source::Store {
            let (store, id, reason) = (self.store.clone(), account.id.clone(), reason.to_string());
            tokio::task::spawn_blocking(move || store.set_status(&id, status, Some(&reason)));
        }
    }

    /// An access token for `account`, refreshed first when it is about to expire. With `after_401` set to the
    /// token the upstream just refused, a refresh is forced unless another request already replaced it.
    pub async fn access_token(&self, account: &Account, after_401: Option<&str>) -> Result<String, GatewayError> {
        let now = now_unix();
        // The common case, every request: the current token is fresh. Read it without copying the other tokens.
        let fresh = match account.creds.read().access_token(now) {
            None => None,
            Some((token, due)) => match after_401 {
                Some(refused) => (token != refused).then(|| token.to_string()),
                None => (!due).then(|| token.to_string()),
            },
        };
        if let Some(token) = fresh {
            return Ok(token);
        }
        if account.tokens().is_none() {
            return account.api_key().ok_or_else(|| GatewayError::internal("account has no credentials"));
        }
        let stale = |t: &Tokens| match after_401 {
            Some(refused) => t.access_token == refused,
            None => needs_refresh(t, now),
        };
        // Boxed: every request's future would otherwise carry room for the refresh (an HTTP exchange) inline.
        Box::pin(self.refresh_locked(account, &stale)).await
    }

    /// The `Authorization` value for an upstream request through `account`: the prebuilt one while the access
    /// token is fresh (every request), else built from [`Pool::access_token`] (refresh due, API keys, after a 401).
    pub async fn authorization(&self, account: &Account, after_401: Option<&str>) -> Result<HeaderValue, GatewayError> {
        if after_401.is_none()
            && let Some(value) = account.creds.read().fresh_bearer(now_unix())
        {
            return Ok(value);
        }
        let token = self.access_token(account, after_401).await?;
        bearer_header(&token)
            .ok_or_else(|| GatewayError::internal("the account's credential cannot be sent in a header"))
    }

    /// Refresh now, whatever the token's age (admin `refresh`).
    pub async fn force_refresh(&self, account: &Account) -> Result<(), GatewayError> {
        let Some(current) = account.tokens() else {
            return Err(GatewayError::invalid("only ChatGPT accounts have tokens to refresh"));
        };
        self.access_token(account, Some(&current.access_token)).await.map(|_| ())
    }

    /// Reachability and latency of the upstream through this account's connection (its proxy, if any): the
    /// model catalog for ChatGPT accounts, `/models` for API-key and relay accounts.
    pub async fn check(&self, account: &Account) -> Value {
        let started = Instant::now();
        let token = match self.access_token(account, None).await {
            Ok(t) => t,
            Err(e) => return serde_json::json!({"id": account.id, "ok": false, "error": e.message}),
        };
        let url = match (&account.kind, &account.base_url) {
            (AccountKind::Chatgpt, _) => {
                format!("{}/models?client_version={CODEX_CLIENT_VERSION}", self.config.upstream_base_url)
            }
            (_, Some(base)) => format!("{base}/models"),
            (_, None) => format!("{}/models", self.config.openai_base_url),
        };
        let req = side_request(account, &url, &token);
        match req.send().await {
            Ok(r) => serde_json::json!({
                "id": account.id,
                "ok": r.status().is_success(),
                "status": r.status().as_u16(),
                "latency_ms": started.elapsed().as_millis() as u64,
                "via": account.proxy.as_deref().map(super::redact_proxy).or_else(|| self.config.proxy.as_deref().map(super::redact_proxy)),
            }),
            Err(e) => serde_json::json!({"id": account.id, "ok": false, "error": e.without_url().to_string(),
                "latency_ms": started.elapsed().as_millis() as u64}),
        }
    }

    /// Refresh ahead of expiry (background): when the token expires within `window`.
    pub async fn refresh_ahead(&self, account: &Account, window: i64) -> Result<(), GatewayError> {
        let now = now_unix();
        let stale = |t: &Tokens| match jwt::claims(&t.access_token).and_then(|c| c.exp) {
            Some(exp) => exp - now < window,
            None => needs_refresh(t, now),
        };
        match account.tokens() {
            Some(t) if stale(&t) => self.refresh_locked(account, &stale).await.map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The single-flight refresh: one per account at a time; waiters re-check and reuse the result.
    async fn refresh_locked(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
    ) -> Result<String, GatewayError> {
        let _guard = account.refresh_lock.lock().await;
        let Some(mut current) = account.tokens() else {
            return Err(GatewayError::internal("account has no tokens"));
        };
        if let Source::Linked(path) = &account.source
            && let Ok(Some(FileCredentials::Chatgpt(file_tokens))) = codex_file::read(path).map(|f| f.credentials())
            && file_wins(account, &file_tokens, &current)
        {
            // The Codex CLI refreshed: adopt its tokens rather than spending our (now dead) refresh token.
            info!(account = %account.id, "adopting tokens refreshed by the Codex CLI");
            current = file_tokens;
            account.creds.write().set_tokens(current.clone());
            *account.status.write() = (AccountStatus::Active, None);
        }
        if !stale(&current) {
            return Ok(current.access_token);
        }
        if account.status().0 == AccountStatus::NeedsLogin {
            return Err(self.no_account_error());
        }
        let started = Instant::now();
        let limit = self.config.timeouts.token_refresh;
        let result = refresh_within(account.http(), &self.config.auth_issuer, &current, limit).await;
        if started.elapsed() > SLOW_REFRESH {
            warn!(account = %account.id, ms = started.elapsed().as_millis() as u64, "the token refresh was slow");
        }
        match result {
            Ok(new_tokens) => {
                // The old refresh token died when the issuer answered: these are the only live tokens. They are
                // committed before anything uses them. A commit that fails does not drop them (that would lose
                // the login): they are used from memory, the account is flagged, and the commit is retried.
                self.commit_tokens(account, &new_tokens, COMMIT_ATTEMPTS).await;
                account.creds.write().set_tokens(new_tokens.clone());
                *account.status.write() = (AccountStatus::Active, None);
                info!(account = %account.id, "access token refreshed");
                Ok(new_tokens.access_token)
            }
            Err(RefreshError::Permanent(reason)) if self.adopt_linked(account, &current) => {
                info!(account = %account.id, %reason, "refresh refused, but the Codex CLI just saved newer tokens; using those");
                match account.tokens() {
                    Some(t) if !stale(&t) => Ok(t.access_token),
                    _ => Err(GatewayError::new(
                        ErrorKind::UpstreamUnavailable,
                        "The shared Codex login changed during a refresh; retry.",
                    )),
                }
            }
            Err(RefreshError::Permanent(reason)) => {
                warn!(account = %account.id, %reason, "refresh token rejected: account needs login");
                *account.status.write() = (AccountStatus::NeedsLogin, Some(reason.clone()));
                if account.source == Source::Store {
                    let (store, id) = (self.store.clone(), account.id.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        store.set_status(&id, AccountStatus::NeedsLogin, Some(&reason))
                    })
                    .await;
                }
                Err(self.no_account_error())
            }
            Err(RefreshError::TimedOut(limit)) => {
                warn!(account = %account.id, "the token endpoint did not answer in time; the login is kept");
                Err(GatewayError::new(
                    ErrorKind::Timeout,
                    format!(
                        "Could not refresh the ChatGPT login of {}: the token endpoint did not answer within {} s \
                         (token_refresh_timeout_secs). The login is kept; retry shortly.",
                        account.describe(),
                        limit.as_secs_f64()
                    ),
                )
                .with_code("token_refresh_timeout"))
            }
            Err(RefreshError::Transient(msg)) => {
                warn!(account = %account.id, %msg, "token refresh failed");
                Err(GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    format!("Could not refresh the ChatGPT login: {msg}"),
                ))
            }
        }
    }

    /// Linked mode: if auth.json now holds a different refresh token than `spent`, adopt the file's tokens.
    fn adopt_linked(&self, account: &Account, spent: &Tokens) -> bool {
        let Source::Linked(path) = &account.source else { return false };
        match codex_file::read(path).map(|f| f.credentials()) {
            Ok(Some(FileCredentials::Chatgpt(t))) if file_wins(account, &t, spent) => {
                account.creds.write().set_tokens(t);
                true
            }
            _ => false,
        }
    }

    /// Commit rotated tokens where the account's credentials live, trying `attempts` times. On success the
    /// account's `tokens_not_saved` flag is cleared; on failure it is set (or its count of attempts grows) and
    /// the tokens stay in memory for [`Pool::retry_unsaved_tokens`]. Callers hold the account's refresh lock.
    async fn commit_tokens(&self, account: &Account, tokens: &Tokens, attempts: u32) {
        let mut error = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(COMMIT_PAUSE).await;
            }
            match self.write_tokens(account, tokens).await {
                Ok(()) => {
                    if let Some(unsaved) = account.unsaved.lock().take() {
                        info!(account = %account.id, after = unsaved.attempts, "the rotated tokens are saved now");
                    }
                    return;
                }
                Err(e) => error = format!("{e:#}"),
            }
        }
        warn!(
            account = %account.id,
            "could not save the rotated tokens ({error}); they stay in memory and saving is retried: until it \
             succeeds, a restart loses this login"
        );
        let mut unsaved = account.unsaved.lock();
        match unsaved.as_mut() {
            Some(u) => {
                u.attempts = u.attempts.saturating_add(attempts);
                u.error = error;
            }
            None => *unsaved = Some(UnsavedTokens { since: now_unix(), attempts, error }),
        }
    }

    /// Try again to commit the tokens of every account flagged `tokens_not_saved` (each upkeep round). Under
    /// the account's refresh lock, so it cannot race a refresh; it saves whatever tokens are newest by then.
    pub async fn retry_unsaved_tokens(&self) {
        for account in self.accounts().iter() {
            if account.unsaved.lock().is_none() {
                continue;
            }
            let _guard = account.refresh_lock.lock().await;
            if let Some(tokens) = account.tokens() {
                self.commit_tokens(account, &tokens, 1).await;
            }
        }
    }

    async fn write_tokens(&self, account: &Account, tokens: &Tokens) -> anyhow::Result<()> {
        match &account.source {
            Source::Store => {
                let (store, id, t) = (self.store.clone(), account.id.clone(), tokens.clone());
                tokio::task::spawn_blocking(move || store.save_tokens(&id, &t))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("store task failed: {e}")))
            }
            Source::Linked(path) => {
                let (path, t) = (path.clone(), tokens.clone());
                tokio::task::spawn_blocking(move || codex_file::write_tokens(&path, &t))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("file task failed: {e}")))
            }
            Source::Env => Ok(()),
        }
    }

    /// Whether `account` has no catalog yet and its last fetch did not fail recently.
    fn catalog_wanted(&self, account: &Account) -> bool {
        account.kind == AccountKind::Chatgpt
            && account.is_active()
            && account.catalog.read().is_none()
            && self.catalog_failed.lock().get(&account.id).is_none_or(|at| at.elapsed() >= CATALOG_RETRY)
    }

    /// Fetch the model catalog of every ChatGPT account that has none yet (first use). One round at a time; an
    /// account whose fetch failed is not asked again for [`CATALOG_RETRY`], so a request waits for at most one
    /// round (bounded by `catalog_timeout_secs`), and a failing or hanging catalog costs one fetch per account
    /// and retry period, not one or two per request.
    pub async fn fetch_missing_catalogs(&self, list: &[Arc<Account>]) {
        if !list.iter().any(|a| self.catalog_wanted(a)) {
            return;
        }
        let _round = self.catalog_fetching.lock().await;
        // Whoever held the lock may have fetched (or failed) them meanwhile.
        let missing: Vec<&Arc<Account>> = list.iter().filter(|a| self.catalog_wanted(a)).collect();
        futures_util::future::join_all(missing.into_iter().map(|a| self.refresh_catalog(a))).await;
    }

    /// Fetch `{upstream}/models?client_version=` with the account's token, within `catalog_timeout_secs`, and
    /// parse its entries once (an odd entry is reduced or skipped, not the catalog: `ModelEntry::from_json`).
    /// Failures leave the catalog as it was (unknown: the account is then assumed to serve every model) and are
    /// remembered for [`CATALOG_RETRY`].
    pub async fn refresh_catalog(&self, account: &Account) {
        let entries = match self.access_token(account, None).await {
            Ok(token) => {
                let url = format!("{}/models?client_version={CODEX_CLIENT_VERSION}", self.config.upstream_base_url);
                let req = side_request(account, &url, &token).timeout(self.config.timeouts.catalog);
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        r.json::<ModelsAnswer>().await.ok().map(ModelsAnswer::into_entries)
                    }
                    _ => None,
                }
            }
            Err(_) => None,
        };
        match entries {
            Some(entries) => {
                *account.catalog.write() = Some(AccountCatalog { fetched: Instant::now(), entries });
                self.catalog_failed.lock().remove(&account.id);
            }
            None => {
                warn!(account = %account.id, "could not fetch the model catalog; retrying in {} s", CATALOG_RETRY.as_secs());
                self.catalog_failed.lock().insert(account.id.clone(), Instant::now());
            }
        }
    }

    /// Read `/wham/usage` for an account's quota.
    pub async fn poll_usage(&self, account: &Account) {
        let token = match self.access_token(account, None).await {
            Ok(t) => t,
            Err(e) => {
                warn!(account = %account.id, "cannot read quota: {e}");
                return;
            }
        };
        let url = format!("{}/wham/usage", self.config.chatgpt_base_url);
        let req = side_request(account, &url, &token);
        let answer = match req.send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
            Ok(r) => {
                warn!(account = %account.id, status = r.status().as_u16(), "quota endpoint refused");
                None
            }
            Err(e) => {
                warn!(account = %account.id, "quota endpoint unreachable: {}", e.without_url());
                None
            }
        };
        if let Some(v) = answer {
            let (snap, plan) = quota::from_usage(&v, now_unix());
            *account.quota.write() = snap;
            if plan.is_some() {
                *account.plan.write() = plan;
            }
        }
    }

    /// Background upkeep, forever: refresh tokens ahead of expiry (with jitter, so many accounts do not all
    /// refresh at once), poll quota of accounts not used recently, refresh stale catalogs.
    pub async fn upkeep(self: Arc<Self>) {
        // The first round waits: requests refresh on demand, and a refresh at start-up would race a Codex CLI
        // that is refreshing the same linked login right now.
        let period = self.config.upkeep_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Pick up changes made by the CLI (`accounts disable`, `login`, ...) to the shared store. The read is
            // blocking SQLite work: off the request workers, which may be a single one.
            let pool = self.clone();
            match tokio::task::spawn_blocking(move || pool.reload()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("could not re-read the account store: {e:#}"),
                Err(e) => warn!("the account store re-read stopped: {e}"),
            }
            self.retry_unsaved_tokens().await;
            let now = now_unix();
            for account in self.accounts().iter() {
                if account.kind != AccountKind::Chatgpt || !account.is_active() {
                    continue;
                }
                let jitter = rand::random::<u64>() % 300;
                if let Err(e) = self.refresh_ahead(account, 600 + jitter as i64).await {
                    warn!(account = %account.id, "background refresh: {e}");
                }
                let poll = self.config.routing.usage_poll.as_secs() as i64;
                let quiet = now - account.last_used.load(Ordering::Relaxed) / 1000 > poll;
                if quiet && now - account.quota.read().updated_at > poll {
                    self.poll_usage(account).await;
                }
                let stale = account.catalog.read().as_ref().is_some_and(|c| c.fetched.elapsed() > CATALOG_TTL);
                let failed_lately =
                    self.catalog_failed.lock().get(&account.id).is_some_and(|at| at.elapsed() < CATALOG_RETRY);
                if stale && !failed_lately {
                    self.refresh_catalog(account).await;
                }
            }
        }
    }
}

/// Whether tokens read from the linked auth.json replace `current`: a different, non-empty refresh token (the
/// Codex CLI refreshed or logged in). Not while the account's own rotated tokens are unsaved: the file then still
/// holds the refresh token they replaced, which is spent; only a later login (a newer `last_refresh`) wins then.
fn file_wins(account: &Account, file: &Tokens, current: &Tokens) -> bool {
    file.refresh_token != current.refresh_token
        && !file.refresh_token.is_empty()
        && (account.unsaved.lock().is_none() || file.last_refresh > current.last_refresh)
}

/// A GET to one of the upstream's side endpoints (catalog, quota) with the account's credentials.
fn side_request(account: &Account, url: &str, token: &str) -> reqwest::RequestBuilder {
    let mut req = account
        .http()
        .get(url)
        .bearer_auth(token)
        .header("originator", "codex_cli_rs")
        .timeout(Duration::from_secs(15));
    if let Some(id) = account.chatgpt_account_id() {
        req = req.header("chatgpt-account-id", id);
    }
    req
}

fn busy_error() -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        "Every eligible account is at its concurrency limit and the wait queue is full or timed out; retry shortly.",
    )
    .with_code("concurrency_limit")
    .with_retry_after(1)
}
