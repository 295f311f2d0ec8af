//! Configuration in two stages: a raw TOML file (every key optional, unknown keys refused), then a resolved
//! [`Config`] after environment variables and command-line flags are merged on top (flags win).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
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
    pub gemini: Option<RawGemini>,
    pub anthropic: Option<RawAnthropic>,
    pub routing: Option<RawRouting>,
    pub server: Option<RawServer>,
    pub metrics: Option<RawMetrics>,
    pub dashboard: Option<RawDashboard>,
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
}

/// A resolved `[keys.NAME]`: its id is `config:NAME` in records and the usage ledger.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfiguredKey {
    pub name: String,
    pub secret: String,
    pub models: Option<Vec<String>>,
    pub limits: crate::keys::limits::Limits,
}

impl std::fmt::Debug for ConfiguredKey {
    // The secret never reaches a log line or an error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredKey")
            .field("name", &self.name)
            .field("secret", &"(redacted)")
            .field("models", &self.models)
            .field("limits", &self.limits)
            .finish()
    }
}

fn configured_keys(
    raw: Option<std::collections::BTreeMap<String, RawKey>>,
    shared: &[String],
) -> anyhow::Result<Vec<ConfiguredKey>> {
    let mut out: Vec<ConfiguredKey> = Vec::new();
    for (name, k) in raw.unwrap_or_default() {
        let secret = k.secret.trim().to_string();
        if secret.len() < 8 {
            bail!("[keys.{name}] secret must be at least 8 characters (a key is a password to your accounts)");
        }
        if shared.contains(&secret) || out.iter().any(|o| o.secret == secret) {
            bail!("[keys.{name}] secret is also another key's: every key needs its own secret");
        }
        if k.rpm.is_some_and(|r| r == 0 || r > crate::keys::limits::MAX_RPM) {
            bail!("[keys.{name}] rpm must be between 1 and {}", crate::keys::limits::MAX_RPM);
        }
        if k.concurrency == Some(0) || k.daily_tokens == Some(0) || k.monthly_tokens == Some(0) {
            bail!("[keys.{name}] a limit of 0 would refuse every request: remove it, or set at least 1");
        }
        let limits = crate::keys::limits::Limits {
            rpm: k.rpm,
            concurrency: k.concurrency,
            daily_tokens: k.daily_tokens,
            monthly_tokens: k.monthly_tokens,
        };
        out.push(ConfiguredKey { name, secret, models: k.models, limits });
    }
    Ok(out)
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
}

/// How the pool picks an account for a request without conversation affinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Most quota headroom first; the soonest reset breaks ties, then the least recently used.
    LeastUsed,
    RoundRobin,
    /// Stay on one account until it cannot serve.
    Sticky,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "least_used" => Some(Strategy::LeastUsed),
            "round_robin" => Some(Strategy::RoundRobin),
            "sticky" => Some(Strategy::Sticky),
            _ => None,
        }
    }

    /// The name `[routing] strategy` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LeastUsed => "least_used",
            Strategy::RoundRobin => "round_robin",
            Strategy::Sticky => "sticky",
        }
    }

    /// Every strategy, in the order the dashboard lists them.
    pub const ALL: [Strategy; 3] = [Strategy::LeastUsed, Strategy::RoundRobin, Strategy::Sticky];

    /// For the pool's atomic (the strategy is switchable at runtime).
    pub fn as_u8(self) -> u8 {
        match self {
            Strategy::LeastUsed => 0,
            Strategy::RoundRobin => 1,
            Strategy::Sticky => 2,
        }
    }

    pub fn from_u8(v: u8) -> Strategy {
        match v {
            1 => Strategy::RoundRobin,
            2 => Strategy::Sticky,
            _ => Strategy::LeastUsed,
        }
    }
}

/// Resolved `[routing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub strategy: Strategy,
    /// Plans in order of preference (e.g. `["plus", "pro"]`); unlisted plans come after.
    pub plan_priority: Vec<String>,
    pub max_concurrent_per_account: usize,
    pub queue_per_account: usize,
    pub queue_timeout: Duration,
    pub affinity_capacity: usize,
    pub usage_poll: Duration,
}

/// Values from the command line; `None` means "not given".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_key: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    /// `--database-url`: the team store (see [`StoreConfig`]).
    pub database_url: Option<String>,
}

/// The validated configuration every part of the gateway reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub api_keys: Vec<String>,
    pub data_dir: PathBuf,
    pub upstream_base_url: String,
    pub chatgpt_base_url: String,
    pub auth_issuer: String,
    pub openai_base_url: String,
    pub codex_home: PathBuf,
    pub openai_api_key: Option<String>,
    pub proxy: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    /// HTTP/2 without TLS (prior knowledge) to `http://` upstreams: a local HTTP/2 proxy, or the fake in the
    /// benchmark, where streams then share connections as they do with the real backend over TLS.
    pub upstream_h2c: bool,
    pub body_limit: usize,
    pub keepalive: Duration,
    pub upstream_idle_timeout: Duration,
    pub timeouts: Timeouts,
    /// Period of the background upkeep (refresh ahead of expiry, quota polling, catalog refresh, store re-read).
    pub upkeep_interval: Duration,
    pub default_reasoning_effort: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub ollama: OllamaBridge,
    pub gemini_model_aliases: HashMap<String, String>,
    /// `[anthropic] model_aliases`: Claude model ids (or the family keys `opus`, `sonnet`, `haiku`) -> Codex models.
    pub anthropic_model_aliases: HashMap<String, String>,
    pub routing: Routing,
    pub access: Access,
    pub metrics: MetricsConfig,
    pub dashboard: DashboardConfig,
    /// The configuration file: the one read, or where one would be read from (the dashboard's Settings write
    /// it).
    pub config_file: PathBuf,
    /// `[usage]`: the usage ledger.
    pub usage: UsageSettings,
    /// `[store]`: where accounts, tokens and keys live (docs/team.md).
    pub store: StoreConfig,
    // --- issue 25 (protocol): `[upstream]`.
    /// The Codex client version and User-Agent presented upstream.
    pub client: crate::upstream::identity::ClientIdentity,
    /// issue 25: `[upstream] transport` and the WebSocket connections' limits (upstream/ws.rs).
    pub upstream_ws: upstream_transport::ws::WsSettings,
    /// `[keys.NAME]` tables: client keys with limits from the file.
    pub configured_keys: Vec<ConfiguredKey>,
    /// `[server] watch_config`: reload when the file changes (app/reload.rs).
    pub watch_config: bool,
    /// `[server] websocket*`: the inbound Responses WebSocket (server/websocket.rs, docs/protocol.md).
    pub inbound_ws: WebSocketSettings,
    /// The command-line values this configuration was resolved with, so a reload resolves the file with them.
    pub overrides: Overrides,
}

