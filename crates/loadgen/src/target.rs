//! The server under test: its address, one keep-alive HTTP/1.1 connection, and one timed request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::dialect::Scanner;

/// Where requests go: `http://host:port/path`.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        Ok(Target { addr, authority: authority.to_string(), path: path.to_string() })
    }

    /// The same server, another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target { addr: self.addr, authority: self.authority.clone(), path: path.to_string() }
    }
}

/// One HTTP/1.1 connection. Dropping it closes the socket at once (the connection task is aborted).
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, task })
    }

    /// Whether the connection can take another request (false once the server closed it).
    pub async fn ready(&mut self) -> bool {
        self.sender.ready().await.is_ok()
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<hyper::Response<Incoming>> {
        Ok(self.sender.send_request(req).await?)
    }
}

/// A prepared request: method POST (or GET without a body), path, headers, body.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub target: Target,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

impl RequestSpec {
    pub fn build(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut b = match &self.body {
            Some(_) => Request::post(&self.target.path).header(CONTENT_TYPE, "application/json"),
            None => Request::get(&self.target.path),
        };
        b = b.header(HOST, &self.target.authority);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        Ok(b.body(Full::new(self.body.clone().unwrap_or_default()))?)
    }
}

/// Timings and counts of one successful request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the request was sent.
    pub sent: Instant,
    pub ttfb: Duration,
    pub ttft: Duration,
    pub total: Duration,
    pub events: u64,
    pub bytes: u64,
}

/// Send one request on `conn` and read the whole answer through `scanner`.
pub async fn timed_request(conn: &mut Conn, spec: &RequestSpec, mut scanner: Scanner) -> anyhow::Result<Sample> {
    let req = spec.build()?;
    let start = Instant::now();
    let resp = conn.send(req).await?;
    let ttfb = start.elapsed();
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the body")?;
        if let Some(data) = frame.data_ref() {
            scanner.feed(data, start);
        }
    }
    let total = start.elapsed();
    if !status.is_success() {
        bail!("HTTP {}: {}", status.as_u16(), scanner.head());
    }
    let (ttft, events, bytes) = scanner.finish()?;
    Ok(Sample { sent: start, ttfb, ttft: ttft.unwrap_or(total), total, events, bytes })
}

/// A small GET returning the body (control endpoints such as `/_fake/stats`, `/health`).
pub async fn get(conn: &mut Conn, target: &Target) -> anyhow::Result<(u16, Bytes)> {
    let req = Request::get(&target.path)
        .header(HOST, &target.authority)
        .body(Full::new(Bytes::new()))
        .context("building a GET")?;
    let resp = conn.send(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `GET` on a fresh connection (used while a server may not be up yet).
pub async fn get_once(target: &Target) -> anyhow::Result<u16> {
    let mut conn = Conn::open(target.addr).await?;
    Ok(get(&mut conn, target).await?.0)
}
