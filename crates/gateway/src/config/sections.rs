//! The tables of the configuration that are not a feature module of their own (`[keys.NAME]`, `[metrics]`,
//! `[dashboard]`, `[server]`, `[usage]`, `[store]`): each raw table as the file holds it, beside its resolved
//! struct and the resolve that makes one from the other and the environment.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::env::{Env, env_flag};
use super::flags::{Overrides, database_url};
use super::validate::{normalize_host, normalize_origin, parse_proxy, seconds};

/// `[keys.NAME]`: a client key written in the configuration file.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub secret: String,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub concurrency: Option<u32>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    pub opportunistic: Option<bool>,
}

/// A resolved `[keys.NAME]`: its id is `config:NAME` in records and the usage ledger.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfiguredKey {
    pub name: String,
    pub secret: String,
    pub models: Option<Vec<String>>,
    pub limits: crate::store::Limits,
    /// `opportunistic = true`: served only from quota that would otherwise expire.
    pub opportunistic: bool,
}

impl std::fmt::Debug for ConfiguredKey {
    // The secret never reaches a log line or an error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredKey")
            .field("name", &self.name)
            .field("secret", &"(redacted)")
            .field("models", &self.models)
            .field("limits", &self.limits)
            .field("opportunistic", &self.opportunistic)
            .finish()
    }
}

/// How log lines are written: for people, or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(value: Option<&str>) -> anyhow::Result<LogFormat> {
        match value.unwrap_or("text") {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => bail!("log_format `{other}` is not one of: text, json"),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (docs/operations.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub public: Option<bool>,
    pub email_labels: Option<bool>,
    pub user_labels: Option<usize>,
    pub scrape_key: Option<String>,
}

/// Resolved `[metrics]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Serve `/metrics` and keep the counters (default on).
    pub enabled: bool,
    /// `/metrics` without the admin credential (for a scraper on a private network).
    pub public: bool,
    /// Name an account without a label by its email rather than its id.
    pub email_labels: bool,
    /// The most users the per-user metrics name; any further user counts as `other` (docs/operations.md).
    pub user_labels: usize,
    /// A key that reads `/metrics` and nothing else (a scraper's), besides the admin key and an admin's session.
    pub scrape_key: Option<String>,
}

/// `[metrics] user_labels` unless set.
pub const DEFAULT_USER_LABELS: usize = 100;
/// The most `[metrics] user_labels` may be: every value is a series a scraper keeps.
const MAX_USER_LABELS: usize = 10_000;

impl MetricsConfig {
    pub(super) fn resolve(raw: Option<RawMetrics>, env: &dyn Env) -> anyhow::Result<MetricsConfig> {
        let raw = raw.unwrap_or_default();
        Ok(MetricsConfig {
            enabled: env_flag(env, "CODEX_GATEWAY_METRICS", Some(raw.enabled.unwrap_or(true)))?,
            public: env_flag(env, "CODEX_GATEWAY_METRICS_PUBLIC", raw.public)?,
            email_labels: raw.email_labels.unwrap_or(false),
            user_labels: match raw.user_labels {
                Some(n) if n > MAX_USER_LABELS => bail!("[metrics] user_labels may be at most {MAX_USER_LABELS}"),
                Some(n) => n,
                None => DEFAULT_USER_LABELS,
            },
            scrape_key: match env.get("CODEX_GATEWAY_METRICS_KEY").or(raw.scrape_key).map(|k| k.trim().to_string()) {
                Some(k) if k.is_empty() => bail!("[metrics] scrape_key is empty: remove it, or set a real key"),
                k => k,
            },
        })
    }
}

/// The dashboard's quota warning thresholds, percent of a window used (the Settings page changes them at once).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QuotaThresholds {
    pub warn: f64,
    pub critical: f64,
}

impl QuotaThresholds {
    pub const DEFAULT: QuotaThresholds = QuotaThresholds { warn: 80.0, critical: 95.0 };

    /// Both between 1 and 100, the warning at most the critical one.
    pub fn new(warn: f64, critical: f64) -> Result<QuotaThresholds, String> {
        for (name, v) in [("quota_warn_percent", warn), ("quota_critical_percent", critical)] {
            if !(v.is_finite() && (1.0..=100.0).contains(&v)) {
                return Err(format!("{name} = {v} must be a percentage between 1 and 100"));
            }
        }
        if warn > critical {
            return Err(format!("quota_warn_percent = {warn} must not be above quota_critical_percent = {critical}"));
        }
        Ok(QuotaThresholds { warn, critical })
    }
}

/// `[dashboard]`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    pub enabled: Option<bool>,
    pub loopback_without_login: Option<bool>,
    pub session_hours: Option<f64>,
    pub quota_warn_percent: Option<f64>,
    pub quota_critical_percent: Option<f64>,
    pub oidc: Option<super::oidc::RawOidc>,
    pub attempts: Option<super::attempts::RawAttempts>,
}

