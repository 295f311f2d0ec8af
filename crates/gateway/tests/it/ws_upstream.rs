//! The upstream Responses WebSocket (issue 25): one connection per conversation reused across its turns, the
//! fallback to HTTP SSE when the handshake is refused, a connection past its time limit replaced between turns,
//! a wrapped error frame before the first byte failing over like the HTTP answer, `codex.rate_limits` frames
//! reaching the client's headers. The dialect modules also run whole over the WebSocket
//! (`CODEX_GATEWAY_TEST_TRANSPORT=websocket`, scripts/test).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

const WEBSOCKET: &str = "[upstream]\ntransport = \"websocket\"\n";

fn ws_setup(accounts: usize) -> Setup {
    Setup {
        accounts,
        linked: accounts == 1,
        store_accounts: accounts > 1,
        config_toml: Some(WEBSOCKET.into()),
        ..Setup::default()
    }
}

fn turn(conversation: &str, text: &str, stream: bool) -> Value {
    json!({"model": "gpt-5.4", "input": text, "stream": stream, "prompt_cache_key": conversation})
}

/// The transports the upstream requests went over, in order (`websocket` for a WebSocket message).
fn transports(env: &TestEnv) -> Vec<String> {
    env.fake.requests_to("/responses").into_iter().map(|r| r.http_version).collect()
}

/// The text of a Responses answer (streamed or not).
fn answered(status: u16, text: &str) -> bool {
    status == 200 && (text.contains("response.completed") || json(text)["status"] == "completed")
}

#[tokio::test]
async fn a_multi_turn_conversation_reuses_one_upstream_connection() {
    let env = start(ws_setup(1)).await;
    for (i, stream) in [true, false, true].into_iter().enumerate() {
        let (status, _, text) = env.post("/v1/responses", &turn("conv-a", &format!("turn {i}"), stream)).await;
        assert!(answered(status, &text), "turn {i}: {status} {text}");
    }
    assert_eq!(transports(&env), ["websocket"; 3], "every turn went over the WebSocket");
    assert_eq!(env.fake.ws_connections_opened(), 1, "the three turns shared one connection");
    let messages = env.fake.ws_messages();
    assert_eq!(messages.len(), 3);
    assert!(messages.iter().all(|m| m["type"] == "response.create"), "{messages:?}");
    // Another conversation gets its own connection.
    let (status, _, text) = env.post("/v1/responses", &turn("conv-b", "hello", true)).await;
    assert!(answered(status, &text), "{text}");
    assert_eq!(env.fake.ws_connections_opened(), 2);
}

#[tokio::test]
async fn a_refused_handshake_falls_back_to_sse_with_no_client_visible_error() {
    let env = start(ws_setup(1)).await;
    env.fake.set_ws_refuse(true);
    for stream in [true, false] {
        let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "hi", stream)).await;
        assert!(answered(status, &text), "stream={stream}: {status} {text}");
    }
    assert_eq!(env.fake.ws_connections_opened(), 0);
    assert!(transports(&env).iter().all(|t| t != "websocket"), "{:?}", transports(&env));
    // Remembered for a while: the account's requests stay on HTTP SSE even once the backend would accept.
    env.fake.set_ws_refuse(false);
    let (status, _, text) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.fake.ws_connections_opened(), 0);
}

/// An origin that serves the HTTP endpoints only answers the handshake 404 (a proxy in front of the backend, a
/// compatible server): served over HTTP as after a 426, with nothing for the client to see. Before, every request
/// failed.
#[tokio::test]
async fn an_origin_without_the_websocket_is_served_over_http() {
    let env = start(ws_setup(1)).await;
    env.fake.set_ws_absent(true);
    for stream in [true, false] {
        let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "hi", stream)).await;
        assert!(answered(status, &text), "stream={stream}: {status} {text}");
    }
    let (status, _, text) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.fake.ws_connections_opened(), 0);
    assert!(transports(&env).iter().all(|t| t != "websocket"), "{:?}", transports(&env));
    // Remembered for a while, as a 426 is: not a handshake per request.
    env.fake.set_ws_absent(false);
    let (status, _, text) = env.post("/v1/responses", &turn("conv-b", "hi", true)).await;
    assert!(answered(status, &text), "{status} {text}");
    assert_eq!(env.fake.ws_connections_opened(), 0);
}

