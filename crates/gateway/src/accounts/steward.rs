//! Each account looked after as one careful person would (docs/accounts.md, "Stewardship"): what the planner
//! knows of its quota (`planner::AccountQuota`, fed by every answer's headers, `codex.rate_limits` frames, usage
//! polls and what each request used), its pace (`planner::Governor`: requests in flight, lowered and rested after
//! overload answers), its owner's policy, and the forecasts made of them. The decisions are the planner crate's;
//! this file feeds them and reads them back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dialects::failure::CooldownReason;
use planner::{AccountQuota, Forecast, Governor, Plan, Policy, QuotaView};
use serde_json::{Value, json};

use super::{Account, Pool, QuotaSnapshot};
use crate::auth::now_unix;
use crate::record::{RecordSink, RequestRecord};

/// What the planner keeps of one account.
#[derive(Debug)]
pub struct Steward {
    pub quota: AccountQuota,
    pub governor: Governor,
    pub policy: Policy,
    /// Expected cost (weighted tokens) of the account's requests in flight: spent, but in no reading yet.
    pub pending: f64,
}

impl Steward {
    pub fn new(plan: Option<&str>, max_in_flight: usize, policy: Policy) -> Steward {
        Steward {
            quota: AccountQuota::new(plan.map_or(Plan::Unknown, Plan::parse)),
            governor: Governor::new(max_in_flight),
            policy,
            pending: 0.0,
        }
    }

    /// Until when the owner's floor keeps the account from the pool (`Policy::Preserve`): a window spent down to
    /// the floor is the owner's until it resets. `None` while the pool may spend it (as `planner::choose` decides,
    /// but before the requests in flight: those only make a request wait). An account without quota windows (an
    /// API key, a relay) has nothing to keep.
    pub fn preserved_until(&self, now: i64, correction: f64) -> Option<i64> {
        let Policy::Preserve { floor_percent } = self.policy else { return None };
        let view = self.quota.view(now, correction);
        if planner::choose::outlook(&view, self.policy, 0.0).usable > 0.0 {
            return None;
        }
        let floor = f64::from(floor_percent.min(100)) / 100.0;
        [view.short, view.long]
            .into_iter()
            .flatten()
            .filter(|w| w.left <= floor * w.cap)
            .map(|w| now + w.reset_in)
            .max()
    }
}

impl Account {
    /// A reading of the account's quota (an answer's headers, a `codex.rate_limits` frame, a usage poll): kept as
    /// it came for people and clients, and taken into the planner's windows.
    pub(crate) fn observe_quota(&self, snapshot: QuotaSnapshot, plan: Option<String>) {
        let now = snapshot.updated_at;
        let readings = snapshot.readings();
        {
            let mut steward = self.steward.lock();
            if let Some(p) = plan.as_deref() {
                steward.quota.set_plan(Plan::parse(p));
            }
            steward.quota.observe(&readings, now);
        }
        *self.quota.write() = snapshot;
        if plan.is_some() {
            *self.plan.write() = plan;
        }
    }

    pub fn quota_view(&self, now: i64, correction: f64) -> QuotaView {
        self.steward.lock().quota.view(now, correction)
    }

    /// The account's owner's policy (docs/accounts.md, "Policies").
    pub fn policy(&self) -> Policy {
        self.steward.lock().policy
    }

    /// The planner's view of the account for `accounts list`, the admin API and the dashboard: its windows (by
    /// kind, in weighted tokens and percent), its forecast, its pace and its policy.
    pub fn stewardship(&self, now: i64, correction: f64) -> Value {
        let steward = self.steward.lock();
        let view = steward.quota.view(now, correction);
        let window = |w: Option<planner::WindowView>| {
            w.map(|w| {
                json!({
                    "used_percent": (w.used_percent * 10.0).round() / 10.0,
                    "capacity_tokens": w.cap.round(),
                    "left_tokens": w.left.round(),
                    "resets_at": w.started.then_some(now + w.reset_in),
                    "started": w.started,
                    "length_secs": w.length,
                })
            })
        };
        let forecast = planner::forecast::account(&view);
        json!({
            "plan": format!("{:?}", steward.quota.plan()).to_lowercase(),
            "policy": steward.policy.as_text(),
            "short_window": window(view.short),
            "long_window": window(view.long),
            "forecast": forecast_json(&forecast, now),
            "limit": steward.governor.limit(now),
            "max_in_flight": steward.governor.max(),
            "overload_streak": steward.governor.streak(now),
            "overloads": steward.governor.overloads,
        })
    }
}

/// A forecast as the admin API shows it: seconds and unix times.
pub fn forecast_json(f: &Forecast, now: i64) -> Value {
    json!({
        "usable_tokens": f.usable.round(),
        "capacity_tokens": f.capacity.round(),
        "rate_tokens_per_hour": (f.rate * 3600.0).round(),
        "dry_in_secs": f.dry_in,
        "dry_at": f.dry_in.map(|s| now + s),
        "back_in_secs": f.back_in,
        "back_at": f.back_in.map(|s| now + s),
    })
}

/// The pool's scale of learnt capacity as last computed, shared with its accounts (an `f64` in an atomic).
#[derive(Debug)]
pub struct Correction(AtomicU64);

impl Default for Correction {
    fn default() -> Correction {
        Correction(AtomicU64::new(1.0f64.to_bits()))
    }
}

