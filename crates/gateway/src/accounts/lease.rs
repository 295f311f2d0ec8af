//! Leasing: which account serves the next request, and the slot it holds while it does. The choice is the
//! planner's (`planner::choose`, pure: this file gathers each account's state and acts on the answer): strategy,
//! plan priority, policies, conversation affinity, quota windows, pace; a held conversation (`hold.rs`) is
//! served by its own account or by none. The waits are here: a request waits in an account's queue (`gate.rs`)
//! when no account it may use has a free slot, and for its conversation's own account only briefly
//! ([`HOME_WAIT`]). What an answer or a failure teaches the pool is at the end (quota headers, cooldowns, status
//! changes, risk signals).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dialects::failure::{CooldownScope, RiskSignal, StatusChange};
use dialects::{ErrorKind, GatewayError, UpstreamFailure};
use planner::{Ask, Candidate, Choice};
use reqwest::header::HeaderMap;

use super::affinity::Written;
use super::hold::Hold;
use super::{Account, Blocked, Pool, QuotaSnapshot, Source};
use crate::auth::now_unix;
use crate::store::{AccountKind, AccountStatus};

/// How long a conversation's turn waits for its own busy account before a free slot elsewhere is worth the
/// prompt cache it loses.
pub const HOME_WAIT: Duration = Duration::from_secs(planner::defaults::HOME_WAIT_SECS);

/// What a request asks of the pool.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    pub model: &'a str,
    /// The conversation's key (`prompt_cache_key`): it stays on one account while that account can serve.
    pub conversation: Option<&'a str>,
    /// The turn's input, in tokens (estimated from the request's size): a long turn does not start where it
    /// cannot finish.
    pub input_tokens: u64,
    /// A request of an opportunistic client key: served only from quota that would otherwise expire.
    pub opportunistic: bool,
}

impl<'a> Need<'a> {
    /// A request for `model` with nothing else known (compaction, a preview).
    pub fn model(model: &'a str) -> Need<'a> {
        Need { model, conversation: None, input_tokens: 0, opportunistic: false }
    }
}

#[derive(Debug)]
pub enum LeaseError {
    /// Every account that could serve was already tried for this request.
    Exhausted,
    /// No account's plan serves the model.
    UnknownModel(GatewayError),
    /// Accounts serve the model but none can now (cooling down, busy, none enabled, none logged in, no quota that
    /// would otherwise expire for an opportunistic key).
    Unavailable(GatewayError),
    /// The conversation is held on an account that cannot serve it now (`hold.rs`): no other account may.
    Held { hold: Hold, error: GatewayError },
}

/// An account reserved for one request; its slot is given back on drop.
pub struct Lease {
    pub account: Arc<Account>,
    /// The request's expected cost, counted as pending on the account until it ends.
    estimate: f64,
    /// A brand-new conversation's row on its way to the team's table (`affinity.rs`).
    written: Option<Written>,
}

impl Lease {
    /// Once a brand-new conversation's row is in the team's table (bounded): its next turn finds it on any
    /// instance (`affinity.rs`).
    async fn shared(mut self) -> Lease {
        if let Some(written) = self.written.take() {
            written.wait().await;
        }
        self
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut steward = self.account.steward.lock();
            steward.pending = (steward.pending - self.estimate).max(0.0);
        }
        self.account.gate.release();
    }
}

/// What `Pool::preview` finds: the account a request would get now, else the one back soonest and when.
pub type Preview = (Option<Arc<Account>>, Option<(Arc<Account>, i64)>);

/// What a search of the pool found for a request.
struct Search {
    candidates: Vec<Candidate>,
    /// An active account, one that serves the model, and the soonest blocked one.
    seen: (bool, bool, Option<Blocked>),
}

