//! Background upkeep and the side endpoints it reads: the periodic round (re-read the store, retry unsaved
//! tokens, refresh ahead of expiry, poll the quota of quiet accounts, refresh stale catalogs), `/wham/usage`,
//! and the per-account model catalog (fetched on first use, one round at a time, failures remembered).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

use super::pool::side_request;
use super::{Account, AccountCatalog, Pool, RefreshBudget, quota};
use crate::auth::now_unix;
use crate::auth::side::{self, SideCall};
use crate::catalog::entry::ModelsAnswer;
use crate::store::AccountKind;

/// How long a fetched model catalog is trusted.
const CATALOG_TTL: Duration = Duration::from_secs(600);
/// How long a failed catalog fetch is remembered before an account's catalog is asked for again: a failing or
/// hanging endpoint must not cost every request a fetch.
pub(super) const CATALOG_RETRY: Duration = Duration::from_secs(30);

impl Pool {
    /// Whether `account` has no catalog yet and its last fetch did not fail recently.
    pub(super) fn catalog_wanted(&self, account: &Account) -> bool {
        account.kind == AccountKind::Chatgpt
            && account.is_active()
            && account.catalog.read().is_none()
            && self.catalog_failed.lock().get(&account.id).is_none_or(|at| at.elapsed() >= CATALOG_RETRY)
    }

    /// Fetch `account`'s catalog unless another request has just done it (one fetch at a time per pool: an
    /// account's first requests arrive together and must not each fetch). Before it, the workspace routing
    /// discovery, as the official client checks its login when it starts. The two calls wait for one token
    /// refresh attempt at most between them: a fetch often runs on a request's way to the upstream, and the
    /// request takes that attempt's outcome as its own (`RefreshBudget`).
    pub(super) async fn fetch_catalog_once(&self, account: &Account) {
        let _round = self.catalog_fetching.lock().await;
        if self.catalog_wanted(account) {
            let mut refresh = RefreshBudget::default();
            self.check_workspace(account, &mut refresh).await;
            self.refresh_catalog(account, &mut refresh).await;
        }
    }

