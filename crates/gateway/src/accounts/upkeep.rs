//! Background upkeep and the side endpoints it reads: the periodic round (re-read the store, retry unsaved
//! tokens, refresh ahead of expiry, poll the quota of quiet accounts, refresh stale catalogs), `/wham/usage`,
//! and the per-account model catalog (fetched on first use, one round at a time, failures remembered).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

use super::pool::side_request;
use super::{Account, AccountCatalog, Pool, quota};
use crate::auth::now_unix;
use crate::catalog::entry::ModelsAnswer;
use crate::store::AccountKind;

/// How long a fetched model catalog is trusted.
const CATALOG_TTL: Duration = Duration::from_secs(600);
/// How long a failed catalog fetch is remembered before an account's catalog is asked for again: a failing or
/// hanging endpoint must not cost every request a fetch.
pub(super) const CATALOG_RETRY: Duration = Duration::from_secs(30);

impl Pool {
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
                let url = format!(
                    "{}/models?client_version={}",
                    self.config.upstream_base_url, self.config.client.version_text
                );
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
        let mut leader = false;
        loop {
            tick.tick().await;
            // Team store: quota polling and catalog refreshes run on one instance (accounts/shared.rs).
            leader = self.upkeep_leader(leader).await;
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
                if leader && quiet && now - account.quota.read().updated_at > poll {
                    self.poll_usage(account).await;
                }
                let stale = account.catalog.read().as_ref().is_some_and(|c| c.fetched.elapsed() > CATALOG_TTL);
                let failed_lately =
                    self.catalog_failed.lock().get(&account.id).is_some_and(|at| at.elapsed() < CATALOG_RETRY);
                if leader && stale && !failed_lately {
                    self.refresh_catalog(account).await;
                }
            }
        }
    }
}
