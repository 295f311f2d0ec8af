//! The upstream Responses WebSocket connections: one per conversation (the conversation key the gateway already
//! derives for affinity, sent as `session-id`), reused across its turns while it lives, a bounded number per
//! account, idle ones closed. A request over the WebSocket gives the same [`UpstreamResponse`] as the HTTP
//! transports: a refusal (a wrapped error frame before any event, or a refused handshake) as the status and
//! JSON body the HTTP endpoint would have answered, a stream as status 200 whose body hands over the events the HTTP
//! endpoint would have sent, each frame's JSON as one piece (`Body::pieces_are_events`: no SSE text is made for the
//! reader to parse again), so the relay (failover before the first byte, keepalives, idle timeout, the request
//! record) treats the transports alike. A dropped body drops the connection, which
//! cancels the upstream response as closing an HTTP stream does.
//!
//! Between turns: a connection the backend closed, or that reached its time limit, is replaced and the request
//! sent again on a new one, before anything was read. A handshake refused with 426 means "use HTTP SSE" (as
//! the official client does): the request goes over HTTP, and the account's requests keep doing so for a while.
//! A WebSocket that fails where the upstream was reached (a switch that fails, connections that close before
//! answering, attempt after attempt) sends the request over HTTP too, and the conversation's next ones for a while.
//!
//! The size of a message: the backend's handshake answer may say the largest message the connection takes
//! (`x-codex-websocket-max-message-bytes`, Codex CLI 0.171). A message over it is not sent: the pool answers the
//! backend's own refusal for it (`websocket_message_too_large`), which the gateway's classifier turns into the
//! official client's fallback (the whole request over HTTP), and the conversation's later requests go over HTTP
//! for a while, as the official client's session does once it fell back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use yawc::{Frame as WsFrame, OpCode, Options, Role, WebSocket, WebSocketError as WsError};

use crate::chain::{ChainRequest, Lineage, Turn};
use crate::ws::{self, Frame, WsSettings};
use crate::ws_handshake::{Handshake, Prefixed, handshake};
use crate::{BodyStream, Plain, TransportError, TransportKind, UpstreamResponse};

/// How long a refused handshake (426) keeps an account's requests on HTTP SSE before the WebSocket is tried
/// again; also how long a conversation whose message was too large for its connection stays on HTTP.
const REFUSAL_MEMORY: Duration = Duration::from_secs(15 * 60);
/// The handshake answer's header with the largest message the connection takes.
pub const MAX_MESSAGE_HEADER: &str = "x-codex-websocket-max-message-bytes";
/// The backend's error code for a message over that size.
const TOO_LARGE: &str = "websocket_message_too_large";
/// Attempts at one request when connections turn out closed or past their time limit before answering.
const ATTEMPTS: usize = 3;

/// The largest message read: tungstenite's default, which the pool had before (a `response.completed` repeats
/// the whole output).
const MAX_MESSAGE: usize = 64 << 20;
/// The socket buffers' starting size (the crate's default is 8 KB each): a paced stream's messages are a few hundred
/// bytes, and a larger one grows its buffer as before. 14 KB less a stream on the default path, no CPU cost paired
/// (docs/performance.md, "Small WebSocket buffers").
const SOCKET_BUFFER: usize = 1024;

/// Why a request went over HTTP after its WebSocket failed where the upstream was reached ([`WsPool::fall_back`]).
#[derive(Clone, Copy)]
enum Fallback {
    /// The switch failed or was not one (a proxy or middlebox that breaks upgrades).
    Switch = 0,
    /// Connection after connection closed before answering.
    Closing = 1,
}