/// Bounds on waits that have no natural end (docs/configuration.md, "Timeouts").
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// From sending an upstream request to its response headers, per attempt (then another account, or 504).
    pub upstream_headers: Duration,
    /// Reading an upstream error answer's body (classified with what arrived).
    pub upstream_error_body: Duration,
    /// One token refresh call, connect to last byte (a timeout is transient: the login stays).
    pub token_refresh: Duration,
    /// One model-catalog fetch (a failure is remembered for a while, see `accounts::upkeep`).
    pub catalog: Duration,
    /// Reading a client's request body, from when it first has to wait for bytes.
    pub request_body: Duration,
    /// Graceful shutdown: open connections are dropped after this.
    pub shutdown: Duration,
}

/// Environment lookups go through this so tests can pass a map instead of mutating the process.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;
impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

fn home(env: &dyn Env) -> PathBuf {
    env.get("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// `$XDG_CONFIG_HOME/codex-gateway/config.toml` or `~/.config/codex-gateway/config.toml`.
pub fn default_config_path(env: &dyn Env) -> PathBuf {
    env.get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".config"))
        .join("codex-gateway/config.toml")
}

fn default_data_dir(env: &dyn Env) -> PathBuf {
    env.get("XDG_DATA_HOME").map(PathBuf::from).unwrap_or_else(|| home(env).join(".local/share")).join("codex-gateway")
}

impl Config {
    /// Load the file (explicit path must exist; the default path may be absent), then env, then flags. A
    /// default file that exists but cannot be read (a directory the gateway's user may not enter) is an error,
    /// not an absent file: its settings would otherwise be dropped without a word.
    pub fn load(overrides: &Overrides, env: &dyn Env) -> anyhow::Result<Config> {
        let explicit = overrides.config.clone().or_else(|| env.get("CODEX_GATEWAY_CONFIG").map(PathBuf::from));
        let raw = match &explicit {
            Some(path) => read_raw(path)?,
            None => {
                let path = default_config_path(env);
                match path.try_exists() {
                    Ok(true) => read_raw(&path)?,
                    Ok(false) => RawConfig::default(),
                    Err(e) => bail!("cannot read config file {}: {e}", path.display()),
                }
            }
        };
        Self::resolve(raw, overrides, env)
    }