impl Pool {
    /// Reserve an account for a request (see [`Need`]); `exclude` lists accounts already tried for it. Waits
    /// (bounded by `[routing] queue_timeout_secs`) when every account it may use is at its limit.
    ///
    /// An account's model catalog is fetched when the account is first chosen, as an official client fetches its
    /// login's catalog when it starts: one account at a time, as each comes into use, never the whole pool at
    /// once (docs/security.md). An account whose catalog turns out not to list the model is passed over.
    pub async fn lease(&self, need: &Need<'_>, exclude: &[String]) -> Result<Lease, LeaseError> {
        let list = self.accounts();
        // A conversation this instance has not seen is asked of the team store, once, before any choice: the
        // answer goes into the map the choice reads (accounts/affinity.rs).
        if let Some(k) = need.conversation {
            self.affine_account_or_ask(k).await;
        }
        // Each pass fetches at most one catalog, so the pool's size bounds the passes.
        let serves = |a: &Account| a.serves(need.model);
        for _ in 0..=list.len() {
            let lease = self.choose(&list, need, serves, exclude).await?;
            if !self.catalog_wanted(&lease.account) {
                return Ok(lease.shared().await);
            }
            let account = lease.account.clone();
            drop(lease);
            self.fetch_catalog_once(&account).await;
        }
        Ok(self.choose(&list, need, serves, exclude).await?.shared().await)
    }

    /// Reserve an account for the backend's image endpoints (`model` is the image model, for cooldowns and
    /// errors): a ChatGPT login on a paid plan, as the official client offers image generation to no other
    /// (codex-rs `image_generation_available`). Catalogs list the Responses models only, so none is fetched. An
    /// opportunistic key's images, as its turns, spend only quota that would otherwise expire.
    pub async fn lease_for_images(
        &self,
        model: &str,
        opportunistic: bool,
        exclude: &[String],
    ) -> Result<Lease, LeaseError> {
        let images = |a: &Account| a.kind == AccountKind::Chatgpt && a.plan().as_deref() != Some("free");
        self.choose(&self.accounts(), &Need { opportunistic, ..Need::model(model) }, images, exclude).await
    }

    /// The account a request of no conversation would be given now, without reserving it; else the account back
    /// soonest and when (every one is out), or neither (none can serve at all).
    pub fn preview(&self, now: i64) -> Preview {
        let list = self.accounts();
        // No model is named: only what blocks the whole account counts (an empty slug matches no model cooldown).
        let search = self.search(&list, &Need::model(""), |_| true, &[], None, now);
        let first = match planner::choose(&search.candidates, &self.ask(&list, &search, &Need::model(""), None, true)) {
            Choice::Serve { order, wait_on } => order.first().copied().or(wait_on),
            Choice::Busy | Choice::NoExpiringQuota => search.candidates.first().map(|c| c.index),
        };
        let soonest = search.seen.2.and_then(|b| {
            list.iter().find(|a| a.blocked("", now).is_some_and(|x| x.until == b.until)).map(|a| (a.clone(), b.until))
        });
        (first.and_then(|i| list.get(i).cloned()), soonest)
    }

    /// The accounts that can serve the request now, as the planner sees them; only `held_on` when the
    /// conversation is held there.
    fn search(
        &self,
        list: &[Arc<Account>],
        need: &Need<'_>,
        serves: impl Fn(&Account) -> bool,
        exclude: &[String],
        held_on: Option<&str>,
        now: i64,
    ) -> Search {
        let routing = &self.config.routing;
        let correction = self.quota_correction();
        let instances = usize::try_from(self.store.live_instances()).unwrap_or(1).max(1);
        let mut candidates = Vec::new();
        let (mut any_active, mut any_serving, mut soonest) = (false, false, None::<Blocked>);
        for (index, a) in list.iter().enumerate() {
            if held_on.is_some_and(|home| a.id != home) || !a.is_active() || exclude.contains(&a.id) {
                continue;
            }
            any_active = true;
            if !serves(a) {
                continue;
            }
            any_serving = true;
            if let Some(blocked) = a.blocked(need.model, now) {
                if soonest.as_ref().is_none_or(|s| blocked.until < s.until) {
                    soonest = Some(blocked);
                }
                continue;
            }
            let (quota, policy, pending, limit, streak) = {
                let s = a.steward.lock();
                let quota = (a.kind == AccountKind::Chatgpt).then(|| s.quota.view(now, correction));
                let limit = planner::governor::shared(s.governor.limit(now), instances);
                (quota, s.policy, s.pending, limit, s.governor.streak(now))
            };
            candidates.push(Candidate {
                index,
                plan_rank: plan_rank(a.plan().as_deref(), &routing.plan_priority),
                quota,
                policy,
                in_flight: a.gate.in_flight(),
                limit,
                waiting: a.gate.waiting(),
                pending,
                last_used_ms: a.last_used.load(Ordering::Relaxed),
                recent_failures: streak,
                conversations: a.active.count(now),
                troubled: streak > 0,
            });
        }
        Search { candidates, seen: (any_active, any_serving, soonest) }
    }

