//! The environment's part of the configuration: the [`Env`] trait every lookup goes through, the default paths,
//! and the settings the environment gives or overrides.

use std::path::PathBuf;

use anyhow::{Context, bail};

use super::file::RawConfig;

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

/// `$HOME`, else the working directory.
pub fn home(env: &dyn Env) -> PathBuf {
    // Windows sets no HOME: the profile folder (`C:\Users\NAME`), where the official client keeps `.codex` too,
    // and whose ACL keeps the data directory private to the user.
    #[cfg(windows)]
    if let Some(profile) = env.get("HOME").or_else(|| env.get("USERPROFILE")) {
        return PathBuf::from(profile);
    }
    env.get("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// `$XDG_CONFIG_HOME/codex-gateway/config.toml` or `~/.config/codex-gateway/config.toml`.
pub fn default_config_path(env: &dyn Env) -> PathBuf {
    env.get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".config"))
        .join("codex-gateway/config.toml")
}

pub(super) fn default_data_dir(env: &dyn Env) -> PathBuf {
    env.get("XDG_DATA_HOME").map(PathBuf::from).unwrap_or_else(|| home(env).join(".local/share")).join("codex-gateway")
}

/// A boolean from the environment (1/0, true/false, yes/no, on/off), else the file's value, else false.
pub(super) fn env_flag(env: &dyn Env, key: &str, file: Option<bool>) -> anyhow::Result<bool> {
    match env.get(key) {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => bail!("{key}={v} is not a boolean (use 1 or 0)"),
        },
        None => Ok(file.unwrap_or(false)),
    }
}

/// Where the upstream is reached: the endpoints (without a trailing `/`), the proxy and the CA bundle.
pub(super) struct Endpoints {
    pub(super) upstream_base_url: String,
    pub(super) chatgpt_base_url: String,
    pub(super) auth_issuer: String,
    pub(super) openai_base_url: String,
    pub(super) proxy: Option<String>,
    pub(super) ca_bundle: Option<PathBuf>,
}

impl Endpoints {
    /// Takes the file's endpoint settings out of `raw`.
    pub(super) fn resolve(raw: &mut RawConfig, env: &dyn Env) -> Endpoints {
        let pick = |key: &str, file: Option<String>, default: &str| -> String {
            env.get(key).or(file).unwrap_or_else(|| default.to_string()).trim_end_matches('/').to_string()
        };
        let proxy = env.get("CODEX_GATEWAY_PROXY").or(raw.proxy.take()).or_else(|| {
            ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"].into_iter().find_map(|key| env.get(key))
        });
        let ca_bundle = env
            .get("CODEX_GATEWAY_CA_BUNDLE")
            .map(PathBuf::from)
            .or(raw.ca_bundle.take())
            .or_else(|| env.get("SSL_CERT_FILE").map(PathBuf::from));
        let [upstream_base_url, chatgpt_base_url, auth_issuer, openai_base_url] = [
            ("CODEX_GATEWAY_UPSTREAM_BASE_URL", raw.upstream_base_url.take(), "https://chatgpt.com/backend-api/codex"),
            ("CODEX_GATEWAY_CHATGPT_BASE_URL", raw.chatgpt_base_url.take(), "https://chatgpt.com/backend-api"),
            ("CODEX_GATEWAY_AUTH_ISSUER", raw.auth_issuer.take(), "https://auth.openai.com"),
            ("CODEX_GATEWAY_OPENAI_BASE_URL", raw.openai_base_url.take(), "https://api.openai.com/v1"),
        ]
        .map(|(key, file, default)| pick(key, file, default));
        Endpoints { upstream_base_url, chatgpt_base_url, auth_issuer, openai_base_url, proxy, ca_bundle }
    }
}

/// `CODEX_HOME`, else the file's `codex_home`, else `~/.codex`.
pub(super) fn codex_home(env: &dyn Env, file: Option<PathBuf>) -> PathBuf {
    env.get("CODEX_HOME").map(PathBuf::from).or(file).unwrap_or_else(|| home(env).join(".codex"))
}

/// The largest request body in bytes: `CODEX_GATEWAY_BODY_LIMIT_MB`, else `body_limit_mb`, else 64 MB.
pub(super) fn body_limit(env: &dyn Env, file_mb: Option<u64>) -> anyhow::Result<usize> {
    let mb: u64 = match env.get("CODEX_GATEWAY_BODY_LIMIT_MB") {
        Some(v) => v.parse().with_context(|| format!("CODEX_GATEWAY_BODY_LIMIT_MB={v} is not a number"))?,
        None => file_mb.unwrap_or(64),
    };
    Ok((mb as usize).saturating_mul(1024 * 1024))
}