/// Fallbacks to HTTP since start, by [`Fallback`] (relaxed: a statistic).
static FALLBACKS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Requests that went over HTTP because the upstream WebSocket failed where the upstream was reached, since start,
/// by why: `switch` (the handshake), `closing` (connections that closed before answering). The
/// `upstream_websocket_fallbacks` metric and `/admin/status`.
pub fn fallbacks() -> [(&'static str, u64); 2] {
    let count = |why: Fallback| FALLBACKS[why as usize].load(Ordering::Relaxed);
    [("switch", count(Fallback::Switch)), ("closing", count(Fallback::Closing))]
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocket<Prefixed<Box<dyn Io>>>;

/// Who a request is sent for: the owner of the connections it may use (the gateway's account), by its id, and
/// where the `codex.rate_limits` frames of its answer go (the gateway updates the account's quota with them, as
/// an HTTP answer's headers do).
pub trait Owner: Send + Sync {
    /// Connections are kept and counted per owner id.
    fn id(&self) -> &str;
    /// A `codex.rate_limits` frame mid-answer, as the `x-codex-*` headers an HTTP answer would carry.
    fn rate_limits(&self, headers: &HeaderMap);
}

/// What the WebSocket made of a request.
pub enum Outcome {
    /// The answer (or the failure to get one), as from an HTTP transport.
    Answer(Result<UpstreamResponse, TransportError>),
    /// Send it over HTTP SSE instead: the backend refused the handshake (now or recently), its WebSocket failed
    /// for the conversation (now or recently), or the account has all the connections it may have.
    UseSse,
    /// The backend's refusal before any event (a wrapped error frame, or a message over the connection's size
    /// that was not sent): the status and JSON body the HTTP endpoint would have answered, for the gateway to
    /// classify (it may send the request over HTTP instead, `dialects::failure::UpstreamFailure::
    /// transport_fallback`).
    Refused { status: StatusCode, headers: HeaderMap, body: Bytes },
}

/// Which connections a request may reuse: the account's, for the same conversation (`session` empty: any of
/// the account's connections without a conversation).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    account: String,
    session: String,
}

/// One open connection, counted against its account while it exists.
struct Conn {
    /// Boxed: the stream's state is a few hundred bytes, and a `Conn` moves through several enums.
    socket: Box<Socket>,
    _slot: Slot,
    /// What the backend holds for the conversation on this connection after its last completed turn
    /// (`chain.rs`); `None` on a new connection or after a turn that did not complete.
    lineage: Option<Lineage>,
    /// The largest message the connection takes, as its handshake answer said (`None`: no limit stated).
    max_message: Option<usize>,
}

/// An account's count of open connections, released when the connection goes.
struct Slot {
    pool: Weak<WsPool>,
    account: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut open = pool.open.lock();
            if let Some(n) = open.get_mut(&self.account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.account);
                }
            }
        }
    }
}

pub struct WsPool {
    settings: WsSettings,
    /// The WebSocket URL of the Codex Responses endpoint (`wss://`, or `ws://` for a plain-HTTP upstream).
    url: Option<Uri>,
    tls: tokio_rustls::TlsConnector,
    idle: Mutex<HashMap<Key, Vec<(Conn, Instant)>>>,
    open: Mutex<HashMap<String, usize>>,
    /// Accounts whose handshake was refused with 426, until when.
    refused: Mutex<HashMap<String, Instant>>,
    /// Conversations kept on HTTP, until when: their message was too large for their connection, or the
    /// WebSocket failed where the upstream was reached.
    on_http: Mutex<HashMap<Key, Instant>>,
    sweeping: AtomicBool,
    me: Weak<WsPool>,
}

