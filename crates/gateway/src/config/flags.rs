//! The command line's part of the configuration: [`Overrides`], and the settings a flag can give, each resolved in
//! the order flag, environment, file, default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::env::{Env, default_config_path, default_data_dir};

/// Values from the command line; `None` means "not given".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub api_key: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    /// `--database-url`: the team store (see [`super::StoreConfig`]).
    pub database_url: Option<String>,
}

/// The address to listen on: `--host`/`--port`, else `CODEX_GATEWAY_HOST`/`_PORT`, else the file, else
/// 127.0.0.1:8765. `localhost` is 127.0.0.1; any other host must be an IP address.
pub(super) fn listen(
    o: &Overrides,
    env: &dyn Env,
    host: Option<String>,
    port: Option<u16>,
) -> anyhow::Result<SocketAddr> {
    let host = o.host.clone().or_else(|| env.get("CODEX_GATEWAY_HOST")).or(host).unwrap_or_else(|| "127.0.0.1".into());
    socket("host", &host, o.port, (env, "CODEX_GATEWAY_PORT"), port.unwrap_or(8765))
}

/// `host` (`what` in an error) and a port: the `given` one, else the environment's variable, else `default`.
pub(super) fn socket(
    what: &str,
    host: &str,
    given: Option<u16>,
    (env, key): (&dyn Env, &str),
    default: u16,
) -> anyhow::Result<SocketAddr> {
    let port = match (given, env.get(key)) {
        (Some(p), _) => p,
        (None, Some(p)) => p.parse().with_context(|| format!("{key}={p} is not a port number"))?,
        (None, None) => default,
    };
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().with_context(|| format!("{what} `{h}` is not an IP address"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// The client keys: the flag, else `CODEX_GATEWAY_API_KEY` (comma-separated), else the file. An empty key is an
/// error, never a key that authenticates empty credentials.
pub(super) fn client_keys(file: Option<Vec<String>>, o: &Overrides, env: &dyn Env) -> anyhow::Result<Vec<String>> {
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

/// `--data-dir`, else `CODEX_GATEWAY_DATA_DIR`, else the file's `data_dir`, else the XDG data directory.
pub(super) fn data_dir(o: &Overrides, env: &dyn Env, file: Option<PathBuf>) -> PathBuf {
    o.data_dir
        .clone()
        .or_else(|| env.get("CODEX_GATEWAY_DATA_DIR").map(PathBuf::from))
        .or(file)
        .unwrap_or_else(|| default_data_dir(env))
}

/// The configuration file given (`--config`, else `CODEX_GATEWAY_CONFIG`), if one was.
pub(crate) fn explicit_config_file(o: &Overrides, env: &dyn Env) -> Option<PathBuf> {
    o.config.clone().or_else(|| env.get("CODEX_GATEWAY_CONFIG").map(PathBuf::from))
}

/// The configuration file: the one given, else the default path.
pub(super) fn config_file(o: &Overrides, env: &dyn Env) -> PathBuf {
    explicit_config_file(o, env).unwrap_or_else(|| default_config_path(env))
}

/// The log format's name: `--log-format`, else `CODEX_GATEWAY_LOG_FORMAT`, else the file's `log_format`.
pub(super) fn log_format(o: &Overrides, env: &dyn Env, file: Option<String>) -> Option<String> {
    o.log_format.clone().or_else(|| env.get("CODEX_GATEWAY_LOG_FORMAT")).or(file)
}

/// The team store's URL: `--database-url`, else `CODEX_GATEWAY_DATABASE_URL`, else `[store] url`; empty is unset.
pub(super) fn database_url(o: &Overrides, env: &dyn Env, file: Option<String>) -> Option<String> {
    o.database_url.clone().or_else(|| env.get("CODEX_GATEWAY_DATABASE_URL")).or(file).filter(|u| !u.trim().is_empty())
}
