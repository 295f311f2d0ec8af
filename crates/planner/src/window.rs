//! One quota window of an account as the backend reports it (`x-codex-{primary,secondary}-*` headers,
//! `/wham/usage`, `codex.rate_limits` frames), classified by its length, and believed without flapping.
//!
//! The windows' known quirks (spec/codex-upstream.md, 2026-11-27; openai/codex issues 28246, 36313, 35952,
//! 44210, 43448) and what is done about each:
//! - a window starts at the first request after a reset, not on a schedule: a window whose reset has passed is
//!   *unstarted* (nothing used, its whole length ahead once used), until a reading says otherwise;
//! - free accounts report their long window in the primary slot: windows are classified by their length
//!   (`window_minutes`), the slot only when the length is missing;
//! - the weekly reset can swing between two times, its percentage jumping with it (60% -> 97% -> 60%): readings
//!   of the believed reset anchor are believed as they come (use rises and falls with them); a reading of another
//!   anchor (not a renewal a whole window later) is believed only once that anchor alone has been read for
//!   [`HOLD_SECS`], so no decision flaps with the swing, and a swing to 100% never shuts an account;
//! - a reset may restore only part of a window, or move it to "now + length": the first reading after the reset
//!   is believed as it is.

/// The length a window must exceed to be a long one (a day): the short window is five hours, the long ones a
/// week or a month.
pub const SHORT_MAX_MINUTES: u32 = 24 * 60;
/// The short window's length when a reading does not say (five hours).
pub const SHORT_SECS: i64 = 5 * 3600;
/// The long window's length when a reading does not say (a week).
pub const LONG_SECS: i64 = 7 * 86_400;
/// How long readings of another reset anchor must hold, alone, before they are believed.
pub const HOLD_SECS: i64 = 1800;
/// Resets this close are one anchor (a recomputed `reset_after_seconds` moves by the answer's latency).
const ANCHOR_SLACK_SECS: i64 = 120;

/// Which window: the short one (five hours) or the long one (a week, or a month on some plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Short,
    Long,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Short => "short",
            Kind::Long => "long",
        }
    }
}

/// The header slot a reading came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Primary,
    Secondary,
}

/// One window as one answer reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub slot: Slot,
    pub used_percent: f64,
    /// The window's length, when the backend says it (`window_minutes`, `limit_window_seconds` / 60).
    pub window_minutes: Option<u32>,
    /// When it resets (unix seconds); `None` for a window that has not started.
    pub reset_at: Option<i64>,
}

impl Reading {
    /// Which window this reading is about: by its length when known, else by its slot (the long window is in the
    /// primary slot on plans that have only one, `long_window_first`).
    pub fn kind(&self, long_window_first: bool) -> Kind {
        match (self.window_minutes, self.slot) {
            (Some(minutes), _) if minutes > SHORT_MAX_MINUTES => Kind::Long,
            (Some(_), _) => Kind::Short,
            (None, Slot::Primary) if long_window_first => Kind::Long,
            (None, Slot::Primary) => Kind::Short,
            (None, Slot::Secondary) => Kind::Long,
        }
    }

    /// The window's length in seconds: as reported, else the usual length of its kind.
    pub fn length_secs(&self, kind: Kind) -> i64 {
        match (self.window_minutes, kind) {
            (Some(m), _) if m > 0 => i64::from(m) * 60,
            (_, Kind::Short) => SHORT_SECS,
            (_, Kind::Long) => LONG_SECS,
        }
    }
}

/// What the planner believes of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Its length in seconds.
    pub length: i64,
    used: f64,
    reset_at: Option<i64>,
    /// A reading with another reset anchor waiting to be believed: (used, reset, first seen).
    other: Option<(f64, Option<i64>, i64)>,
    /// When a reading last arrived.
    pub updated_at: i64,
    /// Whether any reading arrived yet.
    read: bool,
}

impl Window {
    /// A window first seen in `reading`.
    pub fn new(reading: &Reading, length: i64, now: i64) -> Window {
        Window {
            length,
            used: reading.used_percent.clamp(0.0, 100.0),
            reset_at: reading.reset_at,
            other: None,
            updated_at: now,
            read: true,
        }
    }

    /// A window nothing has been read of: unstarted, its whole length ahead.
    pub fn unstarted(length: i64) -> Window {
        Window { length, used: 0.0, reset_at: None, other: None, updated_at: 0, read: false }
    }

    /// Take a reading in (see the module's rules).
    pub fn observe(&mut self, reading: &Reading, now: i64) {
        let used = reading.used_percent.clamp(0.0, 100.0);
        let reset = reading.reset_at;
        let first = !self.read;
        self.read = true;
        self.updated_at = now;
        let passed = self.reset_at.is_some_and(|r| r <= now);
        let (same, renewed) = match (self.reset_at, reset) {
            (Some(old), Some(new)) => {
                ((new - old).abs() <= ANCHOR_SLACK_SECS, new >= old + self.length - 86_400.min(self.length / 2))
            }
            // A reading of a window that has not started (no reset), or the first reset of one: its own anchor.
            (None, _) | (_, None) => (true, false),
        };
        if passed || renewed || first || same {
            self.take(used, reset.or(self.reset_at.filter(|_| !passed)));
            return;
        }
        // Another anchor within the window's length: the swing. It is believed only once it alone has been read
        // for the hold.
        match self.other {
            Some((_, anchor, since)) if anchor == reset && now - since >= HOLD_SECS => self.take(used, reset),
            Some((_, anchor, since)) if anchor == reset => self.other = Some((used, reset, since)),
            Some(_) | None => self.other = Some((used, reset, now)),
        }
    }

