//! An account's quota as the planner knows it: its windows (`window.rs`), what a percent of each holds in
//! weighted tokens (`cost.rs`), learnt from the account's own readings against what it was charged, and the rate
//! it is spending at.
//!
//! Capacity starts from the plan (`plan.rs`: a Pro's percent is worth about 6.7 Plus percents) times a prior
//! scale, and is corrected from the readings: between two readings of one window, the weighted tokens charged to
//! the account over the rise in its percentage give the tokens a percent holds. An account without readings of its
//! own is scaled like the accounts that have them (`learnt_ratio`, passed back in as `correction`).

use crate::plan::Plan;
use crate::window::{Kind, LONG_SECS, Reading, SHORT_SECS, Window};

/// The prior: weighted tokens per plan credit, before any reading corrects it. Calibrated so a Plus account's
/// five-hour window holds about 2.25 M weighted tokens (about an hour and a half of one developer's agent
/// turns); a wrong prior only delays the first correction.
pub const TOKENS_PER_CREDIT: f64 = 10_000.0;
/// A rise of at least this many percent between two readings makes a sample of what a percent holds (readings
/// are whole percents: a smaller rise is mostly rounding).
const SAMPLE_PERCENT: f64 = 3.0;
/// Weight of a new sample in what a percent holds.
const SAMPLE_WEIGHT: f64 = 0.3;
/// Time constant of the spending rate (seconds): the present rate is the last quarter hour's, decaying.
pub const RATE_SECS: f64 = 900.0;

/// What one window holds, learnt.
#[derive(Debug, Clone, Default, PartialEq)]
struct Learnt {
    /// Weighted tokens per percent, once sampled.
    per_percent: Option<f64>,
    /// The reading the next sample is measured from: (used, reset), and the tokens charged since.
    anchor: Option<(f64, Option<i64>)>,
    tokens_since_anchor: f64,
    /// Tokens charged since the window's last reading (not in any reading yet).
    since_reading: f64,
}

/// An account's quota.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountQuota {
    plan: Plan,
    short: Option<Window>,
    long: Option<Window>,
    learnt: [Learnt; 2],
    /// Spending rate (weighted tokens per second) at `rate_at`.
    rate: f64,
    rate_at: i64,
}

/// One window as the choice sees it, in weighted tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct WindowView {
    pub kind: Kind,
    /// What the whole window holds.
    pub cap: f64,
    /// What is left of it now (reading, plus what was charged since).
    pub left: f64,
    pub used_percent: f64,
    /// Seconds until it resets (its whole length while unstarted).
    pub reset_in: i64,
    /// Running (a reading gave a reset still ahead); an unstarted window starts at the next request.
    pub started: bool,
    pub length: i64,
}

/// An account's windows as the choice sees them.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct QuotaView {
    pub short: Option<WindowView>,
    pub long: Option<WindowView>,
    /// The present spending rate, weighted tokens per second.
    pub rate: f64,
}

impl QuotaView {
    /// What can be spent now: the smaller of the windows' left (none known: unbounded).
    pub fn usable(&self) -> f64 {
        let s = self.short.map_or(f64::INFINITY, |w| w.left);
        let l = self.long.map_or(f64::INFINITY, |w| w.left);
        s.min(l).max(0.0)
    }

    /// The window that runs out first at any rate: the one with less left.
    pub fn binding(&self) -> Option<WindowView> {
        match (self.short, self.long) {
            (Some(s), Some(l)) => Some(if l.left < s.left { l } else { s }),
            (s, l) => s.or(l),
        }
    }
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Short => 0,
        Kind::Long => 1,
    }
}

impl AccountQuota {
    pub fn new(plan: Plan) -> AccountQuota {
        AccountQuota { plan, short: None, long: None, learnt: Default::default(), rate: 0.0, rate_at: 0 }
    }

    pub fn plan(&self) -> Plan {
        self.plan
    }