    /// The file (and environment) read again with the command-line values this configuration was made with:
    /// what a reload applies (app/reload.rs). A parse error names the line, column and problem but does not
    /// quote the line (it may hold a key).
    pub fn reread(&self, env: &dyn Env) -> anyhow::Result<Config> {
        let path = &self.config_file;
        let explicit = self.overrides.config.is_some() || env.get("CODEX_GATEWAY_CONFIG").is_some();
        let raw = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<RawConfig>(&text).map_err(|e| {
                let at = e.span().map(|s| {
                    let before = &text.as_bytes()[..s.start.min(text.len())];
                    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
                    format!(" at line {line}, column {column}")
                });
                anyhow::anyhow!("invalid config file {}{}: {}", path.display(), at.unwrap_or_default(), e.message())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => RawConfig::default(),
            Err(e) => bail!("cannot read config file {}: {e}", path.display()),
        };
        Self::resolve(raw, &self.overrides, env)
    }

    pub fn resolve(raw: RawConfig, o: &Overrides, env: &dyn Env) -> anyhow::Result<Config> {
        let host =
            o.host.clone().or_else(|| env.get("CODEX_GATEWAY_HOST")).or(raw.host).unwrap_or_else(|| "127.0.0.1".into());
        let port = match (o.port, env.get("CODEX_GATEWAY_PORT")) {
            (Some(p), _) => p,
            (None, Some(p)) => p.parse().with_context(|| format!("CODEX_GATEWAY_PORT={p} is not a port number"))?,
            (None, None) => raw.port.unwrap_or(8765),
        };
        let ip: IpAddr = match host.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h.parse().with_context(|| format!("host `{h}` is not an IP address"))?,
        };
        let api_keys = client_keys(raw.api_keys, o, env)?;
        let watch_config = raw.server.as_ref().and_then(|s| s.watch_config).unwrap_or(false);
        let inbound_ws = WebSocketSettings::resolve(raw.server.as_ref())?;
        let access = Access::resolve(raw.server, env)?;
        let configured_keys = configured_keys(raw.keys, &api_keys)?;
        if !ip.is_loopback() && api_keys.is_empty() && access.admin_key.is_none() {
            bail!(
                "refusing to listen on {ip}: it is reachable from other machines and no client API key is set. \
                 Set CODEX_GATEWAY_API_KEY (or `api_keys` in the config file, or --api-key), or bind 127.0.0.1."
            );
        }
        let data_dir = o
            .data_dir
            .clone()
            .or_else(|| env.get("CODEX_GATEWAY_DATA_DIR").map(PathBuf::from))
            .or(raw.data_dir)
            .unwrap_or_else(|| default_data_dir(env));
        let codex_home =
            env.get("CODEX_HOME").map(PathBuf::from).or(raw.codex_home).unwrap_or_else(|| home(env).join(".codex"));
        let pick = |key: &str, file: Option<String>, default: &str| -> String {
            env.get(key).or(file).unwrap_or_else(|| default.to_string()).trim_end_matches('/').to_string()
        };
        let proxy = env
            .get("CODEX_GATEWAY_PROXY")
            .or(raw.proxy)
            .or_else(|| env.get("HTTPS_PROXY"))
            .or_else(|| env.get("https_proxy"))
            .or_else(|| env.get("ALL_PROXY"))
            .or_else(|| env.get("all_proxy"));
        let ca_bundle = env
            .get("CODEX_GATEWAY_CA_BUNDLE")
            .map(PathBuf::from)
            .or(raw.ca_bundle)
            .or_else(|| env.get("SSL_CERT_FILE").map(PathBuf::from));
        let upstream_h2c = env_flag(env, "CODEX_GATEWAY_UPSTREAM_H2C", raw.upstream_h2c)?;
        let effort = env.get("CODEX_GATEWAY_DEFAULT_REASONING_EFFORT").or(raw.default_reasoning_effort);
        if let Some(e) = &effort
            && dialects::models::normalize_effort(e).is_none()
        {
            bail!("default_reasoning_effort `{e}` is not one of none, minimal, low, medium, high, xhigh");
        }
        let body_limit_mb = match env.get("CODEX_GATEWAY_BODY_LIMIT_MB") {
            Some(v) => v.parse().with_context(|| format!("CODEX_GATEWAY_BODY_LIMIT_MB={v} is not a number"))?,
            None => raw.body_limit_mb.unwrap_or(64),
        };
        let keepalive_secs = match env.get("CODEX_GATEWAY_KEEPALIVE_SECS") {
            Some(v) => Some(v.parse().with_context(|| format!("CODEX_GATEWAY_KEEPALIVE_SECS={v} is not a number"))?),
            None => raw.keepalive_secs,
        };
        let keepalive = seconds("keepalive_secs", keepalive_secs, 15.0)?.max(Duration::from_millis(50));
        let upstream_idle_timeout = seconds("upstream_idle_timeout_secs", raw.upstream_idle_timeout_secs, 300.0)?;
        let timeouts = Timeouts {
            upstream_headers: seconds("upstream_header_timeout_secs", raw.upstream_header_timeout_secs, 60.0)?,
            upstream_error_body: seconds(
                "upstream_error_body_timeout_secs",
                raw.upstream_error_body_timeout_secs,
                5.0,
            )?,
            token_refresh: seconds("token_refresh_timeout_secs", raw.token_refresh_timeout_secs, 30.0)?,
            catalog: seconds("catalog_timeout_secs", raw.catalog_timeout_secs, 5.0)?,
            request_body: seconds("request_body_timeout_secs", raw.request_body_timeout_secs, 60.0)?,
            shutdown: seconds("shutdown_timeout_secs", raw.shutdown_timeout_secs, 30.0)?,
        };
        let r = raw.routing.clone().unwrap_or_default();
        let strategy_name = env.get("CODEX_GATEWAY_STRATEGY").or(r.strategy).unwrap_or_else(|| "least_used".into());
        let strategy = Strategy::parse(&strategy_name)
            .with_context(|| format!("routing strategy `{strategy_name}` is not least_used, round_robin or sticky"))?;
        let routing = Routing {
            strategy,
            plan_priority: r.plan_priority.unwrap_or_default(),
            max_concurrent_per_account: r.max_concurrent_per_account.unwrap_or(32).max(1),
            queue_per_account: r.queue_per_account.unwrap_or(256),
            queue_timeout: Duration::from_secs(r.queue_timeout_secs.unwrap_or(30)),
            affinity_capacity: r.affinity_capacity.unwrap_or(10_000).max(16),
            usage_poll: Duration::from_secs(r.usage_poll_secs.unwrap_or(300).max(30)),
        };
        let ollama = OllamaBridge::resolve(raw.ollama, env)?;
        let gemini_model_aliases = raw.gemini.and_then(|g| g.model_aliases).unwrap_or_default();
        let anthropic_model_aliases = raw.anthropic.and_then(|a| a.model_aliases).unwrap_or_default();
        let metrics = MetricsConfig::resolve(raw.metrics, env)?;
        let dashboard = DashboardConfig::resolve(raw.dashboard)?;
        let config_file = o
            .config
            .clone()
            .or_else(|| env.get("CODEX_GATEWAY_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| default_config_path(env));
        let log_format = LogFormat::parse(
            o.log_format.clone().or_else(|| env.get("CODEX_GATEWAY_LOG_FORMAT")).or(raw.log_format).as_deref(),
        )?;
        let usage = UsageSettings::resolve(raw.usage, env)?;
        let store = StoreConfig::resolve(raw.store, o, env);
        let upstream = raw.upstream.as_ref();
        let upstream_ws = upstream_transport::ws::WsSettings::resolve(
            upstream.and_then(|u| u.transport),
            upstream.and_then(|u| u.websocket_max_per_account),
            upstream.and_then(|u| u.websocket_idle_timeout_secs),
        )?;
        let (version, user_agent) = raw.upstream.map(|u| (u.client_version, u.user_agent)).unwrap_or_default();
        let client = crate::upstream::identity::ClientIdentity::resolve(version, user_agent)?;
        Ok(Config {
            client,
            upstream_ws,
            configured_keys,
            watch_config,
            inbound_ws,
            overrides: o.clone(),
            usage,
            store,
            routing,
            access,
            metrics,
            dashboard,
            config_file,
            log_format,
            listen: SocketAddr::new(ip, port),
            api_keys,
            data_dir,
            upstream_base_url: pick(
                "CODEX_GATEWAY_UPSTREAM_BASE_URL",
                raw.upstream_base_url,
                "https://chatgpt.com/backend-api/codex",
            ),
            chatgpt_base_url: pick(
                "CODEX_GATEWAY_CHATGPT_BASE_URL",
                raw.chatgpt_base_url,
                "https://chatgpt.com/backend-api",
            ),
            auth_issuer: pick("CODEX_GATEWAY_AUTH_ISSUER", raw.auth_issuer, "https://auth.openai.com"),
            openai_base_url: pick("CODEX_GATEWAY_OPENAI_BASE_URL", raw.openai_base_url, "https://api.openai.com/v1"),
            codex_home,
            openai_api_key: env.get("OPENAI_API_KEY"),
            proxy,
            ca_bundle,
            upstream_h2c,
            body_limit: (body_limit_mb as usize).saturating_mul(1024 * 1024),
            keepalive,
            upstream_idle_timeout,
            timeouts,
            upkeep_interval: seconds("upkeep_interval_secs", raw.upkeep_interval_secs, 30.0)?,
            default_reasoning_effort: effort,
            log: env.get("RUST_LOG").or(raw.log).unwrap_or_else(|| "info".into()),
            ollama,
            gemini_model_aliases,
            anthropic_model_aliases,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gateway.db")
    }

    /// Open the store this configuration names: the SQLite file in the data directory, and with `[store] url` (or
    /// `--database-url`, `CODEX_GATEWAY_DATABASE_URL`) the PostgreSQL team store beside it.
    pub fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        crate::store::Store::open_with(&self.db_path(), self.store.url.as_deref())
    }

    pub fn codex_auth_file(&self) -> PathBuf {
        self.codex_home.join("auth.json")
    }
}

/// A `*_secs` setting as a duration: `default` when absent; fractions allowed; zero, negative or absurd values
/// are refused (a zero timeout would fail every request).
fn seconds(key: &str, value: Option<f64>, default: f64) -> anyhow::Result<Duration> {
    let v = value.unwrap_or(default);
    if !(v > 0.0 && v <= 1e9) {
        bail!("{key} = {v} is not a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// A boolean from the environment (1/0, true/false, yes/no, on/off), else the file's value, else false.
fn env_flag(env: &dyn Env, key: &str, file: Option<bool>) -> anyhow::Result<bool> {
    match env.get(key) {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => bail!("{key}={v} is not a boolean (use 1 or 0)"),
        },
        None => Ok(file.unwrap_or(false)),
    }
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

/// `[gemini]`: Gemini model ids -> Codex models (`"gemini-2.5-pro" = "gpt-5.5-high"`, or a family key `pro`,
/// `flash`, `flash-lite`, `gemini`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGemini {
    pub model_aliases: Option<HashMap<String, String>>,
}

/// `[anthropic]`: Claude model ids -> Codex models. Keys are exact model ids (`"claude-opus-4-1-20250805" =
/// "gpt-5.5-high"`) or the family keys `opus`, `sonnet`, `haiku`, which cover every Claude id of that family
/// (defaults: opus -> gpt-5.5, sonnet -> gpt-5.4, haiku -> gpt-5.4-mini).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnthropic {
    pub model_aliases: Option<HashMap<String, String>>,
}

/// The resolved Ollama bridge settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaBridge {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Set when the bridge may bind a non-loopback address (the operator said so explicitly).
    pub allow_remote: bool,
}

impl OllamaBridge {
    /// File, then env (`CODEX_GATEWAY_OLLAMA_ENABLED`, `_HOST`, `_PORT`, `_ALLOW_REMOTE`). Binding beyond loopback
    /// without `allow_remote` is refused.
    fn resolve(raw: Option<RawOllama>, env: &dyn Env) -> anyhow::Result<OllamaBridge> {
        let raw = raw.unwrap_or_default();
        let enabled = env_flag(env, "CODEX_GATEWAY_OLLAMA_ENABLED", raw.enabled)?;
        let allow_remote = env_flag(env, "CODEX_GATEWAY_OLLAMA_ALLOW_REMOTE", raw.allow_remote)?;
        let host = env.get("CODEX_GATEWAY_OLLAMA_HOST").or(raw.host).unwrap_or_else(|| "127.0.0.1".into());
        let port = match env.get("CODEX_GATEWAY_OLLAMA_PORT") {
            Some(p) => p.parse().with_context(|| format!("CODEX_GATEWAY_OLLAMA_PORT={p} is not a port number"))?,
            None => raw.port.unwrap_or(11434),
        };
        let ip: IpAddr = match host.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            h => h.parse().with_context(|| format!("ollama.host `{h}` is not an IP address"))?,
        };
        if enabled && !ip.is_loopback() && !allow_remote {
            bail!(
                "refusing to run the Ollama bridge on {ip}: it has no authentication, so anyone who can reach it \
                 can use your ChatGPT plan. Bind 127.0.0.1, or set `allow_remote = true` in [ollama] \
                 (CODEX_GATEWAY_OLLAMA_ALLOW_REMOTE=1) if you really mean it."
            );
        }
        Ok(OllamaBridge { enabled, listen: SocketAddr::new(ip, port), allow_remote })
    }
}

/// The client keys: the flag, else `CODEX_GATEWAY_API_KEY` (comma-separated), else the file. An empty key is a
/// configuration error, never a key that authenticates empty credentials; an empty environment variable counts
/// as unset (as every variable here does, see [`ProcessEnv`]).
fn client_keys(file: Option<Vec<String>>, o: &Overrides, env: &dyn Env) -> anyhow::Result<Vec<String>> {
    let (keys, source): (Vec<String>, &str) = match (&o.api_key, env.get("CODEX_GATEWAY_API_KEY")) {
        (Some(k), _) => (vec![k.clone()], "--api-key"),
        (None, Some(v)) if !v.is_empty() => (v.split(',').map(str::to_string).collect(), "CODEX_GATEWAY_API_KEY"),
        _ => (file.unwrap_or_default(), "api_keys"),
    };
    let keys: Vec<String> = keys.into_iter().map(|k| k.trim().to_string()).collect();
    if keys.iter().any(String::is_empty) {
        bail!(
            "{source} contains an empty client key: a gateway key must be non-empty (an empty one would accept \
             requests that send no key). Remove it, or set a real key."
        );
    }
    Ok(keys)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (the access line's fields included).
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
}

impl MetricsConfig {
    fn resolve(raw: Option<RawMetrics>, env: &dyn Env) -> anyhow::Result<MetricsConfig> {
        let raw = raw.unwrap_or_default();
        let flag = |key: &str, file: Option<bool>, default: bool| -> anyhow::Result<bool> {
            match env.get(key).as_deref() {
                None => Ok(file.unwrap_or(default)),
                Some("1" | "true") => Ok(true),
                Some("0" | "false") => Ok(false),
                Some(v) => bail!("{key}={v} is not true or false"),
            }
        };
        Ok(MetricsConfig {
            enabled: flag("CODEX_GATEWAY_METRICS", raw.enabled, true)?,
            public: flag("CODEX_GATEWAY_METRICS_PUBLIC", raw.public, false)?,
            email_labels: raw.email_labels.unwrap_or(false),
        })
    }
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
}

/// The dashboard's quota warning thresholds, percent of a window used (`[dashboard] quota_warn_percent`,
/// `quota_critical_percent`; the Settings page changes them at once).
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

/// Resolved `[dashboard]` (docs/dashboard.md).
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Serve `/dashboard` (default true).
    pub enabled: bool,
    /// Requests from a loopback peer address skip the login (default false).
    pub loopback_without_login: bool,
    /// How long a login lasts (default 12 h).
    pub session: Duration,
    /// When quota bars turn amber and red (default 80% and 95%).
    pub quota: QuotaThresholds,
}

impl DashboardConfig {
    fn resolve(raw: Option<RawDashboard>) -> anyhow::Result<DashboardConfig> {
        let raw = raw.unwrap_or_default();
        let hours = raw.session_hours.unwrap_or(12.0);
        if !(hours.is_finite() && hours > 0.0 && hours <= 24.0 * 366.0) {
            bail!("[dashboard] session_hours = {hours} must be more than 0 and at most a year");
        }
        let d = QuotaThresholds::DEFAULT;
        let quota = QuotaThresholds::new(
            raw.quota_warn_percent.unwrap_or(d.warn),
            raw.quota_critical_percent.unwrap_or(d.critical.max(raw.quota_warn_percent.unwrap_or(0.0))),
        )
        .map_err(|e| anyhow::anyhow!("[dashboard] {e}"))?;
        Ok(DashboardConfig {
            enabled: raw.enabled.unwrap_or(true),
            loopback_without_login: raw.loopback_without_login.unwrap_or(false),
            session: Duration::from_secs_f64(hours * 3600.0),
            quota,
        })
    }
}

/// `[server]`: which `Host` names and browser origins the listeners accept (docs/security.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
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
    fn resolve(raw: Option<&RawServer>) -> anyhow::Result<WebSocketSettings> {
        Ok(WebSocketSettings {
            enabled: raw.and_then(|s| s.websocket).unwrap_or(true),
            idle: seconds("server.websocket_idle_secs", raw.and_then(|s| s.websocket_idle_secs), 300.0)?,
            max_lifetime: seconds("server.websocket_max_secs", raw.and_then(|s| s.websocket_max_secs), 3600.0)?,
        })
    }
}

/// Resolved `[server]` access lists, normalized to lower case for the request guard (server/guard.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Host names or addresses (IPv6 in brackets), without port; `*` accepts any `Host`.
    pub allowed_hosts: Vec<String>,
    /// Browser origins, `scheme://host[:port]` as browsers serialize them.
    pub allowed_origins: Vec<String>,
    /// The admin credential (`CODEX_GATEWAY_ADMIN_KEY`, `[server] admin_key`): the only key `/admin/*` and
    /// `/metrics` accept when set. Unset: the client keys (`api_keys`) are the admin credential, as before.
    pub admin_key: Option<String>,
}

