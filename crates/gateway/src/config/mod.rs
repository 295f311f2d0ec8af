//! Configuration (docs/configuration.md): the raw TOML file (`file.rs`), then the checked [`Config`] with the
//! environment (`env.rs`) and the command line (`flags.rs`) merged on top.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

pub(crate) mod aliases;
mod attempts;
pub mod client;
mod env;
pub(crate) mod field;
mod file;
mod flags;
mod oauth;
mod oidc;
pub(crate) mod ollama;
pub mod prices;
pub(crate) mod routing;
mod sections;
pub(crate) mod timeouts;
mod validate;

pub use aliases::RawAliases;
pub use attempts::{AttemptLimits, RawAttempts};
pub use client::RawUpstream;
pub use env::{Env, ProcessEnv, default_config_path, home};
pub use file::RawConfig;
pub(crate) use file::read_raw;
pub use flags::Overrides;
pub(crate) use flags::explicit_config_file;
pub use oauth::{OAuthConfig, RawOAuth};
pub use oidc::{CLIENT_SECRET_ENV as OIDC_CLIENT_SECRET_ENV, OidcConfig, RawOidc};
pub use ollama::{OllamaBridge, RawOllama};
pub use routing::{RawRouting, Routing, Strategy};
pub use sections::{
    Access, ConfiguredKey, DashboardConfig, LogFormat, MetricsConfig, QuotaThresholds, RawDashboard, RawKey,
    RawMetrics, RawServer, RawStore, RawUsage, StoreConfig, StoredResponseSettings, UsageSettings, WebSocketSettings,
};
pub use timeouts::Timeouts;
use validate::seconds;

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
    /// HTTP/2 without TLS to `http://` upstreams, so streams share connections as with the real backend over TLS.
    pub upstream_h2c: bool,
    pub body_limit: usize,
    pub keepalive: Duration,
    pub upstream_idle_timeout: Duration,
    pub timeouts: Timeouts,
    /// Period of the background upkeep (refreshes, quota polls, the catalog, the store's re-read).
    pub upkeep_interval: Duration,
    pub default_reasoning_effort: Option<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub ollama: OllamaBridge,
    pub gemini_model_aliases: HashMap<String, String>,
    pub anthropic_model_aliases: HashMap<String, String>,
    pub routing: Routing,
    pub access: Access,
    pub metrics: MetricsConfig,
    pub dashboard: DashboardConfig,
    pub oauth: OAuthConfig,
    /// The configuration file: the one read, or where one would be read from (the dashboard's Settings write it).
    pub config_file: PathBuf,
    pub usage: UsageSettings,
    pub store: StoreConfig,
    /// `[upstream]`: the Codex client version and User-Agent presented upstream.
    pub client: client::ClientIdentity,
    /// `[upstream] transport` and the WebSocket connections' limits.
    pub upstream_ws: upstream_transport::ws::WsSettings,
    pub configured_keys: Vec<ConfiguredKey>,
    /// `[server] watch_config`: reload when the file changes (app/reload.rs).
    pub watch_config: bool,
    /// `[server] websocket*`: the inbound Responses WebSocket (docs/protocol.md).
    pub inbound_ws: WebSocketSettings,
    pub stored_responses: StoredResponseSettings,
    /// The command-line values this configuration was resolved with, so a reload resolves the file with them.
    pub overrides: Overrides,
}

impl Config {
    /// Load the file (a given path must exist, the default one may be absent, but not unreadable: its settings
    /// would be dropped without a word), then env, then flags.
    pub fn load(overrides: &Overrides, env: &dyn Env) -> anyhow::Result<Config> {
        let explicit = flags::explicit_config_file(overrides, env).is_some();
        let path = flags::config_file(overrides, env);
        let raw = match path.try_exists() {
            Ok(false) if !explicit => RawConfig::default(),
            Err(e) if !explicit => bail!("cannot read config file {}: {e}", path.display()),
            _ => read_raw(&path)?,
        };
        Self::resolve(raw, overrides, env)
    }

