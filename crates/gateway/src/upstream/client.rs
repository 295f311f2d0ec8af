//! Sending a Responses request upstream with the credentials and headers the Codex backend expects.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::http::Uri;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use super::transport::{
    CONNECT_TIMEOUT, Direct, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, TransportError, UpstreamResponse,
    post_via_reqwest,
};
use crate::accounts::Account;
use crate::config::Config;
use crate::store::AccountKind;

use super::identity::{ClientIdentity, ORIGINATOR};

/// One reqwest client: pooled connections, HTTP/2 where offered, rustls with the gateway's roots
/// ([`super::tls::client_config`]), the configured proxy. It carries the OAuth calls, the usage and catalog
/// requests, and the Responses requests of accounts behind a proxy (the others go through
/// [`super::transport::Direct`]).
pub fn build_http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    build_client(config, config.proxy.as_deref(), true)
}

/// The same client with an account's own proxy. It carries all of that account's traffic: `NO_PROXY`, which
/// applies to the global proxy from the environment, does not apply here.
pub fn build_http_client_with_proxy(config: &Config, proxy: Option<&str>) -> anyhow::Result<reqwest::Client> {
    build_client(config, proxy, false)
}

fn build_client(config: &Config, proxy: Option<&str>, honor_no_proxy: bool) -> anyhow::Result<reqwest::Client> {
    let mut tls = super::tls::client_config(config.ca_bundle.as_deref())?;
    // What reqwest offers by itself when it builds its own TLS configuration.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .tcp_nodelay(true)
        .no_proxy();
    if config.upstream_h2c {
        b = b.http2_prior_knowledge();
    }
    if let Some(p) = proxy {
        let proxy = reqwest::Proxy::all(p).with_context(|| "invalid proxy URL (HTTPS_PROXY / ALL_PROXY / proxy)")?;
        let proxy = if honor_no_proxy { proxy.no_proxy(reqwest::NoProxy::from_env()) } else { proxy };
        b = b.proxy(proxy);
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
    /// issue 25: a client version to present instead of the configured one (the caller's newer official
    /// client, or the model's minimum; `upstream::identity::presented`).
    pub client_version: Option<crate::catalog::entry::ClientVersion>,
    /// issue 25: send over the Responses WebSocket (`[upstream] transport`, decided in `relay::exchange`).
    pub websocket: bool,
    /// The request belongs to a conversation (a non-empty key): its WebSocket connection is kept for the
    /// conversation's next turn (`session_id` names it).
    pub conversation: bool,
}

pub struct Upstream {
    http: reqwest::Client,
    direct: Option<Direct>,
    pub(super) codex_url: ParsedUrl,
    pub(super) openai_url: ParsedUrl,
    client: ClientIdentity,
    /// The configured User-Agent, built once.
    user_agent: Option<HeaderValue>,
    version: Option<HeaderValue>,
    /// The Responses WebSocket connections (`None` with `[upstream] transport = "sse"`).
    ws: Option<Arc<super::ws_pool::WsPool>>,
}

impl Upstream {
    /// `http`: the global reqwest client. Without a global proxy, Responses requests of accounts without their own
    /// proxy go through [`Direct`] instead.
    pub fn new(config: &Config, http: reqwest::Client) -> anyhow::Result<Upstream> {
        let direct = match config.proxy {
            None => Some(Direct::new(super::tls::client_config(config.ca_bundle.as_deref())?, config.upstream_h2c)),
            Some(_) => None,
        };
        let ws = match config.upstream_ws.transport {
            super::ws::Transport::Sse => None,
            super::ws::Transport::Auto | super::ws::Transport::Websocket => Some(super::ws_pool::WsPool::new(
                config.upstream_ws.clone(),
                &format!("{}/responses", config.upstream_base_url),
                super::tls::client_config(config.ca_bundle.as_deref())?,
            )),
        };
        Ok(Upstream {
            ws,
            http,
            direct,
            codex_url: ParsedUrl::new(format!("{}/responses", config.upstream_base_url)),
            openai_url: ParsedUrl::new(format!("{}/responses", config.openai_base_url)),
            user_agent: HeaderValue::from_str(&config.client.user_agent).ok(),
            version: HeaderValue::from_str(&config.client.version_text).ok(),
            client: config.client.clone(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POST the Responses body. Returns the response as soon as headers arrive; the body streams.
    ///
    /// The future owns what it needs (an `Arc` of this and of the account; the headers are built before it
    /// starts), so it can outlive the caller: a stream whose headers are late goes on waiting for them inside
    /// the response body once the client has its status line (`relay::reader`).
    pub fn send(
        self: &Arc<Self>,
        account: &Arc<Account>,
        authorization: HeaderValue,
        body: Bytes,
        ctx: &CallContext,
    ) -> impl Future<Output = Result<UpstreamResponse, TransportError>> + Send + 'static {
        let headers = self.headers(account, authorization, ctx);
        let (upstream, account) = (self.clone(), account.clone());
        // The WebSocket carries ChatGPT-account requests not behind a proxy (a proxied account stays on HTTP).
        let ws = match (ctx.websocket, &account.kind, &account.proxy, &self.ws) {
            (true, AccountKind::Chatgpt, None, Some(ws)) => {
                Some((ws.clone(), ctx.conversation.then(|| ctx.session_id.clone())))
            }
            _ => None,
        };
        async move {
            if let Some((ws, session)) = ws {
                // Boxed: the WebSocket send is ~2.7 KB, twice the HTTP one, and every request's future waiting for
                // its response headers would otherwise carry room for it (thousands at once, bench/notes.md).
                match Box::pin(ws.send(super::owner(&account), headers.clone(), &body, session.as_deref())).await {
                    super::ws_pool::Outcome::Answer(answer) => return answer,
                    super::ws_pool::Outcome::UseSse => {}
                }
            }
            upstream.post(&account, headers, body).await
        }
    }

    pub(super) fn headers(&self, account: &Account, authorization: HeaderValue, ctx: &CallContext) -> HeaderMap {
        // Sized for what follows (up to 12 fields): grown from empty, the map was reallocated and rehashed on the
        // way, per request.
        let mut headers = HeaderMap::with_capacity(12);
        let put = |h: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if account.kind == AccountKind::Chatgpt {
            // Read under the credentials' lock, without a copy of the id first.
            if let Some(v) = account
                .with_tokens(|t| HeaderValue::from_str(&t.account_id).ok().filter(|_| !t.account_id.is_empty()))
                .flatten()
            {
                headers.insert(HeaderName::from_static("chatgpt-account-id"), v);
            }
            headers.insert(HeaderName::from_static("originator"), HeaderValue::from_static(ORIGINATOR));
            match ctx.client_version {
                // Rare: a newer version for this request (one string each).
                Some(v) => {
                    let text = v.to_string();
                    put(&mut headers, "version", &text);
                    if let Ok(ua) = HeaderValue::from_str(&self.client.user_agent_for(&text)) {
                        headers.insert(USER_AGENT, ua);
                    }
                }
                None => {
                    if let Some(v) = &self.version {
                        headers.insert(HeaderName::from_static("version"), v.clone());
                    }
                    if let Some(ua) = &self.user_agent {
                        headers.insert(USER_AGENT, ua.clone());
                    }
                }
            }
            put(&mut headers, "session-id", &ctx.session_id);
            put(&mut headers, "thread-id", ctx.thread_id.as_deref().unwrap_or(&ctx.session_id));
            put(&mut headers, "x-client-request-id", &ctx.request_id);
            if let Some(ts) = &ctx.turn_state {
                put(&mut headers, "x-codex-turn-state", ts);
            }
        }
        headers
    }

    async fn post(
        &self,
        account: &Account,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, TransportError> {
        let url = match account.kind {
            AccountKind::Chatgpt => &self.codex_url,
            AccountKind::ApiKey | AccountKind::Relay => &self.openai_url,
            // Never leased (its status is `unrecognized`); refused rather than sent anywhere.
            AccountKind::Unrecognized => {
                return Err(TransportError::described(
                    super::transport::TransportKind::Other,
                    "the account's kind is unknown to this build",
                ));
            }
        };
        let relay_url;
        let url = match (&account.kind, &account.base_url) {
            (AccountKind::Relay | AccountKind::ApiKey, Some(base)) => {
                relay_url = ParsedUrl::new(format!("{base}/responses"));
                &relay_url
            }
            _ => url,
        };
        let Some((url, uri)) = &url.parsed else {
            return Err(TransportError::described(
                super::transport::TransportKind::Other,
                "the configured upstream URL is not a valid URL",
            ));
        };
        match (&self.direct, &account.proxy) {
            (Some(direct), None) => direct.post(uri.clone(), headers, body).await,
            // Boxed: reqwest's send (proxied accounts only) would size every request's future.
            _ => Box::pin(post_via_reqwest(account.http(), url.clone(), headers, body)).await,
        }
    }
}

/// An upstream URL parsed once, for each transport: reqwest would otherwise parse (and IDNA-map) the string on
/// every request.
pub(super) struct ParsedUrl {
    pub(super) parsed: Option<(reqwest::Url, Uri)>,
}

impl ParsedUrl {
    fn new(text: String) -> ParsedUrl {
        let url = reqwest::Url::parse(&text).ok();
        let parsed = url.and_then(|url| Some((url.clone(), Uri::try_from(url.as_str()).ok()?)));
        ParsedUrl { parsed }
    }
}