impl Config {
    /// The keys `/admin/*` and `/metrics` accept (none: the admin API is as open as the rest, keyless loopback).
    pub fn admin_keys(&self) -> &[String] {
        match &self.access.admin_key {
            Some(k) => std::slice::from_ref(k),
            None => &self.api_keys,
        }
    }
}

impl Access {
    /// File, then env (`CODEX_GATEWAY_ALLOWED_HOSTS`, `CODEX_GATEWAY_ALLOWED_ORIGINS`, comma-separated, replacing
    /// the file's list).
    fn resolve(raw: Option<RawServer>, env: &dyn Env) -> anyhow::Result<Access> {
        let raw = raw.unwrap_or_default();
        let list = |key: &str, file: Option<Vec<String>>| match env.get(key).filter(|v| !v.is_empty()) {
            Some(v) => v.split(',').map(str::to_string).collect(),
            None => file.unwrap_or_default(),
        };
        let allowed_hosts = list("CODEX_GATEWAY_ALLOWED_HOSTS", raw.allowed_hosts)
            .iter()
            .map(|h| normalize_host(h))
            .collect::<anyhow::Result<_>>()?;
        let allowed_origins = list("CODEX_GATEWAY_ALLOWED_ORIGINS", raw.allowed_origins)
            .iter()
            .map(|o| normalize_origin(o))
            .collect::<anyhow::Result<_>>()?;
        let admin_key = env.get("CODEX_GATEWAY_ADMIN_KEY").or(raw.admin_key).map(|k| k.trim().to_string());
        if admin_key.as_deref() == Some("") {
            bail!("[server] admin_key is empty: an admin key must be non-empty. Remove it, or set a real key.");
        }
        Ok(Access { allowed_hosts, allowed_origins, admin_key })
    }
}

