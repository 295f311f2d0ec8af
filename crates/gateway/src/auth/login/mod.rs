//! `codex-gateway login`: getting a new ChatGPT login for the gateway's own store. Three ways to the same
//! authorization code (the [`browser`], [`device`] and [`paste`] flows), then one code exchange ([`oauth`];
//! spec/codex-upstream.md, "Credentials and OAuth"). Everything a test must control is passed in, never global.

use std::time::Duration;

mod browser;
mod device;
mod oauth;
mod paste;

pub(crate) use browser::html_escape;
pub use browser::{browser_available, browser_login};
pub use device::device_login;
pub use oauth::{Pkce, authorize_url, code_from_callback, exchange_code, random_state, s256};
pub use paste::{code_from_paste, paste_login};

/// The callback ports the issuer accepts for this client, in order of preference.
pub const DEFAULT_CALLBACK_PORTS: [u16; 2] = [1455, 1457];
/// How long the browser flow waits for the callback.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the device flow polls before giving up.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The `redirect_uri` for a callback server on `port`. The issuer matches it literally, hence `localhost`.
pub fn callback_redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// Which way to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    Browser,
    Device,
    Paste,
}

impl LoginMode {
    /// From the `--device` / `--paste` flags (clap keeps them exclusive).
    pub fn from_flags(device: bool, paste: bool) -> LoginMode {
        match (device, paste) {
            (true, _) => LoginMode::Device,
            (false, true) => LoginMode::Paste,
            (false, false) => LoginMode::Browser,
        }
    }
}

/// What the flows need from their caller. [`LoginOptions::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// e.g. `https://auth.openai.com` (no trailing slash needed).
    pub issuer: String,
    /// Tried in order; the first free one is used. Tests pass `[0]` for an ephemeral port.
    pub callback_ports: Vec<u16>,
    /// Launch a browser on the authorize URL (the URL is always handed to the prompt as well).
    pub open_browser: bool,
    /// The browser flow's window.
    pub timeout: Duration,
    /// The device flow's window.
    pub device_timeout: Duration,
}

impl LoginOptions {
    pub fn new(issuer: &str) -> LoginOptions {
        LoginOptions {
            issuer: issuer.trim_end_matches('/').to_string(),
            callback_ports: DEFAULT_CALLBACK_PORTS.to_vec(),
            open_browser: false,
            timeout: BROWSER_TIMEOUT,
            device_timeout: DEVICE_TIMEOUT,
        }
    }

    fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

/// What a flow asks the user to do. The CLI prints it; tests act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Browser flow: sign in at `url`; the callback server is waiting.
    Browser { url: String },
    /// Paste flow: sign in at `url`, then paste the address the browser ended on.
    Paste { url: String },
    /// Device flow: open `verification_url` and enter `user_code`.
    Device { verification_url: String, user_code: String },
}

/// Why a login failed. Messages say what to do next; none contains a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid issuer URL {0:?}")]
    BadIssuer(String),
    #[error(
        "cannot listen for the login callback on 127.0.0.1 port {ports} ({reason}); another login may be running. \
         Use `codex-gateway login --device` or `--paste` instead"
    )]
    CallbackPortsBusy { ports: String, reason: String },
    #[error(
        "no sign-in arrived within {}; run `codex-gateway login` again (on a remote machine, use --device or --paste)",
        human(*.0)
    )]
    TimedOut(Duration),
    #[error("the sign-in answer does not belong to this login (state mismatch: a stale tab or a forged request)")]
    StateMismatch,
    #[error("the sign-in answer carries no authorization code")]
    MissingCode,
    #[error("the login callback server stopped unexpectedly; run the login again")]
    CallbackServerStopped,
    #[error("the sign-in was refused: {0}")]
    Denied(String),
    #[error("{0}")]
    BadPaste(String),
    #[error("the device code was not approved within {}; run `codex-gateway login --device` again", human(*.0))]
    DeviceTimedOut(Duration),
    /// The issuer could not be reached, or its answer broke off (the cause kept as the source).
    #[error("cannot reach {endpoint}")]
    Network {
        endpoint: &'static str,
        #[source]
        cause: reqwest::Error,
    },
    #[error("{endpoint} refused the request (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused { endpoint: &'static str, status: u16, code: Option<String> },
    #[error("{endpoint} returned an unreadable answer")]
    BadResponse { endpoint: &'static str },
    #[error("cannot read the pasted address: {0}")]
    Input(#[source] std::io::Error),
}

fn human(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{} ms", d.as_millis()),
        s if s % 60 == 0 && s >= 60 => format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" }),
        s => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_the_way_out() {
        assert!(LoginError::TimedOut(BROWSER_TIMEOUT).to_string().contains("5 minutes"));
        assert!(LoginError::DeviceTimedOut(DEVICE_TIMEOUT).to_string().contains("15 minutes"));
        let e =
            LoginError::Refused { endpoint: oauth::TOKEN_ENDPOINT, status: 400, code: Some("invalid_grant".into()) };
        assert_eq!(e.to_string(), "the token endpoint refused the request (HTTP 400, invalid_grant)");
        assert!(browser::page("<x>", "a&b").contains("&lt;x&gt;"));
    }
}
