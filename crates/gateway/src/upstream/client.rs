//! Sending a Responses request upstream with the credentials and headers the Codex backend expects.

use std::future::Future;
use std::sync::Arc;

use axum::http::Uri;
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};

use super::transport::{Direct, TransportError, UpstreamResponse, post_via_reqwest};
use crate::accounts::Account;
use crate::config::Config;
use crate::store::AccountKind;

use super::identity::{ACCEPTED_CODINGS, ASKS_COMPRESSED, ClientIdentity, ORIGINATOR, Turn, WebsocketTurn};
use dialects::failure::TransportFallback;

/// One reqwest client: pooled connections, HTTP/2 where offered, rustls with the gateway's roots
/// ([`super::tls::client_config`]), the configured proxy. It carries the OAuth calls, the usage and catalog
/// requests, and the Responses requests of accounts behind a proxy (the others go through
/// [`super::transport::Direct`]). An account's own proxy: `upstream_transport::reqwest_client` (accounts/pool.rs).
pub fn build_http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    upstream_transport::reqwest_client(config.ca_bundle.as_deref(), config.proxy.as_deref(), true, config.upstream_h2c)
}

/// Per-request details that shape the upstream headers.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    /// The conversation's thread (and session) id: `session-id`, `thread-id` and `x-client-request-id`, as the
    /// official client sends its thread id in all three.
    pub session_id: String,
    /// A `thread-id` the caller sent that differs from its session id.
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
    /// The turn's identity for a ChatGPT account (routing hint, window, turn metadata, `client_metadata`;
    /// `upstream::identity::turn`). `None`: a request outside a turn, sent with the basic headers only.
    pub turn: Option<Arc<Turn>>,
    /// The request's digests, for chaining it on the conversation's upstream WebSocket (issue 61; only for a
    /// request that goes over the WebSocket).
    pub chain: Option<Arc<upstream_transport::chain::ChainRequest>>,
    /// A warm-up (`generate: false`): sent over the WebSocket only, answered by the gateway otherwise
    /// ([`super::warmup`]). `Some` with the model it names.
    pub warm_up: Option<String>,
    /// Bytes at the end of the serialized body that the official client writes after `client_metadata`
    /// (`access_programs`, `request_country`; `identity::official_order`), which `client_metadata` goes before.
    pub tail: usize,
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
        // The WebSocket carries ChatGPT-account requests not behind a proxy (a proxied account stays on HTTP).
        let ws = match (ctx.websocket, &account.kind, &account.proxy, &self.ws) {
            (true, AccountKind::Chatgpt, None, Some(ws)) => {
                let headers = self.headers(account, authorization.clone(), ctx, Transport::Websocket);
                let session = ctx.conversation.then(|| ctx.session_id.clone());
                let now_ms = crate::auth::now_ms();
                Some((ws.clone(), headers, session, ctx.chain.clone(), ctx.turn_state.clone(), now_ms))
            }
            _ => None,
        };
        let headers = self.headers(account, authorization, ctx, Transport::Http);
        let (tail, turn) = (ctx.tail, ctx.turn.clone());
        let (upstream, account) = (self.clone(), account.clone());
        let warm_up = ctx.warm_up.clone();
        async move {
            if let Some((ws, ws_headers, session, chain, turn_state, now_ms)) = ws {
                // A warm-up on a conversation whose upstream connection is already open and warm is answered here:
                // relayed, it would reset the connection's chain (`WsPool::holds_conversation`).
                if let (Some(model), Some(session)) = (&warm_up, session.as_deref())
                    && ws.holds_conversation(&account.id, session)
                {
                    return Ok(super::warmup::answered_here(model));
                }
                // Boxed: the WebSocket send is ~2.7 KB, twice the HTTP one, and every request's future waiting for
                // its response headers would otherwise carry room for it (thousands at once, docs/performance.md, "Small waiting requests").
                // The body with its `client_metadata` is written per attempt, not held beside `body` while the
                // answer is awaited.
                let lite = turn.as_deref().is_some_and(|t| t.lite);
                let ws_body = || {
                    let websocket = WebsocketTurn { turn_state: turn_state.as_deref(), now_ms, lite };
                    with_client_metadata(&body, tail, turn.as_deref(), &account, Some(websocket))
                };
                let sending = ws.send(super::owner(&account), ws_headers, &ws_body, session.as_deref(), chain);
                match Box::pin(sending).await {
                    super::ws_pool::Outcome::Answer(answer) => return answer,
                    super::ws_pool::Outcome::UseSse => {}
                    super::ws_pool::Outcome::Refused { status, headers, body } => {
                        // One classifier decides whether the WebSocket's refusal stands or the request goes over
                        // HTTP instead (a message over the connection's size, as the official client falls back).
                        let failure = super::classify(status, &headers, &body, crate::auth::now_unix());
                        match failure.transport_fallback() {
                            TransportFallback::Http => {}
                            TransportFallback::None => {
                                let body: super::BodyStream =
                                    Box::pin(super::Plain::new(futures_util::stream::once(async move { Ok(body) })));
                                return Ok(UpstreamResponse { status, headers, body });
                            }
                        }
                    }
                }
            }
            // The official client warms up over the WebSocket only: over HTTP the warm-up is answered here.
            if let Some(model) = warm_up {
                return Ok(super::warmup::answered_here(&model));
            }
            // Written only now: while the WebSocket's answer is awaited, a large body is held once fewer.
            let body = with_client_metadata(&body, tail, turn.as_deref(), &account, None);
            upstream.post(&account, headers, body).await
        }
    }

    /// The request headers, in the official client's order for the transport (codex-rs `core/src/client.rs`;
    /// docs/protocol.md "Identity"). A ChatGPT account gets the official client's identity; an API key or relay
    /// account only what its API needs.
    pub(super) fn headers(
        &self,
        account: &Account,
        authorization: HeaderValue,
        ctx: &CallContext,
        transport: Transport,
    ) -> HeaderMap {
        // Sized for what follows (up to 18 fields): grown from empty, the map was reallocated and rehashed on the
        // way, per request.
        let mut h = HeaderMap::with_capacity(18);
        if account.kind != AccountKind::Chatgpt {
            h.insert(AUTHORIZATION, authorization);
            h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return h;
        }
        let put = |h: &mut HeaderMap, name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        // Read under the credentials' lock, without a copy of the id first.
        let account_id = account
            .with_tokens(|t| HeaderValue::from_str(&t.account_id).ok().filter(|_| !t.account_id.is_empty()))
            .flatten();
        let turn = ctx.turn.as_deref();
        let caller = turn.and_then(|t| t.caller.as_deref());
        let originator = caller.and_then(|c| c.originator.clone()).unwrap_or(HeaderValue::from_static(ORIGINATOR));
        let (version, user_agent) = self.presented(ctx, caller.and_then(|c| c.user_agent.as_ref()));
        let thread = ctx.thread_id.as_deref().unwrap_or(&ctx.session_id);
        let installation = account.installation_id.as_deref().unwrap_or_default();
        // Both transports start with these.
        if let Some(v) = version {
            h.insert(HeaderName::from_static("version"), v);
        }
        if let Some(t) = turn {
            h.insert(HeaderName::from_static("x-codex-beta-features"), t.beta_features());
        }
        match transport {
            Transport::Http => {
                turn_headers(&mut h, turn, installation, true);
                put(&mut h, "x-client-request-id", thread);
                put(&mut h, "session-id", &ctx.session_id);
                put(&mut h, "thread-id", thread);
                if let Some(ts) = &ctx.turn_state {
                    put(&mut h, "x-codex-turn-state", ts);
                }
                h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(AUTHORIZATION, authorization);
                if let Some(id) = account_id {
                    h.insert(HeaderName::from_static("chatgpt-account-id"), id);
                }
                h.insert(HeaderName::from_static("originator"), originator);
                if let Some(ua) = user_agent {
                    h.insert(USER_AGENT, ua);
                }
                // Since 0.171 the official client asks for a compressed event stream; the answer is decoded as it
                // streams ([`super::transport::decode`]).
                if ctx.client_version.unwrap_or(self.client.version) >= ASKS_COMPRESSED {
                    h.insert(ACCEPT_ENCODING, HeaderValue::from_static(ACCEPTED_CODINGS));
                }
            }
            // The official client's handshake goes through tungstenite's writer too, which takes the five
            // handshake fields (Host, Connection, ...) out of the map by swapping the map's last fields into their
            // places: the last five go out first, in reverse. Built in this order, the wire order is the official
            // one (chatgpt-account-id, authorization, user-agent, originator, openai-beta, version, ...).
            Transport::Websocket => {
                put(&mut h, "x-client-request-id", thread);
                put(&mut h, "session-id", &ctx.session_id);
                put(&mut h, "thread-id", thread);
                turn_headers(&mut h, turn, installation, false);
                h.insert(HeaderName::from_static("openai-beta"), HeaderValue::from_static(super::ws::BETA));
                h.insert(HeaderName::from_static("originator"), originator);
                if let Some(ua) = user_agent {
                    h.insert(USER_AGENT, ua);
                }
                h.insert(AUTHORIZATION, authorization);
                if let Some(id) = account_id {
                    h.insert(HeaderName::from_static("chatgpt-account-id"), id);
                }
            }
        }
        h
    }

    /// The `version` and `User-Agent` presented: an official caller's own User-Agent (with the presented version
    /// in it, when that is newer), else the configured ones.
    fn presented(
        &self,
        ctx: &CallContext,
        caller_ua: Option<&HeaderValue>,
    ) -> (Option<HeaderValue>, Option<HeaderValue>) {
        match (ctx.client_version, caller_ua) {
            (Some(v), ua) => {
                let text = v.to_string();
                let ua = match ua.and_then(|ua| ua.to_str().ok()) {
                    Some(caller) => super::identity::with_version(caller, &text),
                    None => self.client.user_agent_for(&text),
                };
                (HeaderValue::from_str(&text).ok(), HeaderValue::from_str(&ua).ok())
            }
            (None, Some(ua)) => (self.version.clone(), Some(ua.clone())),
            (None, None) => (self.version.clone(), self.user_agent.clone()),
        }
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
        let (headers, body) = match account.kind {
            AccountKind::Chatgpt => super::compress::zstd_body(headers, body),
            AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => (headers, body),
        };
        let response = match (&self.direct, &account.proxy) {
            (Some(direct), None) => direct.post(uri.clone(), headers, body).await,
            // Boxed: reqwest's send (proxied accounts only) would size every request's future.
            _ => Box::pin(post_via_reqwest(account.http(), url.clone(), headers, body)).await,
        };
        response.map(super::transport::decode::decoded)
    }
}

