//! Leasing: which account serves the next request (strategy, plan priority, plan routing, conversation
//! affinity, quota, cooldowns), the concurrency slot it holds while it does, and what an answer or a failure
//! teaches the pool about the account (quota headers, cooldowns, status changes).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dialects::failure::{CooldownScope, StatusChange};
use dialects::{ErrorKind, GatewayError, UpstreamFailure};
use reqwest::header::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;

use super::select::{self, Candidate};
use super::{Account, Blocked, Pool, QuotaSnapshot, Source};
use crate::auth::now_unix;
use crate::store::{AccountKind, AccountStatus};

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

impl Pool {
    /// Reserve an account for a request for `model`. `conversation` keeps a conversation on one account while
    /// that account can serve (the upstream prompt cache is per account); `exclude` lists accounts already
    /// tried for this request. Waits (bounded) when every eligible account is at its concurrency limit.
    ///
    /// An account's model catalog is fetched when the account is first chosen, as an official client fetches its
    /// login's catalog when it starts: one account at a time, as each comes into use, never the whole pool at
    /// once (docs/security.md). An account whose catalog turns out not to list the model is passed over.
    pub async fn lease(
        &self,
        model: &str,
        conversation: Option<&str>,
        exclude: &[String],
    ) -> Result<Lease, LeaseError> {
        let list = self.accounts();
        // A conversation this instance has not seen is asked of the team store, once, before any choice: the
        // answer goes into the map the choice reads (accounts/affinity.rs).
        if let Some(k) = conversation {
            self.affine_account_or_ask(k).await;
        }
        // Each pass fetches at most one catalog, so the pool's size bounds the passes.
        let serves = |a: &Account| a.serves(model);
        for _ in 0..=list.len() {
            let lease = self.choose(&list, model, serves, conversation, exclude).await?;
            if !self.catalog_wanted(&lease.account) {
                return Ok(lease);
            }
            let account = lease.account.clone();
            drop(lease);
            self.fetch_catalog_once(&account).await;
        }
        self.choose(&list, model, serves, conversation, exclude).await
    }

    /// Reserve an account for the backend's image endpoints (`model` is the image model, for cooldowns and
    /// errors): a ChatGPT login on a paid plan, as the official client offers image generation to no other
    /// (codex-rs `image_generation_available`). Catalogs list the Responses models only, so none is fetched.
    pub async fn lease_for_images(&self, model: &str, exclude: &[String]) -> Result<Lease, LeaseError> {
        let images = |a: &Account| a.kind == AccountKind::Chatgpt && a.plan().as_deref() != Some("free");
        self.choose(&self.accounts(), model, images, None, exclude).await
    }

    /// Lease one of the accounts `serves` accepts.
    async fn choose(
        &self,
        list: &[Arc<Account>],
        model: &str,
        serves: impl Fn(&Account) -> bool,
        conversation: Option<&str>,
        exclude: &[String],
    ) -> Result<Lease, LeaseError> {
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
            if !serves(a) {
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
            return Err(self.refusal(model, now, (any_active, any_serving, soonest), exclude));
        }
        let affine = conversation.and_then(|k| self.affine_account(k));
        let affine_index = affine.and_then(|id| candidates.iter().find(|c| list[c.index].id == id).map(|c| c.index));
        let mut order: Vec<usize> = match affine_index {
            Some(i) => vec![i],
            None => Vec::new(),
        };
        let sticky = self.sticky.lock().clone().and_then(|id| list.iter().position(|a| a.id == id));
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for i in select::order(candidates, self.strategy(), turn, sticky) {
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
            self.remember_affinity(k, &account);
        }
        *self.sticky.lock() = Some(account.id.clone());
        account.in_flight.fetch_add(1, Ordering::Relaxed);
        account.requests.fetch_add(1, Ordering::Relaxed);
        account.last_used.store(crate::auth::now_ms(), Ordering::Relaxed);
        Ok(Lease { account, _permit: permit })
    }

    /// Why no account could be leased, from what the search `seen` (an active account, one serving the model, the
    /// soonest blocked one): the soonest one's wait, the accounts this request already tried, no plan serving the
    /// model, or no usable account at all.
    fn refusal(&self, model: &str, now: i64, seen: (bool, bool, Option<Blocked>), exclude: &[String]) -> LeaseError {
        match seen {
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
        }
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
            let scope = match rule.scope {
                CooldownScope::Account => {
                    account.cool_down(None, until, rule.reason, &rule.note);
                    None
                }
                CooldownScope::Model => {
                    account.cool_down(Some(model), until, rule.reason, &rule.note);
                    Some(model)
                }
                CooldownScope::AccountQuota => {
                    account.cool_down(None, until, rule.reason, &rule.note);
                    let mut q = account.quota.write();
                    q.primary_used_percent = Some(100.0);
                    q.primary_reset_at = Some(until);
                    q.updated_at = now;
                    None
                }
            };
            // Team store: the other instances skip it too (accounts/shared_cooldowns.rs).
            self.share_cooldown(account, scope, until, rule.reason, &rule.note);
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
}

fn busy_error() -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        "Every eligible account is at its concurrency limit and the wait queue is full or timed out; retry shortly.",
    )
    .with_code("concurrency_limit")
    .with_retry_after(1)
}
