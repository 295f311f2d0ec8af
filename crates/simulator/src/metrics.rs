//! What one run measured: the work served (before the first client-visible quota error, and per week), the
//! quota that resets took away unused, the prompt-cache ratio, the peak of requests in flight on one account
//! against its limit, conversations moved, and the errors clients saw.

use std::collections::{BTreeMap, HashSet};

use crate::pool::Pool;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Metrics {
    /// Requests (agent steps) served.
    pub served: u64,
    /// Requests served before the first client-visible quota error (all of them when none came).
    pub served_before_first_error: u64,
    /// When the first quota error came (seconds from the start).
    pub first_quota_error_at: Option<i64>,
    /// What the first quota error was: every account out ("pool out"), or the accounts tried for one request all
    /// refused it for quota ("refused on every account tried": the readings said they had some left).
    pub first_quota_error: Option<&'static str>,
    pub quota_errors: u64,
    /// Refused as busy (every queue full, or a queue's deadline passed).
    pub busy_errors: u64,
    /// Of those, waits that reached the queue deadline.
    pub queue_timeouts: u64,
    /// Refused after overload answers on every account tried.
    pub overload_errors: u64,
    /// Overload answers the pool received (requests sent into an overload).
    pub overload_answers: u64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    /// Requests served per week.
    pub served_per_week: f64,
    /// Credits that window resets took away unused (windows that had started).
    pub quota_lost_credits: f64,
    /// Cached input over input.
    pub cache_ratio: f64,
    /// Requests that went to another account than their conversation's previous one.
    pub moves: u64,
    /// Conversations that moved at least once.
    pub conversations_moved: u64,
    #[serde(skip)]
    moved_set: HashSet<u64>,
    /// Why conversations moved, counted at each one's first move (they add up to `conversations_moved`).
    pub moved_because: BTreeMap<&'static str, u64>,
    /// The most requests in flight on one account at once, and the most its limit allowed at that moment.
    pub peak_in_flight: usize,
    /// A request started on an account already at its limit (must stay 0).
    pub over_limit: u64,
}

impl Metrics {
    pub fn served(&mut self, input: u64, cached: u64, output: u64, _now: i64) {
        self.served += 1;
        if self.first_quota_error_at.is_none() {
            self.served_before_first_error += 1;
        }
        self.input_tokens += input;
        self.cached_tokens += cached;
        self.output_tokens += output;
    }

    pub fn quota_error(&mut self, now: i64, what: &'static str) {
        self.quota_errors += 1;
        self.first_quota_error_at.get_or_insert(now);
        self.first_quota_error.get_or_insert(what);
    }

    pub fn moved(&mut self, conversation: u64, because: &'static str) {
        self.moves += 1;
        if self.moved_set.insert(conversation) {
            self.conversations_moved += 1;
            *self.moved_because.entry(because).or_default() += 1;
        }
    }

    /// A request started on `account`, which now has `in_flight` requests against a limit of `limit`.
    pub fn started(&mut self, _account: usize, in_flight: usize, limit: usize) {
        self.peak_in_flight = self.peak_in_flight.max(in_flight);
        if in_flight > limit {
            self.over_limit += 1;
        }
    }

    pub fn finish(&mut self, _pool: &Pool, lost: f64, end: i64) {
        let weeks = end as f64 / (7.0 * 86_400.0);
        self.served_per_week = self.served as f64 / weeks.max(1e-9);
        self.quota_lost_credits = lost;
        self.cache_ratio = self.cached_tokens as f64 / self.input_tokens.max(1) as f64;
    }
}