    /// The file and environment read again with this configuration's command-line values: what a reload applies.
    pub fn reread(&self, env: &dyn Env) -> anyhow::Result<Config> {
        let path = &self.config_file;
        let explicit = flags::explicit_config_file(&self.overrides, env).is_some();
        let raw = match std::fs::read_to_string(path) {
            Ok(text) => file::parse_quietly(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => RawConfig::default(),
            Err(e) => bail!("cannot read config file {}: {e}", path.display()),
        };
        Self::resolve(raw, &self.overrides, env)
    }

    /// The file's settings with the environment's and the flags' merged on top, each checked.
    pub fn resolve(mut raw: RawConfig, o: &Overrides, env: &dyn Env) -> anyhow::Result<Config> {
        let listen = flags::listen(o, env, raw.host.take(), raw.port)?;
        let api_keys = flags::client_keys(raw.api_keys.take(), o, env)?;
        let watch_config = raw.server.as_ref().and_then(|s| s.watch_config).unwrap_or(false);
        let inbound_ws = WebSocketSettings::resolve(raw.server.as_ref())?;
        let stored_responses = StoredResponseSettings::resolve(raw.server.as_ref())?;
        let access = Access::resolve(raw.server.take(), env)?;
        let configured_keys = validate::configured_keys(raw.keys.take(), &api_keys)?;
        validate::refuse_public_without_key(listen.ip(), &api_keys, &access)?;
        let endpoints = env::Endpoints::resolve(&mut raw, env);
        let effort = env.get("CODEX_GATEWAY_DEFAULT_REASONING_EFFORT").or(raw.default_reasoning_effort.take());
        let upstream = raw.upstream.take().unwrap_or_default();
        // The settings are checked in the order written here: a file with two mistakes is refused for the first.
        let metrics = MetricsConfig::resolve(raw.metrics.take(), env)?;
        validate::scrape_key(metrics.scrape_key.as_deref(), &api_keys, &access)?;
        Ok(Config {
            data_dir: flags::data_dir(o, env, raw.data_dir.take()),
            codex_home: env::codex_home(env, raw.codex_home.take()),
            upstream_h2c: env::env_flag(env, "CODEX_GATEWAY_UPSTREAM_H2C", raw.upstream_h2c)?,
            default_reasoning_effort: validate::reasoning_effort(effort)?,
            body_limit: env::body_limit(env, raw.body_limit_mb)?,
            keepalive: timeouts::keepalive(env, raw.keepalive_secs)?,
            upstream_idle_timeout: seconds("upstream_idle_timeout_secs", raw.upstream_idle_timeout_secs, 300.0)?,
            timeouts: Timeouts::resolve(&raw)?,
            routing: Routing::resolve(raw.routing.take(), env)?,
            ollama: OllamaBridge::resolve(raw.ollama.take(), env)?,
            metrics,
            dashboard: DashboardConfig::resolve(raw.dashboard.take(), env)?,
            oauth: OAuthConfig::resolve(raw.oauth.take())?,
            log_format: LogFormat::parse(flags::log_format(o, env, raw.log_format.take()).as_deref())?,
            usage: UsageSettings::resolve(raw.usage.take(), env)?,
            store: StoreConfig::resolve(raw.store.take(), o, env),
            upstream_ws: upstream_transport::ws::WsSettings::resolve(
                upstream.transport,
                upstream.websocket_max_per_account,
                upstream.websocket_idle_timeout_secs,
            )?,
            client: client::ClientIdentity::resolve(upstream.client_version, upstream.user_agent)?,
            upkeep_interval: seconds("upkeep_interval_secs", raw.upkeep_interval_secs, 30.0)?,
            listen,
            api_keys,
            upstream_base_url: endpoints.upstream_base_url,
            chatgpt_base_url: endpoints.chatgpt_base_url,
            auth_issuer: endpoints.auth_issuer,
            openai_base_url: endpoints.openai_base_url,
            openai_api_key: env.get("OPENAI_API_KEY"),
            proxy: endpoints.proxy,
            ca_bundle: endpoints.ca_bundle,
            log: env.get("RUST_LOG").or(raw.log).unwrap_or_else(|| "info".into()),
            gemini_model_aliases: aliases::resolve(raw.gemini),
            anthropic_model_aliases: aliases::resolve(raw.anthropic),
            access,
            config_file: flags::config_file(o, env),
            configured_keys,
            watch_config,
            inbound_ws,
            stored_responses,
            overrides: o.clone(),
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gateway.db")
    }

    /// Where this configuration keeps its state: the one place that tells the SQLite file from the team's database.
    pub fn store_at(&self) -> StoreAt<'_> {
        match self.store.url.as_deref() {
            Some(url) => StoreAt::Team(url),
            None => StoreAt::File(self.db_path()),
        }
    }

    /// Open the store this configuration names: the SQLite file, and with a database URL the team store beside it.
    pub fn open_store(&self) -> anyhow::Result<crate::store::Store> {
        crate::store::Store::open_with(&self.db_path(), self.store.url.as_deref())
    }

    pub fn codex_auth_file(&self) -> PathBuf {
        self.codex_home.join("auth.json")
    }

    /// The keys `/admin/*` and `/metrics` accept (none: the admin API is as open as the rest, keyless loopback).
    pub fn admin_keys(&self) -> &[String] {
        match &self.access.admin_key {
            Some(k) => std::slice::from_ref(k),
            None => &self.api_keys,
        }
    }
}

#[cfg(test)]
mod tests;

/// Where a configuration keeps its state ([`Config::store_at`]).
pub enum StoreAt<'a> {
    /// The SQLite file in the data directory: one serving gateway at a time (store/serving.rs).
    File(PathBuf),
    /// A PostgreSQL database a team of instances shares (docs/team.md).
    Team(&'a str),
}

impl StoreAt<'_> {
    /// Whether there is a store to read (opening creates the file, so a command that only reads checks this first).
    pub fn exists(&self) -> bool {
        match self {
            StoreAt::File(path) => path.exists(),
            StoreAt::Team(_) => true,
        }
    }

    /// Whether one gateway serving it keeps every other process from changing it (the file's case).
    pub fn single_server(&self) -> bool {
        matches!(self, StoreAt::File(_))
    }

    /// For people: the file's path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreAt::File(path) => path.display().to_string(),
            StoreAt::Team(url) => crate::store::postgres::redact_url(url),
        }
    }
}
