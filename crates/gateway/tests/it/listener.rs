//! The main listener as a client meets it, written by hand over TCP: a body's length given twice (request
//! smuggling) is refused before any upstream call; `Expect: 100-continue` with a chunked body is served; and a
//! connection that never sent a byte does not hold the shutdown. The connection layer's finer cases (pipelining,
//! the header deadline, the drain of busy connections) are server/listen/tests.rs, on a short header deadline.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Setup, TestEnv, start};

const CHAT: &str = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#;

async fn connect(env: &TestEnv) -> TcpStream {
    let addr = env.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// Everything the gateway sends until it closes the connection (or 5 s pass: `false`).
async fn to_close(tcp: &mut TcpStream) -> (String, bool) {
    let mut bytes = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut bytes)).await.is_ok();
    (String::from_utf8_lossy(&bytes).into_owned(), closed)
}

#[tokio::test]
async fn a_body_length_given_twice_is_refused_before_any_upstream_call() {
    let env = start(Setup::default()).await;
    let chunked = format!("{:x}\r\n{CHAT}\r\n0\r\n\r\n", CHAT.len());
    let length = format!("Content-Length: {}\r\n", CHAT.len());
    for (fields, body) in [
        (format!("{length}{length}"), CHAT.to_string()),
        (format!("{length}Transfer-Encoding: chunked\r\n"), chunked.clone()),
        (format!("Transfer-Encoding: chunked\r\n{length}"), chunked),
    ] {
        let mut tcp = connect(&env).await;
        let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
        let smuggled = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        let request = format!("{head}{fields}\r\n{body}{smuggled}");
        tcp.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        let (answer, closed) = to_close(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 400 ") && closed, "{fields:?}: {answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "the smuggled request was answered: {answer}");
        let body: Value =
            answer.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
        assert_eq!(
            (&body["error"]["type"], &body["error"]["code"]),
            (&json!("invalid_request_error"), &json!("ambiguous_body_length")),
            "{body}"
        );
    }
    assert!(env.upstream_bodies().is_empty());
}

#[tokio::test]
async fn expect_continue_with_a_chunked_body_is_served() {
    let env = start(Setup::default()).await;
    let mut tcp = connect(&env).await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Expect: 100-continue\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut interim = [0u8; 25];
    tcp.read_exact(&mut interim).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (first, rest) = CHAT.split_at(10);
    let chunks = format!("{:x}\r\n{first}\r\n{:x}\r\n{rest}\r\n0\r\n\r\n", first.len(), rest.len());
    tcp.write_all(chunks.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let (answer, closed) = to_close(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK") && closed, "{answer}");
    assert!(answer.contains("\"chat.completion\""), "{answer}");
    assert_eq!(env.upstream_bodies().len(), 1);
}

/// A client that connected and sent nothing (a browser's preconnect) is closed when the shutdown begins: the
/// gateway does not wait the shutdown's bound for it.
#[tokio::test]
async fn a_connection_that_sent_nothing_does_not_hold_the_shutdown() {
    let mut env = start(Setup { config_toml: Some("shutdown_timeout_secs = 20".into()), ..Setup::default() }).await;
    let mut silent = connect(&env).await;
    let mut idle = connect(&env).await;
    let health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    idle.write_all(health.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&answer, b"HTTP/1.1 200");
    env.stop_gateway();
    let returned = tokio::time::timeout(Duration::from_secs(5), &mut env.gateway).await;
    assert!(returned.is_ok(), "run waited for connections with no request in flight");
    let (sent, closed) = to_close(&mut silent).await;
    assert!(sent.is_empty() && closed, "{sent}");
}
