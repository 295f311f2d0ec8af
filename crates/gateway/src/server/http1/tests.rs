//! The connection layer over real loopback sockets: keep-alive and pipelining, bodies split across reads,
//! streamed responses, a client that leaves, the body deadline, the drain, and what is handed to hyper.

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

use super::{Server, serve};
use crate::server::guard::loopback_without_keys;

const BODY_TIMEOUT: Duration = Duration::from_millis(300);
/// `/big` streams this many chunks of [`big_chunk`]: megabytes, more than the socket buffers of a client with a
/// small receive buffer hold.
const BIG_CHUNKS: usize = 400;
const BIG_LEN: usize = 100_000;

/// Chunk `i` of `/big`: a slice of one buffer made once, so the test leaves no freed megabytes in the allocator
/// (memory.rs's test, in the same process, measures what it retains). Every fourth chunk is large (the writer
/// sends it from its own bytes); the others are small, up to a few KB on both sides of the size the writer copies
/// into its flat buffer with their framing, so writes the socket takes only part of end inside either kind.
fn big_chunk(i: usize) -> Bytes {
    static LETTERS: std::sync::LazyLock<Bytes> = std::sync::LazyLock::new(|| {
        (0..26u8).flat_map(|l| std::iter::repeat_n(b'a' + l, BIG_LEN + BIG_CHUNKS)).collect::<Vec<u8>>().into()
    });
    let start = (i % 26) * (BIG_LEN + BIG_CHUNKS);
    let len = if i.is_multiple_of(4) { BIG_LEN + i } else { (i * 997) % 6000 + 1 };
    LETTERS.slice(start..start + len)
}

/// Sends on its channel when dropped: shows a handler was cancelled.
struct Dropped(mpsc::UnboundedSender<()>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

struct Fixture {
    addr: std::net::SocketAddr,
    draining: CancellationToken,
    cancelled: mpsc::UnboundedReceiver<()>,
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
            "/big",
            get(|| async {
                let chunks = (0..BIG_CHUNKS).map(|i| Ok::<_, std::io::Error>(big_chunk(i)));
                Body::from_stream(futures_util::stream::iter(chunks))
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
    let draining = CancellationToken::new();
    let server = Arc::new(Server {
        router,
        policy: Arc::new(loopback_without_keys()),
        body_timeout: BODY_TIMEOUT,
        hyper: hyper::server::conn::http1::Builder::new(),
        draining: draining.clone(),
        models: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, server.clone()));
        }
    });
    Fixture { addr, draining, cancelled }
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
    let out = read_until(&mut tcp, "HTTP/1.1 200 OK", 3).await;
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

/// A head several times the room of one read (`HEAD_READ`), sent at once with its body: read in pieces through
/// the scratch buffer, joined in order, and the body after it echoed whole.
#[tokio::test]
async fn a_head_larger_than_one_read_is_joined() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    let pad: String = (0..30_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    send(
        &mut tcp,
        &format!("POST /echo HTTP/1.1\r\nHost: localhost\r\nX-Pad: {pad}\r\nContent-Length: 5\r\n\r\nworld"),
    )
    .await;
    let out = read_until(&mut tcp, "world", 1).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\nworld"), "{out}");
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
    assert!(out.contains("connection: close\r\n") && closed, "{out}");
    assert!(started.elapsed() >= BODY_TIMEOUT);
}

#[tokio::test]
async fn the_drain_closes_idle_connections_and_ends_busy_ones_after_their_response() {
    let f = start().await;
    let mut idle = connect(&f).await;
    send(&mut idle, "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(read_until(&mut idle, "hello", 1).await.ends_with("hello"));
    let mut busy = connect(&f).await;
    send(&mut busy, "GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    f.draining.cancel();
    let (_, closed) = read_to_close(&mut idle).await;
    assert!(closed, "an idle connection stayed open in the drain");
    let (out, closed) = read_to_close(&mut busy).await;
    assert!(closed && out.ends_with("0\r\n\r\n"), "{out}");
}

#[tokio::test]
async fn unusual_requests_are_served_by_hyper_on_the_same_connection() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    // Expect: 100-continue: the interim answer comes before the body is sent.
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").await;
    assert!(read_until(&mut tcp, "100 Continue", 1).await.starts_with("HTTP/1.1 100 Continue"));
    send(&mut tcp, "ping").await;
    assert!(read_until(&mut tcp, "ping", 1).await.ends_with("\r\n\r\nping"));
    // A chunked body, then HEAD, on the connection hyper now serves.
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .await;
    assert!(read_until(&mut tcp, "abc", 1).await.ends_with("\r\n\r\nabc"));
    send(&mut tcp, "HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let out = read_until(&mut tcp, "\r\n\r\n", 1).await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("content-length: 5"), "{out}");

    // A malformed head is hyper's 400; HTTP/1.0 is answered as 1.0 and closed.
    let mut bad = connect(&f).await;
    send(&mut bad, "GET /a b c HTTP/1.1\r\n\r\n").await;
    assert!(read_to_close(&mut bad).await.0.starts_with("HTTP/1.1 400"));
    let mut old = connect(&f).await;
    send(&mut old, "GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n").await;
    let (out, closed) = read_to_close(&mut old).await;
    assert!(out.starts_with("HTTP/1.0 200 OK") && out.ends_with("hello") && closed, "{out}");
}

/// A client that does not read for a while fills the socket: what the writes leave over is kept and sent in
/// order once it reads, every byte and every chunk's framing intact.
#[tokio::test]
async fn a_slow_reader_gets_every_byte_in_order() {
    use tokio::io::AsyncBufReadExt;

    let f = start().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
    socket.set_recv_buffer_size(16 * 1024).unwrap_or_else(|e| panic!("{e}"));
    let mut tcp = socket.connect(f.addr).await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut tcp, "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Decoded as it arrives, into one chunk-sized buffer: the test keeps no megabytes of its own.
    let mut reader = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    let mut data = vec![0u8; BIG_LEN + BIG_CHUNKS];
    let decode = async {
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut chunks = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim_end(), 16).map_err(std::io::Error::other)?;
            let mut end = [0u8; 2];
            if size == 0 {
                reader.read_exact(&mut end).await?;
                assert_eq!(&end, b"\r\n");
                return Ok::<_, std::io::Error>(chunks);
            }
            assert_eq!(size, big_chunk(chunks).len(), "chunk {chunks}'s size");
            reader.read_exact(&mut data[..size]).await?;
            assert!(data[..size] == big_chunk(chunks)[..], "chunk {chunks} differs");
            reader.read_exact(&mut end).await?;
            assert_eq!(&end, b"\r\n");
            chunks += 1;
        }
    };
    let decoded = tokio::time::timeout(Duration::from_secs(20), decode).await;
    assert!(matches!(decoded, Ok(Ok(BIG_CHUNKS))), "{decoded:?}");
}

/// A request that reaches hyper after the drain began is still answered (then the connection closes): hyper
/// would take a connection that has read nothing yet for an idle one and close it.
#[tokio::test]
async fn a_request_handed_to_hyper_during_the_drain_is_answered() {
    let f = start().await;
    let mut tcp = connect(&f).await;
    send(&mut tcp, "POST /echo HTTP/1.1\r\nHost: localhost\r\n").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    f.draining.cancel();
    tokio::time::sleep(Duration::from_millis(30)).await;
    send(&mut tcp, "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    let (out, closed) = read_to_close(&mut tcp).await;
    assert!(out.starts_with("HTTP/1.1 200 OK") && out.ends_with("\r\n\r\nabc") && closed, "{out:?}");
}