impl WsPool {
    /// `codex_url`: the HTTP URL of the Codex Responses endpoint.
    pub fn new(settings: WsSettings, codex_url: &str, mut tls: rustls::ClientConfig) -> Arc<WsPool> {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let url = codex_url
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| codex_url.strip_prefix("http://").map(|rest| format!("ws://{rest}")))
            .and_then(|text| Uri::try_from(text).ok());
        Arc::new_cyclic(|me| WsPool {
            settings,
            url,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            idle: Mutex::default(),
            open: Mutex::default(),
            refused: Mutex::default(),
            on_http: Mutex::default(),
            sweeping: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Send a serialized Responses body over the owner's connection for this conversation. `headers`: the
    /// HTTP request's headers (credentials, identity, session), used for a new connection's handshake. `body`
    /// writes the body for each attempt: the message made from it is dropped once sent, so a large request is
    /// not held once more while its answer is awaited (docs/performance.md, "Small waiting requests").
    ///
    /// With `chain` (how the request chains, handed in), a turn that continues what the connection's last
    /// completed turn left goes with the body the chain gives for it (the official client's: `previous_response_id`
    /// and only the new input items; `chain.rs`). A backend that does not hold that response
    /// (`previous_response_not_found`) gets the whole request on a new connection, as the official client then
    /// sends it, before anything reached the client.
    pub async fn send(
        &self,
        owner: Arc<dyn Owner>,
        mut headers: HeaderMap,
        body: &(dyn Fn() -> Bytes + Sync),
        session: Option<&str>,
        chain: Option<Arc<ChainRequest>>,
    ) -> Outcome {
        if recently(&self.refused, owner.id()) {
            return Outcome::UseSse;
        }
        headers.remove(header::ACCEPT);
        headers.remove(header::CONTENT_TYPE);
        headers.insert("openai-beta", HeaderValue::from_static(ws::BETA));
        let key = Key { account: owner.id().to_string(), session: session.unwrap_or_default().to_string() };
        if recently(&self.on_http, &key) {
            return Outcome::UseSse;
        }
        let mut last = None;
        // After the backend refused a chain: a new connection, the whole request.
        let mut fresh = false;
        for _ in 0..ATTEMPTS {
            let idle = if fresh { None } else { self.take_idle(&key) };
            let (mut conn, handshake) = match idle {
                Some(conn) => (conn, HeaderMap::new()),
                None => match self.connect(owner.id(), &headers).await {
                    Connected::Open(conn, handshake) => (conn, handshake),
                    Connected::Full => return Outcome::UseSse,
                    Connected::Refused => {
                        self.remember(&self.refused, owner.id().to_string());
                        return Outcome::UseSse;
                    }
                    Connected::Failed(e) => return self.fall_back(key, Fallback::Switch, e),
                    Connected::Answer(answer) => return Outcome::Answer(answer),
                },
            };
            let previous = conn.lineage.take().filter(|_| !fresh);
            let whole = body();
            let mut turn = chain.as_ref().map(|c| c.turn(&whole, previous));
            let chains = turn.as_ref().is_some_and(|t| t.chains());
            let message = match turn.as_mut().and_then(|t| t.take_body()) {
                Some(chained) => ws::create_message(&chained),
                None => ws::create_message(&whole),
            };
            drop(whole);
            // Over the size the connection takes: not sent (the official client checks before it sends).
            if let Some(max) = conn.max_message.filter(|max| message.len() > *max) {
                self.remember(&self.on_http, key);
                let (status, headers, body) = too_large(message.len(), max);
                return Outcome::Refused { status, headers, body };
            }
            match self.first(conn, message, handshake).await {
                First::Stream(conn, headers, first, end) => {
                    let mut tracker = turn;
                    if let (Some(t), Frame::Event { kind, .. }) = (&mut tracker, ws::classify(first.as_str())) {
                        t.see(kind, first.as_str());
                    }
                    // An answer that ended with its first event leaves the connection free at once (or closes it,
                    // after an error); nothing more is read for it.
                    let conn = match end {
                        End::Open => Some(conn),
                        End::Done => {
                            let mut conn = conn;
                            conn.lineage = tracker.take().and_then(Turn::finish);
                            self.put_idle(key.clone(), conn);
                            None
                        }
                        End::Failed => None,
                    };
                    let body = self.body(conn, first, key, owner.clone(), tracker);
                    return Outcome::Answer(Ok(UpstreamResponse { status: StatusCode::OK, headers, body }));
                }
                // The backend does not hold the response the turn chained from: the whole request, on a new
                // connection (the official client's recovery; the client sees nothing of it).
                First::Refused { body: refusal, .. } if chains && previous_not_found(&refusal) => {
                    fresh = true;
                    last = Some(TransportError::described(TransportKind::Reset, "previous_response_not_found"));
                }
                First::Refused { status, headers, body } => {
                    if memchr::memmem::find(&body, TOO_LARGE.as_bytes()).is_some() {
                        self.remember(&self.on_http, key);
                    }
                    return Outcome::Refused { status, headers, body };
                }
                // Closed by the backend, or past its time: a new connection takes the request.
                First::Gone(e) => last = Some(e),
                First::Failed(e) => return Outcome::Answer(Err(e)),
            }
        }
        let last = last
            .unwrap_or_else(|| TransportError::described(TransportKind::Reset, "the upstream WebSocket kept closing"));
        self.fall_back(key, Fallback::Closing, last)
    }

    /// The WebSocket failed where the upstream was reached (its switch, or connections that closed before
    /// answering, attempt after attempt): the request goes over HTTP, and so do the conversation's next ones for
    /// a while, as the official client falls back from WebSockets to HTTPS for the rest of its session once they
    /// fail (codex-rs `core/src/client.rs`, `try_switch_fallback_transport`). A connection that could not be made
    /// at all (refused, TLS, its deadline) is not this: HTTP goes to the same host, and the failure is the
    /// exchange's to decide.
    fn fall_back(&self, key: Key, why: Fallback, failure: TransportError) -> Outcome {
        FALLBACKS[why as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            account = %key.account,
            "the upstream WebSocket failed ({failure}); the conversation goes over HTTP for the next {} minutes",
            REFUSAL_MEMORY.as_secs() / 60
        );
        self.remember(&self.on_http, key);
        Outcome::UseSse
    }

    /// Whether an idle connection of this account holds the conversation's last completed turn (one its next
    /// turn can chain on). The gateway keeps such a connection after its client's own connection closed, so a
    /// client that opens every process with a warm-up (the official CLI, one process per `exec` turn) has that
    /// warm-up answered by the gateway, not relayed: relayed, it would take the connection's place in the chain
    /// and the turn after it would go whole (bench/notes.md, "2026-11-27 — A long session after the per-message
    /// compression").
    pub fn holds_conversation(&self, account: &str, session: &str) -> bool {
        let key = Key { account: account.to_string(), session: session.to_string() };
        let now = Instant::now();
        self.idle.lock().get(&key).is_some_and(|conns| {
            conns
                .iter()
                .any(|(conn, since)| conn.lineage.is_some() && now.duration_since(*since) < self.settings.idle_timeout)
        })
    }

    fn take_idle(&self, key: &Key) -> Option<Conn> {
        let mut idle = self.idle.lock();
        let conns = idle.get_mut(key)?;
        let now = Instant::now();
        let mut found = None;
        while let Some((conn, since)) = conns.pop() {
            if now.duration_since(since) < self.settings.idle_timeout {
                found = Some(conn);
                break;
            }
        }
        if conns.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Keep a connection whose answer ended cleanly for the conversation's next turn.
    fn put_idle(&self, key: Key, conn: Conn) {
        self.idle.lock().entry(key).or_default().push((conn, Instant::now()));
        self.start_sweeping();
    }

    /// Send an account's (`refused`) or a conversation's (`on_http`) requests over HTTP for [`REFUSAL_MEMORY`].
    fn remember<K: std::hash::Hash + Eq>(&self, memory: &Mutex<HashMap<K, Instant>>, key: K) {
        memory.lock().insert(key, Instant::now() + REFUSAL_MEMORY);
        self.start_sweeping();
    }

    /// The sweeper, once: idle connections and past memories go (a conversation that never comes back would
    /// otherwise be remembered for the process's life).
    fn start_sweeping(&self) {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            let me = self.me.clone();
            let period = (self.settings.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(pool) = me.upgrade() else { return };
                    pool.sweep();
                }
            });
        }
    }