/// Resolved `[dashboard]` (docs/dashboard.md).
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    pub enabled: bool,
    /// Requests from a loopback peer address skip the login.
    pub loopback_without_login: bool,
    /// How long a login lasts.
    pub session: Duration,
    pub quota: QuotaThresholds,
    /// `[dashboard.oidc]`: single sign-on.
    pub oidc: Option<super::oidc::OidcConfig>,
    /// `[dashboard.attempts]`: failed sign-ins and device codes limited (users/limits.rs).
    pub attempts: super::AttemptLimits,
}

impl DashboardConfig {
    pub(super) fn resolve(raw: Option<RawDashboard>, env: &dyn super::Env) -> anyhow::Result<DashboardConfig> {
        let mut raw = raw.unwrap_or_default();
        let oidc = super::oidc::OidcConfig::resolve(raw.oidc.take(), env)?;
        let attempts = super::AttemptLimits::resolve(raw.attempts.take())?;
        let hours = raw.session_hours.unwrap_or(12.0);
        if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
            bail!("[dashboard] session_hours = {hours} must be more than 0 and at most a year");
        }
        let d = QuotaThresholds::DEFAULT;
        let warn = raw.quota_warn_percent.unwrap_or(d.warn);
        let critical = raw.quota_critical_percent.unwrap_or(d.critical.max(raw.quota_warn_percent.unwrap_or(0.0)));
        let quota = QuotaThresholds::new(warn, critical).map_err(|e| anyhow::anyhow!("[dashboard] {e}"))?;
        Ok(DashboardConfig {
            enabled: raw.enabled.unwrap_or(true),
            loopback_without_login: raw.loopback_without_login.unwrap_or(false),
            session: Duration::from_secs_f64(hours * 3600.0),
            quota,
            oidc,
            attempts,
        })
    }
}

/// `[server]`: which `Host` names and browser origins the listeners accept (docs/security.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub admin_key: Option<String>,
    pub watch_config: Option<bool>,
    pub websocket: Option<bool>,
    pub websocket_idle_secs: Option<f64>,
    pub websocket_max_secs: Option<f64>,
    pub stored_responses: Option<usize>,
    pub stored_responses_mb: Option<u64>,
}

/// Resolved `[server] websocket*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketSettings {
    pub enabled: bool,
    /// No message from the client for this long between turns: the socket is closed.
    pub idle: Duration,
    /// The socket's lifetime; a turn that starts later gets the backend's `websocket_connection_limit_reached`.
    pub max_lifetime: Duration,
}

impl WebSocketSettings {
    pub(super) fn resolve(raw: Option<&RawServer>) -> anyhow::Result<WebSocketSettings> {
        Ok(WebSocketSettings {
            enabled: raw.and_then(|s| s.websocket).unwrap_or(true),
            idle: seconds("server.websocket_idle_secs", raw.and_then(|s| s.websocket_idle_secs), 300.0)?,
            max_lifetime: seconds("server.websocket_max_secs", raw.and_then(|s| s.websocket_max_secs), 3600.0)?,
        })
    }
}

/// Resolved `[server] stored_responses*`: how many answers are kept for `previous_response_id`, in how many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredResponseSettings {
    pub responses: usize,
    pub bytes: usize,
}

impl StoredResponseSettings {
    pub const DEFAULT_RESPONSES: usize = 4096;
    pub const DEFAULT_MB: u64 = 64;

    pub(super) fn resolve(raw: Option<&RawServer>) -> anyhow::Result<StoredResponseSettings> {
        let mb = raw.and_then(|s| s.stored_responses_mb).unwrap_or(Self::DEFAULT_MB);
        let bytes = mb
            .checked_mul(1 << 20)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| anyhow::anyhow!("server.stored_responses_mb is too large: {mb}"))?;
        let responses = raw.and_then(|s| s.stored_responses).unwrap_or(Self::DEFAULT_RESPONSES);
        Ok(StoredResponseSettings { responses, bytes })
    }
}

/// Resolved `[server]` access lists, normalized to lower case for the request guard (server/guard.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Host names or addresses (IPv6 in brackets), without port; `*` accepts any `Host`.
    pub allowed_hosts: Vec<String>,
    /// Browser origins, `scheme://host[:port]` as browsers serialize them.
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed: the balancer in front of a team.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The only key `/admin/*` and `/metrics` accept when set (unset: the client keys).
    pub admin_key: Option<String>,
}

