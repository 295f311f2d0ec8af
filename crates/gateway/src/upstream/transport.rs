//! Carrying the Responses request to the upstream and its streamed answer back.
//!
//! Two transports give the same [`UpstreamResponse`]:
//! - [`Direct`]: the gateway's own HTTP/2 client ([`super::http2`]: TLS with ALPN h2, or h2c by
//!   configuration), and pooled HTTP/1.1 connections whose answers are read in the consuming task
//!   ([`super::http1`]) for upstreams that speak HTTP/1.1. Every request goes this way unless a proxy is involved. It is written against the sockets and rustls directly, not through reqwest, because
//!   reqwest's own layers (its boxed pending future, header merging, redirect handling, a second body wrapper)
//!   were the largest piece of the gateway's time before the first byte, and ~11% of its CPU per streamed
//!   request (bench/notes.md).
//! - reqwest, for accounts behind a proxy (HTTP CONNECT or SOCKS, with `NO_PROXY` for the global one), which
//!   reqwest handles and the request path does not need to re-implement.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use hyper_util::client::legacy::connect::HttpConnector;

use dialects::UpstreamFailure;
use dialects::failure::{Stage, TransportKind};

use super::http1::Http1Connections;
use super::http2::{Http2Connections, Outcome};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
pub(super) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub(super) const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// A response body: its bytes as they arrive, and a way to say the answer in it is complete.
pub trait Body: Stream<Item = Result<Bytes, TransportError>> + Send {
    /// The answer is complete (its terminal event was read), so a body dropped from now on may let its stream
    /// end by itself rather than cancel it: HTTP/2 reads on to END_STREAM for a moment (`http2/body.rs`). A
    /// body dropped without this call is cancelled at once (the client left, a deadline passed).
    fn answered(self: Pin<&mut Self>) {}
}

/// The response body as it arrives.
pub type BodyStream = Pin<Box<dyn Body>>;

pin_project_lite::pin_project! {
    /// A body from any stream of bytes, with nothing to do when its answer is complete.
    pub struct Plain<S> {
        #[pin]
        stream: S,
    }
}

impl<S> Plain<S> {
    pub fn new(stream: S) -> Plain<S> {
        Plain { stream }
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Stream for Plain<S> {
    type Item = Result<Bytes, TransportError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx)
    }
}

impl<S: Stream<Item = Result<Bytes, TransportError>> + Send> Body for Plain<S> {}

/// An upstream response whose headers have arrived; the body streams.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyStream,
}

/// A failure to reach the upstream or to read from it: the error itself, with its cause chain, and what kind of
/// failure the chain shows. Shown as the error and its causes (a top-level message alone, such as "error
/// decoding response body", does not say whether the connection was reset, timed out or refused by HTTP/2 flow
/// control), and never the URL, which can carry query parameters.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportKind,
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&with_causes(&*self.cause))
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> TransportError {
        TransportError::of(e.without_url())
    }
}

/// A failure the gateway itself describes (no underlying error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(&'static str);

impl TransportError {
    /// A failure the gateway noticed itself, of a known kind.
    pub fn described(kind: TransportKind, text: &'static str) -> TransportError {
        TransportError { kind, cause: Arc::new(Described(text)) }
    }

    /// A failure of a kind its error does not show by itself (a WebSocket's protocol errors).
    pub(super) fn of_kind(kind: TransportKind, e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { kind, cause: Arc::new(e) }
    }

    pub(super) fn of(e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { kind: kind_of(&e), cause: Arc::new(e) }
    }

    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// This failure of the exchange at `stage`.
    pub fn failure(self, stage: Stage) -> UpstreamFailure {
        UpstreamFailure::Transport { stage, kind: self.kind, cause: Arc::new(self) }
    }
}

/// What kind of failure an error's cause chain shows: the first cause that says.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> TransportKind {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(kind) = err.downcast_ref::<std::io::Error>().and_then(io_kind) {
            return kind;
        }
        if err.is::<rustls::Error>() {
            return TransportKind::Tls;
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return io_kind(io).unwrap_or(TransportKind::Reset);
            }
            if h2.is_reset() || h2.is_go_away() {
                return TransportKind::Reset;
            }
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return TransportKind::Timeout;
            }
            if r.is_connect() {
                return TransportKind::Connect;
            }
        }
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return TransportKind::Connect;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return TransportKind::Timeout;
            }
            if h.is_incomplete_message() || h.is_canceled() {
                return TransportKind::Reset;
            }
        }
        next = err.source();
    }
    TransportKind::Other
}

/// What kind of failure an I/O error is, if it says.
fn io_kind(io: &std::io::Error) -> Option<TransportKind> {
    use std::io::ErrorKind as Io;
    match io.kind() {
        Io::ConnectionRefused | Io::HostUnreachable | Io::NetworkUnreachable | Io::AddrNotAvailable => {
            Some(TransportKind::Connect)
        }
        Io::TimedOut => Some(TransportKind::Timeout),
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => Some(TransportKind::Reset),
        _ => None,
    }
}

/// `message: cause: cause…`, skipping causes whose text the message already holds.
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// This gateway's own HTTP/1.1 connections ([`super::http1`]) for upstreams that speak HTTP/1.1, and its own
/// HTTP/2 connections ([`super::http2`]) for the rest: `https` origins that choose h2 in the TLS handshake, and h2c.
pub struct Direct {
    http1: Http1Connections,
    http2: Http2Connections,
    h2c: bool,
}

