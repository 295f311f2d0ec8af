//! The waits the file bounds (docs/configuration.md, "Timeouts"): the `*_secs` keys at the file's top, the
//! resolved [`Timeouts`] and the keepalive, which the Settings page edits and a reload puts in force.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use super::env::Env;
use super::field::{Field, Group, Kind};
use super::file::RawConfig;
use super::validate::seconds;

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

/// The Settings page's Streaming fieldset.
pub(crate) const SETTINGS: Group = Group {
    legend: "Streaming",
    fields: &[Field::named("keepalive_secs", "keepalive_secs", "Keepalive interval, seconds")
        .live(Kind::Number { min: 0.05, max: 3600.0, whole: false }, |c| json!(c.keepalive.as_secs_f64()))],
};

impl Timeouts {
    /// The file's `*_secs` timeouts, each with its default.
    pub(super) fn resolve(raw: &RawConfig) -> anyhow::Result<Timeouts> {
        Ok(Timeouts {
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
        })
    }
}

/// The keepalive period: `CODEX_GATEWAY_KEEPALIVE_SECS`, else `keepalive_secs`, else 15 s; at least 50 ms.
pub(super) fn keepalive(env: &dyn Env, file_secs: Option<f64>) -> anyhow::Result<Duration> {
    let secs = match env.get("CODEX_GATEWAY_KEEPALIVE_SECS") {
        Some(v) => Some(v.parse().with_context(|| format!("CODEX_GATEWAY_KEEPALIVE_SECS={v} is not a number"))?),
        None => file_secs,
    };
    Ok(seconds("keepalive_secs", secs, 15.0)?.max(Duration::from_millis(50)))
}
