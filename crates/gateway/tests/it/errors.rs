//! Every error a client can meet, in the OpenAI shape with the right status.

use serde_json::json;

use crate::harness::{Setup, json, scenario, sse_data, start};

fn chat(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400() {
    let env = start(Setup::default()).await;
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 400);
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_json");

    let (status, _, text) = env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":"hi"})).await;
    assert_eq!(status, 400);
    assert_eq!(json(&text)["error"]["param"], "messages");

    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({"n": 3}))).await;
    assert_eq!((status, json(&text)["error"]["param"].clone()), (400, json!("n")));
    assert!(env.upstream_bodies().is_empty(), "bad input never reaches upstream");
}

#[tokio::test]
async fn unknown_model_is_404() {
    let env = start(Setup::default()).await;
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({"model":"gpt-9-imaginary"}))).await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(json(&text)["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn client_key_is_enforced() {
    let env = start(Setup { client_key: Some("sekret".into()), ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 401, "{text}");
    assert_eq!(json(&text)["error"]["type"], "authentication_error");
    let (status, _, _) =
        env.post_with("/v1/chat/completions", &chat(json!({})), &[("authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
    let (status, _, _) =
        env.post_with("/v1/chat/completions", &chat(json!({})), &[("authorization", "Bearer sekret")]).await;
    assert_eq!(status, 200);
    let (status, _, _) = env.post_with("/v1/chat/completions", &chat(json!({})), &[("x-api-key", "sekret")]).await;
    assert_eq!(status, 200);
    // Liveness needs no key.
    let health = env.http.get(env.url("/health")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_BODY_LIMIT_MB", "1".into())], ..Setup::default() }).await;
    let big = "x".repeat(1_100_000);
    let (status, _, text) =
        env.post("/v1/chat/completions", &chat(json!({"messages":[{"role":"user","content":big}]}))).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(json(&text)["error"]["code"], "request_too_large");
}

/// A small body over the limit: refused by the router's limit, in each model dialect's own error shape.
#[tokio::test]
async fn small_body_over_the_limit_is_413_on_every_model_route() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_BODY_LIMIT_MB", "0".into())], ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(json(&text)["error"]["code"], "request_too_large");
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(json(&text)["error"]["code"], "request_too_large");
    let body = json!({"model":"gpt-5.4","max_tokens":16,"messages":[{"role":"user","content":"hi"}]});
    let (status, _, text) = env.post("/v1/messages", &body).await;
    assert_eq!(status, 413, "{text}");
    assert_eq!(json(&text)["type"], "error");
}

#[tokio::test]
async fn usage_limit_is_429_with_retry_after() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"usage_limit","resets_in_secs":120})));
    let (status, headers, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 429, "{text}");
    let retry: u64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((100..=121).contains(&retry), "retry-after {retry}");
    assert_eq!(json(&text)["error"]["type"], "rate_limit_error");
    assert_eq!(json(&text)["error"]["code"], "usage_limit_reached");
}

#[tokio::test]
async fn context_too_long_is_400_context_length_exceeded() {
    let env = start(Setup::default()).await;
    for stream in [false, true] {
        env.fake.enqueue(None, scenario(json!({"kind":"context_length_exceeded"})));
        let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({"stream": stream}))).await;
        assert_eq!(status, 400, "stream={stream}: {text}");
        assert_eq!(json(&text)["error"]["code"], "context_length_exceeded");
    }
}

#[tokio::test]
async fn upstream_4xx_passes_through_and_is_not_retried() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"http_error","status":400,"body":{"error":{"message":"Invalid schema for response_format","code":"invalid_json_schema","type":"invalid_request_error"}}})),
    );
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["code"], "invalid_json_schema");
    assert_eq!(env.upstream_bodies().len(), 1, "a 4xx is never retried");
}

#[tokio::test]
async fn upstream_5xx_is_a_server_error() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"server_error","status":500})));
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(json(&text)["error"]["type"], "server_error");
}

#[tokio::test]
async fn cut_stream_is_an_in_stream_error_not_a_clean_end() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"cut","after_deltas":2})));
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({"stream": true}))).await;
    assert_eq!(status, 200);
    let data = sse_data(&text);
    let last = data.last().cloned().unwrap_or_default();
    assert!(json(&last).get("error").is_some(), "last event must be an error: {text}");
    assert!(!text.contains("[DONE]"), "no clean end after a cut");
    // Non-streaming: a 502, not a truncated answer.
    env.fake.enqueue(None, scenario(json!({"kind":"cut","after_deltas":2})));
    let (status, _, _) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn no_credentials_still_starts_and_explains() {
    let env = start(Setup { accounts: 0, linked: false, ..Setup::default() }).await;
    let ready = env.http.get(env.url("/ready")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status().as_u16(), 503);
    let (status, _, text) = env.post("/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(status, 401, "{text}");
    let msg = json(&text)["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("codex login") && msg.contains("accounts import"), "{msg}");
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let env = start(Setup::default()).await;
    let resp = env.http.get(env.url("/v1/nothing")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 404);
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}
