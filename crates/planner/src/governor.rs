//! How many requests one account takes at once, and how it backs off when the upstream says it is overloaded:
//! one careful person's pace (docs/accounts.md, "Stewardship").
//!
//! An overload answer (`server_is_overloaded`, `slow_down`, a 503, or an overload inside a stream) halves the
//! account's limit of requests in flight (at least one); once a streak is over (no overload for [`STREAK_GAP`]),
//! the limit comes back one request per [`RECOVER_SECS`]. Overloads less than [`STREAK_GAP`] apart form a streak, and from the second one on
//! the account rests: [`COOL_BASE`] seconds, doubling with each further overload of the streak, at most
//! [`COOL_MAX`]. People who lost accounts through gateways report bursts of overload answers in the hours before
//! the ban (spec/field-notes.md, "Accounts lost through gateways"); the official client itself does not retry an
//! overload (codex-rs `CodexErr::is_retryable`).

/// Overloads closer than this (seconds) belong to one streak.
pub const STREAK_GAP: i64 = 600;
/// Seconds without an overload for the limit to take one more request again.
pub const RECOVER_SECS: i64 = 60;
/// The first rest of a streak (its second overload), in seconds.
pub const COOL_BASE: i64 = 60;
/// The longest rest.
pub const COOL_MAX: i64 = 3600;

/// One account's pace.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Governor {
    /// The configured limit (`[routing] max_concurrent_per_account`).
    max: usize,
    /// The limit as the last overload left it (it recovers from there once the streak is over).
    lowered: usize,
    streak: u32,
    last_overload: i64,
    /// Overload answers since start.
    pub overloads: u64,
}

impl Governor {
    pub fn new(max: usize) -> Governor {
        let max = max.max(1);
        Governor { max, lowered: max, streak: 0, last_overload: 0, overloads: 0 }
    }

    /// The configured limit changed (a reload).
    pub fn set_max(&mut self, max: usize) {
        self.max = max.max(1);
        self.lowered = self.lowered.min(self.max);
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Requests this account may have in flight now.
    pub fn limit(&self, now: i64) -> usize {
        if self.lowered >= self.max {
            return self.max;
        }
        let back = (now - self.last_overload - STREAK_GAP).max(0) / RECOVER_SECS;
        self.lowered.saturating_add(usize::try_from(back).unwrap_or(usize::MAX)).min(self.max)
    }

    /// The overloads of the streak still running (0: none within [`STREAK_GAP`]).
    pub fn streak(&self, now: i64) -> u32 {
        if self.last_overload > 0 && now - self.last_overload <= STREAK_GAP { self.streak } else { 0 }
    }

    /// The upstream answered this account "overloaded": the limit halves, and from the streak's second overload
    /// on the account rests until the returned time.
    pub fn on_overload(&mut self, now: i64) -> Option<i64> {
        let current = self.limit(now);
        self.streak = self.streak(now).saturating_add(1);
        self.last_overload = now;
        self.overloads = self.overloads.saturating_add(1);
        self.lowered = (current / 2).max(1);
        if self.streak < 2 {
            return None;
        }
        let doublings = (self.streak - 2).min(12);
        let secs = COOL_BASE.saturating_mul(1 << doublings).min(COOL_MAX);
        Some(now + secs)
    }
}

/// An account's limit on one instance of a team of `instances` sharing the pool: the limit is the account's,
/// whichever instance sends, so each takes its share (at least one).
pub fn shared(limit: usize, instances: usize) -> usize {
    (limit / instances.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloads_halve_the_limit_and_rest_the_account_longer_each_time() {
        let mut g = Governor::new(4);
        assert_eq!(g.limit(0), 4);
        // (time, rest until, limit right after)
        let table = [(1_000, None, 2), (1_100, Some(1_160), 1), (1_300, Some(1_420), 1), (1_500, Some(1_740), 1)];
        for (now, rest, limit) in table {
            assert_eq!(g.on_overload(now), rest, "at {now}");
            assert_eq!(g.limit(now), limit, "at {now}");
        }
        assert_eq!(g.streak(1_500), 4);
        // Once the streak is over, one more request per quiet minute, up to the configured limit.
        assert_eq!(g.limit(1_500 + 60), 1);
        assert_eq!(g.limit(1_500 + STREAK_GAP + 60), 2);
        assert_eq!(g.limit(1_500 + STREAK_GAP + 180), 4);
        assert_eq!(g.limit(1_500 + 6_000), 4);
        // A streak ends after ten quiet minutes: the next overload only halves again.
        assert_eq!(g.streak(1_500 + STREAK_GAP + 1), 0);
        assert_eq!(g.on_overload(1_500 + STREAK_GAP + 1), None);
        assert_eq!(g.overloads, 5);
    }

    #[test]
    fn the_rest_is_bounded_and_the_limit_never_zero() {
        let mut g = Governor::new(1);
        let mut until = None;
        for i in 0..30 {
            until = g.on_overload(i * 10);
            assert_eq!(g.limit(i * 10), 1);
        }
        assert_eq!(until, Some(290 + COOL_MAX));
        assert_eq!(shared(4, 3), 1);
        assert_eq!(shared(6, 2), 3);
        assert_eq!(shared(4, 0), 4);
        let mut g = Governor::new(8);
        g.on_overload(0);
        g.set_max(2);
        assert_eq!(g.limit(0), 2);
    }
}
