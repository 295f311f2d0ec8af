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
pub mod side;
pub mod turn;

// What goes upstream in the body (its member order, the Responses Lite shape) is `dialects::upstream_request`'s.
pub use dialects::upstream_request::lite;
pub use dialects::upstream_request::order::official_order;
pub use turn::{RequestKind, Turn, TurnInputs, WebsocketTurn};

use anyhow::bail;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, HeaderName};

use crate::catalog::entry::ClientVersion;

/// The Codex CLI version whose wire behaviour the gateway follows (spec/real-clients.md); the default version.
pub const CODEX_CLIENT_VERSION: &str = "0.169.0";
/// The `originator` of the official CLI, first word of its User-Agent.
pub const ORIGINATOR: &str = "codex_cli_rs";
/// The first official client that asks for compressed answers on every HTTP call, its Responses requests and the
/// calls beside them (`accept-encoding: zstd,gzip`, after the other headers; docs/protocol.md "Identity").
pub const ASKS_COMPRESSED: ClientVersion = ClientVersion { major: 0, minor: 171, patch: 0 };
/// What those clients accept.
pub const ACCEPTED_CODINGS: &str = "zstd,gzip";

/// The configured client identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientIdentity {
    pub version: ClientVersion,
    /// `version` as written (`0.169.0`), the header value and catalog query.
    pub version_text: String,
    pub user_agent: String,
    /// The User-Agent was configured (a presented newer version is then substituted into it where it names
    /// the configured one, not rebuilt).
    custom_user_agent: bool,
}

impl ClientIdentity {
    /// From `[upstream] client_version` and `user_agent` (config/file.rs).
    pub fn resolve(client_version: Option<String>, user_agent: Option<String>) -> anyhow::Result<ClientIdentity> {
        let version_text = client_version.unwrap_or_else(|| CODEX_CLIENT_VERSION.to_string());
        let Some(version) = ClientVersion::parse(&version_text) else {
            bail!("[upstream] client_version = {version_text:?} is not a version like \"0.169.0\"");
        };
        let custom_user_agent = user_agent.is_some();
        let user_agent = match user_agent {
            Some(ua) if ua.trim().is_empty() || ua.bytes().any(|b| b.is_ascii_control()) => {
                bail!("[upstream] user_agent must be non-empty printable text")
            }
            Some(ua) => ua,
            None => default_user_agent(&version_text),
        };
        Ok(ClientIdentity { version, version_text, user_agent, custom_user_agent })
    }

    /// The User-Agent for a request that presents `version` instead of the configured one (a rare path: one
    /// string per such request).
    pub fn user_agent_for(&self, version: &str) -> String {
        if self.custom_user_agent {
            self.user_agent.replace(&self.version_text, version)
        } else {
            default_user_agent(version)
        }
    }
}

impl Default for ClientIdentity {
    fn default() -> ClientIdentity {
        let version_text = CODEX_CLIENT_VERSION.to_string();
        ClientIdentity {
            version: ClientVersion::parse(&version_text).unwrap_or(ClientVersion { major: 0, minor: 169, patch: 0 }),
            user_agent: default_user_agent(&version_text),
            version_text,
            custom_user_agent: false,
        }
    }
}

/// The official client's User-Agent for `version`: `codex_cli_rs/<version> (<os> <os version>; <arch>) <terminal>`
/// (codex-rs `login/src/auth/default_client.rs`; the operating system as the `os_info` crate reads it, the
/// terminal from the environment the gateway runs in: `unknown` under a service manager).
fn default_user_agent(version: &str) -> String {
    format!("{ORIGINATOR}/{version} {}", platform())
}

/// `(<os> <os version>; <arch>) <terminal>`, read once.
fn platform() -> &'static str {
    static PLATFORM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PLATFORM.get_or_init(|| {
        let info = os_info::get();
        let arch = info.architecture().unwrap_or("unknown");
        let text = format!("({} {}; {arch}) {}", info.os_type(), info.version(), terminal());
        // What a header value cannot carry becomes `_`, as the official client does.
        text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '_' }).collect()
    })
}

/// The terminal token of the official client's User-Agent: `TERM_PROGRAM[/TERM_PROGRAM_VERSION]`, else `TERM`,
/// else `unknown`.
fn terminal() -> String {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("TERM_PROGRAM"), var("TERM_PROGRAM_VERSION"), var("TERM")) {
        (Some(program), Some(version), _) => format!("{program}/{version}"),
        (Some(program), None, _) => program,
        (None, _, Some(term)) => term,
        (None, _, None) => "unknown".to_string(),
    }
}

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
    fn the_default_user_agent_has_the_official_clients_shape() {
        let ua = default_user_agent("0.169.0");
        let rest = ua.strip_prefix("codex_cli_rs/0.169.0 (").unwrap_or_else(|| panic!("{ua}"));
        let (os, terminal) = rest.split_once(") ").unwrap_or_else(|| panic!("{ua}"));
        assert!(os.contains("; "), "<os> <version>; <arch>: {ua}");
        assert!(!terminal.is_empty() && !ua.contains("codex-gateway"), "{ua}");
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

    #[test]
    fn configuration_is_validated_and_a_custom_user_agent_follows_the_presented_version() {
        assert!(ClientIdentity::resolve(Some("soon".into()), None).is_err());
        let id = ClientIdentity::resolve(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.version_text, CODEX_CLIENT_VERSION);
        assert!(id.user_agent.starts_with("codex_cli_rs/0.169.0 ("), "{}", id.user_agent);
        assert!(id.user_agent_for("0.171.0").starts_with("codex_cli_rs/0.171.0 ("));
        let custom = ClientIdentity::resolve(
            Some("0.170.0".into()),
            Some("codex_cli_rs/0.170.0 (Mac OS 15.0; arm64) iTerm".into()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(custom.user_agent_for("0.171.0"), "codex_cli_rs/0.171.0 (Mac OS 15.0; arm64) iTerm");
    }
}