/// `Gateway.Example.` -> `gateway.example`, `fd00::1` -> `[fd00::1]`; a scheme, path or port is refused (any
/// port matches, so a port in the list would only mislead).
fn normalize_host(entry: &str) -> anyhow::Result<String> {
    let h = entry.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = h.parse::<std::net::Ipv6Addr>() {
        return Ok(format!("[{ip}]"));
    }
    let bracketed = h.starts_with('[') && h.ends_with(']') && h[1..h.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    let name_ok = !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if h == "*" || bracketed || name_ok {
        return Ok(h);
    }
    bail!(
        "[server] allowed_hosts entry `{entry}` is not a host name or address: write the name alone \
         (`gateway.example.com`, `192.168.1.5`, `[fd00::5]`), without scheme, port or path; `*` allows any host"
    )
}

/// `HTTPS://App.Example:443/` -> `https://app.example`: the form browsers send in `Origin`.
fn normalize_origin(entry: &str) -> anyhow::Result<String> {
    let e = entry.trim();
    let url = url::Url::parse(e).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && u.username().is_empty()
    });
    match url {
        Some(u) => Ok(u.origin().ascii_serialization()),
        None => bail!(
            "[server] allowed_origins entry `{entry}` is not an origin: write `scheme://host[:port]`, e.g. \
             `https://chat.example.com` or `http://192.168.1.5:3000`"
        ),
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
    /// Model -> USD per million tokens: `[usage.prices."gpt-5.4"] input = 1.25, cached_input = 0.125, output = 10`.
    pub prices: Option<HashMap<String, crate::usage::pricing::Price>>,
}

