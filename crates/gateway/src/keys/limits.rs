//! The limits of one client key as pure state machines over an injected clock: the request rate, the concurrency
//! count, the UTC day and month token budgets, and the policy refusals of the last 24 hours.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};

use time::{Duration, OffsetDateTime, Time};

pub use crate::store::{Limits, MAX_RPM};

/// Which token budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Daily,
    Monthly,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Daily => "daily",
            Budget::Monthly => "monthly",
        }
    }
}

/// Why a request was refused by its key's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the request rate: the next request fits in `retry_after_ms`.
    Rate { rpm: u32, retry_after_ms: u64 },
    /// As many requests in flight as the key may have.
    Concurrency { limit: u32 },
    /// A token budget is spent until `resets_at` (unix seconds).
    Budget { budget: Budget, limit: u64, used: u64, resets_at: i64 },
}

/// A sliding one-minute window: the times of the key's requests in the last minute, at most `rpm` of them, so a
/// key never exceeds `rpm` in any 60 s (a token bucket or GCRA would let up to `2 rpm - 1` through around a burst).
#[derive(Debug, Default, Clone)]
pub struct Rate {
    /// Admission times in milliseconds on the caller's clock, oldest first.
    times: VecDeque<u64>,
}

impl Rate {
    /// Admit a request at `now_ms`, or say in how many milliseconds one would be admitted.
    pub fn admit(&mut self, rpm: u32, now_ms: u64) -> Result<(), u64> {
        let rpm = rpm.clamp(1, MAX_RPM) as usize;
        while self.times.front().is_some_and(|&t| t + 60_000 <= now_ms) || self.times.len() > rpm {
            self.times.pop_front();
        }
        if self.times.len() == rpm {
            let oldest = self.times.front().copied().unwrap_or(now_ms);
            return Err((oldest + 60_000).saturating_sub(now_ms).max(1));
        }
        self.times.push_back(now_ms);
        Ok(())
    }

    /// Take back the last admission (a later limit refused the request it admitted).
    pub fn undo_last(&mut self) {
        self.times.pop_back();
    }
}

/// Token use in the current UTC day and month, each by its start: a new period starts from zero without a timer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    day: i64,
    day_tokens: u64,
    month: i64,
    month_tokens: u64,
}

impl Spent {
    /// Tokens used today and this month as of `now` (unix seconds).
    pub fn used(&self, now: i64) -> (u64, u64) {
        let (day, month) = period_starts(now);
        (if self.day == day { self.day_tokens } else { 0 }, if self.month == month { self.month_tokens } else { 0 })
    }

    /// Add a finished request's tokens.
    pub fn charge(&mut self, tokens: u64, now: i64) {
        let (day, month) = self.used(now);
        self.seed(day.saturating_add(tokens), month.saturating_add(tokens), now);
    }

    /// Set today's and this month's use (at start, from the usage ledger).
    pub fn seed(&mut self, day_tokens: u64, month_tokens: u64, now: i64) {
        let (day, month) = period_starts(now);
        *self = Spent { day, day_tokens, month, month_tokens };
    }

    /// Raise today's and this month's use to at least the given ones (the team's ledger, `keys/team.rs`).
    pub fn raise(&mut self, day_tokens: u64, month_tokens: u64, now: i64) {
        let (day, month) = self.used(now);
        self.seed(day.max(day_tokens), month.max(month_tokens), now);
    }

    /// The first budget (daily, then monthly) whose use reached its limit at `now`. The request that crossed it was
    /// let through whole (admitted before its size was known), so use may end above the limit.
    pub fn check(&self, limits: &Limits, now: i64) -> Result<(), Refused> {
        let (day_tokens, month_tokens) = self.used(now);
        if let Some(limit) = limits.daily_tokens
            && day_tokens >= limit
        {
            let resets_at = (now.div_euclid(86_400) + 1) * 86_400;
            return Err(Refused::Budget { budget: Budget::Daily, limit, used: day_tokens, resets_at });
        }
        if let Some(limit) = limits.monthly_tokens
            && month_tokens >= limit
        {
            let resets_at = next_month(now);
            return Err(Refused::Budget { budget: Budget::Monthly, limit, used: month_tokens, resets_at });
        }
        Ok(())
    }
}

/// How far back a key's policy refusals count (`[routing] policy_refusals_per_key`).
pub const POLICY_WINDOW_SECS: i64 = 86_400;

/// The times of a key's requests the upstream refused under its usage policy within [`POLICY_WINDOW_SECS`].
#[derive(Debug, Default, Clone)]
pub struct PolicyRefusals {
    times: VecDeque<i64>,
}

/// More than any sensible setting: beyond it the oldest are forgotten (the count is then at least this).
const MAX_POLICY_REFUSALS: usize = 1024;

