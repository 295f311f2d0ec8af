//! Quota as the upstream reports it in `x-codex-*` response headers.

use reqwest::header::HeaderMap;

/// The last quota numbers seen for an account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaSnapshot {
    pub primary_used_percent: Option<f64>,
    pub primary_reset_at: Option<i64>,
    pub secondary_used_percent: Option<f64>,
    pub secondary_reset_at: Option<i64>,
    pub updated_at: i64,
}

impl QuotaSnapshot {
    /// Read the `x-codex-{primary,secondary}-*` headers; `None` if the response carried none.
    pub fn from_headers(headers: &HeaderMap, now: i64) -> Option<QuotaSnapshot> {
        let f = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok());
        let reset = |family: &str| {
            f(&format!("x-codex-{family}-reset-at"))
                .map(|v| v as i64)
                .or_else(|| f(&format!("x-codex-{family}-reset-after-seconds")).map(|s| now + s as i64))
        };
        let snap = QuotaSnapshot {
            primary_used_percent: f("x-codex-primary-used-percent"),
            primary_reset_at: reset("primary"),
            secondary_used_percent: f("x-codex-secondary-used-percent"),
            secondary_reset_at: reset("secondary"),
            updated_at: now,
        };
        (snap.primary_used_percent.is_some() || snap.secondary_used_percent.is_some()).then_some(snap)
    }
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
    }
}
