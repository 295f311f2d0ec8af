//! HTTP/1.1 to the upstream on hyper's client (hyper-util's pooled `Client`): `http://` origins (the benchmark's
//! and the tests' fake unless `upstream_h2c`) and `https` origins that chose HTTP/1.1 in ALPN. What is this
//! crate's own is the connector: TCP with the transport's socket options, then TLS (`tls.rs`, ALPN `http/1.1`)
//! for `https`, both within [`CONNECT_TIMEOUT`](crate::CONNECT_TIMEOUT).
//!
//! hyper keeps connections per origin while idle (up to [`POOL_MAX_IDLE_PER_HOST`], for [`POOL_IDLE_TIMEOUT`])
//! and reuses one once its answer was read to the end; a body dropped before its end closes its connection
//! (after taking what had already arrived), so the upstream sees a client that left at once; a request that
//! finds a pooled connection closed before it was written goes again on a new one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use crate::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, Plain, TransportError, UpstreamResponse};

/// Most header fields in a response head: ten times hyper's default of 100 (an upstream behind a proxy or CDN
/// may add dozens).
pub(crate) const MAX_FIELDS: usize = 1000;

/// HTTP/1.1 connections to upstream origins.
pub struct Http1Connections {
    client: Client<Connector, Full<Bytes>>,
}

impl Http1Connections {
    /// `tcp`: the connector with the transport's socket options; `tls`: the shared client configuration (ALPN
    /// is set to `http/1.1` here).
    pub fn new(tcp: HttpConnector, mut tls: rustls::ClientConfig) -> Http1Connections {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = Connector { tcp, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)) };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .http1_max_headers(MAX_FIELDS)
            .build(connector);
        Http1Connections { client }
    }

    /// POST `body`; returns once the response head arrived, with the body streaming.
    pub async fn post(
        &self,
        uri: Uri,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<UpstreamResponse, TransportError> {
        // Set by hyper: the host from the URI, the length from the body.
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let response = self.client.request(request).await.map_err(failure)?;
        let (parts, body) = response.into_parts();
        let body = body.into_data_stream().map_err(TransportError::of);
        Ok(UpstreamResponse {
            status: parts.status,
            headers: parts.headers,
            body: Box::pin(Plain::one_at_a_time(body)),
        })
    }
}

/// The client's error as a [`TransportError`]: the connector's own (TCP, TLS, its deadline) as it made it, so
/// its kind is the cause's and not "connect" for all of them.
fn failure(e: hyper_util::client::legacy::Error) -> TransportError {
    use std::error::Error as _;
    if e.is_connect()
        && let Some(own) = e.source().and_then(|s| s.downcast_ref::<TransportError>())
    {
        return own.clone();
    }
    TransportError::of(e)
}

