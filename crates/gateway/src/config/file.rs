//! The configuration file as written (docs/configuration.md): every table's raw serde struct, every key optional
//! and unknown keys refused, and reading it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The file format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_keys: Option<Vec<String>>,
    pub data_dir: Option<PathBuf>,
    pub upstream_base_url: Option<String>,
    pub chatgpt_base_url: Option<String>,
    pub auth_issuer: Option<String>,
    pub openai_base_url: Option<String>,
    pub codex_home: Option<PathBuf>,
    pub proxy: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub upstream_h2c: Option<bool>,
    pub body_limit_mb: Option<u64>,
    // Timeouts (docs/configuration.md, "Timeouts"); fractions of a second are allowed.
    pub keepalive_secs: Option<f64>,
    pub upstream_idle_timeout_secs: Option<f64>,
    pub upstream_header_timeout_secs: Option<f64>,
    pub upstream_error_body_timeout_secs: Option<f64>,
    pub token_refresh_timeout_secs: Option<f64>,
    pub catalog_timeout_secs: Option<f64>,
    pub request_body_timeout_secs: Option<f64>,
    pub shutdown_timeout_secs: Option<f64>,
    pub upkeep_interval_secs: Option<f64>,
    pub default_reasoning_effort: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub ollama: Option<super::ollama::RawOllama>,
    pub gemini: Option<super::aliases::RawAliases>,
    pub anthropic: Option<super::aliases::RawAliases>,
    pub routing: Option<super::routing::RawRouting>,
    pub server: Option<RawServer>,
    pub metrics: Option<RawMetrics>,
    pub dashboard: Option<RawDashboard>,
    pub oauth: Option<super::oauth::RawOAuth>,
    pub usage: Option<RawUsage>,
    pub store: Option<RawStore>,
    pub upstream: Option<RawUpstream>,
    pub keys: Option<std::collections::BTreeMap<String, RawKey>>,
}

/// `[upstream]`: the client identity presented upstream and the upstream transport.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub client_version: Option<String>,
    pub user_agent: Option<String>,
    pub transport: Option<upstream_transport::ws::Transport>,
    pub websocket_max_per_account: Option<usize>,
    pub websocket_idle_timeout_secs: Option<f64>,
}

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

/// `[store]`: the team store (docs/team.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
}

/// The file at `path`, which must exist.
pub(crate) fn read_raw(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// `text`, the file at `path`, parsed; an error names the line and column but does not quote it (it may hold a key).
pub(super) fn parse_quietly(path: &Path, text: &str) -> anyhow::Result<RawConfig> {
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let at = e.span().map(|s| {
            let before = &text.as_bytes()[..s.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            format!(" at line {line}, column {column}")
        });
        anyhow::anyhow!("invalid config file {}{}: {}", path.display(), at.unwrap_or_default(), e.message())
    })
}
