//! Which Codex client the gateway presents upstream (issue 25): the `version` header, the `User-Agent` and the
//! catalog's `client_version` query, configured in `[upstream]` (docs/protocol.md).
//!
//! The backend serves a model only to clients at least as new as the model's `minimal_client_version` (its
//! catalog omits newer models for an older `client_version`, and a request from an older `version` gets a 400
//! "The '<model>' model requires a newer version of Codex"). So per request the gateway presents the newest of:
//! the configured version, the caller's own official-client version (a newer Codex CLI behind the gateway), and
//! the model's minimum from the catalog ([`presented`]). Neighbours: `upstream/client.rs` writes the headers,
//! `relay/exchange/prepare.rs` decides the version per request, `catalog/entry.rs` owns [`ClientVersion`].

pub mod efforts;
pub mod turn;

// What goes upstream in the body (its member order, the Responses Lite shape) is `dialects::upstream_request`'s.
pub use dialects::upstream_request::lite;
pub use dialects::upstream_request::order::official_order;
pub use turn::{RequestKind, Turn, TurnInputs, WebsocketTurn, official};

// The configured identity is resolved (and checked) with the file: config/client.rs.
pub use crate::config::client::{ACCEPTED_CODINGS, ASKS_COMPRESSED, CODEX_CLIENT_VERSION, ClientIdentity, ORIGINATOR};

use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, HeaderName};

use crate::catalog::entry::ClientVersion;

/// An official caller's User-Agent presenting `version` instead of its own (every mention of its own version,
/// `codex_exec/0.160.0 (...) unknown (codex_exec; 0.160.0)`, is replaced).
pub fn with_version(user_agent: &str, version: &str) -> String {
    let own = user_agent.split_once('/').and_then(|(_, rest)| rest.split_whitespace().next());
    match own {
        Some(own) if ClientVersion::parse(own).is_some() => user_agent.replace(own, version),
        Some(_) | None => user_agent.to_string(),
    }
}

/// The official-client version a caller announces: its `version` header, else a User-Agent that starts
/// `codex_<something>/<x.y.z>` (`codex_cli_rs/0.170.0 (...)`, `codex_exec/0.170.0 ...`). Other clients: none.
pub fn caller_version(headers: &HeaderMap) -> Option<ClientVersion> {
    // Static names: a `&str` one is parsed again on every lookup, and this runs on every request.
    static VERSION: HeaderName = HeaderName::from_static("version");
    let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = header(&VERSION).and_then(ClientVersion::parse) {
        return Some(v);
    }
    let ua = header(&USER_AGENT)?;
    let (product, rest) = ua.split_once('/')?;
    if !product.starts_with("codex_") {
        return None;
    }
    ClientVersion::parse(rest.split_whitespace().next()?)
}

/// The version to present for one request when it is not the configured one: the newest of the caller's
/// version and the model's minimum, if newer than the configured version.
pub fn presented(
    configured: ClientVersion,
    caller: Option<ClientVersion>,
    minimum: Option<ClientVersion>,
) -> Option<ClientVersion> {
    caller.max(minimum).filter(|v| *v > configured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn v(s: &str) -> ClientVersion {
        ClientVersion::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn presents_the_newest_of_caller_and_model_minimum_only_when_newer() {
        let conf = v("0.169.0");
        assert_eq!(presented(conf, None, None), None);
        assert_eq!(presented(conf, Some(v("0.150.0")), Some(v("0.144.0"))), None);
        assert_eq!(presented(conf, Some(v("0.171.2")), None), Some(v("0.171.2")));
        assert_eq!(presented(conf, None, Some(v("0.170.0"))), Some(v("0.170.0")));
        assert_eq!(presented(conf, Some(v("0.172.0")), Some(v("0.170.0"))), Some(v("0.172.0")));
    }

    #[test]
    fn an_official_callers_user_agent_presents_a_newer_version_everywhere_it_names_its_own() {
        let ua = "codex_exec/0.160.0 (Debian 12.0.0; x86_64) unknown (codex_exec; 0.160.0)";
        assert_eq!(
            with_version(ua, "0.170.0"),
            "codex_exec/0.170.0 (Debian 12.0.0; x86_64) unknown (codex_exec; 0.170.0)"
        );
        assert_eq!(with_version("odd/agent", "0.170.0"), "odd/agent");
    }

    #[test]
    fn reads_the_callers_version_from_its_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(caller_version(&h), None);
        h.insert("user-agent", HeaderValue::from_static("codex_exec/0.171.0 (Linux 6.1; x86_64) xterm"));
        assert_eq!(caller_version(&h), Some(v("0.171.0")));
        h.insert("version", HeaderValue::from_static("0.172.1"));
        assert_eq!(caller_version(&h), Some(v("0.172.1")));
        let mut other = HeaderMap::new();
        other.insert("user-agent", HeaderValue::from_static("OpenAI/Python 2.1.0"));
        assert_eq!(caller_version(&other), None);
    }
}