    /// The plan changed (a usage poll or a new login said so).
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan;
    }

    fn window_mut(&mut self, kind: Kind) -> &mut Option<Window> {
        match kind {
            Kind::Short => &mut self.short,
            Kind::Long => &mut self.long,
        }
    }

    /// The window of `kind`, if a reading has shown one.
    pub fn window(&self, kind: Kind) -> Option<&Window> {
        match kind {
            Kind::Short => self.short.as_ref(),
            Kind::Long => self.long.as_ref(),
        }
    }

    /// Take in the windows one answer (or a usage poll) reported.
    pub fn observe(&mut self, readings: &[Reading], now: i64) {
        let long_first = self.plan.long_window_first();
        for reading in readings {
            let kind = reading.kind(long_first);
            let length = reading.length_secs(kind);
            let window = self.window_mut(kind);
            match window {
                Some(w) => {
                    w.length = length;
                    w.observe(reading, now);
                }
                None => *window = Some(Window::new(reading, length, now)),
            }
            let believed = window.as_ref().map(|w| (w.used(now), w.reset_at(now)));
            self.learn(kind, believed, now);
        }
    }

    /// A sample of what a percent holds, when the window rose enough since its anchor within one window.
    fn learn(&mut self, kind: Kind, believed: Option<(f64, Option<i64>)>, now: i64) {
        let learnt = &mut self.learnt[slot(kind)];
        learnt.since_reading = 0.0;
        let Some((used, reset)) = believed else { return };
        match learnt.anchor {
            Some((from, anchor_reset)) if anchor_reset == reset && reset.is_some_and(|r| r > now) => {
                let rise = used - from;
                if rise >= SAMPLE_PERCENT && learnt.tokens_since_anchor > 0.0 {
                    let sample = learnt.tokens_since_anchor / rise;
                    learnt.per_percent = Some(match learnt.per_percent {
                        Some(p) => p + SAMPLE_WEIGHT * (sample - p),
                        None => sample,
                    });
                    learnt.anchor = Some((used, reset));
                    learnt.tokens_since_anchor = 0.0;
                } else if rise < 0.0 {
                    learnt.anchor = Some((used, reset));
                    learnt.tokens_since_anchor = 0.0;
                }
            }
            Some(_) | None => {
                learnt.anchor = Some((used, reset));
                learnt.tokens_since_anchor = 0.0;
            }
        }
    }

    /// A request finished that used `tokens` weighted tokens (`cost::weighted`).
    pub fn charge(&mut self, tokens: f64, now: i64) {
        if !(tokens.is_finite() && tokens > 0.0) {
            return;
        }
        for learnt in &mut self.learnt {
            learnt.tokens_since_anchor += tokens;
            learnt.since_reading += tokens;
        }
        self.rate = self.rate_at(now) + tokens / RATE_SECS;
        self.rate_at = now;
    }

    /// The spending rate now (weighted tokens per second), decayed since the last charge.
    pub fn rate_at(&self, now: i64) -> f64 {
        let dt = (now - self.rate_at).max(0) as f64;
        self.rate * (-dt / RATE_SECS).exp()
    }

    /// The backend refused with `usage_limit_reached` until `until`: the window that resets then (the closest
    /// believed reset, else by how far off it is) is used up.
    pub fn exhausted(&mut self, until: i64, now: i64) {
        let close = |w: &Option<Window>| w.as_ref().and_then(|w| w.reset_at(now)).map(|r| (r - until).abs());
        let kind = match (close(&self.short), close(&self.long)) {
            (Some(s), Some(l)) => {
                if s <= l {
                    Kind::Short
                } else {
                    Kind::Long
                }
            }
            _ if self.plan.credits(Kind::Short).is_none() => Kind::Long,
            _ if until - now > 86_400 => Kind::Long,
            _ => Kind::Short,
        };
        let length = match kind {
            Kind::Short => SHORT_SECS,
            Kind::Long => LONG_SECS,
        };
        self.window_mut(kind).get_or_insert_with(|| Window::unstarted(length)).exhaust(until, now);
    }

    /// An operator cleared the account's cooldowns: windows read as used up are tried again.
    pub fn forgive(&mut self) {
        for w in [self.short.as_mut(), self.long.as_mut()].into_iter().flatten() {
            w.forgive();
        }
    }

    /// When the account can serve again, if a window is used up now.
    pub fn blocked_until(&self, now: i64) -> Option<i64> {
        [&self.short, &self.long]
            .into_iter()
            .flatten()
            .filter(|w| w.started(now) && w.used(now) >= 100.0)
            .filter_map(|w| w.reset_at(now))
            .max()
    }

    /// The prior of what a percent of `kind` holds on this plan (`None`: the plan has no such window).
    fn prior(&self, kind: Kind) -> Option<f64> {
        self.plan.credits(kind).map(|c| c * TOKENS_PER_CREDIT / 100.0)
    }

    /// Learnt over prior, per window that has samples: what the pool scales accounts without samples by.
    pub fn learnt_ratio(&self) -> impl Iterator<Item = f64> + '_ {
        [Kind::Short, Kind::Long].into_iter().filter_map(|k| Some(self.learnt[slot(k)].per_percent? / self.prior(k)?))
    }

    /// Weighted tokens per percent of `kind`: learnt, else the prior scaled by `correction`.
    pub fn per_percent(&self, kind: Kind, correction: f64) -> Option<f64> {
        let prior = self.prior(kind);
        self.learnt[slot(kind)].per_percent.or(prior.map(|p| p * correction))
    }

    /// The account's windows now, in weighted tokens. A plan's window nothing was read of yet is unstarted and
    /// full (the backend shows it at the first answer).
    pub fn view(&self, now: i64, correction: f64) -> QuotaView {
        let one = |kind: Kind, window: &Option<Window>, default_len: i64| -> Option<WindowView> {
            let per = self.per_percent(kind, correction).filter(|p| *p > 0.0)?;
            let (used, reset_in, started, length) = match window {
                Some(w) => (w.used(now), w.reset_in(now), w.started(now), w.length),
                None => (0.0, default_len, false, default_len),
            };
            let since = if started { self.learnt[slot(kind)].since_reading / per } else { 0.0 };
            let used = (used + since).min(100.0);
            Some(WindowView {
                kind,
                cap: per * 100.0,
                left: per * (100.0 - used),
                used_percent: used,
                reset_in,
                started,
                length,
            })
        };
        QuotaView {
            short: one(Kind::Short, &self.short, SHORT_SECS),
            long: one(Kind::Long, &self.long, LONG_SECS),
            rate: self.rate_at(now),
        }
    }
}