/// Resolved `[usage]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSettings {
    /// Record every request in the store (off: no rows, no rollups, no writer).
    pub enabled: bool,
    /// Request rows older than this are pruned.
    pub retention: Duration,
    /// Hourly rollups older than this are pruned.
    pub rollup_retention: Duration,
    /// Records waiting for the writer; more are dropped (and counted), never waited for.
    pub channel_capacity: usize,
    pub prices: crate::usage::pricing::Prices,
}

impl UsageSettings {
    /// File, then env (`CODEX_GATEWAY_USAGE_ENABLED`, `_RETENTION_DAYS`, `_ROLLUP_RETENTION_DAYS`,
    /// `_CHANNEL_CAPACITY`).
    fn resolve(raw: Option<RawUsage>, env: &dyn Env) -> anyhow::Result<UsageSettings> {
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
        let prices = crate::usage::pricing::Prices::new(raw.prices.unwrap_or_default())?;
        Ok(UsageSettings {
            enabled,
            retention: Duration::from_secs(retention.saturating_mul(day)),
            rollup_retention: Duration::from_secs(rollups.saturating_mul(day)),
            channel_capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            prices,
        })
    }
}

pub(crate) fn read_raw(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// `[store]`: the team store (docs/team.md).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://user:password@host:port/database?sslmode=require`.
    pub url: Option<String>,
}

/// Resolved `[store]`.
#[derive(Default, Clone, PartialEq)]
pub struct StoreConfig {
    /// A PostgreSQL URL: accounts, tokens and client keys are shared there by every instance that names it. `None`:
    /// everything stays in the data directory's SQLite file (one instance).
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
    fn resolve(raw: Option<RawStore>, o: &Overrides, env: &dyn Env) -> StoreConfig {
        let url = o
            .database_url
            .clone()
            .or_else(|| env.get("CODEX_GATEWAY_DATABASE_URL"))
            .or(raw.and_then(|r| r.url))
            .filter(|u| !u.trim().is_empty());
        StoreConfig { url }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn log_format_and_metrics_settings_resolve() {
        assert_eq!(LogFormat::parse(None).ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")).ok(), Some(LogFormat::Json));
        assert!(LogFormat::parse(Some("JSON")).is_err());
        let env: HashMap<String, String> =
            [("CODEX_GATEWAY_METRICS_PUBLIC".to_string(), "1".to_string())].into_iter().collect();
        let raw = RawMetrics { enabled: Some(false), public: None, email_labels: Some(true) };
        let m = MetricsConfig::resolve(Some(raw), &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(!m.enabled && m.public && m.email_labels);
        let bad: HashMap<String, String> =
            [("CODEX_GATEWAY_METRICS".to_string(), "maybe".to_string())].into_iter().collect();
        assert!(MetricsConfig::resolve(None, &bad).is_err());
    }

    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() -> anyhow::Result<()> {
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("HOME", "/h")]))?;
        assert_eq!(c.listen.to_string(), "127.0.0.1:8765");
        assert_eq!(c.upstream_base_url, "https://chatgpt.com/backend-api/codex");
        assert_eq!(c.codex_home, PathBuf::from("/h/.codex"));
        assert_eq!(c.data_dir, PathBuf::from("/h/.local/share/codex-gateway"));
        Ok(())
    }