impl Direct {
    /// `tls`: the shared client configuration ([`super::tls::client_config`]); ALPN is set here. `h2c`: HTTP/2
    /// without TLS to `http://` upstreams (see `Config::upstream_h2c`).
    pub fn new(tls: rustls::ClientConfig, h2c: bool) -> Direct {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        // Small request writes must not wait for the peer's delayed ACK.
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // reqwest's defaults, kept: a peer that vanished without closing (a dropped NAT entry, a sleeping laptop's
        // network) is noticed within about a minute instead of leaving a stream waiting forever.
        tcp.set_keepalive(Some(Duration::from_secs(15)));
        tcp.set_keepalive_interval(Some(Duration::from_secs(15)));
        tcp.set_keepalive_retries(Some(3));
        #[cfg(target_os = "linux")]
        tcp.set_tcp_user_timeout(Some(Duration::from_secs(30)));
        let mut http2_tls = tls.clone();
        http2_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http2 = Http2Connections::new(tcp.clone(), Arc::new(http2_tls));
        Direct { http1: Http1Connections::new(tcp, tls), http2, h2c }
    }

    /// POST `body`; returns once the response headers arrive.
    pub async fn post(&self, uri: Uri, headers: HeaderMap, body: Bytes) -> Result<UpstreamResponse, TransportError> {
        let http2 = uri.scheme_str() == Some("https") || self.h2c;
        if http2 && let Outcome::Sent(response) = self.http2.post(&uri, &headers, &body).await? {
            return Ok(response);
        }
        self.http1.post(&uri, &headers, &body).await
    }
}

/// POST through reqwest (a proxied account's client).
pub async fn post_via_reqwest(
    client: &reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Bytes,
) -> Result<UpstreamResponse, TransportError> {
    let response = client.post(url).headers(headers).body(body).send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes_stream().map_err(TransportError::from);
    Ok(UpstreamResponse { status, headers, body: Box::pin(Plain::new(body)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        port.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The cause stays an error (reachable through `source`, downcast by type), its kind is read off the
    /// chain, and the text is the same `message: cause` line as before.
    #[tokio::test]
    async fn transport_errors_keep_their_cause_and_kind() {
        use std::error::Error as _;
        let refused = TransportError::of(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.kind(), TransportKind::Connect);
        let io = refused.source().and_then(|c| c.downcast_ref::<std::io::Error>()).map(std::io::Error::kind);
        assert_eq!(io, Some(std::io::ErrorKind::ConnectionRefused));
        let reset = TransportError::of(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer reset"));
        assert_eq!((reset.kind(), reset.to_string()), (TransportKind::Reset, "peer reset".to_string()));
        let failure = reset.failure(Stage::Body);
        assert!(matches!(failure, UpstreamFailure::Transport { stage: Stage::Body, kind: TransportKind::Reset, .. }));
        assert_eq!(failure.to_error().message, "The upstream connection failed mid-response: peer reset");
        assert!(failure.source().is_some(), "the chain goes on from the failure");
        let timed_out = TransportError::described(TransportKind::Timeout, "connecting to the upstream timed out");
        assert_eq!(timed_out.to_string(), "connecting to the upstream timed out");

        // A real refused connection through reqwest: a connect failure, read from the cause chain.
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
        let err = client.get(format!("http://127.0.0.1:{}/", free_port())).send().await.err();
        let err = TransportError::from(err.unwrap_or_else(|| panic!("the request succeeded")));
        assert_eq!(err.kind(), TransportKind::Connect, "{err}");
    }

    #[tokio::test]
    async fn reqwest_errors_name_the_cause_and_not_the_url() {
        // A loopback port nothing listens on: reqwest says only "error sending request"; the cause says why.
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
        let err = client.get(format!("http://127.0.0.1:{}/secret?token=abc", free_port())).send().await.err();
        let text = TransportError::from(err.unwrap_or_else(|| panic!("the request succeeded"))).to_string();
        assert!(text.starts_with("error sending request"), "{text}");
        assert!(text.to_lowercase().contains("connect"), "{text}");
        assert!(text.len() > "error sending request".len() + 10, "{text}");
        assert!(!text.contains("token=abc") && !text.contains("/secret"), "the URL leaked: {text}");
    }

    /// A request's future waits for its response headers (thousands at once in a burst of streams): the rare
    /// connect path (TCP, TLS, the HTTP/2 handshake; ~4 KB) is boxed, so it does not size every such future.
    /// Debug build sizes: 5,752 bytes before, ~1,000 after.
    #[test]
    fn a_request_waiting_for_its_headers_is_small() {
        let tls = super::super::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
        let direct = Direct::new(tls, true);
        let uri: Uri = "http://127.0.0.1:1/responses".parse().unwrap_or_else(|e| panic!("{e}"));
        let size = std::mem::size_of_val(&direct.post(uri, HeaderMap::new(), Bytes::new()));
        assert!(size <= 2048, "Direct::post's future is {size} bytes");
    }

    #[tokio::test]
    async fn direct_errors_name_the_cause_and_not_the_url() {
        let tls = super::super::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
        let direct = Direct::new(tls, false);
        let uri: Uri =
            format!("http://127.0.0.1:{}/secret?token=abc", free_port()).parse().unwrap_or_else(|e| panic!("{e}"));
        let err = direct.post(uri, HeaderMap::new(), Bytes::new()).await.err();
        let text = err.unwrap_or_else(|| panic!("the request succeeded")).to_string();
        assert!(text.to_lowercase().contains("connect"), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("token=abc") && !text.contains("/secret"), "the URL leaked: {text}");
    }
}
