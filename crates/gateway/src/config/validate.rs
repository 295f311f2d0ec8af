//! The checks a setting passes before the gateway runs with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::bail;

use super::sections::RawKey;
use super::sections::{Access, ConfiguredKey};

/// A `*_secs` setting as a duration: `default` when absent; fractions allowed; zero, negative or absurd values
/// are refused (a zero timeout would fail every request).
pub(super) fn seconds(key: &str, value: Option<f64>, default: f64) -> anyhow::Result<Duration> {
    let v = value.unwrap_or(default);
    if !(v > 0.0 && v <= 1e9) {
        bail!("{key} = {v} is not a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

pub(super) fn configured_keys(
    raw: Option<BTreeMap<String, RawKey>>,
    shared: &[String],
) -> anyhow::Result<Vec<ConfiguredKey>> {
    let mut out: Vec<ConfiguredKey> = Vec::new();
    for (name, RawKey { secret, models, rpm, concurrency, daily_tokens, monthly_tokens, opportunistic }) in
        raw.unwrap_or_default()
    {
        let secret = secret.trim().to_string();
        if secret.len() < 8 {
            bail!("[keys.{name}] secret must be at least 8 characters (a key is a password to your accounts)");
        }
        if shared.contains(&secret) || out.iter().any(|o| o.secret == secret) {
            bail!("[keys.{name}] secret is also another key's: every key needs its own secret");
        }
        if rpm.is_some_and(|r| r == 0 || r > crate::store::MAX_RPM) {
            bail!("[keys.{name}] rpm must be between 1 and {}", crate::store::MAX_RPM);
        }
        if concurrency == Some(0) || daily_tokens == Some(0) || monthly_tokens == Some(0) {
            bail!("[keys.{name}] a limit of 0 would refuse every request: remove it, or set at least 1");
        }
        let limits = crate::store::Limits { rpm, concurrency, daily_tokens, monthly_tokens };
        let opportunistic = opportunistic.unwrap_or(false);
        out.push(ConfiguredKey { name, secret, models, limits, opportunistic });
    }
    Ok(out)
}

/// `Gateway.Example.` -> `gateway.example`, `fd00::1` -> `[fd00::1]`; a scheme, path or port is refused (any
/// port matches, so a port in the list would only mislead).
pub(super) fn normalize_host(entry: &str) -> anyhow::Result<String> {
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

/// `10.89.0.0/24` or a single address (`10.89.0.10`, `fd00::10`) -> a range of trusted balancers.
pub(super) fn parse_proxy(entry: &str) -> anyhow::Result<ipnet::IpNet> {
    let e = entry.trim();
    if let Ok(net) = e.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = e.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    bail!(
        "[server] trusted_proxies entry `{entry}` is not an address or a CIDR range: write `10.89.0.10`, \
         `10.89.0.0/24` or `fd00::/64` (the balancers whose X-Forwarded-For names the client)"
    )
}

/// `HTTPS://App.Example:443/` -> `https://app.example`: the form browsers send in `Origin`.
pub(super) fn normalize_origin(entry: &str) -> anyhow::Result<String> {
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

/// A listener reachable from other machines needs a client key or the admin key.
pub(super) fn refuse_public_without_key(ip: IpAddr, api_keys: &[String], access: &Access) -> anyhow::Result<()> {
    if !ip.is_loopback() && api_keys.is_empty() && access.admin_key.is_none() {
        bail!(
            "refusing to listen on {ip}: it is reachable from other machines and no client API key is set. \
             Set CODEX_GATEWAY_API_KEY (or `api_keys` in the config file, or --api-key), or bind 127.0.0.1."
        );
    }
    Ok(())
}

/// `[metrics] scrape_key` opens `/metrics` alone: a client or admin key with the same text would blur which right a
/// credential carries.
pub(super) fn scrape_key(key: Option<&str>, api_keys: &[String], access: &Access) -> anyhow::Result<()> {
    let Some(key) = key else { return Ok(()) };
    if key.len() < 16 {
        bail!("[metrics] scrape_key must be at least 16 characters (CODEX_GATEWAY_METRICS_KEY)");
    }
    if api_keys.iter().any(|k| k == key) || access.admin_key.as_deref() == Some(key) {
        bail!("[metrics] scrape_key is also a client or admin key: give the scraper a key of its own");
    }
    Ok(())
}

/// The default reasoning effort, in the backend's spelling.
pub(super) fn reasoning_effort(effort: Option<String>) -> anyhow::Result<Option<String>> {
    let Some(e) = effort else { return Ok(None) };
    match dialects::models::normalize_effort(&e) {
        Some(word) => Ok(Some(word.to_string())),
        None => bail!("default_reasoning_effort `{e}` is not one of {}", dialects::models::EFFORTS.join(", ")),
    }
}