/// The scale accounts without samples of their own are given: the geometric mean of learnt over prior across
/// the pool's accounts that have samples (1 when none has).
pub fn pool_correction<'a>(accounts: impl Iterator<Item = &'a AccountQuota>) -> f64 {
    let (mut sum, mut n) = (0.0, 0u32);
    for ratio in accounts.flat_map(|a| a.learnt_ratio()) {
        if ratio > 0.0 && ratio.is_finite() {
            sum += ratio.ln();
            n += 1;
        }
    }
    if n == 0 { 1.0 } else { (sum / f64::from(n)).exp() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Slot;

    fn reading(slot: Slot, used: f64, minutes: u32, reset: i64) -> Reading {
        Reading { slot, used_percent: used, window_minutes: Some(minutes), reset_at: Some(reset) }
    }

    #[test]
    fn a_pro_percent_holds_more_than_a_plus_percent_until_readings_say_otherwise() {
        let (pro, plus) = (AccountQuota::new(Plan::Pro), AccountQuota::new(Plan::Plus));
        let (p, q) = (pro.view(0, 1.0), plus.view(0, 1.0));
        let ratio = p.short.map_or(0.0, |w| w.cap) / q.short.map_or(1.0, |w| w.cap);
        assert!((ratio - 1500.0 / 225.0).abs() < 1e-9, "{ratio}");
        assert!(!p.short.is_some_and(|w| w.started), "nothing read yet: unstarted");
        let free = AccountQuota::new(Plan::Free).view(0, 1.0);
        assert!(free.short.is_none() && free.long.is_some());
    }

    #[test]
    fn what_a_percent_holds_is_learnt_from_charges_between_readings() {
        let mut q = AccountQuota::new(Plan::Plus);
        let reset = 10_000;
        q.observe(&[reading(Slot::Primary, 10.0, 300, reset)], 100);
        // 50,000 weighted tokens moved the window from 10% to 15%: 10,000 tokens a percent.
        q.charge(50_000.0, 200);
        // Before the next reading, what was charged counts as used already.
        let before = q.view(250, 1.0).short.map(|w| w.used_percent).unwrap_or_default();
        assert!(before > 10.0, "{before}");
        q.observe(&[reading(Slot::Primary, 15.0, 300, reset)], 300);
        assert_eq!(q.per_percent(Kind::Short, 1.0), Some(10_000.0));
        let ratio: Vec<f64> = q.learnt_ratio().collect();
        assert_eq!(ratio, vec![10_000.0 / (225.0 * TOKENS_PER_CREDIT / 100.0)]);
        // A rise across a reset is no sample.
        q.charge(1_000.0, 400);
        q.observe(&[reading(Slot::Primary, 20.0, 300, reset + 18_000)], reset + 10);
        assert_eq!(q.per_percent(Kind::Short, 1.0), Some(10_000.0));
    }

    #[test]
    fn a_usage_limit_marks_the_window_that_resets_then() {
        let mut q = AccountQuota::new(Plan::Plus);
        q.observe(&[reading(Slot::Primary, 40.0, 300, 5_000), reading(Slot::Secondary, 30.0, 10_080, 500_000)], 0);
        q.exhausted(499_990, 10);
        assert_eq!(q.blocked_until(20), Some(499_990));
        let mut f = AccountQuota::new(Plan::Free);
        f.exhausted(3_000, 0);
        assert!(f.window(Kind::Long).is_some(), "a free plan has only the long window");
        assert_eq!(f.blocked_until(1), Some(3_000));
        assert_eq!(f.blocked_until(3_000), None, "reset");
    }

    #[test]
    fn the_rate_decays_without_charges() {
        let mut q = AccountQuota::new(Plan::Plus);
        q.charge(900.0, 0);
        assert!((q.rate_at(0) - 1.0).abs() < 1e-9);
        assert!((q.rate_at(900) - (-1.0f64).exp()).abs() < 1e-9);
    }
}
