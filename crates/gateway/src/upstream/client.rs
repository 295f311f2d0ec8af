//! Sending a Responses request upstream with the credentials and headers the Codex backend expects.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use crate::accounts::Account;
use crate::config::Config;
use crate::store::AccountKind;

/// The Codex CLI version whose wire behaviour the gateway follows (spec/real-clients.md).
pub const CODEX_CLIENT_VERSION: &str = "0.169.0";
const ORIGINATOR: &str = "codex_cli_rs";

/// Per-stream HTTP/2 receive window toward the upstream (see `build_client`).
const UPSTREAM_H2_STREAM_WINDOW: u32 = 256 * 1024;
/// Connection-wide HTTP/2 receive window toward the upstream (see `build_client`).
const UPSTREAM_H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// One reqwest client for everything upstream: pooled connections, HTTP/2 where offered, rustls, the
/// configured proxy and extra CA bundle.
pub fn build_http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    build_client(config, config.proxy.as_deref(), true)
}

/// The same client with an account's own proxy. It carries all of that account's traffic: `NO_PROXY`, which
/// applies to the global proxy from the environment, does not apply here.
pub fn build_http_client_with_proxy(config: &Config, proxy: Option<&str>) -> anyhow::Result<reqwest::Client> {
    build_client(config, proxy, false)
}

fn build_client(config: &Config, proxy: Option<&str>, honor_no_proxy: bool) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(20))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // Fixed HTTP/2 windows, not hyper's adaptive ones. h2 ends the whole connection ("too_many_data_frames",
        // every stream on it lost) once the small DATA frames it holds unread cost more framing overhead than
        // half the connection window. SSE deltas are small frames, left unread while the gateway is busy or a
        // client reads slowly: with adaptive windows (64 KB to start, a 32 KB budget) 5,000 streams opening at
        // once lost 4,825 (bench/notes.md). A stream may hold at most 256 KB unread; the connection's 16 MB
        // window sets an 8 MB budget, room for dozens of fully stalled streams at once. 256 KB per stream is
        // far above what a token stream needs in flight.
        .http2_initial_stream_window_size(UPSTREAM_H2_STREAM_WINDOW)
        .http2_initial_connection_window_size(UPSTREAM_H2_CONNECTION_WINDOW)
        .no_proxy();
    if config.upstream_h2c {
        b = b.http2_prior_knowledge();
    }
    if let Some(p) = proxy {
        let proxy = reqwest::Proxy::all(p).with_context(|| "invalid proxy URL (HTTPS_PROXY / ALL_PROXY / proxy)")?;
        let proxy = if honor_no_proxy { proxy.no_proxy(reqwest::NoProxy::from_env()) } else { proxy };
        b = b.proxy(proxy);
    }
    if let Some(path) = &config.ca_bundle {
        let pem = std::fs::read(path).with_context(|| format!("cannot read CA bundle {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().context("cannot build the HTTP client")
}

/// Per-request details that shape the upstream headers.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    /// Stable per conversation; sent as `session-id` (and `thread-id` unless the client sent its own).
    pub session_id: String,
    pub thread_id: Option<String>,
    /// `x-codex-turn-state` echoed from the client (Codex CLI sticky routing).
    pub turn_state: Option<String>,
}

pub struct Upstream {
    http: reqwest::Client,
    codex_url: ParsedUrl,
    openai_url: ParsedUrl,
    user_agent: String,
}

impl Upstream {
    pub fn new(config: &Config, http: reqwest::Client) -> Upstream {
        let user_agent = format!(
            "{ORIGINATOR}/{CODEX_CLIENT_VERSION} ({} ; {}) codex-gateway/{}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            env!("CARGO_PKG_VERSION")
        );
        Upstream {
            http,
            codex_url: ParsedUrl::new(format!("{}/responses", config.upstream_base_url)),
            openai_url: ParsedUrl::new(format!("{}/responses", config.openai_base_url)),
            user_agent,
        }
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POST the Responses body. Returns the response as soon as headers arrive; the body streams.
    pub async fn send(
        &self,
        account: &Account,
        authorization: HeaderValue,
        body: Bytes,
        ctx: &CallContext,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut headers = HeaderMap::new();
        let put = |h: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = match account.kind {
            AccountKind::Chatgpt => {
                if let Some(id) = account.chatgpt_account_id() {
                    put(&mut headers, "chatgpt-account-id", &id);
                }
                put(&mut headers, "originator", ORIGINATOR);
                put(&mut headers, "version", CODEX_CLIENT_VERSION);
                if let Ok(v) = HeaderValue::from_str(&self.user_agent) {
                    headers.insert(USER_AGENT, v);
                }
                put(&mut headers, "session-id", &ctx.session_id);
                put(&mut headers, "thread-id", ctx.thread_id.as_deref().unwrap_or(&ctx.session_id));
                put(&mut headers, "x-client-request-id", &ctx.request_id);
                if let Some(ts) = &ctx.turn_state {
                    put(&mut headers, "x-codex-turn-state", ts);
                }
                &self.codex_url
            }
            AccountKind::ApiKey | AccountKind::Relay => &self.openai_url,
        };
        let request = match (&account.kind, &account.base_url) {
            (AccountKind::Relay | AccountKind::ApiKey, Some(base)) => account.http().post(format!("{base}/responses")),
            _ => match &url.parsed {
                Some(parsed) => account.http().post(parsed.clone()),
                // Invalid in the configuration: let reqwest report it as a request error.
                None => account.http().post(&url.text),
            },
        };
        request.headers(headers).body(body).send().await
    }
}

/// An upstream URL parsed once: reqwest would otherwise parse (and IDNA-map) the string on every request.
struct ParsedUrl {
    text: String,
    parsed: Option<reqwest::Url>,
}

impl ParsedUrl {
    fn new(text: String) -> ParsedUrl {
        let parsed = reqwest::Url::parse(&text).ok();
        ParsedUrl { text, parsed }
    }
}
