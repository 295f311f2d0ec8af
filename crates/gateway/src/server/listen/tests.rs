//! The listener over real loopback sockets, with hyper's connection under it: keep-alive and pipelining, bodies
//! split across reads, streamed responses, a client that leaves, the head and body deadlines, a body's length
//! given twice, the drain, and the requests only a general server handles (`Expect`, chunked bodies, HEAD,
//! HTTP/1.0, a malformed head).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Front, accept};
use crate::app::Drain;
use crate::server::guard::Guard;
use crate::server::guard::tests::loopback_without_keys;

const BODY_TIMEOUT: Duration = Duration::from_millis(300);
const HEADER_TIMEOUT: Duration = Duration::from_millis(400);

/// Sends on its channel when dropped: shows a handler was cancelled.
struct Dropped(mpsc::UnboundedSender<()>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    cancelled: mpsc::UnboundedReceiver<()>,
    served: tokio::task::JoinHandle<()>,
}

async fn start() -> Fixture {
    let (dropped_tx, cancelled) = mpsc::unbounded_channel();
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/echo",
            post(|body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                match body {
                    Ok(b) => (StatusCode::OK, b).into_response(),
                    Err(e) if crate::server::errors::body_timed_out(&e).is_some() => {
                        (StatusCode::BAD_REQUEST, "timed out").into_response()
                    }
                    Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                }
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let events = futures_util::stream::unfold(0, |i| async move {
                    if i == 3 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((Ok::<_, std::io::Error>(Bytes::from(format!("data: {i}\n\n"))), i + 1))
                });
                Body::from_stream(events)
            }),
        )
        .route(
            "/wait",
            get(move || {
                let guard = Dropped(dropped_tx.clone());
                async move {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    drop(guard);
                    "late"
                }
            }),
        );
    let front = Front { guard: Guard::new(router, Arc::new(loopback_without_keys())), body_timeout: BODY_TIMEOUT };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone().cancelled_owned();
    let bound = Duration::from_secs(5);
    let served = tokio::spawn(accept(listener, front, stop, HEADER_TIMEOUT, bound, Drain::default()));
    Fixture { addr, shutdown, cancelled, served }
}

async fn connect(f: &Fixture) -> TcpStream {
    TcpStream::connect(f.addr).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn send(tcp: &mut TcpStream, raw: &str) {
    tcp.write_all(raw.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Read until `needle` has been seen `times` times, or the connection ends; everything read so far.
async fn read_until(tcp: &mut TcpStream, needle: &str, times: usize) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while String::from_utf8_lossy(&seen).matches(needle).count() < times {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// Read until the server closes the connection (or 10 s pass).
async fn read_to_close(tcp: &mut TcpStream) -> (String, bool) {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut seen)).await.is_ok();
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    send(
        &mut tcp,
        "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /echo HTTP/1.1\r\nHost: localhost\r\n\
         Content-Length: 5\r\n\r\nworldGET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let out = read_until(&mut tcp, "hello", 2).await;
    let bodies: Vec<_> = out.split("HTTP/1.1 200 OK").skip(1).map(|r| r.rsplit("\r\n\r\n").next()).collect();
    assert_eq!(bodies, [Some("hello"), Some("world"), Some("hello")], "{out}");
    assert!(out.contains("content-length: 5\r\n") && out.contains("date: "), "{out}");
    // Still open for a fourth.
    send(&mut tcp, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(read_until(&mut tcp, "hello", 1).await.ends_with("\r\n\r\nhello"));
}

#[tokio::test]
async fn a_head_and_body_split_across_reads_are_joined() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    let body = "x".repeat(100_000);
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: local").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    send(&mut tcp, &format!("host\r\nContent-Length: {}\r\n\r\n{}", body.len(), &body[..10])).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    send(&mut tcp, &body[10..]).await;
    let out = read_until(&mut tcp, &body, 1).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with(&format!("\r\n\r\n{body}")), "{}", &out[..200]);
}

#[tokio::test]
async fn a_streamed_response_is_chunked_and_ends() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    send(&mut tcp, "GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let out = read_until(&mut tcp, "0\r\n\r\n", 1).await;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{out}"));
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "9\r\ndata: 0\n\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n");
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_handler() {
    let mut f = start().await;
    let mut tcp = connect(&f).await;
    send(&mut tcp, "GET /wait HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(tcp);
    let cancelled = tokio::time::timeout(Duration::from_secs(5), f.cancelled.recv()).await;
    assert!(matches!(cancelled, Ok(Some(()))), "the handler kept running after the client left");
}

#[tokio::test]
async fn a_body_that_stalls_gets_the_handlers_error_and_the_connection_closes() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    let started = tokio::time::Instant::now();
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc").await;
    let (out, closed) = read_to_close(&mut tcp).await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n") && out.ends_with("timed out"), "{out}");
    assert!(closed, "{out}");
    assert!(started.elapsed() >= BODY_TIMEOUT);
}

