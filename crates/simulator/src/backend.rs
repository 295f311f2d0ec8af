//! The backend's accounts as the simulation plays them: windows that behave as users observe the real ones
//! (spec/codex-upstream.md, 2026-11-27), charged in credits the gateway never sees, reported as the backend
//! reports them (whole percents, the window's length, its reset), with their quirks.
//!
//! - A window starts at the first request after its reset.
//! - A request is refused (429 `usage_limit_reached`, with the reset) when a window is used up as it starts; one
//!   that starts with quota left runs to its end and is charged in full (windows may end a little over).
//! - Quirks, per account: the weekly reading swings between two anchors (a reset 17 hours later and 37 points
//!   more used) on a share of readings; a weekly reset restores only part of the window; a free account's only
//!   window is in the primary slot.
//! - Overload episodes: an account answers `server_is_overloaded` while one lasts.

use planner::window::{Reading, Slot};
use planner::{Kind, Plan};

/// What the backend charges: weighted tokens (planner::cost) per credit. Hidden from the gateway, which starts
/// from its own prior (`planner::quota::TOKENS_PER_CREDIT`, 10,000) and learns the truth from readings.
pub const TRUE_TOKENS_PER_CREDIT: f64 = 12_000.0;

/// One window, as the backend holds it.
#[derive(Debug, Clone)]
pub struct TrueWindow {
    pub kind: Kind,
    pub cap: f64,
    pub used: f64,
    /// `None`: not started (the next request starts it).
    pub reset_at: Option<i64>,
    pub length: i64,
}

impl TrueWindow {
    fn roll(&mut self, now: i64, restore_to: f64) -> Option<f64> {
        match self.reset_at {
            Some(r) if r <= now => {
                let lost = (self.cap - self.used).max(0.0);
                self.used = restore_to * self.cap;
                self.reset_at = None;
                Some(lost)
            }
            Some(_) | None => None,
        }
    }

    fn percent(&self) -> f64 {
        (100.0 * self.used / self.cap).clamp(0.0, 100.0).round()
    }
}

/// The quirks one account shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// Share of readings whose weekly window swings to the other anchor (0: never).
    pub swing: f64,
    /// Share of the weekly window a reset leaves used (0: a full reset).
    pub partial_restore: f64,
}

/// One account of the backend.
#[derive(Debug, Clone)]
pub struct TrueAccount {
    pub plan: Plan,
    pub short: Option<TrueWindow>,
    pub long: TrueWindow,
    pub quirks: Quirks,
    /// Overload episodes: (from, to).
    pub overloads: Vec<(i64, i64)>,
    /// Credits that resets took away unused, from windows that had started.
    pub lost: f64,
}

/// What the backend answers a request as it starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Served: the headers' readings.
    Served(Vec<Reading>),
    /// 429 `usage_limit_reached` until then.
    UsageLimit { resets_at: i64 },
    /// 503 `server_is_overloaded`.
    Overloaded,
}

impl TrueAccount {
    /// A fresh account of `plan`, windows as `short` (used share, seconds to reset; `None` unstarted) and `long`.
    pub fn new(plan: Plan, short: (f64, Option<i64>), long: (f64, Option<i64>), quirks: Quirks) -> TrueAccount {
        let window = |kind: Kind, (used, reset_in): (f64, Option<i64>), length: i64| {
            plan.credits(kind).map(|cap| TrueWindow {
                kind,
                cap,
                used: used * cap,
                reset_at: reset_in.filter(|_| used > 0.0),
                length,
            })
        };
        let long = window(Kind::Long, long, planner::window::LONG_SECS);
        TrueAccount {
            plan,
            short: window(Kind::Short, short, planner::window::SHORT_SECS),
            long: long.unwrap_or(TrueWindow {
                kind: Kind::Long,
                cap: 1.0,
                used: 0.0,
                reset_at: None,
                length: planner::window::LONG_SECS,
            }),
            quirks,
            overloads: Vec::new(),
            lost: 0.0,
        }
    }

    fn roll(&mut self, now: i64) {
        if let Some(s) = self.short.as_mut()
            && let Some(lost) = s.roll(now, 0.0)
        {
            self.lost += lost;
        }
        if let Some(lost) = self.long.roll(now, self.quirks.partial_restore) {
            self.lost += lost;
        }
    }

