//! Connections: the HTTP/1.1 listener (keep-alive, graceful shutdown) and the HTTP/2 (h2c) upstream option.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Setup, scenario, sse_data, start};

fn chat(stream: bool) -> serde_json::Value {
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":"hello there"}]})
}

fn connections(env: &crate::harness::TestEnv) -> u64 {
    env.fake.stats()["connections"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn h2c_upstream_carries_concurrent_streams_on_one_connection() {
    let mut setup = Setup::default();
    setup.env.push(("CODEX_GATEWAY_UPSTREAM_H2C", "1".into()));
    let env = start(setup).await;
    // The first request opens the connection (catalog, then the answer).
    let (status, _, body) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{body}");
    let opened = connections(&env);
    let body = chat(true);
    let requests = (0..8).map(|_| env.post("/v1/chat/completions", &body));
    for (status, _, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
        let data = sse_data(&body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    }
    assert_eq!(connections(&env), opened, "8 concurrent streams opened new upstream connections");

    // A client that leaves still ends its upstream stream at once (an HTTP/2 reset, not a closed socket).
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"tick ".repeat(60),"deltas":60,"delay_ms":50})));
    let before = env.fake.stats()["streams_dropped"].as_u64().unwrap_or(0);
    let mut resp =
        env.http.post(env.url("/v1/chat/completions")).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(resp.chunk().await.unwrap_or_default().is_some_and(|c| !c.is_empty()));
    drop(resp);
    let left = Instant::now();
    while env.fake.stats()["streams_dropped"].as_u64().unwrap_or(0) == before {
        assert!(left.elapsed() < Duration::from_millis(500), "the upstream stream outlived its client");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