/// A head that does not all arrive within the header deadline, and a connection that sends nothing, are closed
/// unanswered (the slowloris guard); so is a keep-alive connection idle that long after its answer.
#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_at_the_header_deadline() {
    let f = start().await;
    let mut slow = connect(&f).await;
    let mut silent = connect(&f).await;
    let mut idle = connect(&f).await;
    let started = tokio::time::Instant::now();
    send(&mut slow, "GET /hello HTTP/1.1\r\nHost: loc").await;
    send(&mut idle, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(read_until(&mut idle, "hello", 1).await.ends_with("hello"));
    for tcp in [&mut slow, &mut silent, &mut idle] {
        let (out, closed) = read_to_close(tcp).await;
        assert!(closed && !out.contains("200 OK"), "{out}");
    }
    let took = started.elapsed();
    assert!(took >= HEADER_TIMEOUT && took < Duration::from_secs(3), "{took:?}");
}

/// A body's length given twice is a 400 in the OpenAI shape and the connection closes; a request before it on
/// the same connection is answered first.
#[tokio::test]
async fn a_body_length_given_twice_is_refused_and_the_connection_closes() {
    let f = start().await;
    for twice in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let mut tcp = connect(&f).await;
        let smuggled = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let raw = format!(
            "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /echo HTTP/1.1\r\nHost: localhost\r\n{twice}\r\n\
             5\r\nworld\r\n0\r\n\r\n{smuggled}"
        );
        send(&mut tcp, &raw).await;
        let (out, closed) = read_to_close(&mut tcp).await;
        assert!(out.starts_with("HTTP/1.1 200 OK") && closed, "{twice:?}: {out}");
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 1, "{twice:?}: {out}");
        let refusal = out.split("HTTP/1.1 400 Bad Request\r\n").nth(1).unwrap_or_else(|| panic!("{twice:?}: {out}"));
        assert!(refusal.contains("connection: close\r\n"), "{refusal}");
        assert!(refusal.contains("\"code\":\"ambiguous_body_length\""), "{refusal}");
    }
}

#[tokio::test]
async fn the_drain_closes_idle_connections_and_ends_busy_ones_after_their_response() {
    let f = start().await;
    let mut idle = connect(&f).await;
    send(&mut idle, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(read_until(&mut idle, "hello", 1).await.ends_with("hello"));
    // Connected, nothing sent yet.
    let mut fresh = connect(&f).await;
    let mut busy = connect(&f).await;
    send(&mut busy, "GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let started = tokio::time::Instant::now();
    f.shutdown.cancel();
    for tcp in [&mut idle, &mut fresh] {
        let (out, closed) = read_to_close(tcp).await;
        assert!(closed && out.is_empty(), "an idle connection stayed open in the drain: {out}");
    }
    let (out, closed) = read_to_close(&mut busy).await;
    assert!(closed && out.ends_with("0\r\n\r\n"), "{out}");
    let served = tokio::time::timeout(Duration::from_secs(3), f.served).await;
    assert!(served.is_ok() && started.elapsed() < HEADER_TIMEOUT, "the drain waited for idle connections");
}

#[tokio::test]
async fn unusual_requests_are_served_on_the_same_connection() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    // Expect: 100-continue: the interim answer comes before the body is sent.
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").await;
    assert!(read_until(&mut tcp, "100 Continue", 1).await.starts_with("HTTP/1.1 100 Continue"));
    send(&mut tcp, "ping").await;
    assert!(read_until(&mut tcp, "ping", 1).await.ends_with("\r\n\r\nping"));
    // A chunked body, then HEAD.
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    assert!(read_until(&mut tcp, "abc", 1).await.ends_with("\r\n\r\nabc"));
    send(&mut tcp, "HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let out = read_until(&mut tcp, "\r\n\r\n", 1).await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("content-length: 5"), "{out}");

    // A malformed head is a 400; HTTP/1.0 is answered as 1.0 and closed.
    let mut bad = connect(&f).await;
    send(&mut bad, "GET /a b c HTTP/1.1\r\n\r\n").await;
    assert!(read_to_close(&mut bad).await.0.starts_with("HTTP/1.1 400"));
    let mut old = connect(&f).await;
    send(&mut old, "GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    let (out, closed) = read_to_close(&mut old).await;
    assert!(out.starts_with("HTTP/1.0 200 OK") && out.ends_with("hello") && closed, "{out}");
}