    #[test]
    fn flags_beat_env_beat_file() -> anyhow::Result<()> {
        let raw: RawConfig = toml::from_str("port = 1000\nhost = \"127.0.0.2\"")?;
        let e = env(&[("CODEX_GATEWAY_PORT", "2000")]);
        let c = Config::resolve(raw, &Overrides { port: Some(3000), ..Default::default() }, &e)?;
        assert_eq!(c.listen.to_string(), "127.0.0.2:3000");
        let raw: RawConfig = toml::from_str("port = 1000")?;
        assert_eq!(Config::resolve(raw, &Overrides::default(), &e)?.listen.port(), 2000);
        Ok(())
    }

    #[test]
    fn public_bind_needs_a_key() {
        let e = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0")]);
        let err = Config::resolve(RawConfig::default(), &Overrides::default(), &e).err();
        assert!(err.is_some_and(|e| e.to_string().contains("CODEX_GATEWAY_API_KEY")));
        let e = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0"), ("CODEX_GATEWAY_API_KEY", "k")]);
        assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &e).is_ok());
    }

    #[test]
    fn ollama_bridge_is_off_by_default_and_loopback_only() -> anyhow::Result<()> {
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
        assert!(!c.ollama.enabled);
        assert_eq!(c.ollama.listen.to_string(), "127.0.0.1:11434");
        let e = env(&[("CODEX_GATEWAY_OLLAMA_ENABLED", "1"), ("CODEX_GATEWAY_OLLAMA_PORT", "0")]);
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &e)?;
        assert!(c.ollama.enabled);
        assert_eq!(c.ollama.listen.port(), 0);
        let raw: RawConfig = toml::from_str("[ollama]\nenabled = true\nhost = \"0.0.0.0\"")?;
        let err = Config::resolve(raw, &Overrides::default(), &env(&[])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("allow_remote")));
        let raw: RawConfig = toml::from_str("[ollama]\nenabled = true\nhost = \"0.0.0.0\"\nallow_remote = true")?;
        assert!(Config::resolve(raw, &Overrides::default(), &env(&[]))?.ollama.allow_remote);
        let raw: RawConfig = toml::from_str("[gemini.model_aliases]\npro = \"gpt-5.4-high\"")?;
        let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
        assert_eq!(c.gemini_model_aliases.get("pro").map(String::as_str), Some("gpt-5.4-high"));
        let raw: RawConfig = toml::from_str("[anthropic]\nmodel_aliases = { opus = \"gpt-5.5-high\" }")?;
        let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
        assert_eq!(c.anthropic_model_aliases.get("opus").map(String::as_str), Some("gpt-5.5-high"));
        Ok(())
    }

    /// `api_keys = [""]`, `--api-key ''` or an empty entry in the variable used to accept requests that sent an
    /// empty key (and let a public bind start); now start-up stops with a message naming the source.
    #[test]
    fn empty_client_keys_are_configuration_errors() -> anyhow::Result<()> {
        let public = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0")]);
        let file: RawConfig = toml::from_str("api_keys = [\"\"]")?;
        let err = Config::resolve(file, &Overrides::default(), &public).err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("api_keys contains an empty client key")), "{err:?}");
        let flag = Overrides { api_key: Some(" ".into()), ..Default::default() };
        let err = Config::resolve(RawConfig::default(), &flag, &env(&[])).err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("--api-key")), "{err:?}");
        let e = env(&[("CODEX_GATEWAY_API_KEY", "k1,,k2")]);
        assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &e).is_err());
        // An empty variable is unset (like every variable): the file's keys apply.
        let file: RawConfig = toml::from_str("api_keys = [\" k \"]")?;
        let c = Config::resolve(file, &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "")]))?;
        assert_eq!(c.api_keys, ["k"]);
        let c =
            Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "a, b")]))?;
        assert_eq!(c.api_keys, ["a", "b"]);
        Ok(())
    }

    /// The admin key: the variable over the file; without one the client keys are the admin credential; empty is
    /// an error; alone it lets a public bind start (every request then needs a key).
    #[test]
    fn admin_key_resolves_and_falls_back_to_the_client_keys() -> anyhow::Result<()> {
        let file: RawConfig = toml::from_str("[server]\nadmin_key = \"from-file\"")?;
        let c = Config::resolve(file, &Overrides::default(), &env(&[("CODEX_GATEWAY_ADMIN_KEY", "from-env")]))?;
        assert_eq!(c.admin_keys(), ["from-env"]);
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "k")]))?;
        assert_eq!(c.admin_keys(), ["k"]);
        let file: RawConfig = toml::from_str("[server]\nadmin_key = \" \"")?;
        assert!(Config::resolve(file, &Overrides::default(), &env(&[])).is_err());
        let public = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0"), ("CODEX_GATEWAY_ADMIN_KEY", "a")]);
        assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &public).is_ok());
        Ok(())
    }

    #[test]
    fn server_access_lists_are_normalized_or_refused() -> anyhow::Result<()> {
        let raw: RawConfig = toml::from_str(
            "[server]\nallowed_hosts = [\"GW.Example.\", \"fd00::5\", \"[::2]\", \"*\"]\n\
             allowed_origins = [\"HTTPS://Chat.Example:443/\", \"http://10.0.0.2:3000\"]",
        )?;
        let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
        assert_eq!(c.access.allowed_hosts, ["gw.example", "[fd00::5]", "[::2]", "*"]);
        assert_eq!(c.access.allowed_origins, ["https://chat.example", "http://10.0.0.2:3000"]);
        let e = env(&[("CODEX_GATEWAY_ALLOWED_HOSTS", "a.example, b.example"), ("CODEX_GATEWAY_ALLOWED_ORIGINS", "")]);
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &e)?;
        assert_eq!(c.access.allowed_hosts, ["a.example", "b.example"]);
        assert!(c.access.allowed_origins.is_empty());
        for bad in ["gw.example:8080", "http://gw.example", "gw.example/x", "", "a b"] {
            let raw: RawConfig = toml::from_str(&format!("[server]\nallowed_hosts = [\"{bad}\"]"))?;
            assert!(Config::resolve(raw, &Overrides::default(), &env(&[])).is_err(), "{bad}");
        }
        for bad in ["chat.example", "https://chat.example/app", "null", "file:///x", "https://u@chat.example"] {
            let raw: RawConfig = toml::from_str(&format!("[server]\nallowed_origins = [\"{bad}\"]"))?;
            assert!(Config::resolve(raw, &Overrides::default(), &env(&[])).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn timeouts_take_fractions_and_refuse_zero() -> anyhow::Result<()> {
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
        assert_eq!(c.timeouts.upstream_headers, Duration::from_secs(60));
        assert_eq!(c.timeouts.shutdown, Duration::from_secs(30));
        assert_eq!(c.keepalive, Duration::from_secs(15));
        let raw: RawConfig = toml::from_str(
            "upstream_header_timeout_secs = 0.25\nupstream_idle_timeout_secs = 300\nkeepalive_secs = 2",
        )?;
        let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
        assert_eq!(c.timeouts.upstream_headers, Duration::from_millis(250));
        assert_eq!(c.upstream_idle_timeout, Duration::from_secs(300));
        assert_eq!(c.keepalive, Duration::from_secs(2));
        let e = env(&[("CODEX_GATEWAY_KEEPALIVE_SECS", "0.5")]);
        assert_eq!(
            Config::resolve(RawConfig::default(), &Overrides::default(), &e)?.keepalive,
            Duration::from_millis(500)
        );
        for bad in ["shutdown_timeout_secs = 0", "token_refresh_timeout_secs = -1", "catalog_timeout_secs = nan"] {
            let raw: RawConfig = toml::from_str(bad)?;
            let err = Config::resolve(raw, &Overrides::default(), &env(&[])).err();
            assert!(err.is_some_and(|e| e.to_string().contains("positive number of seconds")), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn usage_settings_from_file_and_env() -> anyhow::Result<()> {
        let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
        assert!(c.usage.enabled && c.usage.prices.is_empty());
        assert_eq!((c.usage.retention.as_secs(), c.usage.rollup_retention.as_secs()), (30 * 86_400, 365 * 86_400));
        let raw: RawConfig = toml::from_str(
            "[usage]\nretention_days = 7\nchannel_capacity = 8\n[usage.prices.\"gpt-5.4\"]\ninput = 1.25\noutput = 10.0",
        )?;
        let e = env(&[("CODEX_GATEWAY_USAGE_ENABLED", "0"), ("CODEX_GATEWAY_USAGE_ROLLUP_RETENTION_DAYS", "90")]);
        let c = Config::resolve(raw, &Overrides::default(), &e)?;
        assert!(!c.usage.enabled);
        assert_eq!((c.usage.retention.as_secs(), c.usage.rollup_retention.as_secs()), (7 * 86_400, 90 * 86_400));
        assert_eq!(c.usage.channel_capacity, 8);
        assert_eq!(c.usage.prices.get("gpt-5.4").map(|p| p.output), Some(10.0));
        for bad in
            ["[usage]\nretention_days = 0", "[usage.prices.m]\ninput = -1.0\noutput = 1.0", "[usage]\nretain = 1"]
        {
            let raw = toml::from_str::<RawConfig>(bad);
            assert!(raw.is_err() || Config::resolve(raw?, &Overrides::default(), &env(&[])).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<RawConfig>("prot = 1").is_err());
    }

    /// `[store] url`, then `CODEX_GATEWAY_DATABASE_URL`, then `--database-url`; none (or an empty value) keeps the
    /// SQLite store.
    #[test]
    fn store_url_resolution() -> anyhow::Result<()> {
        let none = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("HOME", "/h")]))?;
        assert_eq!(none.store.url, None);
        let raw = || toml::from_str::<RawConfig>("[store]\nurl = \"postgres://file/db\"");
        let file = Config::resolve(raw()?, &Overrides::default(), &env(&[("HOME", "/h")]))?;
        assert_eq!(file.store.url.as_deref(), Some("postgres://file/db"));
        let e = env(&[("HOME", "/h"), ("CODEX_GATEWAY_DATABASE_URL", "postgres://env/db")]);
        assert_eq!(Config::resolve(raw()?, &Overrides::default(), &e)?.store.url.as_deref(), Some("postgres://env/db"));
        let flag = Overrides { database_url: Some("postgres://flag/db".into()), ..Default::default() };
        assert_eq!(Config::resolve(raw()?, &flag, &e)?.store.url.as_deref(), Some("postgres://flag/db"));
        let empty = Overrides { database_url: Some(" ".into()), ..Default::default() };
        assert_eq!(Config::resolve(RawConfig::default(), &empty, &env(&[("HOME", "/h")]))?.store.url, None);
        Ok(())
    }
}
