//! Resolved `[dashboard.attempts]`: how failed attempts at the sign-in pages are limited (users/limits.rs,
//! docs/security.md "Guessing at the sign-in pages"). The defaults are what a deployment wants; the keys exist
//! for an installation with other needs and for tests that cannot wait minutes.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `[dashboard.attempts]` in the file.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawAttempts {
    pub failure_delay_ms: Option<u64>,
    pub free_failures: Option<u32>,
    pub address_free_failures: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub backoff_max_secs: Option<u64>,
    pub lockout_failures: Option<u32>,
    pub lockout_minutes: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    /// How long a failed attempt waits before its answer (that request alone; default 1 s).
    pub failure_delay: Duration,
    /// Failures of an account, a name or a session answered without a wait (default 3).
    pub free_failures: u32,
    /// Failures from one client address answered without a wait (default 10).
    pub address_free_failures: u32,
    /// The first wait past the free failures, doubling with each further one (default 1 s) ...
    pub backoff: Duration,
    /// ... up to this (default 5 minutes).
    pub backoff_max: Duration,
    /// Consecutive failures that lock an account (default 10; NIST SP 800-63B allows at most 100).
    pub lockout_failures: u32,
    /// The first lockout (default 15 minutes), twice as long each further time, at most a day.
    pub lockout: Duration,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        AttemptLimits {
            failure_delay: Duration::from_secs(1),
            free_failures: 3,
            address_free_failures: 10,
            backoff: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            lockout_failures: 10,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

impl AttemptLimits {
    pub(super) fn resolve(raw: Option<RawAttempts>) -> anyhow::Result<AttemptLimits> {
        let raw = raw.unwrap_or_default();
        let d = AttemptLimits::default();
        let ms = |name: &str, v: Option<u64>, default: Duration, most: u64| match v {
            None => Ok(default),
            Some(v) if v <= most => Ok(Duration::from_millis(v)),
            Some(v) => bail!("[dashboard.attempts] {name} = {v} must be at most {most}"),
        };
        let backoff_max_ms = raw.backoff_max_secs.map(|s| s.saturating_mul(1000));
        let limits = AttemptLimits {
            failure_delay: ms("failure_delay_ms", raw.failure_delay_ms, d.failure_delay, 10_000)?,
            free_failures: raw.free_failures.unwrap_or(d.free_failures),
            address_free_failures: raw.address_free_failures.unwrap_or(d.address_free_failures),
            backoff: ms("backoff_ms", raw.backoff_ms, d.backoff, 3_600_000)?,
            backoff_max: ms("backoff_max_secs", backoff_max_ms, d.backoff_max, 86_400_000)?,
            lockout_failures: raw.lockout_failures.unwrap_or(d.lockout_failures),
            lockout: match raw.lockout_minutes {
                None => d.lockout,
                Some(m) if m.is_finite() && m > 0.0 && m <= 24.0 * 60.0 => Duration::from_secs_f64(m * 60.0),
                Some(m) => bail!("[dashboard.attempts] lockout_minutes = {m} must be more than 0 and at most a day"),
            },
        };
        if limits.free_failures > 100 || limits.address_free_failures > 10_000 {
            bail!("[dashboard.attempts] free_failures may be at most 100, address_free_failures at most 10000");
        }
        if !(1..=100).contains(&limits.lockout_failures) {
            bail!("[dashboard.attempts] lockout_failures must be between 1 and 100 (NIST SP 800-63B, 5.2.2)");
        }
        Ok(limits)
    }
}