    fn windows(&mut self) -> impl Iterator<Item = &mut TrueWindow> {
        self.short.as_mut().into_iter().chain(std::iter::once(&mut self.long))
    }

    /// A request starts now; `coin` in [0, 1) decides a swinging reading.
    pub fn admit(&mut self, now: i64, coin: f64) -> Admission {
        self.roll(now);
        if self.overloads.iter().any(|&(from, to)| (from..to).contains(&now)) {
            return Admission::Overloaded;
        }
        let full = self.windows().filter(|w| w.used >= w.cap).filter_map(|w| w.reset_at).max();
        if let Some(resets_at) = full {
            return Admission::UsageLimit { resets_at };
        }
        for w in self.windows() {
            if w.reset_at.is_none() {
                w.reset_at = Some(now + w.length);
            }
        }
        Admission::Served(self.readings(now, coin))
    }

    /// The windows as the headers (or a usage poll) report them.
    pub fn readings(&mut self, now: i64, coin: f64) -> Vec<Reading> {
        self.roll(now);
        let swing = coin < self.quirks.swing;
        let long_first = self.plan.long_window_first();
        let mut out = Vec::new();
        if let Some(s) = &self.short {
            out.push(Reading {
                slot: Slot::Primary,
                used_percent: s.percent(),
                window_minutes: Some((s.length / 60) as u32),
                reset_at: s.reset_at,
            });
        }
        let l = &self.long;
        let (used, reset) = match (swing, l.reset_at) {
            (true, Some(r)) => ((l.percent() + 37.0).min(100.0), Some(r + 17 * 3600)),
            _ => (l.percent(), l.reset_at),
        };
        out.push(Reading {
            slot: if long_first { Slot::Primary } else { Slot::Secondary },
            used_percent: used,
            window_minutes: Some((l.length / 60) as u32),
            reset_at: reset,
        });
        out
    }

    /// A request that was admitted ended: charge what it used (weighted tokens) to the windows running now.
    pub fn charge(&mut self, weighted_tokens: f64, now: i64) {
        self.roll(now);
        let credits = weighted_tokens / TRUE_TOKENS_PER_CREDIT;
        for w in self.windows() {
            if w.reset_at.is_none() {
                w.reset_at = Some(now + w.length);
            }
            w.used += credits;
        }
    }

    /// Credits the windows still running hold unused at the end of a run (counted as lost by `run`'s end: they
    /// are not, but a run compares strategies at one end time, so it is left out).
    pub fn capacity_per_week(&self) -> f64 {
        self.long.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_at_the_first_request_and_refuses_when_used_up() {
        let mut a = TrueAccount::new(Plan::Plus, (0.0, None), (0.0, None), Quirks::default());
        let Admission::Served(r) = a.admit(1_000, 0.5) else { panic!("served") };
        assert_eq!(r[0].reset_at, Some(1_000 + 18_000));
        a.charge(225.0 * TRUE_TOKENS_PER_CREDIT, 1_100);
        assert_eq!(a.admit(1_200, 0.5), Admission::UsageLimit { resets_at: 19_000 });
        // After the reset: a new window at the next request, nothing lost (it was all used).
        assert!(matches!(a.admit(19_000, 0.5), Admission::Served(_)));
        assert_eq!(a.lost, 0.0);
        a.overloads.push((20_000, 21_000));
        assert_eq!(a.admit(20_500, 0.5), Admission::Overloaded);
    }

    #[test]
    fn quirks_show_in_readings() {
        let q = Quirks { swing: 0.5, partial_restore: 0.25 };
        let mut a = TrueAccount::new(Plan::Plus, (0.1, Some(600)), (0.6, Some(3_600)), q);
        let steady = a.readings(0, 0.9);
        let swung = a.readings(0, 0.1);
        assert_eq!(steady[1].used_percent, 60.0);
        assert_eq!(swung[1].used_percent, 97.0);
        assert_eq!(swung[1].reset_at, steady[1].reset_at.map(|r| r + 17 * 3600));
        let after = a.readings(3_600, 0.9);
        assert_eq!(after[1].used_percent, 25.0, "a partial restore");
        let mut free = TrueAccount::new(Plan::Free, (0.0, None), (0.0, None), Quirks::default());
        let r = free.readings(0, 0.9);
        assert_eq!((r.len(), r[0].slot, r[0].window_minutes), (1, Slot::Primary, Some(10_080)));
    }
}