impl Access {
    /// File, then env (`CODEX_GATEWAY_ALLOWED_HOSTS`, `_ALLOWED_ORIGINS`, `_TRUSTED_PROXIES`), replacing its list.
    pub(super) fn resolve(raw: Option<RawServer>, env: &dyn Env) -> anyhow::Result<Access> {
        let raw = raw.unwrap_or_default();
        let allowed_hosts = list(env.get("CODEX_GATEWAY_ALLOWED_HOSTS"), raw.allowed_hosts, normalize_host)?;
        let allowed_origins = list(env.get("CODEX_GATEWAY_ALLOWED_ORIGINS"), raw.allowed_origins, normalize_origin)?;
        let trusted_proxies = list(env.get("CODEX_GATEWAY_TRUSTED_PROXIES"), raw.trusted_proxies, parse_proxy)?;
        let admin_key = env.get("CODEX_GATEWAY_ADMIN_KEY").or(raw.admin_key).map(|k| k.trim().to_string());
        if admin_key.as_deref() == Some("") {
            bail!("[server] admin_key is empty: an admin key must be non-empty. Remove it, or set a real key.");
        }
        Ok(Access { allowed_hosts, allowed_origins, trusted_proxies, admin_key })
    }
}

/// The entries of an environment variable (comma-separated), else of the file, each checked.
fn list<T>(env: Option<String>, file: Option<Vec<String>>, f: fn(&str) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    match env.filter(|v| !v.is_empty()) {
        Some(v) => v.split(',').map(f).collect(),
        None => file.unwrap_or_default().iter().map(String::as_str).map(f).collect(),
    }
}

/// `[usage]`: the usage ledger (docs/operations.md, "Usage ledger").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    pub enabled: Option<bool>,
    pub retention_days: Option<u32>,
    pub rollup_retention_days: Option<u32>,
    pub channel_capacity: Option<usize>,
    pub prices: Option<HashMap<String, super::prices::Price>>,
}

/// Resolved `[usage]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSettings {
    pub enabled: bool,
    /// How long request rows are kept.
    pub retention: Duration,
    /// How long hourly rollups are kept.
    pub rollup_retention: Duration,
    /// Records waiting for the writer; more are dropped (and counted), never waited for.
    pub channel_capacity: usize,
    pub prices: super::prices::Prices,
}

impl UsageSettings {
    /// File, then `CODEX_GATEWAY_USAGE_ENABLED`, `_RETENTION_DAYS`, `_ROLLUP_RETENTION_DAYS`, `_CHANNEL_CAPACITY`.
    pub(super) fn resolve(raw: Option<RawUsage>, env: &dyn Env) -> anyhow::Result<UsageSettings> {
        let raw = raw.unwrap_or_default();
        let number = |key: &str, file: Option<u64>, default: u64| -> anyhow::Result<u64> {
            let v = match env.get(key) {
                Some(v) => v.parse().with_context(|| format!("{key}={v} is not a whole number"))?,
                None => file.unwrap_or(default),
            };
            if v == 0 {
                bail!("{key} must be at least 1");
            }
            Ok(v)
        };
        let day = 86_400;
        let enabled = env_flag(env, "CODEX_GATEWAY_USAGE_ENABLED", Some(raw.enabled.unwrap_or(true)))?;
        let retention = number("CODEX_GATEWAY_USAGE_RETENTION_DAYS", raw.retention_days.map(u64::from), 30)?;
        let rollups =
            number("CODEX_GATEWAY_USAGE_ROLLUP_RETENTION_DAYS", raw.rollup_retention_days.map(u64::from), 365)?;
        let capacity = number("CODEX_GATEWAY_USAGE_CHANNEL_CAPACITY", raw.channel_capacity.map(|c| c as u64), 16_384)?;
        let prices = super::prices::Prices::new(raw.prices.unwrap_or_default())?;
        Ok(UsageSettings {
            enabled,
            retention: Duration::from_secs(retention.saturating_mul(day)),
            rollup_retention: Duration::from_secs(rollups.saturating_mul(day)),
            channel_capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            prices,
        })
    }
}

/// `[store]`: the team store (docs/team.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
}

/// Resolved `[store]`.
#[derive(Default, Clone, PartialEq)]
pub struct StoreConfig {
    /// The team's PostgreSQL URL (`None`: everything stays in the data directory's SQLite file).
    pub url: Option<String>,
}

impl std::fmt::Debug for StoreConfig {
    // The URL may carry the database password: never printed whole.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_deref().map(crate::store::postgres::redact_url);
        f.debug_struct("StoreConfig").field("url", &url).finish()
    }
}

impl StoreConfig {
    /// `--database-url`, else `CODEX_GATEWAY_DATABASE_URL`, else `[store] url`; an empty value is unset.
    pub(super) fn resolve(raw: Option<RawStore>, o: &Overrides, env: &dyn Env) -> StoreConfig {
        StoreConfig { url: database_url(o, env, raw.and_then(|r| r.url)) }
    }
}
