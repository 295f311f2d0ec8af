//! The configuration file as written (docs/configuration.md): its top level, every key optional and unknown keys
//! refused (each table's raw struct sits with its feature: sections.rs and the feature modules), and reading it.

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
    pub server: Option<super::sections::RawServer>,
    pub metrics: Option<super::sections::RawMetrics>,
    pub dashboard: Option<super::sections::RawDashboard>,
    pub oauth: Option<super::oauth::RawOAuth>,
    pub usage: Option<super::sections::RawUsage>,
    pub store: Option<super::sections::RawStore>,
    pub upstream: Option<super::client::RawUpstream>,
    pub keys: Option<std::collections::BTreeMap<String, super::sections::RawKey>>,
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