    fn ask(
        &self,
        list: &[Arc<Account>],
        search: &Search,
        need: &Need<'_>,
        home: Option<usize>,
        wait_for_home: bool,
    ) -> Ask {
        let rate: f64 = search.candidates.iter().filter_map(|c| c.quota.map(|q| q.rate)).sum();
        let conversations: usize = search.candidates.iter().map(|c| c.conversations).sum();
        Ask {
            strategy: self.strategy(),
            turn: self.turn.fetch_add(1, Ordering::Relaxed),
            sticky: self.sticky.lock().clone().and_then(|id| list.iter().position(|a| a.id == id)),
            home,
            input_tokens: need.input_tokens,
            opportunistic: need.opportunistic,
            queue_cap: self.config.routing.queue_per_account,
            conversation_rate: if conversations > 0 { rate / conversations as f64 } else { 0.0 },
            wait_for_home,
        }
    }

    /// Lease one of the accounts `serves` accepts: the planner's first choice with a free slot, else a wait in the
    /// queue it names (for the conversation's own account at most [`HOME_WAIT`]), then the choice again.
    async fn choose(
        &self,
        list: &[Arc<Account>],
        need: &Need<'_>,
        serves: impl Fn(&Account) -> bool,
        exclude: &[String],
    ) -> Result<Lease, LeaseError> {
        let start = tokio::time::Instant::now();
        let queue_deadline = start + self.config.routing.queue_timeout;
        let home_deadline = start + HOME_WAIT;
        let mut wait_for_home = true;
        let mut woken_by: Option<usize> = None;
        let affine = need.conversation.and_then(|k| self.affine_account(k));
        // A held conversation is served by its own account or by none.
        let held = affine.as_ref().and_then(|(home, hold)| Some((home.as_str(), hold.as_ref()?)));
        loop {
            let now = now_unix();
            let search = self.search(list, need, &serves, exclude, held.map(|(home, _)| home), now);
            if search.candidates.is_empty() {
                let refusal = match (held, need.conversation) {
                    (Some((home, hold)), Some(key)) => {
                        HeldOn { key, home, hold }.refusal(list, need.model, now, &serves, exclude)
                    }
                    _ => self.refusal(need.model, now, search.seen, exclude),
                };
                return Err(give_back(list, woken_by, refusal));
            }
            let home = affine.as_ref().and_then(|(id, _)| list.iter().position(|a| a.id == *id));
            let ask = self.ask(list, &search, need, home, wait_for_home);
            let (order, wait_on) = match planner::choose(&search.candidates, &ask) {
                Choice::Serve { order, wait_on } => (order, wait_on),
                Choice::Busy => return Err(give_back(list, woken_by, LeaseError::Unavailable(busy_error()))),
                Choice::NoExpiringQuota => {
                    return Err(give_back(list, woken_by, LeaseError::Unavailable(no_expiring_quota_error())));
                }
            };
            let limit_of = |i: usize| search.candidates.iter().find(|c| c.index == i).map_or(1, |c| c.limit);
            // The conversation's own account, free when searched, may have been taken since by another request:
            // then the choice is made again (a wait for it, as for a busy home), not the next account in the
            // order, which would move the conversation for the lack of one slot for a moment.
            let home_first = wait_for_home && home.is_some() && order.first() == home.as_ref();
            let tried = if home_first { &order[..1] } else { &order[..] };
            if let Some(&i) = tried.iter().find(|&&i| list[i].gate.try_enter(limit_of(i))) {
                if let Some(w) = woken_by.filter(|w| *w != i) {
                    list[w].gate.pass_on();
                }
                return Ok(self.leased(&list[i], need, home == Some(i), now));
            }
            if home_first && tried.len() < order.len() {
                continue;
            }
            let Some(w) = wait_on.filter(|&w| list[w].gate.waiting() < self.config.routing.queue_per_account) else {
                return Err(give_back(list, woken_by, LeaseError::Unavailable(busy_error())));
            };
            // Woken by another account's gate and waiting elsewhere now: that wake-up goes to its next waiter.
            if let Some(was) = woken_by.take().filter(|was| *was != w) {
                list[was].gate.pass_on();
            }
            let for_home = home == Some(w) && wait_for_home;
            let deadline = if for_home { home_deadline.min(queue_deadline) } else { queue_deadline };
            if list[w].gate.wait(deadline).await {
                woken_by = Some(w);
            } else if tokio::time::Instant::now() >= queue_deadline {
                return Err(LeaseError::Unavailable(busy_error()));
            } else {
                // The conversation's account stayed busy: a free slot elsewhere is worth its prompt cache now.
                wait_for_home = false;
            }
        }
    }

