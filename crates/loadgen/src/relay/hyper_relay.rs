//! `relay --hyper`: the floor of an HTTP proxy built from the ecosystem's crates, as the gateway is (issue 89:
//! "no own HTTP code"). hyper's HTTP/1.1 server takes the client's request; hyper's client sends it on, over
//! HTTP/2 with prior knowledge (`--h2`: one connection shared by every request, as the gateway's HTTP/2 upstream)
//! or HTTP/1.1 (one upstream connection per client connection); the upstream's answer goes back as it comes, the
//! body's frames already read handed on together as one, so a burst leaves in one write as it does from the
//! gateway's pump (over HTTP/1.1 with the same hold across a yield: `Merged`). Nothing is parsed, checked or
//! translated: what is left between this relay and the byte relay is what the two HTTP stacks cost, which any proxy
//! on these crates pays before its own work.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::header::{CONNECTION, HOST, HeaderValue, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::RelayArgs;

type Body = BoxBody<Bytes, hyper::Error>;

/// Where requests go: one shared HTTP/2 connection, or a new HTTP/1.1 connection per client connection.
enum Upstream {
    H2(client2::SendRequest<Incoming>),
    H1(SocketAddr),
}

pub async fn relay(a: RelayArgs) -> anyhow::Result<()> {
    let to = a.to.as_deref().context("--hyper needs --to host:port")?;
    let to: SocketAddr = to.parse().with_context(|| format!("--to wants host:port, got {to}"))?;
    let upstream = match a.h2 {
        true => {
            let tcp = TcpStream::connect(to).await.with_context(|| format!("connecting to {to}"))?;
            tcp.set_nodelay(true)?;
            let (send, conn) = client2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .context("the HTTP/2 handshake with the upstream")?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("loadgen relay --hyper: the upstream connection ended: {e}");
                }
            });
            Upstream::H2(send)
        }
        false => Upstream::H1(to),
    };
    let upstream = Arc::new(upstream);
    let listener = super::listen(a.port).await?;
    loop {
        let client = super::accept(&listener).await;
        let _ = client.set_nodelay(true);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            // This client connection's HTTP/1.1 upstream, opened at its first request.
            let h1: Arc<Mutex<Option<client1::SendRequest<Incoming>>>> = Arc::default();
            let service = hyper::service::service_fn(move |req| {
                let (upstream, h1) = (upstream.clone(), h1.clone());
                async move { Ok::<_, std::convert::Infallible>(forward(&upstream, &h1, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service).await;
        });
    }
}

/// The request sent on as it is (its body streamed), the answer handed back as it is; 502 when the upstream fails.
async fn forward(
    upstream: &Upstream,
    h1: &Mutex<Option<client1::SendRequest<Incoming>>>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let answer = match upstream {
        Upstream::H2(send) => {
            let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let authority = req.headers().get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            match Uri::try_from(format!("http://{authority}{path}")) {
                Ok(uri) => *req.uri_mut() = uri,
                Err(e) => return failed(&format!("a request target: {e}")),
            }
            for name in [HOST, CONNECTION, TRANSFER_ENCODING] {
                req.headers_mut().remove(name);
            }
            *req.version_mut() = hyper::Version::HTTP_2;
            send.clone().send_request(req).await.map_err(|e| e.to_string())
        }
        Upstream::H1(to) => {
            let mut slot = h1.lock().await;
            if slot.as_ref().is_none_or(|s| s.is_closed()) {
                *slot = match open_h1(*to).await {
                    Ok(s) => Some(s),
                    Err(e) => return failed(&format!("{e:#}")),
                };
            }
            match slot.as_mut() {
                Some(send) => match send.ready().await {
                    Ok(()) => send.send_request(req).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                None => Err("no upstream connection".to_string()),
            }
        }
    };
    match answer {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.version = hyper::Version::HTTP_11;
            let hold = matches!(upstream, Upstream::H1(_));
            Response::from_parts(parts, Merged::new(body, hold).boxed())
        }
        Err(e) => failed(&e),
    }
}

async fn open_h1(to: SocketAddr) -> anyhow::Result<client1::SendRequest<Incoming>> {
    let tcp = TcpStream::connect(to).await.with_context(|| format!("connecting to {to}"))?;
    tcp.set_nodelay(true)?;
    let (send, conn) = client1::handshake(TokioIo::new(tcp)).await.context("the upstream connection")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn failed(why: &str) -> Response<Body> {
    eprintln!("loadgen relay --hyper: {why}");
    let mut resp = Response::new(Full::new(Bytes::from(why.to_string())).map_err(|e| match e {}).boxed());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    resp
}

/// The upstream's body with every data frame already read handed on as one. hyper's HTTP/1.1 client connection is a
/// task of its own that hands the body over one chunk at a time, decoding the next only once this one was taken: with
/// `hold`, a frame begun is held across a yield while frames keep arriving and handed on at the second poll in a row
/// that brought nothing (hyper's server polls a pending body again before other tasks run), as the gateway's pump
/// holds its chunk (docs/performance.md, "Bursts"). No timer: a lone frame goes one scheduler turn later.
struct Merged {
    inner: Incoming,
    hold: bool,
    held: BytesMut,
    empty_polls: u8,
    ended: bool,
}

impl Merged {
    fn new(inner: Incoming, hold: bool) -> Merged {
        Merged { inner, hold, held: BytesMut::new(), empty_polls: 0, ended: false }
    }
}

impl hyper::body::Body for Merged {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut arrived = false;
        while !this.ended {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // The upstream sends no trailers; any other frame than data is not handed on.
                    if let Ok(data) = frame.into_data() {
                        this.held.extend_from_slice(&data);
                        arrived = true;
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending if this.held.is_empty() => return Poll::Pending,
                Poll::Pending if this.hold && (arrived || this.empty_polls == 0) => {
                    this.empty_polls = if arrived { 0 } else { this.empty_polls + 1 };
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Pending => break,
            }
        }
        this.empty_polls = 0;
        match this.held.is_empty() {
            true => Poll::Ready(None),
            false => Poll::Ready(Some(Ok(Frame::data(this.held.split().freeze())))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.held.is_empty()
    }
}
