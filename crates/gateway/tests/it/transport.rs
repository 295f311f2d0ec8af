//! Connections: the HTTP/1.1 listener's graceful shutdown.

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