    /// Close the connections idle for longer than the idle timeout; forget the memories that have passed.
    fn sweep(&self) {
        let now = Instant::now();
        self.refused.lock().retain(|_, until| *until > now);
        self.on_http.lock().retain(|_, until| *until > now);
        let limit = self.settings.idle_timeout;
        // Dropped outside the lock: each releases its account's slot.
        let mut closed = Vec::new();
        {
            let mut idle = self.idle.lock();
            idle.retain(|_, conns| {
                let (keep, old): (Vec<_>, Vec<_>) =
                    std::mem::take(conns).into_iter().partition(|(_, since)| now.duration_since(*since) < limit);
                closed.extend(old);
                *conns = keep;
                !conns.is_empty()
            });
        }
        drop(closed);
    }

    /// Claim a slot for the account (closing one of its idle connections when at the limit) and open a
    /// connection.
    async fn connect(&self, account: &str, headers: &HeaderMap) -> Connected {
        if !self.claim(account) {
            return Connected::Full;
        }
        let slot = Slot { pool: self.me.clone(), account: account.to_string() };
        let Some(uri) = &self.url else {
            return Connected::Answer(Err(TransportError::described(
                TransportKind::Other,
                "the configured upstream URL is not a valid URL",
            )));
        };
        let opening = async {
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let tls = uri.scheme_str() == Some("wss");
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(TransportError::of)?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match tls {
                true => Box::new(crate::tls::connect(&self.tls, uri, tcp).await?),
                false => Box::new(tcp),
            };
            Ok::<_, TransportError>(io)
        };
        let io = match crate::tls::within_connect_timeout(opening).await {
            Ok(io) => io,
            Err(e) => return Connected::Answer(Err(e)),
        };
        match handshake(io, uri, headers).await {
            Ok(Handshake::Open { io, headers, extensions }) => {
                let max_message = headers
                    .get(MAX_MESSAGE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|max| *max > 0);
                let options = Options::default()
                    .with_compression_level(yawc::CompressionLevel::default())
                    .with_deflate_pool(ws::deflate_pool())
                    .with_max_payload_read(MAX_MESSAGE)
                    .with_max_read_buffer(MAX_MESSAGE)
                    .with_read_buffer_capacity(SOCKET_BUFFER)
                    .with_write_buffer_capacity(SOCKET_BUFFER);
                let extensions = extensions.as_deref().map(ws::own_compression);
                match WebSocket::from_stream_with_extensions(io, Role::Client, extensions.as_deref(), options) {
                    Ok(socket) => Connected::Open(
                        Conn { socket: Box::new(socket), _slot: slot, lineage: None, max_message },
                        headers,
                    ),
                    Err(e) => Connected::Failed(ws_failure(e)),
                }
            }
            Ok(Handshake::Refused { status, .. }) if no_websocket_here(status) => Connected::Refused,
            // Refused for the account or the moment (401, 403, 429, 5xx): the answer the HTTP endpoint gives, for
            // the same decisions, and no second request to an account that was just told no.
            Ok(Handshake::Refused { status, headers, body }) => {
                let body: BodyStream = Box::pin(Plain::new(futures_util::stream::once(async move { Ok(body) })));
                Connected::Answer(Ok(UpstreamResponse { status, headers, body }))
            }
            Err(e) => Connected::Failed(e),
        }
    }

