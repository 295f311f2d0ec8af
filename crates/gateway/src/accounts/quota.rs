//! Quota as the upstream reports it in `x-codex-*` response headers and `/wham/usage`: the last reading as it
//! came (shown to people and clients), and the same windows as the planner reads them (`readings`).

use reqwest::header::{HeaderMap, HeaderName};
use serde_json::Value;

/// The headers read, as static names: a `&str` name is parsed and checked again on every lookup, and this runs on
/// every answer.
static PRIMARY_USED: HeaderName = HeaderName::from_static("x-codex-primary-used-percent");
static PRIMARY_RESET_AT: HeaderName = HeaderName::from_static("x-codex-primary-reset-at");
static PRIMARY_RESET_AFTER: HeaderName = HeaderName::from_static("x-codex-primary-reset-after-seconds");
static SECONDARY_USED: HeaderName = HeaderName::from_static("x-codex-secondary-used-percent");
static SECONDARY_RESET_AT: HeaderName = HeaderName::from_static("x-codex-secondary-reset-at");
static SECONDARY_RESET_AFTER: HeaderName = HeaderName::from_static("x-codex-secondary-reset-after-seconds");
static PRIMARY_MINUTES: HeaderName = HeaderName::from_static("x-codex-primary-window-minutes");
static SECONDARY_MINUTES: HeaderName = HeaderName::from_static("x-codex-secondary-window-minutes");

/// The last quota numbers seen for an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaSnapshot {
    pub primary_used_percent: Option<f64>,
    pub primary_reset_at: Option<i64>,
    pub secondary_used_percent: Option<f64>,
    pub secondary_reset_at: Option<i64>,
    /// The windows' lengths, when the backend says them (free accounts have a long window in the primary slot).
    pub primary_window_minutes: Option<u32>,
    pub secondary_window_minutes: Option<u32>,
    pub updated_at: i64,
}

impl QuotaSnapshot {
    /// Read the `x-codex-{primary,secondary}-*` headers; `None` if the response carried none.
    pub fn from_headers(headers: &HeaderMap, now: i64) -> Option<QuotaSnapshot> {
        let f = |name: &HeaderName| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
        let reset = |at, after| f(at).map(|v| v as i64).or_else(|| f(after).map(|s| now + s as i64));
        let minutes = |name| f(name).filter(|m| *m > 0.0 && *m < f64::from(u32::MAX)).map(|m| m as u32);
        let snap = QuotaSnapshot {
            primary_used_percent: f(&PRIMARY_USED),
            primary_reset_at: reset(&PRIMARY_RESET_AT, &PRIMARY_RESET_AFTER),
            secondary_used_percent: f(&SECONDARY_USED),
            secondary_reset_at: reset(&SECONDARY_RESET_AT, &SECONDARY_RESET_AFTER),
            primary_window_minutes: minutes(&PRIMARY_MINUTES),
            secondary_window_minutes: minutes(&SECONDARY_MINUTES),
            updated_at: now,
        };
        (snap.primary_used_percent.is_some() || snap.secondary_used_percent.is_some()).then_some(snap)
    }

    /// If a window is used up and has not reset yet: when it resets.
    pub fn blocked_until(&self, now: i64) -> Option<i64> {
        let full = |used: Option<f64>, reset: Option<i64>| match (used, reset) {
            (Some(u), Some(r)) if u >= 100.0 && r > now => Some(r),
            _ => None,
        };
        let primary = full(self.primary_used_percent, self.primary_reset_at);
        primary.into_iter().chain(full(self.secondary_used_percent, self.secondary_reset_at)).max()
    }

    /// The windows as the planner reads them (`planner::window`): each slot that reported a use.
    pub fn readings(&self) -> Vec<planner::Reading> {
        use planner::Slot;
        let one = |slot, used: Option<f64>, reset_at, window_minutes| {
            used.map(|used_percent| planner::Reading { slot, used_percent, window_minutes, reset_at })
        };
        [
            one(Slot::Primary, self.primary_used_percent, self.primary_reset_at, self.primary_window_minutes),
            one(Slot::Secondary, self.secondary_used_percent, self.secondary_reset_at, self.secondary_window_minutes),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Parse the `/wham/usage` answer into a snapshot (and the plan it reports).
pub fn from_usage(body: &Value, now: i64) -> (QuotaSnapshot, Option<String>) {
    let window = |name: &str| body.get("rate_limit").and_then(|r| r.get(name));
    let used = |w: Option<&Value>| w?.get("used_percent")?.as_f64();
    let reset = |w: Option<&Value>| {
        let w = w?;
        w.get("reset_at").and_then(Value::as_i64).or_else(|| Some(now + w.get("reset_after_seconds")?.as_i64()?))
    };
    // `limit_window_seconds`, rounded up to minutes as the official client does (`window_minutes_from_seconds`).
    let minutes = |w: Option<&Value>| {
        let secs = w?.get("limit_window_seconds")?.as_i64().filter(|s| *s > 0)?;
        u32::try_from((secs + 59) / 60).ok()
    };
    let (p, s) = (window("primary_window"), window("secondary_window"));
    let snap = QuotaSnapshot {
        primary_used_percent: used(p),
        primary_reset_at: reset(p),
        secondary_used_percent: used(s),
        secondary_reset_at: reset(s),
        primary_window_minutes: minutes(p),
        secondary_window_minutes: minutes(s),
        updated_at: now,
    };
    (snap, body.get("plan_type").and_then(Value::as_str).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-codex-primary-used-percent", "12.5".parse().unwrap_or_else(|_| unreachable!()));
        h.insert("x-codex-primary-reset-after-seconds", "60".parse().unwrap_or_else(|_| unreachable!()));
        let s = QuotaSnapshot::from_headers(&h, 1000);
        assert_eq!(s.as_ref().and_then(|s| s.primary_used_percent), Some(12.5));
        assert_eq!(s.and_then(|s| s.primary_reset_at), Some(1060));
        assert_eq!(QuotaSnapshot::from_headers(&HeaderMap::new(), 0), None);
        h.insert("x-codex-primary-window-minutes", "10080".parse().unwrap_or_else(|_| unreachable!()));
        let s = QuotaSnapshot::from_headers(&h, 1000).unwrap_or_default();
        let r = s.readings();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].window_minutes, Some(10_080));
        assert_eq!(r[0].kind(false), planner::Kind::Long, "classified by its length, not its slot");
    }

    #[test]
    fn reads_the_usage_answer_with_window_lengths() {
        let body = serde_json::json!({"plan_type": "free", "rate_limit": {"primary_window": {
            "used_percent": 40.0, "limit_window_seconds": 604_800, "reset_after_seconds": 3_600}}});
        let (s, plan) = from_usage(&body, 1_000);
        assert_eq!(plan.as_deref(), Some("free"));
        assert_eq!((s.primary_window_minutes, s.primary_reset_at), (Some(10_080), Some(4_600)));
        assert_eq!(s.secondary_used_percent, None);
    }
}