    /// `account` serves the request: the slot is taken, the rest is noted.
    fn leased(&self, account: &Arc<Account>, need: &Need<'_>, at_home: bool, now: i64) -> Lease {
        let estimate = planner::cost::estimate(need.input_tokens, at_home);
        account.steward.lock().pending += estimate;
        let mut written = None;
        if let Some(k) = need.conversation {
            written = self.remember_affinity(k, account);
            account.active.mark(rustc_hash::FxBuildHasher.hash_one(k), now);
        }
        *self.sticky.lock() = Some(account.id.clone());
        account.requests.fetch_add(1, Ordering::Relaxed);
        account.last_used.store(crate::auth::now_ms(), Ordering::Relaxed);
        Lease { account: account.clone(), estimate, written }
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

    /// After a successful upstream answer: the quota its headers report.
    pub fn record_success(&self, account: &Account, headers: &HeaderMap) {
        if let Some(q) = QuotaSnapshot::from_headers(headers, now_unix()) {
            account.observe_quota(q, None);
        }
    }

    /// After a failure: the cooldown it decides for the account, if any (see `dialects::failure`), then what it
    /// says of the account's standing ([`Pool::record_standing`]; `conversation` is the request's key).
    pub fn record_failure(
        &self,
        account: &Account,
        model: &str,
        conversation: Option<&str>,
        failure: &UpstreamFailure,
    ) {
        let now = now_unix();
        if let Some(rule) = failure.cooldown() {
            let until = now.saturating_add(i64::try_from(rule.secs).unwrap_or(i64::MAX));
            let scope = match rule.scope {
                CooldownScope::Model => Some(model),
                CooldownScope::Account | CooldownScope::AccountQuota => None,
            };
            if let CooldownScope::AccountQuota = rule.scope {
                account.steward.lock().quota.exhausted(until, now);
                let mut q = account.quota.write();
                q.primary_used_percent = Some(100.0);
                q.primary_reset_at = Some(until);
                q.updated_at = now;
            }
            self.cool_down(account, scope, until, rule.reason, &rule.note);
        }
        self.record_standing(account, conversation, failure);
    }

    /// What a failure says of the account's standing, also when it came after the answer's first byte (the
    /// exchange reports those, `relay::exchange::Exchange::report_failure`): a status change, and its risk signal
    /// (a policy refusal or a deactivation holds `conversation` on the account, an overload slows it down).
    /// Cooldowns stay decided before the first byte, as they always were: a stream that failed late is answered
    /// already, and the account's next request learns for itself.
    pub fn record_standing(&self, account: &Account, conversation: Option<&str>, failure: &UpstreamFailure) {
        if let Some(change) = failure.account_status() {
            match change {
                StatusChange::Deactivated => {
                    let message = failure.to_error().message;
                    *account.status.write() =
                        (AccountStatus::Disabled, Some(format!("deactivated upstream: {message}")));
                    self.persist_status(account, AccountStatus::Disabled, "deactivated upstream");
                    account.gate.wake_all();
                }
            }
        }
        if let Some(signal) = failure.risk_signal() {
            match signal {
                RiskSignal::Overload => self.overloaded(account),
                RiskSignal::PolicyRefusal(kind) => self.record_policy_refusal(account, conversation, kind),
                RiskSignal::Deactivated => self.hold_deactivated(account, conversation),
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

/// A conversation held on its account: its key, the account, and why.
struct HeldOn<'a> {
    key: &'a str,
    home: &'a str,
    hold: &'a Hold,
}

impl HeldOn<'_> {
    /// Why the conversation gets no account: its own account was tried for this request already (the request's
    /// own failure is the answer), or it cannot serve now (the client is told the conversation is held, and why).
    fn refusal(
        &self,
        list: &[Arc<Account>],
        model: &str,
        now: i64,
        serves: &impl Fn(&Account) -> bool,
        exclude: &[String],
    ) -> LeaseError {
        let HeldOn { key, home, hold } = *self;
        if exclude.iter().any(|e| e == home) {
            return LeaseError::Exhausted;
        }
        let why_not = match list.iter().find(|a| a.id == home) {
            None => "it is no longer in the pool".to_string(),
            Some(a) if !a.is_active() => match a.status() {
                (status, Some(reason)) => format!("{}: {reason}", status.as_str()),
                (status, None) => status.as_str().to_string(),
            },
            Some(a) if !serves(a) => format!("it does not serve `{model}`"),
            Some(a) => match a.blocked(model, now) {
                Some(b) => format!("{}; available again in {} s", b.note, (b.until - now).max(1)),
                None => "it is busy".to_string(),
            },
        };
        LeaseError::Held { hold: hold.clone(), error: Pool::held_error(key, home, hold, &why_not) }
    }
}

/// A request woken by an account's gate leaves without its slot: the wake-up goes to that gate's next waiter, so
/// a freed slot never idles while another request waits for it.
fn give_back(list: &[Arc<Account>], woken_by: Option<usize>, error: LeaseError) -> LeaseError {
    if let Some(w) = woken_by {
        list[w].gate.pass_on();
    }
    error
}

/// Rank of `plan` in the preference list; unlisted plans after all listed ones.
pub fn plan_rank(plan: Option<&str>, priority: &[String]) -> usize {
    plan.and_then(|p| priority.iter().position(|x| x.eq_ignore_ascii_case(p))).unwrap_or(priority.len())
}

fn busy_error() -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        "Every eligible account is at its concurrency limit and the wait queue is full or timed out; retry shortly.",
    )
    .with_code("concurrency_limit")
    .with_retry_after(1)
}

fn no_expiring_quota_error() -> GatewayError {
    GatewayError::new(
        ErrorKind::RateLimited,
        "This client key is opportunistic: it is served only from quota that would otherwise expire unused, and no \
         account has such quota now. Retry later.",
    )
    .with_code("no_expiring_quota")
    .with_retry_after(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_rank_by_the_configured_priority() {
        assert_eq!(plan_rank(Some("Plus"), &["plus".into(), "pro".into()]), 0);
        assert_eq!(plan_rank(Some("team"), &["plus".into()]), 1);
        assert_eq!(plan_rank(None, &[]), 0);
    }
}