    /// The official client's workspace routing discovery (`GET {chatgpt base}/wham/accounts/check`), run when
    /// it starts on a login and after each token refresh: the login's workspace must be listed. A login whose
    /// workspace is missing is logged (its requests then fail on their own terms); nothing else changes.
    pub(super) async fn check_workspace(&self, account: &Account, refresh: &mut RefreshBudget) {
        account.discovery_due.store(false, Ordering::Relaxed);
        let Ok(token) = self.token_within(account, None, refresh).await else { return };
        let url = format!("{}/wham/accounts/check", self.config.chatgpt_base_url);
        let req = side_request(account, &self.config.client, SideCall::Backend, &url, &token);
        let listed = side::success_json::<Value>(req).await.map(|v| {
            let id = account.chatgpt_account_id();
            v.get("accounts")
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|a| a.get("id").and_then(Value::as_str) == id.as_deref()))
        });
        match listed {
            Some(true) => {}
            Some(false) => warn!(account = %account.id, "the workspace check does not list this login's workspace"),
            None => warn!(account = %account.id, "the workspace check did not answer"),
        }
    }

    /// Fetch `{upstream}/models?client_version=` with the account's token, within `catalog_timeout_secs`, and
    /// parse its entries once (an odd entry is reduced or skipped, not the catalog: `ModelEntry::from_json`).
    /// Failures leave the catalog as it was (unknown: the account is then assumed to serve every model) and are
    /// remembered for [`CATALOG_RETRY`]. A token refresh comes out of `refresh`.
    pub async fn refresh_catalog(&self, account: &Account, refresh: &mut RefreshBudget) {
        let entries = match self.token_within(account, None, refresh).await {
            Ok(token) => {
                let url = format!(
                    "{}/models?client_version={}",
                    self.config.upstream_base_url, self.config.client.version_text
                );
                let req = side_request(account, &self.config.client, SideCall::Models, &url, &token)
                    .timeout(self.config.timeouts.catalog);
                side::success_json::<ModelsAnswer>(req).await.map(ModelsAnswer::into_entries)
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
        let token = match self.token_within(account, None, &mut RefreshBudget::default()).await {
            Ok(t) => t,
            Err(e) => return warn!(account = %account.id, "cannot read quota: {e}"),
        };
        let url = format!("{}/wham/usage", self.config.chatgpt_base_url);
        let req = side_request(account, &self.config.client, SideCall::Backend, &url, &token);
        let answer = match req.send().await.map_err(|e| e.without_url()) {
            Ok(r) if r.status().is_success() => match side::answer(r).await {
                Ok((_, body)) => serde_json::from_slice::<Value>(&body).ok(),
                Err(e) => {
                    warn!(account = %account.id, "quota answer unreadable: {}", upstream_transport::with_causes(&e));
                    None
                }
            },
            Ok(r) => {
                warn!(account = %account.id, status = r.status().as_u16(), "quota endpoint refused");
                None
            }
            Err(e) => {
                warn!(account = %account.id, "quota endpoint unreachable: {}", upstream_transport::with_causes(&e));
                None
            }
        };
        if let Some(v) = answer {
            let (snap, plan) = quota::from_usage(&v, now_unix());
            account.observe_quota(snap, plan);
        }
    }

    /// Background upkeep, forever: refresh tokens ahead of expiry (with jitter, so many accounts do not all
    /// refresh at once), poll quota of accounts not used recently, fetch missing and stale catalogs, and run the
    /// workspace check a refresh made due. Each account's periodic reads fall due at its own phase of their period
    /// ([`phase`]), and within a round the accounts that call out are spaced over the round's period, so the
    /// upstream never sees the pool's accounts one after another within seconds (docs/security.md).
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
            let accounts: Vec<Arc<Account>> =
                self.accounts().iter().filter(|a| a.kind == AccountKind::Chatgpt && a.is_active()).cloned().collect();
            let gap = spacing(period, accounts.len());
            let mut called = false;
            for account in &accounts {
                if called {
                    // Spaced, with jitter: a round's calls do not leave together.
                    let jitter = 0.5 + rand::random::<f64>();
                    tokio::time::sleep(gap.mul_f64(jitter)).await;
                }
                called = self.upkeep_account(account, leader).await;
            }
        }
    }

    /// One account's share of an upkeep round; whether it called the upstream.
    async fn upkeep_account(&self, account: &Account, leader: bool) -> bool {
        let now = now_unix();
        let jitter = rand::random::<u64>() % 300;
        let mut called = false;
        let before = account.tokens().map(|t| t.last_refresh);
        if let Err(e) = self.refresh_ahead(account, 600 + jitter as i64).await {
            warn!(account = %account.id, "background refresh: {e}");
            // Its quota and catalog wait for the next round: each call would want a fresh token, and so make
            // another attempt on the token endpoint that just failed (a request waiting for the account would
            // then wait behind it).
            return true;
        }
        called |= account.tokens().map(|t| t.last_refresh) != before;
        if account.discovery_due.load(Ordering::Relaxed) {
            self.check_workspace(account, &mut RefreshBudget::default()).await;
            called = true;
        }
        let poll = self.config.routing.usage_poll.as_secs() as i64;
        let offset = phase(&account.id, poll);
        let quiet = now - account.last_used.load(Ordering::Relaxed) / 1000 > poll;
        if leader && quiet && now - account.quota.read().updated_at > poll + offset {
            self.poll_usage(account).await;
            called = true;
        }
        let ttl = CATALOG_TTL.as_secs() as i64;
        let stale = account.catalog.read().as_ref().is_some_and(|c| {
            i64::try_from(c.fetched.elapsed().as_secs()).unwrap_or(i64::MAX) > ttl + phase(&account.id, ttl)
        });
        let failed_lately = self.catalog_failed.lock().get(&account.id).is_some_and(|at| at.elapsed() < CATALOG_RETRY);
        if leader && stale && !failed_lately {
            self.refresh_catalog(account, &mut RefreshBudget::default()).await;
            called = true;
        } else if leader && self.catalog_wanted(account) {
            self.fetch_catalog_once(account).await;
            called = true;
        }
        called
    }
}

/// An account's phase in a period of `secs`: a fixed offset in `[0, secs)` from its id, so that each account's
/// periodic reads fall due at a time of their own.
fn phase(id: &str, secs: i64) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let n = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    i64::try_from(n % u64::try_from(secs.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// The pause between two accounts' calls in a round: the round's period shared out among the accounts (at most
/// ten seconds).
fn spacing(period: Duration, accounts: usize) -> Duration {
    let share = period.checked_div(u32::try_from(accounts.max(1)).unwrap_or(u32::MAX)).unwrap_or(period);
    share.min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_fall_due_at_phases_of_their_own_and_calls_are_spaced() {
        let phases: std::collections::HashSet<i64> = (0..50).map(|i| phase(&format!("account-{i}"), 300)).collect();
        assert!(phases.len() > 40, "50 accounts spread over a 300 s period: {} distinct phases", phases.len());
        assert!(phases.iter().all(|p| (0..300).contains(p)));
        assert_eq!(phase("a", 300), phase("a", 300), "an account keeps its phase");
        assert_eq!(spacing(Duration::from_secs(30), 3), Duration::from_secs(10));
        assert_eq!(spacing(Duration::from_secs(30), 60), Duration::from_millis(500));
        assert_eq!(spacing(Duration::from_secs(30), 0), Duration::from_secs(10));
    }
}
