//! Minimum client versions per model, as the real backend enforces them (spec/codex-upstream.md, issue 25):
//! each catalog entry carries `minimal_client_version`; `GET /models?client_version=X` omits the models that
//! need a newer client; a `/responses` request whose client (`version` header, else a `name/x.y.z`
//! User-Agent) is older than the model's minimum gets 400 `{"detail": "The '<model>' model requires a newer
//! version of Codex. Please upgrade to the latest app or CLI and try again."}`. A request that names no
//! version at all is not checked (the official client always sends one).
//!
//! Each model has a built-in minimum, all older than the version the gateway presents; tests raise one with
//! `FakeCodex::set_min_client_version` (or `POST /_fake/models/{slug}/min-client-version`).

use crate::server::detail;
use crate::state::Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;

/// `major.minor.patch`, ordered.
pub(crate) type Version = (u32, u32, u32);

/// Parse `0.169.0` (a `-pre` or `+build` suffix ignored).
pub(crate) fn parse(text: &str) -> Option<Version> {
    let core = text.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next()?, parts.next()?, parts.next()?, parts.next()) {
        (Some(a), Some(b), Some(c), None) => Some((a, b, c)),
        _ => None,
    }
}

fn show(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

/// The built-in minimum of a slug as the catalog writes it.
pub(crate) fn builtin_text(slug: &str) -> String {
    show(builtin(slug))
}

/// The built-in minimum of a slug (newer families need a more recent client, like the real catalog: the GPT-6.2
/// models 0.166.0 in the official client's 0.171 catalog).
fn builtin(slug: &str) -> Version {
    match slug {
        "gpt-6.2-sol" | "gpt-6.2-astra" => (0, 166, 0),
        "gpt-5.6-sol" => (0, 144, 0),
        "gpt-5.5" => (0, 125, 0),
        _ => (0, 100, 0),
    }
}

/// Minimums raised by tests, and the highest minimum of any model (so a request from a client at least that
/// new is not parsed again to find its model).
#[derive(Default)]
pub(crate) struct MinVersions {
    raised: Mutex<HashMap<String, Version>>,
}

impl MinVersions {
    pub(crate) fn set(&self, slug: &str, v: Version) {
        self.raised.lock().insert(slug.to_string(), v);
    }

    pub(crate) fn min_for(&self, slug: &str) -> Version {
        self.raised.lock().get(slug).copied().unwrap_or_else(|| builtin(slug))
    }

    fn highest(&self) -> Version {
        let newest = crate::catalog::MODELS.iter().map(|m| builtin(m.slug)).max().unwrap_or((0, 0, 0));
        self.raised.lock().values().copied().fold(newest, Version::max)
    }
}

/// The client version a request names: `version`, else the `product/x.y.z` start of its User-Agent.
fn client_version(headers: &HeaderMap) -> Option<Version> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = get("version") {
        return parse(v);
    }
    let (_, rest) = get("user-agent")?.split_once('/')?;
    parse(rest.split_whitespace().next()?)
}

/// The backend's refusal of a client older than the requested model's minimum, if it is.
pub(crate) fn refuse(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let client = client_version(headers)?;
    if client >= shared.min_versions.highest() {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    let model = serde_json::from_slice::<ModelOnly>(body).ok()?.model?;
    (client < shared.min_versions.min_for(&model)).then(|| {
        detail(
            StatusCode::BAD_REQUEST,
            &format!(
                "The '{model}' model requires a newer version of Codex. Please upgrade to the latest app or CLI and try again."
            ),
        )
    })
}

/// A Codex catalog for `slugs` as a client of version `query` (the `client_version` parameter) sees it: models
/// that need a newer client are left out, every entry names its minimum (a raised one replaces the built-in).
pub(crate) fn catalog(shared: &Shared, slugs: &[String], query: Option<&str>) -> Value {
    let client = query.and_then(parse);
    let visible: Vec<String> =
        slugs.iter().filter(|s| client.is_none_or(|c| c >= shared.min_versions.min_for(s))).cloned().collect();
    let mut body = crate::catalog::codex_catalog(&visible);
    if let Some(models) = body.get_mut("models").and_then(Value::as_array_mut) {
        for m in models {
            let slug = m.get("slug").and_then(Value::as_str).unwrap_or_default().to_string();
            m["minimal_client_version"] = Value::String(show(shared.min_versions.min_for(&slug)));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse("0.169.0"), Some((0, 169, 0)));
        assert_eq!(parse("0.170.1-alpha.2"), Some((0, 170, 1)));
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("1.2"), None);
    }
}
