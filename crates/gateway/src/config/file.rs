//! The configuration file as written (docs/configuration.md): every table's raw serde struct, every key
//! optional and unknown keys refused (`deny_unknown_fields`), and reading it. [`super::Config::resolve`] turns it,
//! with the environment (env.rs) and the command line (flags.rs), into the checked [`super::Config`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The file format. Every field optional; see docs/configuration.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Client API keys accepted by the gateway (any of them).
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
    /// `text` (default) or `json`: one JSON object per log line.
    pub log_format: Option<String>,
    pub ollama: Option<RawOllama>,
    /// `[gemini]`: Gemini model ids -> Codex models (`"gemini-2.5-pro" = "gpt-5.5-high"`, or a family key `pro`,
    /// `flash`, `flash-lite`, `gemini`).
    pub gemini: Option<RawAliases>,
    /// `[anthropic]`: Claude model ids -> Codex models. Keys are exact model ids (`"claude-opus-4-1-20250805" =
    /// "gpt-5.5-high"`) or the family keys `opus`, `sonnet`, `haiku`, which cover every Claude id of that family
    /// (defaults: opus -> gpt-5.5, sonnet -> gpt-5.4, haiku -> gpt-5.4-mini).
    pub anthropic: Option<RawAliases>,
    pub routing: Option<RawRouting>,
    pub server: Option<RawServer>,
    pub metrics: Option<RawMetrics>,
    pub dashboard: Option<RawDashboard>,
    /// `[oauth]`: the Codex CLI's gateway sign-in (config/oauth.rs).
    pub oauth: Option<super::oauth::RawOAuth>,
    pub usage: Option<RawUsage>,
    pub store: Option<RawStore>,
    pub upstream: Option<RawUpstream>,
    /// `[keys.NAME]`: client keys defined in the file, with limits (applied again on reload).
    pub keys: Option<std::collections::BTreeMap<String, RawKey>>,
}

/// `[upstream]` in the config file: the client identity presented upstream (upstream/identity/) and the
/// upstream transport.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// The Codex client version presented (`version` header, catalog query); `x.y.z`.
    pub client_version: Option<String>,
    /// The User-Agent presented; default the official client's: `codex_cli_rs/<version> (<os> <os version>;
    /// <arch>) <terminal>`.
    pub user_agent: Option<String>,
    // The WebSocket upstream: resolved by `upstream_transport::ws::WsSettings`.
    /// `auto` (default), `websocket` or `sse`.
    pub transport: Option<upstream_transport::ws::Transport>,
    pub websocket_max_per_account: Option<usize>,
    pub websocket_idle_timeout_secs: Option<f64>,
}

/// `[keys.NAME]`: a client key written in the configuration file, with the limits created keys have.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub secret: String,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub concurrency: Option<u32>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    /// Served only from quota that would otherwise expire (docs/operations.md, "Client keys").
    pub opportunistic: Option<bool>,
}

/// `[routing]`: how the account pool chooses (docs/accounts.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub strategy: Option<String>,
    pub plan_priority: Option<Vec<String>>,
    pub max_concurrent_per_account: Option<usize>,
    pub queue_per_account: Option<usize>,
    pub queue_timeout_secs: Option<u64>,
    pub affinity_capacity: Option<usize>,
    pub usage_poll_secs: Option<u64>,
    pub max_accounts_per_request: Option<usize>,
    pub policy_refusals_per_key: Option<u32>,
}

/// `[ollama]`: the Ollama-compatible bridge (a second, unauthenticated listener; off by default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOllama {
    pub enabled: Option<bool>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Must be true to bind anything but a loopback address: the bridge has no authentication.
    pub allow_remote: Option<bool>,
}

/// `[gemini]` and `[anthropic]`: a client family's model ids -> Codex models.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliases {
    pub model_aliases: Option<HashMap<String, String>>,
}

/// `[metrics]`: the Prometheus endpoint (docs/operations.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub public: Option<bool>,
    pub email_labels: Option<bool>,
    pub user_labels: Option<usize>,
}

/// `[dashboard]` in the file.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    pub enabled: Option<bool>,
    pub loopback_without_login: Option<bool>,
    pub session_hours: Option<f64>,
    /// Quota used, in percent, from which an account's bar turns amber and it is listed as near its limit.
    pub quota_warn_percent: Option<f64>,
    /// Quota used, in percent, from which the bar turns red.
    pub quota_critical_percent: Option<f64>,
    /// `[dashboard.oidc]`: single sign-on with an OpenID Connect provider (oidc.rs).
    pub oidc: Option<super::oidc::RawOidc>,
}

/// `[server]`: which `Host` names and browser origins the listeners accept (docs/security.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    /// Balancers whose `X-Forwarded-For` names the client (addresses or CIDR ranges; docs/team.md).
    pub trusted_proxies: Option<Vec<String>>,
    pub admin_key: Option<String>,
    /// Reload the file when it changes (app/reload.rs).
    pub watch_config: Option<bool>,
    /// Serve the Responses WebSocket on `/v1/responses` (default true; false: the handshake is answered 426,
    /// the backend's "use HTTP SSE").
    pub websocket: Option<bool>,
    /// Close an inbound WebSocket with no message for this long (default 300).
    pub websocket_idle_secs: Option<f64>,
    /// Close an inbound WebSocket this long after it opened, between turns (default 3600, the backend's limit).
    pub websocket_max_secs: Option<f64>,
    /// Responses kept for `previous_response_id` (default 4096; 0 keeps none).
    pub stored_responses: Option<usize>,
    /// The most memory kept responses may take, in MB (default 64; 0 keeps none).
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
    /// Model -> USD per million tokens: `[usage.prices."gpt-5.4"] input = 1.25, cached_input = 0.125, output = 10`.
    pub prices: Option<HashMap<String, crate::usage::pricing::Price>>,
}

/// `[store]`: the team store (docs/team.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://user:password@host:port/database?sslmode=require`.
    pub url: Option<String>,
}

/// The file at `path`, which must exist.
pub(crate) fn read_raw(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// `text`, the file at `path`, parsed; an error names the line, column and problem but does not quote the line
/// (it may hold a key).
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