/// A WebSocket broken where the origin is reached (a proxy or middlebox in front of the backend), while HTTP works:
/// the request goes over HTTP with nothing for the client to see, and the conversation stays there a while, as the
/// official client falls back from WebSockets to HTTPS for the rest of its session. Another conversation tries
/// the WebSocket again. Before, every such request failed (and was failed over to the next account).
#[tokio::test]
async fn a_websocket_that_fails_where_the_origin_is_reached_falls_back_to_http() {
    for (fault, connections) in [(fake_codex::WsFault::BadSwitch, 0), (fake_codex::WsFault::Closing, 3)] {
        let env = start(ws_setup(1)).await;
        let reason = match fault {
            fake_codex::WsFault::BadSwitch => "switch",
            fake_codex::WsFault::Closing => "closing",
        };
        // Counted since start, across this binary's tests: only this test breaks WebSockets.
        let fallbacks = async || env.get_json("/admin/status").await["upstream_websocket_fallbacks"][reason].as_u64();
        let before = fallbacks().await;
        assert!(before.is_some(), "{fault:?}: counted by reason");
        env.fake.set_ws_fault(Some(fault));
        for stream in [true, false] {
            let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "hi", stream)).await;
            assert!(answered(status, &text), "{fault:?} stream={stream}: {status} {text}");
        }
        // The first request tried it (three connections that closed at once), the second went straight to HTTP.
        assert_eq!(env.fake.ws_connections_opened(), connections, "{fault:?}");
        assert_eq!(transports(&env).len(), 2, "{fault:?}: {:?}", transports(&env));
        assert!(transports(&env).iter().all(|t| t != "websocket"), "{fault:?}: {:?}", transports(&env));
        // One fallback: the second request went to HTTP by the conversation's memory, without trying.
        assert!(fallbacks().await > before, "{fault:?}: counted as {reason}");
        env.fake.set_ws_fault(None);
        let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "again", true)).await;
        assert!(answered(status, &text), "{fault:?}: {status} {text}");
        assert_ne!(transports(&env).last().map(String::as_str), Some("websocket"), "{fault:?}: remembered");
        let (status, _, text) = env.post("/v1/responses", &turn("conv-b", "hi", true)).await;
        assert!(answered(status, &text), "{fault:?}: {status} {text}");
        assert_eq!(transports(&env).last().map(String::as_str), Some("websocket"), "{fault:?}: another conversation");
    }
}

#[tokio::test]
async fn a_connection_past_its_time_limit_is_replaced_transparently_between_turns() {
    let env = start(ws_setup(1)).await;
    env.fake.set_ws_connection_limit(Some(Duration::from_millis(300)));
    let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "first", true)).await;
    assert!(answered(status, &text), "{text}");
    // The backend ends the idle connection with `websocket_connection_limit_reached`.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for stream in [true, false] {
        let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "next", stream)).await;
        assert!(answered(status, &text), "stream={stream}: {status} {text}");
    }
    assert_eq!(env.fake.ws_connections_opened(), 2, "one replacement connection for the later turns");
    assert_eq!(transports(&env), ["websocket"; 3]);
}

#[tokio::test]
async fn a_scripted_error_frame_before_the_first_byte_fails_over_like_the_http_one() {
    let env = start(ws_setup(2)).await;
    // The first request (whichever account serves it) is refused with the backend's usage limit.
    let body = json!({"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","resets_in_seconds":600}});
    env.fake.enqueue(None, scenario(json!({"kind":"http_error","status":429,"body":body})));
    for stream in [true, false] {
        let (status, _, text) = env
            .post(
                "/v1/chat/completions",
                &json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":"x"}]}),
            )
            .await;
        assert_eq!(status, 200, "stream={stream}: {text}");
    }
    let requests = env.fake.requests_to("/responses");
    assert_eq!(requests.len(), 3, "the refused request was tried again on the other account");
    assert!(requests.iter().all(|r| r.http_version == "websocket"));
    assert_eq!(requests[0].status, 429);
    assert_ne!(requests[0].account_id, requests[1].account_id, "failed over to the other account");
    // The refused account rests (as after the HTTP 429): the next request went to the other one too.
    assert_eq!(requests[1].account_id, requests[2].account_id);
}