impl PolicyRefusals {
    /// Note a refusal at `now` (unix seconds); the refusals within the window, this one included.
    pub fn note(&mut self, now: i64) -> usize {
        self.forget_before(now);
        if self.times.len() >= MAX_POLICY_REFUSALS {
            self.times.pop_front();
        }
        self.times.push_back(now);
        self.times.len()
    }

    /// The refusals within the window at `now`.
    pub fn count(&mut self, now: i64) -> usize {
        self.forget_before(now);
        self.times.len()
    }

    /// Forget them all (the key's suspension was lifted: it starts afresh).
    pub fn clear(&mut self) {
        self.times.clear();
    }

    fn forget_before(&mut self, now: i64) {
        while self.times.front().is_some_and(|&t| t + POLICY_WINDOW_SECS <= now) {
            self.times.pop_front();
        }
    }
}

/// 00:00 UTC of `now`'s day and of the first day of its month (unix seconds): where the budgets' periods start.
pub fn period_starts(now: i64) -> (i64, i64) {
    let day = now - now.rem_euclid(86_400);
    (day, first_of_month(now).map_or(day, OffsetDateTime::unix_timestamp))
}

/// 00:00 UTC on the first day of the month after `now`'s: the 1st plus 31 days is always in the next month.
fn next_month(now: i64) -> i64 {
    let next = first_of_month(now).and_then(|t| t.checked_add(Duration::days(31))?.replace_day(1).ok());
    next.map_or(now - now.rem_euclid(86_400) + 86_400, OffsetDateTime::unix_timestamp)
}

/// 00:00 UTC on the 1st of `now`'s month; `None` outside the years `time` covers (±9999): callers fall back to days.
fn first_of_month(now: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(now).ok()?.replace_time(Time::MIDNIGHT).replace_day(1).ok()
}

/// Requests of a key in flight: an atomic, as the slot is given back from `Drop` wherever the request ends.
#[derive(Debug, Default)]
pub struct InFlight(AtomicU32);