impl Correction {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

impl Pool {
    /// What accounts without readings of their own are scaled by (`planner::quota::pool_correction`); kept for
    /// the accounts' own views.
    pub fn quota_correction(&self) -> f64 {
        let list = self.accounts();
        let correction = {
            let stewards: Vec<_> = list.iter().map(|a| a.steward.lock()).collect();
            planner::quota::pool_correction(stewards.iter().map(|s| &s.quota))
        };
        self.correction.set(correction);
        correction
    }

    /// A request on `account_id` ended having used `usage`: its cost goes to the account's quota.
    pub fn charge(&self, account_id: &str, usage: &dialects::Usage) {
        let tokens = planner::cost::weighted(usage.input_tokens, usage.cached_tokens, usage.output_tokens);
        if tokens <= 0.0 {
            return;
        }
        if let Some(account) = self.accounts().iter().find(|a| a.id == account_id) {
            account.steward.lock().quota.charge(tokens, now_unix());
        }
    }

    /// The upstream answered `account` "overloaded" (`RiskSignal::Overload`: an HTTP 503, or `server_is_overloaded`
    /// / `slow_down` inside a stream, also after the first byte): its pace halves, and within a streak it rests (a
    /// cooldown shared with the team like any other), so the pool leaves it alone.
    pub(super) fn overloaded(&self, account: &Account) {
        let now = now_unix();
        let rest = account.steward.lock().governor.on_overload(now);
        if let Some(until) = rest {
            let note = format!(
                "server_is_overloaded: {} overload answers in a row; resting until the streak cools",
                account.steward.lock().governor.streak(now)
            );
            self.cool_down(account, None, until, CooldownReason::Overloaded, &note);
        }
    }

    /// Every ChatGPT account's forecast and the pool's, with the pool's projection for the chart
    /// (`planner::forecast`): (account id, forecast) in the pool's order, the pool, and (seconds from now, usable
    /// share) points.
    pub fn forecasts(&self) -> Forecasts {
        let now = now_unix();
        let correction = self.quota_correction();
        let mut views = Vec::new();
        let mut accounts = Vec::new();
        for a in self.accounts().iter().filter(|a| a.is_active() && a.kind == crate::store::AccountKind::Chatgpt) {
            let view = a.quota_view(now, correction);
            accounts.push((a.id.clone(), planner::forecast::account(&view)));
            views.push(view);
        }
        let (pool, points) = planner::forecast::pool(&views);
        (accounts, pool, points)
    }

    /// The forecasts as the admin API (`GET /admin/forecast`) and `status` read them.
    pub fn forecast_json(&self) -> Value {
        let now = now_unix();
        let (accounts, pool, points) = self.forecasts();
        json!({
            "now": now,
            "pool": forecast_json(&pool, now),
            "accounts": accounts.iter().map(|(id, f)| json!({"id": id, "forecast": forecast_json(f, now)})).collect::<Vec<_>>(),
            "projection": points.iter().step_by(6).map(|(t, share)| json!([now + t, (share * 1000.0).round() / 1000.0])).collect::<Vec<_>>(),
        })
    }
}

/// Every account's forecast by id, the pool's, and the pool's projection ((seconds from now, usable share) points).
pub type Forecasts = (Vec<(String, Forecast)>, Forecast, Vec<(i64, f64)>);

/// Charges each finished request's usage to the account that served it (`Pool::charge`).
pub struct QuotaSink(pub Arc<Pool>);

impl RecordSink for QuotaSink {
    fn record(&self, record: &RequestRecord) {
        if let Some(account) = &record.account {
            self.0.charge(account, &record.usage);
        }
    }
}

#[cfg(test)]
mod tests {
    use planner::{Reading, Slot};

    use super::*;

    /// A Plus account whose five-hour window is `short`% used (resetting in an hour) and whose week is `long`%.
    fn read(policy: Policy, short: f64, long: f64, now: i64) -> Steward {
        let mut s = Steward::new(Some("plus"), 4, policy);
        let reading = |slot, used, minutes, reset| Reading {
            slot,
            used_percent: used,
            window_minutes: Some(minutes),
            reset_at: Some(reset),
        };
        s.quota.observe(
            &[reading(Slot::Primary, short, 300, now + 3600), reading(Slot::Secondary, long, 10_080, now + 6 * 86_400)],
            now,
        );
        s
    }

    /// A preserved account is the owner's from its floor until the window that reached it resets; above the floor,
    /// unread (nothing known, nothing to keep yet), or under another policy, it is the pool's.
    #[test]
    fn a_preserved_account_is_kept_from_its_floor_until_the_window_resets() {
        let now = 1_800_000_000;
        let kept = |policy, short, long| read(policy, short, long, now).preserved_until(now, 1.0);
        let at = |floor_percent| Policy::Preserve { floor_percent };
        assert_eq!(kept(at(50), 60.0, 10.0), Some(now + 3600), "40% left of the five hours, under a 50% floor");
        assert_eq!(kept(at(50), 50.0, 10.0), Some(now + 3600), "at the floor");
        assert_eq!(kept(at(30), 60.0, 10.0), None, "40% left is above a 30% floor");
        assert_eq!(kept(at(50), 10.0, 70.0), Some(now + 6 * 86_400), "the week reached the floor");
        assert_eq!(kept(at(50), 60.0, 70.0), Some(now + 6 * 86_400), "both: back when the later one resets");
        assert_eq!(kept(Policy::Normal, 99.0, 99.0), None);
        assert_eq!(kept(Policy::BurnFirst, 99.0, 99.0), None);
        assert_eq!(Steward::new(Some("plus"), 4, at(50)).preserved_until(now, 1.0), None, "unread: unstarted, full");
    }
}
