//! Every answer after which the gateway closes the connection says so (`Connection: close`; issue 88): a body over
//! `body_limit_mb` (413), a client key missing on a POST with its body (401), a body sent to an unknown route
//! (404) or to a route of another method (405). Each answer comes before the body was read, and hyper closes such
//! a connection; a pooling client that was told nothing sends its next request on it and gets no answer ("Server
//! disconnected without sending a response", httpx). Written as that client, by hand over TCP.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Setup, TestEnv, start};

/// A body of 2 MiB declared, against a limit of 1 MiB; sent whole for the 413, else only its first 16 KB (the
/// answer comes before the body is read).
const DECLARED: usize = 2 * 1024 * 1024;
const SENT: usize = 16 * 1024;

async fn connect(env: &TestEnv) -> TcpStream {
    let addr = env.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// One answer's head (up to the blank line) and as much of its body as `Content-Length` says; `None`: the
/// connection closed (or said nothing within 5 s) before a whole answer.
async fn answer(tcp: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(head.to_string());
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Whether an answer's head says the connection closes after it.
fn says_close(head: &str) -> bool {
    head.lines().any(|l| l.to_ascii_lowercase().starts_with("connection:") && l.to_ascii_lowercase().contains("close"))
}

/// As a pooling client: `request` (a head declaring [`DECLARED`] bytes, then `sent` of them, written while the
/// answer is read), its answer read, then `GET /health` at once on the same connection unless the answer said
/// `close` (then on a new one, as httpx and every pooling client do). Returns the first answer's head and the
/// second's status line (`None`: no answer on the reused connection).
async fn then_health(env: &TestEnv, request_head: &str, sent: usize) -> (String, Option<String>) {
    let tcp = connect(env).await;
    let (mut read, mut write) = tcp.into_split();
    let head = format!("{request_head}Content-Length: {DECLARED}\r\n\r\n");
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        for _ in 0..sent / SENT {
            write.write_all(&[b'x'; SENT]).await?;
        }
        Ok::<_, std::io::Error>(write)
    });
    let first = answer(&mut read).await.unwrap_or_else(|| panic!("no answer to {request_head}"));
    let write = writer.await.unwrap_or_else(|e| panic!("{e}"));
    let health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if says_close(&first) {
        let mut tcp = connect(env).await;
        tcp.write_all(health.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
        return (first, answer(&mut tcp).await.and_then(|h| h.lines().next().map(str::to_string)));
    }
    // A write on a connection the gateway closed may fail or not; either way no answer comes.
    let second = match write {
        Ok(mut write) => match write.write_all(health.as_bytes()).await {
            Ok(()) => answer(&mut read).await.and_then(|h| h.lines().next().map(str::to_string)),
            Err(_) => None,
        },
        Err(_) => None,
    };
    (first, second)
}

#[tokio::test]
async fn a_body_over_the_limit_is_answered_413_with_connection_close_and_the_next_request_is_served() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_BODY_LIMIT_MB", "1".into())], ..Setup::default() }).await;
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let (first, second) = then_health(&env, head, DECLARED).await;
    assert!(first.starts_with("HTTP/1.1 413 "), "{first}");
    assert!(says_close(&first), "the 413 says the connection closes: {first}");
    assert_eq!(second.as_deref(), Some("HTTP/1.1 200 OK"), "the next request after the 413: {first}");
    assert!(env.upstream_bodies().is_empty());
}

#[tokio::test]
async fn early_answers_that_leave_a_body_unread_say_connection_close() {
    let env = start(Setup { client_key: Some("sk-closing-test".into()), ..Setup::default() }).await;
    let key = "Authorization: Bearer sk-closing-test\r\n";
    let json = "Content-Type: application/json\r\n";
    for (request, status) in [
        // The guard: no client key, before the body is read.
        (format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{json}"), "401"),
        (format!("POST /v1/nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n{key}{json}"), "404"),
        (format!("POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n{key}{json}"), "405"),
    ] {
        let (first, second) = then_health(&env, &request, SENT).await;
        assert!(first.starts_with(&format!("HTTP/1.1 {status} ")), "{request}: {first}");
        assert!(says_close(&first), "{request}: the answer says the connection closes: {first}");
        assert!(second.is_some_and(|s| s.starts_with("HTTP/1.1 ")), "{request}: the next request is answered");
    }
    // A request whose body was read keeps its connection.
    let mut tcp = connect(&env).await;
    let body = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n{key}{json}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let first = answer(&mut tcp).await.unwrap_or_else(|| panic!("no answer"));
    assert!(first.starts_with("HTTP/1.1 200 ") && !says_close(&first), "{first}");
}
