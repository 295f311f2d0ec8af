//! When each account and the pool run dry at the present rate, and when capacity comes back: what `status`,
//! `accounts list`, the dashboard's chart, the metrics and the admin API show (docs/accounts.md, "Forecast").
//!
//! An account's forecast is its usable quota over its own present rate, unless the window that binds it resets
//! first. The pool's is played forward in steps at the pool's present rate: spending from the accounts whose
//! short window resets soonest first (as the planner does), restoring each window when it resets (a restored
//! window starts again at the next spend), until the pool cannot meet the rate or the horizon ends.

use crate::quota::QuotaView;

/// One forecast, in seconds from now.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Forecast {
    /// Weighted tokens usable now.
    pub usable: f64,
    /// What the binding windows hold when full.
    pub capacity: f64,
    /// The present rate, weighted tokens per second.
    pub rate: f64,
    /// When it runs dry at that rate (`None`: not before capacity comes back, or nothing is being spent).
    pub dry_in: Option<i64>,
    /// When capacity comes back: the binding window's reset (after running dry, the reset that ends it).
    pub back_in: Option<i64>,
}

/// One account's forecast.
pub fn account(q: &QuotaView) -> Forecast {
    let usable = q.usable();
    let binding = q.binding();
    let capacity = binding.map_or(0.0, |w| w.cap);
    let back_in = binding.filter(|w| w.started).map(|w| w.reset_in);
    let dry_in = if usable <= 0.0 {
        Some(0)
    } else if q.rate > 0.0 && usable.is_finite() {
        let t = (usable / q.rate).min(i64::MAX as f64 / 2.0) as i64;
        back_in.is_none_or(|b| t < b).then_some(t)
    } else {
        None
    };
    Forecast { usable: if usable.is_finite() { usable } else { 0.0 }, capacity, rate: q.rate, dry_in, back_in }
}

/// One account's windows played forward.
#[derive(Debug, Clone, Copy)]
struct Play {
    short: Option<Side>,
    long: Option<Side>,
}

#[derive(Debug, Clone, Copy)]
struct Side {
    cap: f64,
    left: f64,
    /// Seconds until reset; `None` while unstarted.
    reset_in: Option<i64>,
    length: i64,
}

impl Side {
    fn of(w: &crate::quota::WindowView) -> Side {
        Side { cap: w.cap, left: w.left.max(0.0), reset_in: w.started.then_some(w.reset_in), length: w.length }
    }

    fn advance(&mut self, dt: i64) {
        if let Some(r) = self.reset_in.as_mut() {
            *r -= dt;
            if *r <= 0 {
                self.left = self.cap;
                self.reset_in = None;
            }
        }
    }

    fn spend(&mut self, amount: f64) {
        self.left = (self.left - amount).max(0.0);
        if self.reset_in.is_none() {
            self.reset_in = Some(self.length);
        }
    }
}

impl Play {
    fn usable(&self) -> f64 {
        let s = self.short.map_or(f64::INFINITY, |w| w.left);
        let l = self.long.map_or(f64::INFINITY, |w| w.left);
        s.min(l)
    }

    fn soonest_reset(&self) -> i64 {
        [self.short, self.long].into_iter().flatten().filter_map(|w| w.reset_in).min().unwrap_or(i64::MAX)
    }
}

/// Step of the pool's play, seconds.
pub const STEP: i64 = 300;
/// How far the pool's play looks (a week: the long window).
pub const HORIZON: i64 = 7 * 86_400;