/// A turn's own headers (the window, the turn metadata, the routing hint, and a sub-agent's), where the transport's
/// order puts them ([`Upstream::headers`]); with `lite_header`, a Responses Lite turn's header too (HTTP only: the
/// official client puts none on the WebSocket's handshake, its `response.create` says so in `client_metadata`).
fn turn_headers(h: &mut HeaderMap, turn: Option<&Turn>, installation: &str, lite_header: bool) {
    let Some(t) = turn else { return };
    if let Some(w) = &t.window_id {
        h.insert(HeaderName::from_static("x-codex-window-id"), w.clone());
    }
    if let Some(m) = t.metadata_header(installation) {
        h.insert(HeaderName::from_static("x-codex-turn-metadata"), m);
    }
    if t.lite && lite_header {
        h.insert(HeaderName::from_static(super::identity::lite::HEADER), HeaderValue::from_static("true"));
    }
    if let Some(r) = &t.routing_hint {
        h.insert(HeaderName::from_static("x-codex-routing-hint"), r.clone());
    }
    if let Some(c) = t.caller.as_deref() {
        if let Some(v) = &c.subagent {
            h.insert(HeaderName::from_static("x-openai-subagent"), v.clone());
        }
        if let Some(v) = &c.parent_thread_id {
            h.insert(HeaderName::from_static("x-codex-parent-thread-id"), v.clone());
        }
    }
}

/// Which transport a request's headers are for: their order and a few of them differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Http,
    Websocket,
}

/// The serialized body with the turn's `client_metadata` for the serving account as its last member (the body was
/// serialized without one, before the account was known). Without a turn identity, the body as it is.
fn with_client_metadata(
    body: &Bytes,
    tail: usize,
    turn: Option<&Turn>,
    account: &Account,
    websocket: Option<WebsocketTurn<'_>>,
) -> Bytes {
    let (Some(turn), Some(installation)) = (turn, account.installation_id.as_deref()) else {
        return body.clone();
    };
    let Some(open) = body.strip_suffix(b"}") else { return body.clone() };
    // The members the official client writes after `client_metadata` (each `,"name":value`) stay after it.
    let (open, after) = match open.len().checked_sub(tail) {
        Some(at) if tail > 0 && at > 1 => open.split_at(at),
        Some(_) | None => (open, &b""[..]),
    };
    let mut out = Vec::with_capacity(body.len() + turn.client_metadata_len(installation) + 20);
    out.extend_from_slice(open);
    if open.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(br#""client_metadata":"#);
    turn.write_client_metadata(&mut out, installation, websocket);
    out.extend_from_slice(after);
    out.push(b'}');
    Bytes::from(out)
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
