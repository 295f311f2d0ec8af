//! The Responses WebSocket handshake (issue 25): not spoken yet, so refused with 426 (the backend's "use HTTP
//! SSE"), on which the official client falls back at once instead of retrying a 405.

use crate::harness::{Setup, json, start};

#[tokio::test]
async fn websocket_handshake_on_responses_is_426_so_the_codex_cli_falls_back_to_sse() {
    let env = start(Setup::default()).await;
    for path in ["/v1/responses", "/responses"] {
        let resp = env
            .http
            .get(env.url(path))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("openai-beta", "responses_websockets=2026-02-06")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status().as_u16(), 426, "{path}");
        let v = json(&resp.text().await.unwrap_or_default());
        assert_eq!(v["error"]["code"], "websocket_not_supported", "{v}");
    }
    let plain = env.http.get(env.url("/v1/responses")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.status().as_u16(), 405, "a plain GET keeps its 405");
    assert_eq!(plain.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    assert!(env.upstream_bodies().is_empty());
}