#[tokio::test]
async fn rate_limit_frames_reach_the_clients_headers_and_the_accounts_quota() {
    let env = start(ws_setup(1)).await;
    let reset = codex_gateway::auth::now_unix() + 1234;
    env.fake.set_quota(&env.accounts[0].account_id, 37.5, 12.0, Some(reset));
    let (status, h, text) = env.post("/v1/responses", &turn("conv-a", "hi", true)).await;
    assert!(answered(status, &text), "{text}");
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(header("x-codex-primary-used-percent"), "37.5", "{h:?}");
    assert_eq!(header("x-codex-primary-reset-at"), reset.to_string());
    assert_eq!(header("x-codex-secondary-used-percent"), "12");
    assert_eq!(transports(&env), ["websocket"]);
    let accounts = env.get_json("/admin/accounts").await;
    assert!(accounts.to_string().contains("37.5"), "the account's quota came from the frame: {accounts}");
}

/// `auto` (the default) follows the official client (0.169): the WebSocket for every model, whether its catalog
/// entry says `prefer_websockets` or not (the client no longer reads it).
#[tokio::test]
async fn auto_uses_the_websocket_for_every_model_as_the_official_client_does() {
    let env = start(Setup { config_toml: Some("[upstream]\ntransport = \"auto\"\n".into()), ..Setup::default() }).await;
    env.fake.set_ws_preferred("gpt-5.4", true);
    for model in ["gpt-5.4", "gpt-5.4-mini"] {
        let body = json!({"model": model, "input": "hi", "stream": true, "prompt_cache_key": "conv-a"});
        let (status, _, text) = env.post("/v1/responses", &body).await;
        assert!(answered(status, &text), "{model}: {text}");
    }
    assert_eq!(transports(&env), ["websocket", "websocket"], "{:?}", transports(&env));
}

/// An idle connection is closed after `websocket_idle_timeout_secs`: the conversation's next turn opens a new
/// one (and nothing waits for the closed one).
#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let toml = format!("{WEBSOCKET}websocket_idle_timeout_secs = 0.2\n");
    let env = start(Setup { config_toml: Some(toml), ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "first", true)).await;
    assert!(answered(status, &text), "{text}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _, text) = env.post("/v1/responses", &turn("conv-a", "next", true)).await;
    assert!(answered(status, &text), "{text}");
    assert_eq!(env.fake.ws_connections_opened(), 2, "the idle connection was closed, a new one took the turn");
}

/// At `websocket_max_per_account` an idle connection of another conversation is closed to make room; with none
/// idle, the request goes over HTTP SSE rather than waiting.
#[tokio::test]
async fn connections_per_account_are_bounded() {
    let toml = format!("{WEBSOCKET}websocket_max_per_account = 1\n");
    let env = start(Setup { config_toml: Some(toml), ..Setup::default() }).await;
    for conversation in ["conv-a", "conv-b"] {
        let (status, _, text) = env.post("/v1/responses", &turn(conversation, "hi", true)).await;
        assert!(answered(status, &text), "{conversation}: {text}");
    }
    assert_eq!(env.fake.ws_connections_opened(), 2, "conv-a's idle connection made room for conv-b's");
    // conv-a's slow answer holds the account's one connection while conv-b asks.
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"tick ".repeat(20),"deltas":20,"delay_ms":50})));
    let slow = {
        let (http, url, body) = (env.http.clone(), env.url("/v1/responses"), turn("conv-a", "slow", true));
        // Read to the end: a client that leaves would close the connection at once.
        tokio::spawn(async move {
            let resp = http.post(url).json(&body).send().await.ok()?;
            let status = resp.status().as_u16();
            resp.text().await.ok().filter(|t| t.contains("response.completed")).map(|_| status)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, text) = env.post("/v1/responses", &turn("conv-b", "meanwhile", true)).await;
    assert!(answered(status, &text), "{text}");
    assert_eq!(slow.await.ok().flatten(), Some(200));
    assert_eq!(transports(&env), ["websocket", "websocket", "websocket", "HTTP/1.1"], "{:?}", transports(&env));
}