    /// Count a connection for the account unless it has all it may have; at the limit one of its idle
    /// connections is closed to make room.
    fn claim(&self, account: &str) -> bool {
        let max = self.settings.max_per_account;
        if self.open.lock().get(account).copied().unwrap_or(0) >= max {
            let evicted = {
                let mut idle = self.idle.lock();
                let key = idle.keys().find(|k| k.account == account).cloned();
                key.and_then(|k| {
                    let conns = idle.get_mut(&k)?;
                    let conn = conns.pop();
                    if conns.is_empty() {
                        idle.remove(&k);
                    }
                    conn
                })
            };
            // Released here, outside the idle lock.
            drop(evicted);
        }
        let mut open = self.open.lock();
        let n = open.entry(account.to_string()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Send the message and read until its first event: the `codex.rate_limits` frames before it become the
    /// answer's headers, a wrapped error its refusal.
    async fn first(&self, mut conn: Conn, message: Bytes, mut headers: HeaderMap) -> First {
        if std::str::from_utf8(&message).is_err() {
            return First::Failed(TransportError::described(TransportKind::Other, "the body is not UTF-8"));
        }
        if let Err(e) = conn.socket.send(WsFrame::text(message)).await {
            return First::Gone(ws_failure(e));
        }
        loop {
            let frame = match received(conn.socket.next_frame().await) {
                Received::Text(t) => t,
                Received::Control => continue,
                Received::Binary => return First::Failed(binary()),
                Received::Closed => {
                    return First::Gone(TransportError::described(
                        TransportKind::Reset,
                        "the upstream WebSocket was closed",
                    ));
                }
                Received::Failed(e) => return First::Gone(e),
            };
            let text = frame.as_str();
            match ws::classify(text) {
                Frame::RateLimits(limits) | Frame::Metadata(limits) => headers.extend(limits),
                // The previous turn's timing, read before this turn's first event.
                Frame::Private => continue,
                Frame::Refused { status, headers: mut h, body } => {
                    // Limits a rate_limits frame reported stay with the answer unless the refusal says otherwise.
                    for (name, value) in &headers {
                        if !h.contains_key(name) {
                            h.insert(name.clone(), value.clone());
                        }
                    }
                    return First::Refused { status, headers: h, body };
                }
                Frame::LimitReached => {
                    return First::Gone(TransportError::described(
                        TransportKind::Reset,
                        "the upstream WebSocket reached its time limit",
                    ));
                }
                Frame::Event { kind, terminal } => {
                    let end = match (terminal, kind) {
                        (false, _) => End::Open,
                        (true, "error") => End::Failed,
                        (true, _) => End::Done,
                    };
                    return First::Stream(conn, headers, frame.clone(), end);
                }
            }
        }
    }

    /// The answer's body: each event frame's JSON as one piece, until the response's terminal event (then the
    /// connection waits for the conversation's next turn) or the end of the connection.
    fn body(
        &self,
        conn: Option<Conn>,
        first: Utf8Bytes,
        key: Key,
        owner: Arc<dyn Owner>,
        tracker: Option<Box<dyn Turn>>,
    ) -> BodyStream {
        struct State {
            conn: Option<Conn>,
            first: Option<Utf8Bytes>,
            key: Key,
            owner: Arc<dyn Owner>,
            pool: Weak<WsPool>,
            tracker: Option<Box<dyn Turn>>,
        }
        let state = State { conn, first: Some(first), key, owner, pool: self.me.clone(), tracker };
        Box::pin(Plain::events(futures_util::stream::unfold(state, |mut s| async move {
            if let Some(first) = s.first.take() {
                return Some((Ok(Bytes::from(first)), s));
            }
            loop {
                let conn = s.conn.as_mut()?;
                let frame = match received(conn.socket.next_frame().await) {
                    Received::Text(t) => t,
                    Received::Control => continue,
                    Received::Binary => {
                        s.conn = None;
                        return Some((Err(binary()), s));
                    }
                    // Ended without a terminal event: the reader reports the cut stream, as for SSE.
                    Received::Closed => return None,
                    Received::Failed(e) => {
                        s.conn = None;
                        return Some((Err(e), s));
                    }
                };
                let text = frame.as_str();
                let (kind, terminal) = match ws::classify(text) {
                    Frame::Event { kind, terminal } => (kind, terminal),
                    // Mid-stream limits: the account's quota, as an HTTP answer's headers update it.
                    Frame::RateLimits(limits) => {
                        s.owner.rate_limits(&limits);
                        continue;
                    }
                    // Headers that come after the answer's head have nowhere to go; the backend's own frames are
                    // not events (issue 59).
                    Frame::Metadata(_) | Frame::Private => continue,
                    // After events a refusal is an in-stream error, as the SSE endpoint sends it.
                    Frame::Refused { .. } | Frame::LimitReached => ("error", true),
                };
                if let Some(t) = &mut s.tracker {
                    t.see(kind, text);
                }
                let clean = kind != "error";
                if terminal {
                    let conn = s.conn.take();
                    if clean && let (Some(mut conn), Some(pool)) = (conn, s.pool.upgrade()) {
                        conn.lineage = s.tracker.take().and_then(Turn::finish);
                        pool.put_idle(s.key.clone(), conn);
                    }
                }
                return Some((Ok(Bytes::from(frame)), s));
            }
        })))
    }
}

/// Whether `key` is remembered in `memory` until a time still ahead (a memory past its time is forgotten here).
fn recently<K: std::borrow::Borrow<Q> + std::hash::Hash + Eq, Q: std::hash::Hash + Eq + ?Sized>(
    memory: &Mutex<HashMap<K, Instant>>,
    key: &Q,
) -> bool {
    let mut memory = memory.lock();
    match memory.get(key) {
        Some(until) if *until > Instant::now() => true,
        Some(_) => {
            memory.remove(key);
            false
        }
        None => false,
    }
}

enum Connected {
    Open(Conn, HeaderMap),
    Full,
    Refused,
    /// The upstream was reached, but its WebSocket could not be opened (the switch failed or was not one).
    Failed(TransportError),
    Answer(Result<UpstreamResponse, TransportError>),
}

enum First {
    /// The first event's JSON, and whether it ended the response.
    Stream(Conn, HeaderMap, Utf8Bytes, End),
    Refused {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// The connection is closed or past its time, before the request was answered.
    Gone(TransportError),
    Failed(TransportError),
}

/// What one read of the connection gave.
enum Received {
    /// Checked UTF-8 once, here (yawc is not asked to: the text would be checked twice).
    Text(Utf8Bytes),
    /// A ping, pong or continuation yawc has handled (pings are answered by it).
    Control,
    Binary,
    /// A close frame, or the end of the connection.
    Closed,
    Failed(TransportError),
}

fn received(frame: Result<WsFrame, WsError>) -> Received {
    match frame {
        Ok(f) => match f.opcode() {
            OpCode::Text => match Utf8Bytes::try_from(f.into_payload()) {
                Ok(text) => Received::Text(text),
                Err(_) => Received::Failed(TransportError::described(
                    TransportKind::Other,
                    "the upstream WebSocket sent a text frame that is not UTF-8",
                )),
            },
            OpCode::Binary => Received::Binary,
            OpCode::Close => Received::Closed,
            OpCode::Ping | OpCode::Pong | OpCode::Continuation => Received::Control,
        },
        Err(e) => match e {
            WsError::ConnectionClosed => Received::Closed,
            e => Received::Failed(ws_failure(e)),
        },
    }
}

/// A WebSocket error as a transport failure: a connection dropped without its closing handshake is a reset,
/// as a cut HTTP stream is.
fn ws_failure(e: WsError) -> TransportError {
    match e {
        WsError::ConnectionClosed => TransportError::of_kind(TransportKind::Reset, e),
        // An I/O error's kind is read from it; the rest are protocol failures.
        WsError::IoError(io) => TransportError::of(io),
        _ => TransportError::of(e),
    }
}

/// Where a response stands after an event.
enum End {
    Open,
    /// Ended cleanly: the connection can take the conversation's next turn.
    Done,
    /// Ended with an error: the connection is not reused.
    Failed,
}

fn binary() -> TransportError {
    TransportError::described(TransportKind::Other, "the upstream WebSocket sent a binary frame")
}

/// The backend's refusal of a message over the connection's size, as the HTTP endpoint would word an error (the
/// official client's words for it).
fn too_large(bytes: usize, max: usize) -> (StatusCode, HeaderMap, Bytes) {
    let body = serde_json::json!({"error": {
        "type": "invalid_request_error",
        "code": TOO_LARGE,
        "message": format!("websocket request exceeds the peer's message size limit ({bytes} bytes, at most {max})"),
    }});
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (StatusCode::BAD_REQUEST, headers, Bytes::from(body.to_string()))
}

/// Whether a refusal is the backend's "no such previous response".
fn previous_not_found(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"previous_response_not_found").is_some()
}

/// Whether a handshake answer says this origin serves no WebSocket here, so the account's requests go over HTTP
/// as after the backend's own 426: any answer but a refusal of the account (401, 403), of the moment (429) or an
/// upstream failure (5xx but 501). An HTTP-only origin (a proxy in front of the backend, a compatible server)
/// answers 404, 405 or 400, or a 2xx that ignores the upgrade; before, every request to it failed.
fn no_websocket_here(status: StatusCode) -> bool {
    match status.as_u16() {
        401 | 403 | 429 => false,
        501 => true,
        s => s < 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a refused handshake leads to: HTTP for an origin without the endpoint, the HTTP endpoint's decisions
    /// for a refusal of the account or the moment.
    #[test]
    fn a_handshake_refused_for_want_of_the_endpoint_goes_to_http() {
        for (status, http) in [(426, true), (404, true), (405, true), (400, true), (200, true), (501, true)]
            .into_iter()
            .chain([(401, false), (403, false), (429, false), (500, false), (502, false), (503, false)])
        {
            let status = StatusCode::from_u16(status).unwrap_or_default();
            assert_eq!(no_websocket_here(status), http, "{status}");
        }
    }

    /// A conversation sent to HTTP that never comes back, and an account whose refusal has passed, are forgotten
    /// by the sweep, not kept for the process's life; a memory still running is kept.
    #[test]
    fn the_sweep_forgets_past_memories() -> anyhow::Result<()> {
        let settings = WsSettings::resolve(None, None, None)?;
        let pool =
            WsPool::new(settings, "http://127.0.0.1:9/backend-api/codex/responses", crate::tls::client_config(None)?);
        let key = |session: &str| Key { account: "acc".into(), session: session.into() };
        pool.on_http.lock().insert(key("past"), Instant::now());
        pool.on_http.lock().insert(key("running"), Instant::now() + REFUSAL_MEMORY);
        pool.refused.lock().insert("acc".into(), Instant::now());
        pool.sweep();
        assert_eq!(pool.on_http.lock().keys().map(|k| k.session.as_str()).collect::<Vec<_>>(), ["running"]);
        assert!(pool.refused.lock().is_empty());
        Ok(())
    }

    #[test]
    fn a_text_frame_is_checked_once_and_other_frames_are_told_apart() {
        assert!(
            matches!(received(Ok(WsFrame::text("{\"type\":\"x\"}"))), Received::Text(t) if t.as_str() == "{\"type\":\"x\"}")
        );
        assert!(matches!(received(Ok(WsFrame::text(&b"\xff\xfe"[..]))), Received::Failed(_)));
        assert!(matches!(received(Ok(WsFrame::binary("x"))), Received::Binary));
        assert!(matches!(received(Ok(WsFrame::ping("x"))), Received::Control));
        assert!(matches!(received(Err(WsError::ConnectionClosed)), Received::Closed));
    }
}