impl InFlight {
    /// Take a slot if fewer than `limit` are taken.
    pub fn acquire(&self, limit: u32) -> bool {
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    pub fn release(&self) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// `2027-01-31` (the end of that day, UTC) or a full RFC 3339 time -> unix seconds.
pub fn parse_expiry(s: &str) -> Option<i64> {
    match s.len() {
        10 => crate::auth::codex_file::parse_rfc3339(&format!("{s}T00:00:00Z")).map(|t| t + 86_400),
        _ => crate::auth::codex_file::parse_rfc3339(s),
    }
}

#[cfg(test)]
mod tests {
    use time::{Date, Month};

    use super::*;

    /// 00:00 UTC on a date.
    fn utc(year: i32, month: Month, day: u8) -> i64 {
        Date::from_calendar_date(year, month, day).map_or(i64::MIN, |d| d.midnight().assume_utc().unix_timestamp())
    }

    #[test]
    fn policy_refusals_count_over_the_last_day_only() {
        let mut p = PolicyRefusals::default();
        let t0 = 1_000_000;
        assert_eq!(p.note(t0), 1);
        assert_eq!(p.note(t0 + 3_600), 2);
        assert_eq!(p.count(t0 + POLICY_WINDOW_SECS - 1), 2);
        assert_eq!(p.count(t0 + POLICY_WINDOW_SECS), 1, "the first is a day old");
        assert_eq!(p.note(t0 + POLICY_WINDOW_SECS + 3_600), 1, "both are");
        p.clear();
        assert_eq!(p.count(t0), 0);
    }

    #[test]
    fn rate_allows_rpm_in_any_minute_then_waits_for_the_oldest() {
        let mut r = Rate::default();
        let t0 = 1_000_000;
        for i in 0..3 {
            assert_eq!(r.admit(3, t0 + i * 10_000), Ok(()));
        }
        // The fourth waits until the first is a minute old.
        assert_eq!(r.admit(3, t0 + 30_000), Err(30_000));
        assert_eq!(r.admit(3, t0 + 59_999), Err(1));
        assert_eq!(r.admit(3, t0 + 60_000), Ok(()));
        assert_eq!(r.admit(3, t0 + 60_000), Err(10_000));
        // After a quiet minute the whole allowance is back.
        let later = t0 + 200_000;
        for _ in 0..3 {
            assert_eq!(r.admit(3, later), Ok(()));
        }
        assert!(r.admit(3, later).is_err());
        // A lowered limit applies at once.
        assert!(r.admit(1, later + 1).is_err());
        assert_eq!(r.admit(1, later + 60_000), Ok(()));
    }

    #[test]
    fn rate_never_exceeds_rpm_in_any_minute() {
        let mut r = Rate::default();
        let mut admitted = Vec::new();
        for t in (0..300_000).step_by(250) {
            if r.admit(10, t).is_ok() {
                admitted.push(t);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_minute = admitted[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(in_minute <= 10, "{in_minute} requests in the minute from {t}");
        }
    }

    #[test]
    fn budgets_reset_at_utc_day_and_month_boundaries() {
        let limits = Limits { daily_tokens: Some(100), monthly_tokens: Some(150), ..Default::default() };
        // 2026-11-30 23:00:00 UTC.
        let t = utc(2026, Month::November, 30) + 23 * 3600;
        let mut s = Spent::default();
        assert_eq!(s.check(&limits, t), Ok(()));
        s.charge(99, t);
        assert_eq!(s.check(&limits, t), Ok(()));
        // The request that crosses the budget has already run; the next one is refused.
        s.charge(30, t);
        let midnight = utc(2026, Month::December, 1);
        assert_eq!(
            s.check(&limits, t),
            Err(Refused::Budget { budget: Budget::Daily, limit: 100, used: 129, resets_at: midnight })
        );
        // A new day (and month): both counters start over.
        assert_eq!(s.used(midnight), (0, 0));
        assert_eq!(s.check(&limits, midnight), Ok(()));
        // Within one month, the monthly budget outlasts the daily one.
        let dec2 = midnight + 86_400 + 60;
        s.charge(90, midnight + 60);
        s.charge(70, dec2);
        assert_eq!(s.used(dec2), (70, 160));
        let jan1 = utc(2027, Month::January, 1);
        assert_eq!(
            s.check(&limits, dec2),
            Err(Refused::Budget { budget: Budget::Monthly, limit: 150, used: 160, resets_at: jan1 })
        );
    }

    #[test]
    fn month_windows_follow_the_calendar() {
        let (jan, feb, mar, dec) = (Month::January, Month::February, Month::March, Month::December);
        for (now, start, next) in [
            (utc(2027, jan, 31) + 86_399, utc(2027, jan, 1), utc(2027, feb, 1)),
            (utc(2027, feb, 28) + 86_399, utc(2027, feb, 1), utc(2027, mar, 1)),
            (utc(2028, feb, 29) + 1, utc(2028, feb, 1), utc(2028, mar, 1)),
            (utc(2026, dec, 31) + 86_399, utc(2026, dec, 1), utc(2027, jan, 1)),
            (-1, utc(1969, dec, 1), 0),
        ] {
            assert_eq!(period_starts(now), (now - now.rem_euclid(86_400), start), "{now}");
            assert_eq!(next_month(now), next, "{now}");
        }
    }

    #[test]
    fn seeded_use_counts_only_in_its_period() {
        let limits = Limits { daily_tokens: Some(10), ..Default::default() };
        let t = utc(2026, Month::November, 22) + 5;
        let mut s = Spent::default();
        s.seed(10, 500, t);
        assert!(s.check(&limits, t).is_err());
        assert_eq!(s.used(t + 86_400), (0, 500));
    }

    #[test]
    fn raised_use_never_goes_down_and_starts_a_new_period_from_the_team() {
        let t = utc(2026, Month::November, 22) + 5;
        let mut s = Spent::default();
        s.charge(40, t);
        // The team's ledger has less than this instance counted (its own last requests are not in yet).
        s.raise(30, 30, t);
        assert_eq!(s.used(t), (40, 40));
        // The others spent more.
        s.raise(70, 90, t);
        assert_eq!(s.used(t), (70, 90));
        // The next day: yesterday's use is gone, the month's stays.
        let tomorrow = t + 86_400;
        s.raise(5, 95, tomorrow);
        assert_eq!(s.used(tomorrow), (5, 95));
    }

    #[test]
    fn in_flight_slots_are_bounded_and_returned() {
        let f = InFlight::default();
        assert!(f.acquire(2));
        assert!(f.acquire(2));
        assert!(!f.acquire(2));
        f.release();
        assert!(f.acquire(2));
        assert_eq!(f.count(), 2);
        f.release();
        f.release();
        f.release();
        assert_eq!(f.count(), 0);
    }

    #[test]
    fn expiry_dates() {
        let end_of_jan31 = utc(2027, Month::February, 1);
        assert_eq!(parse_expiry("2027-01-31"), Some(end_of_jan31));
        assert_eq!(parse_expiry("2027-01-31T12:00:00Z"), Some(end_of_jan31 - 12 * 3600));
        assert_eq!(parse_expiry("2028-02-29"), Some(utc(2028, Month::March, 1)), "a leap day");
        for bad in ["2027-02-30", "2027-02-29", "2027-13-01", "31/01/2027", "2027/01/31", "tomorrow", ""] {
            assert_eq!(parse_expiry(bad), None, "{bad}");
        }
    }
}
