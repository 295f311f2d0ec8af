//! [`Direct`]: the transport that carries every request not behind a proxy (HTTP/2 where the origin speaks it,
//! else HTTP/1.1), and the reqwest one for proxied accounts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, Uri};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::http1::Http1Connections;
use crate::http2::{Http2Connections, Outcome};
use crate::{Plain, TransportError, UpstreamResponse};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// An idle pooled connection is closed after this long (reqwest's default, which the official client keeps).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// hyper's HTTP/1.1 client ([`crate::http1`]) for upstreams that speak HTTP/1.1, and h2 connections
/// ([`crate::http2`]) for the rest: `https` origins that choose h2 in the TLS handshake, and h2c.
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
        self.http1.post(uri, headers, body).await
    }
}

/// A reqwest client: pooled connections, HTTP/2 where offered (or by prior knowledge with `h2c`), rustls with the
/// roots of [`crate::tls::client_config`], and `proxy` when given. `honor_no_proxy`: the global proxy from the
/// environment skips the hosts `NO_PROXY` names; an account's own proxy carries all of its traffic.
pub fn reqwest_client(
    ca_bundle: Option<&std::path::Path>,
    proxy: Option<&str>,
    honor_no_proxy: bool,
    h2c: bool,
) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let mut tls = crate::tls::client_config(ca_bundle)?;
    // What reqwest offers by itself when it builds its own TLS configuration.
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .tcp_nodelay(true)
        .no_proxy();
    if h2c {
        b = b.http2_prior_knowledge();
    }
    if let Some(p) = proxy {
        let proxy = reqwest::Proxy::all(p).with_context(|| "invalid proxy URL (HTTPS_PROXY / ALL_PROXY / proxy)")?;
        let proxy = if honor_no_proxy { proxy.no_proxy(reqwest::NoProxy::from_env()) } else { proxy };
        b = b.proxy(proxy);
    }
    b.build().context("cannot build the HTTP client")
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
    Ok(UpstreamResponse { status, headers, body: Box::pin(Plain::one_at_a_time(body)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TransportKind;

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
        assert!(reset.into_cause().source().is_some(), "the chain goes on from the shared cause");
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
        let tls = crate::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
        let direct = Direct::new(tls, true);
        let uri: Uri = "http://127.0.0.1:1/responses".parse().unwrap_or_else(|e| panic!("{e}"));
        let size = std::mem::size_of_val(&direct.post(uri, HeaderMap::new(), Bytes::new()));
        assert!(size <= 2048, "Direct::post's future is {size} bytes");
    }

    #[tokio::test]
    async fn direct_errors_name_the_cause_and_not_the_url() {
        let tls = crate::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
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
