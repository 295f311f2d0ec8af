//! The gateway's pool as the simulation runs it: per account the same state the gateway keeps
//! (`planner::AccountQuota` fed by readings and charges, `planner::Governor`, requests in flight, the queue), the
//! conversation -> account map, and the lease's decision made by the gateway's own `planner::choose` with the
//! same defaults (`planner::defaults`).

use std::collections::{HashMap, VecDeque};

use planner::{AccountQuota, Ask, Candidate, Choice, Governor, Policy, Strategy, choose};

use crate::backend::TrueAccount;

/// One account: the backend's truth beside what the gateway knows of it.
#[derive(Debug)]
pub struct Account {
    pub truth: TrueAccount,
    pub quota: AccountQuota,
    pub governor: Governor,
    pub in_flight: usize,
    pub queue: VecDeque<u64>,
    /// Expected cost of the requests in flight.
    pub pending: f64,
    pub last_used: i64,
    /// Skipped until then (a 429's reset, an overload rest).
    pub cooldown_until: i64,
    pub failures: u32,
    pub peak_in_flight: usize,
    pub peak_limit: usize,
}

/// Where a request goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Start(usize),
    Queue(usize),
    /// Every account is out of quota (or cooling down after one): the soonest reset.
    OutOfQuota {
        retry_in: i64,
    },
    Busy,
}

pub struct Pool {
    pub accounts: Vec<Account>,
    pub strategy: Strategy,
    /// Conversation key -> account, and when it last sent a request there.
    pub affinity: HashMap<u64, (usize, i64)>,
    turn: usize,
    sticky: Option<usize>,
}

impl Pool {
    pub fn new(truths: Vec<TrueAccount>, strategy: Strategy) -> Pool {
        let accounts = truths
            .into_iter()
            .map(|truth| Account {
                quota: AccountQuota::new(truth.plan),
                truth,
                governor: Governor::new(planner::defaults::MAX_IN_FLIGHT),
                in_flight: 0,
                queue: VecDeque::new(),
                pending: 0.0,
                last_used: i64::MIN / 2,
                cooldown_until: 0,
                failures: 0,
                peak_in_flight: 0,
                peak_limit: 0,
            })
            .collect();
        Pool { accounts, strategy, affinity: HashMap::new(), turn: 0, sticky: None }
    }

    /// The pool-wide scale of learnt capacity (what accounts without samples are scaled by).
    fn correction(&self) -> f64 {
        planner::quota::pool_correction(self.accounts.iter().map(|a| &a.quota))
    }

    /// The lease's decision for a request of conversation `key` with `input` tokens, not on `tried`.
    pub fn place(&mut self, key: u64, input: u64, tried: &[usize], wait_for_home: bool, now: i64) -> Placement {
        let correction = self.correction();
        let mut active = vec![0usize; self.accounts.len()];
        for &(account, at) in self.affinity.values() {
            if now - at <= planner::defaults::ACTIVE_SECS {
                active[account] += 1;
            }
        }
        let mut candidates = Vec::new();
        let mut soonest: Option<i64> = None;
        for (index, a) in self.accounts.iter().enumerate() {
            if tried.contains(&index) {
                continue;
            }
            let blocked = a
                .quota
                .blocked_until(now)
                .into_iter()
                .chain((a.cooldown_until > now).then_some(a.cooldown_until))
                .max();
            if let Some(until) = blocked {
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
                continue;
            }
            candidates.push(Candidate {
                index,
                plan_rank: 0,
                quota: Some(a.quota.view(now, correction)),
                policy: Policy::Normal,
                in_flight: a.in_flight,
                limit: a.governor.limit(now),
                waiting: a.queue.len(),
                pending: a.pending,
                last_used_ms: a.last_used.saturating_mul(1000),
                recent_failures: a.failures,
                conversations: active[index],
                troubled: a.governor.streak(now) > 0,
            });
        }
        if candidates.is_empty() {
            return match soonest {
                Some(s) => Placement::OutOfQuota { retry_in: (s - now).max(1) },
                None => Placement::OutOfQuota { retry_in: 60 },
            };
        }
        let home = self.affinity.get(&key).map(|&(account, _)| account);
        let present: f64 = self.accounts.iter().map(|a| a.quota.rate_at(now)).sum();
        let active_total: usize = active.iter().sum();
        let conversation_rate = if active_total > 0 { present / active_total as f64 } else { 0.0 };
        self.turn = self.turn.wrapping_add(1);
        let ask = Ask {
            strategy: self.strategy,
            turn: self.turn,
            sticky: self.sticky,
            home,
            input_tokens: input,
            opportunistic: false,
            queue_cap: planner::defaults::QUEUE_PER_ACCOUNT,
            conversation_rate,
            wait_for_home,
        };
        match choose(&candidates, &ask) {
            Choice::Serve { order, wait_on } => match (order.first(), wait_on) {
                (Some(&i), _) => Placement::Start(i),
                (None, Some(i)) => Placement::Queue(i),
                (None, None) => Placement::Busy,
            },
            Choice::Busy | Choice::NoExpiringQuota => Placement::Busy,
        }
    }

    /// Why a request of conversation `key` did not go to `from`, the account of its previous request (the
    /// report's account of moves).
    pub fn why_not(&self, from: usize, key: u64, tried: &[usize], now: i64) -> &'static str {
        let Some(a) = self.accounts.get(from) else { return "gone" };
        if self.affinity.get(&key).map(|&(account, _)| account) != Some(from) {
            // The map forgets a conversation a day after its last request (over a weekend).
            "forgotten"
        } else if tried.contains(&from) && a.quota.blocked_until(now).is_some() {
            "refused for quota"
        } else if tried.contains(&from) {
            "refused as overloaded"
        } else if a.quota.blocked_until(now).is_some() {
            "out of quota"
        } else if a.cooldown_until > now {
            "resting"
        } else if a.in_flight >= a.governor.limit(now) {
            "busy"
        } else {
            "chosen elsewhere"
        }
    }

    /// A request started on account `i` (it holds a slot until it ends).
    pub fn started(&mut self, i: usize, key: u64, estimate: f64, now: i64) {
        self.sticky = Some(i);
        self.affinity.insert(key, (i, now));
        let a = &mut self.accounts[i];
        a.in_flight += 1;
        a.pending += estimate;
        a.last_used = now;
        a.peak_in_flight = a.peak_in_flight.max(a.in_flight);
        a.peak_limit = a.peak_limit.max(a.governor.limit(now));
    }

    /// A request on account `i` ended, having used `weighted` tokens.
    pub fn ended(&mut self, i: usize, estimate: f64, weighted: f64, now: i64) {
        let a = &mut self.accounts[i];
        a.in_flight = a.in_flight.saturating_sub(1);
        a.pending = (a.pending - estimate).max(0.0);
        a.quota.charge(weighted, now);
        a.truth.charge(weighted, now);
    }
}
