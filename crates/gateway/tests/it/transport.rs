//! Connections: the HTTP/1.1 listener's graceful shutdown, and HTTP/2 to the upstream.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Setup, scenario, sse_data, start};

fn chat(stream: bool) -> serde_json::Value {
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":"hello there"}]})
}

#[tokio::test]
async fn shutdown_lets_open_streams_finish_and_refuses_new_connections() {
    let mut env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"one two three four","deltas":4,"delay_ms":150})));
    let mut resp =
        env.http.post(env.url("/v1/chat/completions")).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let mut body = String::new();
    let first = resp.chunk().await.unwrap_or_default().unwrap_or_default();
    body.push_str(&String::from_utf8_lossy(&first));
    env.stop_gateway();
    // New connections are refused once the listener is gone.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    loop {
        if fresh.get(env.url("/health")).send().await.is_err() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "still accepting connections after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stream that was open finishes normally.
    while let Some(chunk) = resp.chunk().await.unwrap_or_else(|e| panic!("the open stream was cut: {e}")) {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "one two three four");
}

/// Reads a hyper response body frame by frame; `None` at the end.
async fn next_data(body: &mut hyper::body::Incoming) -> Option<Result<bytes::Bytes, hyper::Error>> {
    use hyper::body::Body;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

fn content_of(sse: &str) -> String {
    sse_data(sse)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// HTTP/2 to the upstream (`upstream_h2c`): two streams share the upstream connection, one of them with a
/// client that stops reading for seconds while the upstream keeps sending small frames. Both finish, whole.
///
/// The failure this configuration guards against (h2 ending the connection with "too_many_data_frames" when
/// unread small frames cost more overhead than half the connection window, which hyper's adaptive windows kept
/// at 64 KB) needs thousands of streams opening at once to show on loopback, where the adaptive window grows
/// fast: the benchmark's HTTP/2 slow-stream scenario reproduces it (4,825 of 5,000 streams lost before the fix).
#[tokio::test]
async fn http2_upstream_shares_a_connection_with_a_stalled_client() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_UPSTREAM_H2C", "1".into())], ..Setup::default() }).await;
    let stalled_deltas = 2500;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"slow","text":"x ".repeat(stalled_deltas),"deltas":stalled_deltas,"delay_ms":1})),
    );
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"a b c d e f g h i j","deltas":10,"delay_ms":300})));

    // The stalled client: a tiny receive buffer, so the gateway's writes to it block soon.
    let addr: std::net::SocketAddr =
        env.base.trim_start_matches("http://").parse().unwrap_or_else(|e| panic!("gateway address: {e}"));
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
    socket.set_recv_buffer_size(4096).unwrap_or_else(|e| panic!("{e}"));
    let tcp = socket.connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    tokio::spawn(conn);
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(chat(true).to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = sender.send_request(request).await.unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(response.status(), 200);
    let mut stalled_body = response.into_body();
    let mut stalled = String::new();
    if let Some(Ok(first)) = next_data(&mut stalled_body).await {
        stalled.push_str(&String::from_utf8_lossy(&first));
    }

    // Another stream on the same upstream connection, read normally while the first one is stalled.
    let other = tokio::spawn({
        let http = env.http.clone();
        let url = env.url("/v1/chat/completions");
        async move {
            let resp = http.post(url).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
            resp.text().await.unwrap_or_else(|e| panic!("the other stream was cut: {e}"))
        }
    });
    // Long enough for the fake to send every delta of the stalled stream (2,500 at ~1 ms).
    tokio::time::sleep(Duration::from_millis(4000)).await;
    while let Some(chunk) = next_data(&mut stalled_body).await {
        let chunk = chunk.unwrap_or_else(|e| panic!("the stalled stream was cut: {e}"));
        stalled.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        sse_data(&stalled).last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        &stalled[stalled.len().saturating_sub(600)..]
    );
    assert_eq!(content_of(&stalled), "x ".repeat(stalled_deltas));
    let other = other.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content_of(&other), "a b c d e f g h i j", "{other}");
    // Both streams (and anything else the gateway asked the fake) went over one HTTP/2 connection.
    assert_eq!(env.fake.stats()["connections_accepted"], 1, "{}", env.fake.stats());
}
