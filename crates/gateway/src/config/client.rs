//! The client identity the gateway presents upstream (`[upstream] client_version` and `user_agent`), checked when
//! the file loads; `upstream/identity/` presents it (a newer caller's or model minimum's version per request).

use anyhow::bail;
use serde::Deserialize;

use crate::catalog::entry::ClientVersion;

/// `[upstream]`: the client identity presented upstream and the upstream transport.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub client_version: Option<String>,
    pub user_agent: Option<String>,
    pub transport: Option<upstream_transport::ws::Transport>,
    pub websocket_max_per_account: Option<usize>,
    pub websocket_idle_timeout_secs: Option<f64>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_user_agent_has_the_official_clients_shape() {
        let ua = default_user_agent("0.169.0");
        let rest = ua.strip_prefix("codex_cli_rs/0.169.0 (").unwrap_or_else(|| panic!("{ua}"));
        let (os, terminal) = rest.split_once(") ").unwrap_or_else(|| panic!("{ua}"));
        assert!(os.contains("; "), "<os> <version>; <arch>: {ua}");
        assert!(!terminal.is_empty() && !ua.contains("codex-gateway"), "{ua}");
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
