//! `[ollama]`, the Ollama-compatible bridge (docs/configuration.md): the file's table, the resolved
//! [`OllamaBridge`] and its keys on the Settings page. A change of any of it waits for a restart.

use std::net::SocketAddr;

use anyhow::bail;
use serde::Deserialize;
use serde_json::json;

use super::env::{Env, env_flag};
use super::field::{Field, Group, Kind};
use super::flags::socket;

/// `[ollama]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOllama {
    pub enabled: Option<bool>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub allow_remote: Option<bool>,
}

/// The resolved Ollama bridge settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaBridge {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The bridge may bind a non-loopback address (it has no authentication).
    pub allow_remote: bool,
}

/// The Settings page's Ollama fieldset.
pub(crate) const SETTINGS: Group = Group {
    legend: "Ollama bridge",
    fields: &[
        Field::named("ollama_enabled", "ollama.enabled", "Serve the Ollama bridge")
            .at_restart(Kind::Switch, |c| json!(c.ollama.enabled)),
        Field::named("ollama_port", "ollama.port", "Bridge port")
            .at_restart(Kind::Number { min: 1.0, max: 65535.0, whole: true }, |c| json!(c.ollama.listen.port())),
    ],
};

impl OllamaBridge {
    /// File, then env (`CODEX_GATEWAY_OLLAMA_ENABLED`, `_HOST`, `_PORT`, `_ALLOW_REMOTE`).
    pub(super) fn resolve(raw: Option<RawOllama>, env: &dyn Env) -> anyhow::Result<OllamaBridge> {
        let raw = raw.unwrap_or_default();
        let enabled = env_flag(env, "CODEX_GATEWAY_OLLAMA_ENABLED", raw.enabled)?;
        let allow_remote = env_flag(env, "CODEX_GATEWAY_OLLAMA_ALLOW_REMOTE", raw.allow_remote)?;
        let host = env.get("CODEX_GATEWAY_OLLAMA_HOST").or(raw.host).unwrap_or_else(|| "127.0.0.1".into());
        let listen = socket("ollama.host", &host, None, (env, "CODEX_GATEWAY_OLLAMA_PORT"), raw.port.unwrap_or(11434))?;
        let ip = listen.ip();
        if enabled && !ip.is_loopback() && !allow_remote {
            bail!(
                "refusing to run the Ollama bridge on {ip}: it has no authentication, so anyone who can reach it \
                 can use your ChatGPT plan. Bind 127.0.0.1, or set `allow_remote = true` in [ollama] \
                 (CODEX_GATEWAY_OLLAMA_ALLOW_REMOTE=1) if you really mean it."
            );
        }
        Ok(OllamaBridge { enabled, listen, allow_remote })
    }
}