/// The pool's forecast and its projection: `(seconds from now, usable share of capacity)` every [`STEP`], for the
/// chart. Accounts without windows (API keys, relays) are not in it: they have no quota to run out of.
pub fn pool(views: &[QuotaView]) -> (Forecast, Vec<(i64, f64)>) {
    let mut play: Vec<Play> = views
        .iter()
        .filter(|q| q.short.is_some() || q.long.is_some())
        .map(|q| Play { short: q.short.as_ref().map(Side::of), long: q.long.as_ref().map(Side::of) })
        .collect();
    let capacity: f64 = play
        .iter()
        .map(|p| match (p.short, p.long) {
            (Some(s), Some(l)) => s.cap.min(l.cap),
            (s, l) => s.or(l).map_or(0.0, |w| w.cap),
        })
        .sum();
    let rate: f64 = views.iter().map(|q| q.rate).sum();
    let usable_now: f64 = play.iter().map(Play::usable).filter(|u| u.is_finite()).sum();
    let mut points = Vec::new();
    let (mut dry_in, mut back_in) = (None, None);
    let share = |play: &[Play]| {
        let u: f64 = play.iter().map(Play::usable).filter(|u| u.is_finite()).sum();
        if capacity > 0.0 { (u / capacity).clamp(0.0, 1.0) } else { 0.0 }
    };
    let mut t = 0;
    points.push((0, share(&play)));
    while t < HORIZON && !play.is_empty() {
        let mut demand = rate * STEP as f64;
        play.sort_by_key(Play::soonest_reset);
        for p in play.iter_mut() {
            if demand <= 0.0 {
                break;
            }
            let take = p.usable().min(demand);
            if take > 0.0 {
                for w in [p.short.as_mut(), p.long.as_mut()].into_iter().flatten() {
                    w.spend(take);
                }
                demand -= take;
            }
        }
        t += STEP;
        for p in play.iter_mut() {
            for w in [p.short.as_mut(), p.long.as_mut()].into_iter().flatten() {
                w.advance(STEP);
            }
        }
        if demand > 1e-6 && dry_in.is_none() {
            dry_in = Some(t - STEP + ((rate * STEP as f64 - demand) / rate.max(1e-9)) as i64);
        }
        if dry_in.is_some() && back_in.is_none() && share(&play) > 0.0 {
            back_in = Some(t);
        }
        points.push((t, share(&play)));
    }
    if dry_in.is_none() {
        // Not dry at this rate: capacity "comes back" at the soonest reset of a window in use.
        back_in = views
            .iter()
            .flat_map(|q| [q.short, q.long])
            .flatten()
            .filter(|w| w.started && w.used_percent > 0.0)
            .map(|w| w.reset_in)
            .min();
    }
    let forecast = Forecast { usable: usable_now, capacity, rate, dry_in, back_in };
    (forecast, points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::WindowView;
    use crate::window::Kind;

    fn window(kind: Kind, cap: f64, left: f64, reset_in: Option<i64>) -> WindowView {
        let length = match kind {
            Kind::Short => 18_000,
            Kind::Long => 604_800,
        };
        WindowView {
            kind,
            cap,
            left,
            used_percent: 100.0 * (1.0 - left / cap),
            reset_in: reset_in.unwrap_or(length),
            started: reset_in.is_some(),
            length,
        }
    }

    #[test]
    fn an_account_runs_dry_at_its_rate_unless_its_window_resets_first() {
        let q = QuotaView {
            short: Some(window(Kind::Short, 1_000.0, 300.0, Some(1_000))),
            long: Some(window(Kind::Long, 30_000.0, 20_000.0, Some(400_000))),
            rate: 1.0,
        };
        let f = account(&q);
        assert_eq!((f.dry_in, f.back_in), (Some(300), Some(1_000)));
        let slow = QuotaView { rate: 0.1, ..q };
        assert_eq!(account(&slow).dry_in, None, "it resets before it runs dry");
        let out = QuotaView { short: Some(window(Kind::Short, 1_000.0, 0.0, Some(50))), ..q };
        assert_eq!((account(&out).dry_in, account(&out).back_in), (Some(0), Some(50)));
    }

    #[test]
    fn the_pool_runs_dry_then_comes_back_at_the_first_reset() {
        // Two accounts with 600 and 1,200 left of 1,000-token five-hour windows, spending 1 token/s together:
        // dry after ~1,800 s; the first window resets at 3,600 s.
        let a = QuotaView {
            short: Some(window(Kind::Short, 1_000.0, 600.0, Some(3_600))),
            long: Some(window(Kind::Long, 100_000.0, 90_000.0, Some(500_000))),
            rate: 0.5,
        };
        let b = QuotaView {
            short: Some(window(Kind::Short, 2_000.0, 1_200.0, Some(7_200))),
            long: Some(window(Kind::Long, 100_000.0, 90_000.0, Some(500_000))),
            rate: 0.5,
        };
        let (f, points) = pool(&[a, b]);
        let dry = f.dry_in.unwrap_or(0);
        assert!((1_700..=1_900).contains(&dry), "{f:?}");
        assert_eq!(f.back_in, Some(3_600));
        assert!(points.len() > 100);
        assert_eq!(points[0].0, 0);
        assert!((points[0].1 - 1_800.0 / 3_000.0).abs() < 1e-9, "{:?}", points[0]);
        // Nothing spent: never dry.
        let idle = QuotaView { rate: 0.0, ..a };
        assert_eq!(pool(&[idle]).0.dry_in, None);
    }
}