/// Opens the connections hyper's client pools: TCP, and TLS for `https`.
#[derive(Clone)]
struct Connector {
    tcp: HttpConnector,
    tls: tokio_rustls::TlsConnector,
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Io>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<TokioIo<Io>, TransportError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), TransportError>> {
        // Each call clones the TCP connector, which is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}

impl Connector {
    async fn connect(mut self, uri: Uri) -> Result<Io, TransportError> {
        let connecting = async {
            std::future::poll_fn(|cx| self.tcp.poll_ready(cx)).await.map_err(TransportError::of)?;
            let stream = self.tcp.call(uri.clone()).await.map_err(TransportError::of)?.into_inner();
            if uri.scheme_str() != Some("https") {
                return Ok(Box::new(stream) as Io);
            }
            Ok(Box::new(crate::tls::connect(&self.tls, &uri, stream).await?) as Io)
        };
        crate::tls::within_connect_timeout(connecting).await
    }
}

/// A connection's byte stream: plain TCP, or TLS over it (boxed, as the WebSocket pool's are: tokio's `Box`
/// forwards every read and write to it).
trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> ByteStream for T {}
type Io = Box<dyn ByteStream>;

impl Connection for Io {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn client() -> Http1Connections {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        let tls = crate::tls::client_config(None).unwrap_or_else(|e| panic!("{e}"));
        Http1Connections::new(tcp, tls)
    }

    fn uri(port: u16) -> Uri {
        format!("http://127.0.0.1:{port}/responses").parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Read one request (head and `content-length` body) from `tcp`: its bytes, or `None` at the end of the
    /// connection.
    async fn read_request(tcp: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return Some(buf);
                }
            }
            let mut more = [0u8; 4096];
            match tcp.read(&mut more).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => buf.extend_from_slice(&more[..k]),
            }
        }
    }

    /// A server on a loopback port answering every request on a connection with `answer`; counts connections;
    /// closes a connection after `per_connection` answers.
    async fn server(answer: &'static [u8], per_connection: usize) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        if read_request(&mut tcp).await.is_none() || tcp.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, connections)
    }

    const EVENTS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
        9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n9\r\ndata: 3\n\n\r\n0\r\n\r\n";

    async fn read_all(response: &mut UpstreamResponse) -> Result<Vec<u8>, TransportError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.body.next().await {
            body.extend_from_slice(&chunk?);
        }
        Ok(body)
    }

    /// The request as it leaves: the target in origin form, the host from the URI (not the caller's), the
    /// caller's fields, the length of the body; the chunked answer's head and body as they were sent.
    #[tokio::test]
    async fn a_request_goes_out_whole_and_a_chunked_answer_comes_back_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let seen = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.ok()?;
            let request = read_request(&mut tcp).await?;
            tcp.write_all(EVENTS).await.ok()?;
            Some(String::from_utf8_lossy(&request).into_owned())
        });
        let mut headers = HeaderMap::new();
        headers.insert("authorization", http::HeaderValue::from_static("Bearer t"));
        headers.insert(header::HOST, http::HeaderValue::from_static("elsewhere"));
        headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("99"));
        let mut response =
            client().post(uri(port), headers, Bytes::from_static(b"{}")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.headers.get("content-type").map(|v| v.as_bytes()), Some(&b"text/event-stream"[..]));
        let body = read_all(&mut response).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body, b"data: 1\n\ndata: 2\n\ndata: 3\n\n");
        let request = seen.await.ok().flatten().unwrap_or_else(|| panic!("no request arrived"));
        let lines: Vec<&str> = request.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "POST /responses HTTP/1.1",
                "authorization: Bearer t",
                &format!("host: 127.0.0.1:{port}"),
                "content-length: 2",
                "",
                "{}"
            ]
        );
    }

    /// A connection whose answer was read to its end carries the next request; one the server closed while idle
    /// is replaced.
    #[tokio::test]
    async fn connections_are_reused_and_a_closed_one_is_replaced() {
        let client = client();
        let (port, connections) = server(EVENTS, 2).await;
        for round in 0..4 {
            let mut response = client
                .post(uri(port), HeaderMap::new(), Bytes::from_static(b"{}"))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let body = read_all(&mut response).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(body, b"data: 1\n\ndata: 2\n\ndata: 3\n\n");
            // Let the server's close of a connection after its second answer arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// A body dropped before its end closes its connection (the upstream sees the client leave at once), and a
    /// body cut by the upstream is an error of kind `Reset`, not a clean end.
    #[tokio::test]
    async fn a_dropped_body_closes_its_connection_and_a_cut_one_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            read_request(&mut tcp).await;
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n";
            let _ = tcp.write_all(head).await;
            let mut rest = [0u8; 16];
            let _ = closed_tx.send(tcp.read(&mut rest).await.map_or(true, |n| n == 0));
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            read_request(&mut tcp).await;
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: 1").await;
        });
        let client = client();
        let mut response =
            client.post(uri(port), HeaderMap::new(), Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(response.body.next().await.is_some_and(|r| r.is_ok()));
        drop(response);
        let closed = tokio::time::timeout(Duration::from_secs(2), closed_rx).await;
        assert!(matches!(closed, Ok(Ok(true))), "the upstream did not see the connection close: {closed:?}");

        let mut response =
            client.post(uri(port), HeaderMap::new(), Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
        let err = read_all(&mut response).await.err().unwrap_or_else(|| panic!("a cut body ended cleanly"));
        assert_eq!(err.kind(), crate::TransportKind::Reset, "{err}");
    }

    /// A head with more fields than hyper's default (100) is read whole, up to the gateway's limit; past it the
    /// answer is an error.
    #[tokio::test]
    async fn heads_of_many_fields_are_read_up_to_the_limit() {
        fn head(fields: usize) -> &'static [u8] {
            let lines: String = (0..fields).map(|i| format!("x-field-{i}: {i}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{lines}\r\n").into_bytes().leak()
        }
        let client = client();
        for fields in [150, MAX_FIELDS - 1] {
            let (port, _) = server(head(fields), 1).await;
            let response = client.post(uri(port), HeaderMap::new(), Bytes::new()).await;
            let response = response.unwrap_or_else(|e| panic!("{fields} fields: {e}"));
            assert_eq!(response.headers.len(), fields + 1);
            assert_eq!(response.headers.get("x-field-7").map(|v| v.as_bytes()), Some(&b"7"[..]));
        }
        let (port, _) = server(head(MAX_FIELDS + 1), 1).await;
        let err = client.post(uri(port), HeaderMap::new(), Bytes::new()).await.err();
        assert!(err.is_some(), "a head past the limit was taken");
    }

    /// A connection refused: its kind is `Connect` and its text names the cause, not the URL.
    #[tokio::test]
    async fn a_refused_connection_is_a_connect_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.unwrap_or_else(|e| panic!("{e}"));
        let err = client().post(uri(port), HeaderMap::new(), Bytes::new()).await.err();
        let err = err.unwrap_or_else(|| panic!("the request succeeded"));
        assert_eq!(err.kind(), crate::TransportKind::Connect, "{err}");
    }
}