    fn take(&mut self, used: f64, reset: Option<i64>) {
        self.used = used;
        self.reset_at = reset;
        self.other = None;
    }

    /// The backend said the window is used up until `until` (a 429 `usage_limit_reached`).
    pub fn exhaust(&mut self, until: i64, now: i64) {
        self.take(100.0, Some(until.max(now)));
        self.updated_at = now;
        self.read = true;
    }

    /// An operator cleared the account: a window read as used up is tried again (a request finds out).
    pub fn forgive(&mut self) {
        self.used = self.used.min(99.0);
    }

    /// Percent used now: nothing once its reset has passed (a new window starts at the next request).
    pub fn used(&self, now: i64) -> f64 {
        if self.started(now) { self.used } else { 0.0 }
    }

    /// When it resets; `None` while unstarted.
    pub fn reset_at(&self, now: i64) -> Option<i64> {
        self.reset_at.filter(|r| *r > now)
    }

    /// Whether it is running (a reading gave a reset still ahead).
    pub fn started(&self, now: i64) -> bool {
        self.reset_at.is_some_and(|r| r > now)
    }

    /// Seconds until it resets: the whole length for an unstarted window (it starts when next used).
    pub fn reset_in(&self, now: i64) -> i64 {
        match self.reset_at(now) {
            Some(r) => r - now,
            None => self.length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(slot: Slot, used: f64, minutes: Option<u32>, reset: Option<i64>) -> Reading {
        Reading { slot, used_percent: used, window_minutes: minutes, reset_at: reset }
    }

    #[test]
    fn windows_are_classified_by_length_then_slot() {
        let table = [
            (r(Slot::Primary, 1.0, Some(300), None), false, Kind::Short),
            (r(Slot::Secondary, 1.0, Some(10_080), None), false, Kind::Long),
            // A free account's only window, a week, in the primary slot.
            (r(Slot::Primary, 1.0, Some(10_080), None), true, Kind::Long),
            (r(Slot::Primary, 1.0, Some(43_200), None), false, Kind::Long),
            (r(Slot::Primary, 1.0, None, None), false, Kind::Short),
            (r(Slot::Primary, 1.0, None, None), true, Kind::Long),
            (r(Slot::Secondary, 1.0, None, None), false, Kind::Long),
            (r(Slot::Secondary, 1.0, Some(300), None), false, Kind::Short),
        ];
        for (reading, long_first, kind) in table {
            assert_eq!(reading.kind(long_first), kind, "{reading:?}");
        }
        assert_eq!(r(Slot::Primary, 0.0, Some(300), None).length_secs(Kind::Short), 18_000);
        assert_eq!(r(Slot::Secondary, 0.0, None, None).length_secs(Kind::Long), LONG_SECS);
    }

    #[test]
    fn a_swinging_weekly_reading_does_not_flap() {
        let week = LONG_SECS;
        let (a, b) = (1_000_000, 1_000_000 + 17 * 3600);
        let mut w = Window::new(&r(Slot::Secondary, 60.0, Some(10_080), Some(a)), week, 0);
        // 60 -> 100 -> 61 -> 100 ... with the reset between two anchors: the first anchor's readings hold.
        let mut seen = Vec::new();
        for i in 1..40 {
            let now = i * 300;
            let (used, reset) = if i % 2 == 1 { (100.0, b) } else { (60.0 + (i / 10) as f64, a) };
            w.observe(&r(Slot::Secondary, used, Some(10_080), Some(reset)), now);
            seen.push((w.used(now) < 100.0, w.reset_at(now)));
        }
        assert!(seen.iter().all(|s| *s == (true, Some(a))), "{seen:?}");
        assert_eq!(w.used(40 * 300), 63.0, "use rises with its own anchor's readings");
        // Once only the other anchor is read, for longer than the hold, it is believed.
        let mut now = 40 * 300;
        for _ in 0..8 {
            now += 300;
            w.observe(&r(Slot::Secondary, 97.0, Some(10_080), Some(b)), now);
        }
        assert_eq!((w.used(now), w.reset_at(now)), (97.0, Some(b)));
    }

    #[test]
    fn a_window_resets_unstarted_and_a_new_reading_is_believed_as_it_is() {
        let mut w = Window::new(&r(Slot::Primary, 80.0, Some(300), Some(10_000)), SHORT_SECS, 5_000);
        assert_eq!(w.used(9_999), 80.0);
        assert_eq!(w.reset_in(9_000), 1_000);
        // Past its reset: unstarted, the whole length ahead.
        assert_eq!(w.used(10_000), 0.0);
        assert!(!w.started(10_000));
        assert_eq!(w.reset_in(10_001), SHORT_SECS);
        // A partial restore after the reset is believed at once.
        w.observe(&r(Slot::Primary, 30.0, Some(300), Some(10_500 + SHORT_SECS)), 10_500);
        assert_eq!(w.used(10_600), 30.0);
        // A weekly recomputed as "now + 7 days" with less used, before the old reset: a new window.
        let mut wk = Window::new(&r(Slot::Secondary, 70.0, Some(10_080), Some(100_000)), LONG_SECS, 0);
        wk.observe(&r(Slot::Secondary, 5.0, Some(10_080), Some(50_000 + LONG_SECS)), 50_000);
        assert_eq!(wk.used(50_001), 5.0);
        // The same anchor, a moment later (latency moves a computed reset a little): believed as it comes.
        wk.observe(&r(Slot::Secondary, 6.0, Some(10_080), Some(50_030 + LONG_SECS)), 50_100);
        assert_eq!(wk.used(50_101), 6.0);
        wk.exhaust(60_000, 50_200);
        assert_eq!(wk.used(50_300), 100.0);
        assert_eq!(wk.reset_at(50_300), Some(60_000));
    }
}
