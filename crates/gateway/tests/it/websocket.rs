//! The Responses WebSocket on `/v1/responses` (issue 25): each `response.create` relayed through the HTTP
//! route's path, its events written back one text frame each; later turns that send only new input with
//! `previous_response_id`; error frames; the handshake's key check; a client that leaves cancels its turn.
//! With `[server] websocket = false` the handshake is the backend's 426 ("use HTTP SSE"). On shutdown a turn in
//! flight finishes before its socket closes with 1001, an idle socket gets 1001 at once, a handshake is a 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codex_gateway::record::RequestRecord;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Setup, TestEnv, json, scenario, start};
use crate::records::Collect;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ROUTE: &str = "/v1/responses (websocket)";

async fn env_with_records(setup: Setup) -> (TestEnv, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let env = start(Setup { record_sinks: vec![sink.clone()], ..setup }).await;
    (env, sink)
}

async fn connect(
    env: &TestEnv,
    key: Option<&str>,
    request_id: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = env.url("/v1/responses").replacen("http://", "ws://", 1);
    let mut req = url.into_client_request()?;
    let h = req.headers_mut();
    h.insert("openai-beta", "responses_websockets=2026-02-06".parse().unwrap_or_else(|e| panic!("{e}")));
    h.insert("x-request-id", request_id.parse().unwrap_or_else(|e| panic!("{e}")));
    if let Some(k) = key {
        h.insert("authorization", format!("Bearer {k}").parse().unwrap_or_else(|e| panic!("{e}")));
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap_or_else(|e| panic!("send: {e}"));
}

/// The next text frame as JSON (within 5 s).
async fn next(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within 5 s"))
            .unwrap_or_else(|| panic!("socket closed"))
            .unwrap_or_else(|e| panic!("socket error: {e}"));
        match msg {
            Message::Text(t) => return json(t.as_str()),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Every frame up to and including the turn's last (`response.completed`, `response.failed`, or an `error`).
async fn turn(ws: &mut Socket) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let v = next(ws).await;
        let end = matches!(v["type"].as_str(), Some("response.completed" | "response.failed" | "error"));
        frames.push(v);
        if end {
            return frames;
        }
    }
}

fn create(input: Value) -> Value {
    json!({"type": "response.create", "model": "gpt-5.4", "instructions": "", "input": input, "stream": true,
        "store": false})
}

async fn record(sink: &Collect, id: &str) -> RequestRecord {
    sink.one(id).await
}

#[tokio::test]
async fn a_plain_answer_comes_back_one_text_frame_per_event_with_the_rate_limits_first() {
    let (env, sink) = env_with_records(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-plain").await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut ws, create(json!([{"role": "user", "content": "hello there"}]))).await;
    let frames = turn(&mut ws).await;
    assert_eq!(frames[0]["type"], "codex.rate_limits", "{frames:?}");
    assert!(frames[0]["rate_limits"]["primary"]["used_percent"].is_number(), "{}", frames[0]);
    assert_eq!(frames[1]["type"], "response.created", "{frames:?}");
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["type"], "response.completed", "{frames:?}");
    let text: String = frames
        .iter()
        .filter(|f| f["type"] == "response.output_text.delta")
        .filter_map(|f| f["delta"].as_str())
        .collect();
    assert!(text.contains("hello there"), "{text}");
    // The upstream got an ordinary Responses body: no WebSocket envelope.
    let bodies = env.upstream_bodies();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].get("type").is_none() && bodies[0]["stream"] == true, "{}", bodies[0]);
    // One record per turn, like a POST, named for the socket.
    let r = record(&sink, "ws-plain-1").await;
    assert_eq!((r.route.as_ref(), r.status, r.stream), (ROUTE, 200, true), "{r:?}");
    assert!(r.usage.output_tokens > 0 && !r.client_disconnected, "{r:?}");
}

#[tokio::test]
async fn a_tool_round_trip_over_two_turns_sends_only_the_new_input_and_the_upstream_gets_it_all() {
    let env = start(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-tool").await.unwrap_or_else(|e| panic!("{e}"));
    env.fake.enqueue(
        None,
        scenario(json!({"kind": "tool_call", "name": "exec_command", "call_id": "call_1",
        "arguments": {"cmd": "ls"}})),
    );
    let user = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]});
    send(&mut ws, create(json!([user]))).await;
    let first = turn(&mut ws).await;
    let done = first.last().cloned().unwrap_or_default();
    assert_eq!(done["type"], "response.completed", "{first:?}");
    let id = done["response"]["id"].as_str().unwrap_or_default().to_string();
    let call = done["response"]["output"][0].clone();
    assert_eq!(call["type"], "function_call", "{done}");

    // The second turn: what the official client sends on a reused socket, only the item after the call.
    let output = json!({"type": "function_call_output", "call_id": "call_1", "output": "a.txt b.txt"});
    let mut next_turn = create(json!([output]));
    next_turn["previous_response_id"] = json!(id);
    send(&mut ws, next_turn).await;
    let second = turn(&mut ws).await;
    assert_eq!(second.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{second:?}");
    let bodies = env.upstream_bodies();
    assert_eq!(bodies.len(), 2);
    let input = bodies[1]["input"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(types, ["message", "function_call", "function_call_output"], "{}", bodies[1]);
    assert_eq!(input[1]["call_id"], "call_1");
    assert!(bodies[1].get("previous_response_id").is_none(), "{}", bodies[1]);
}

#[tokio::test]
async fn a_bad_message_gets_an_error_frame_and_the_socket_goes_on() {
    let env = start(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-bad").await.unwrap_or_else(|e| panic!("{e}"));
    ws.send(Message::text("not json")).await.unwrap_or_else(|e| panic!("{e}"));
    let e = next(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("error"), Some(400)), "{e}");
    assert_eq!(e["error"]["code"], "invalid_json", "{e}");
    let mut unknown = create(json!([]));
    unknown["previous_response_id"] = json!("resp_nope");
    send(&mut ws, unknown).await;
    let e = next(&mut ws).await;
    assert_eq!(e["error"]["code"], "previous_response_not_found", "{e}");
    // A request the HTTP route refuses is the same refusal, wrapped.
    send(&mut ws, json!({"type": "response.create", "model": "gpt-5.4", "input": 7})).await;
    let e = next(&mut ws).await;
    assert_eq!((e["type"].as_str(), e["status"].as_u64()), (Some("error"), Some(400)), "{e}");
    send(&mut ws, json!({"type": "response.create", "model": "no-such-model", "instructions": "", "input": []})).await;
    let e = next(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["status"].as_u64().is_some_and(|s| s >= 400), "{e}");
    // Still usable.
    send(&mut ws, create(json!([{"role": "user", "content": "after errors"}]))).await;
    let frames = turn(&mut ws).await;
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{frames:?}");
    assert_eq!(env.upstream_bodies().len(), 1, "refused messages never reached the upstream");
}

#[tokio::test]
async fn a_bad_key_is_refused_at_the_handshake() {
    let env = start(Setup { client_key: Some("sk-good".into()), ..Setup::default() }).await;
    match connect(&env, Some("sk-wrong"), "ws-key").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("a wrong key was upgraded"),
    }
    match connect(&env, None, "ws-nokey").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 401),
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("no key was upgraded"),
    }
    let mut ws = connect(&env, Some("sk-good"), "ws-goodkey").await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut ws, create(json!([{"role": "user", "content": "hi"}]))).await;
    let frames = turn(&mut ws).await;
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{frames:?}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_turn_cancels_the_upstream_stream() {
    let (env, sink) = env_with_records(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-left").await.unwrap_or_else(|e| panic!("{e}"));
    env.fake.enqueue(None, scenario(json!({"kind": "slow", "text": "tick ".repeat(60), "deltas": 60, "delay_ms": 50})));
    send(&mut ws, create(json!([{"role": "user", "content": "slowly"}]))).await;
    loop {
        if next(&mut ws).await["type"] == "response.output_text.delta" {
            break;
        }
    }
    drop(ws);
    let r = record(&sink, "ws-left-1").await;
    assert!(r.client_disconnected, "{r:?}");
    assert!(r.time_to_first_byte.is_some() && r.duration < Duration::from_secs(2), "{r:?}");
}

#[tokio::test]
async fn websocket_handshake_on_responses_is_426_so_the_codex_cli_falls_back_to_sse() {
    // Turned off in the config: the backend's "use HTTP SSE" answer, as before the socket was served.
    let config_toml = Some("[server]\nwebsocket = false\n".to_string());
    let env = start(Setup { config_toml, ..Setup::default() }).await;
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

#[tokio::test]
async fn a_socket_past_its_lifetime_gets_the_backends_limit_error_and_an_idle_one_is_closed() {
    let config_toml = Some("[server]\nwebsocket_max_secs = 0.3\nwebsocket_idle_secs = 0.6\n".to_string());
    let env = start(Setup { config_toml, ..Setup::default() }).await;
    let mut ws = connect(&env, None, "ws-old").await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut ws, create(json!([{"role": "user", "content": "in time"}]))).await;
    let frames = turn(&mut ws).await;
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{frames:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&mut ws, create(json!([{"role": "user", "content": "too late"}]))).await;
    let e = next(&mut ws).await;
    // The official client maps this code to a retryable error and opens a new connection.
    assert_eq!(e["error"]["code"], "websocket_connection_limit_reached", "{e}");
    let closed = tokio::time::timeout(Duration::from_secs(2), ws.next()).await.unwrap_or_else(|_| panic!("not closed"));
    assert!(matches!(closed, Some(Ok(Message::Close(_))) | None), "{closed:?}");
    assert_eq!(env.upstream_bodies().len(), 1, "the late turn never went upstream");

    let mut idle = connect(&env, None, "ws-idle").await.unwrap_or_else(|e| panic!("{e}"));
    let closed =
        tokio::time::timeout(Duration::from_secs(3), idle.next()).await.unwrap_or_else(|_| panic!("not closed"));
    assert!(matches!(closed, Some(Ok(Message::Close(_))) | None), "{closed:?}");
}

/// The next frame that is not a ping or pong, or `None` when the socket ended (within `limit`).
async fn next_frame(ws: &mut Socket, limit: Duration) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(limit, ws.next()).await.unwrap_or_else(|_| panic!("nothing within {limit:?}"));
        match msg {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

fn close_code(msg: &Option<Message>) -> Option<u16> {
    match msg {
        Some(Message::Close(Some(frame))) => Some(frame.code.into()),
        _ => None,
    }
}

#[tokio::test]
async fn on_shutdown_a_turn_in_flight_finishes_then_closes_with_1001_and_an_idle_socket_closes_at_once() {
    let config_toml = Some("shutdown_timeout_secs = 5\n".to_string());
    let (mut env, sink) = env_with_records(Setup { config_toml, ..Setup::default() }).await;
    let mut busy = connect(&env, None, "ws-busy").await.unwrap_or_else(|e| panic!("{e}"));
    let mut idle = connect(&env, None, "ws-idle").await.unwrap_or_else(|e| panic!("{e}"));
    // Proof the idle socket is served (its session runs) before the shutdown begins.
    send(&mut idle, create(json!([{"role": "user", "content": "before"}]))).await;
    let frames = turn(&mut idle).await;
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{frames:?}");
    env.fake.enqueue(None, scenario(json!({"kind": "slow", "text": "tick ".repeat(20), "deltas": 20, "delay_ms": 50})));
    send(&mut busy, create(json!([{"role": "user", "content": "slowly"}]))).await;
    loop {
        if next(&mut busy).await["type"] == "response.output_text.delta" {
            break;
        }
    }
    let stopping = Instant::now();
    env.stop_gateway();
    // The idle socket: a 1001 close at once, long before the busy turn ends.
    let closed = next_frame(&mut idle, Duration::from_secs(2)).await;
    assert_eq!(close_code(&closed), Some(1001), "{closed:?}");
    assert!(stopping.elapsed() < Duration::from_millis(600), "the idle socket waited {:?}", stopping.elapsed());

    // The busy socket: its turn runs to the end, then a 1001 close.
    let mut text = String::new();
    loop {
        let v = next(&mut busy).await;
        if let Some(d) = v["delta"].as_str() {
            text.push_str(d);
        }
        if v["type"] == "response.completed" {
            break;
        }
        assert_ne!(v["type"], "response.failed", "{v}");
    }
    assert!(text.contains("tick"), "{text}");
    let closed = next_frame(&mut busy, Duration::from_secs(2)).await;
    assert_eq!(close_code(&closed), Some(1001), "{closed:?}");
    let r = record(&sink, "ws-busy-1").await;
    assert!((r.status, r.client_disconnected) == (200, false) && r.usage.output_tokens > 0, "{r:?}");
    // `run` returned once the turn was over, well within the bound.
    let gateway = &mut env.gateway;
    tokio::time::timeout(Duration::from_secs(3), gateway)
        .await
        .unwrap_or_else(|_| panic!("run did not return after the last session closed"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopping.elapsed() < Duration::from_secs(4), "{:?}", stopping.elapsed());
}

#[tokio::test]
async fn on_shutdown_a_turn_past_the_bound_is_dropped_and_run_returns() {
    let config_toml = Some("shutdown_timeout_secs = 0.4\n".to_string());
    let mut env = start(Setup { config_toml, ..Setup::default() }).await;
    let mut ws = connect(&env, None, "ws-long").await.unwrap_or_else(|e| panic!("{e}"));
    env.fake
        .enqueue(None, scenario(json!({"kind": "slow", "text": "tick ".repeat(60), "deltas": 60, "delay_ms": 100})));
    send(&mut ws, create(json!([{"role": "user", "content": "slowly"}]))).await;
    loop {
        if next(&mut ws).await["type"] == "response.output_text.delta" {
            break;
        }
    }
    let stopping = Instant::now();
    env.stop_gateway();
    let gateway = &mut env.gateway;
    tokio::time::timeout(Duration::from_secs(3), gateway)
        .await
        .unwrap_or_else(|_| panic!("run did not return within the bound"))
        .unwrap_or_else(|e| panic!("{e}"));
    let took = stopping.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(2), "{took:?}");
    // The socket was dropped with its turn: it ends without the turn's completion.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                assert!(!t.as_str().contains("response.completed"), "the turn completed after the bound");
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the socket stayed open after the bound");
}

/// A handshake that reaches the route once the drain has begun (it raced the accept loop, which stops taking
/// connections, and hyper, which closes connections between requests) is refused: 503 in the Responses shape.
#[tokio::test]
async fn a_handshake_during_the_drain_is_a_503_in_the_responses_shape() {
    use tower::ServiceExt;
    let dir = std::env::temp_dir().join(format!("cgw-it-{}", uuid::Uuid::new_v4().simple()));
    let env: std::collections::HashMap<String, String> = [
        ("HOME", dir.display().to_string()),
        ("CODEX_HOME", dir.join("codex-home").display().to_string()),
        ("CODEX_GATEWAY_DATA_DIR", dir.join("data").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let overrides = codex_gateway::config::Overrides { port: Some(0), ..Default::default() };
    let config = codex_gateway::config::Config::resolve(Default::default(), &overrides, &env)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let state = Arc::new(codex_gateway::app::AppState::new(config).unwrap_or_else(|e| panic!("{e:#}")));
    let handshake = || {
        axum::http::Request::get("/v1/responses")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(axum::body::Body::empty())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let router = codex_gateway::server::router(state.clone());
    // Before the drain the route takes it (here without a connection to upgrade: axum's refusal, not a 503).
    let before = router.clone().oneshot(handshake()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(before.status().as_u16(), 503);
    state.drain.begin();
    let during = router.oneshot(handshake()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(during.status().as_u16(), 503);
    let body = axum::body::to_bytes(during.into_body(), 1 << 16).await.unwrap_or_default();
    let v = json(&String::from_utf8_lossy(&body));
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("shutting_down"), Some("server_error")),
        "{v}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client's warm-up (`generate: false`, issue 72): over the upstream WebSocket it is passed on, so the
/// upstream connection opens with it as the official client's does, and the first turn chains on it; over HTTP
/// (where the official client never warms up) the gateway answers it itself. Either way the client gets a
/// completed response with no output, whose id its next turn can name.
#[tokio::test]
async fn a_warm_up_opens_the_upstream_websocket_and_is_answered_here_over_http() {
    for upstream_ws in [true, false] {
        let config_toml = upstream_ws.then(|| "[upstream]\ntransport = \"websocket\"\n".to_string());
        let env = start(Setup { config_toml, ..Setup::default() }).await;
        let mut ws = connect(&env, None, "ws-warm").await.unwrap_or_else(|e| panic!("{e}"));
        let mut warm = create(json!([{"role": "user", "content": "warm me up"}]));
        warm["generate"] = json!(false);
        send(&mut ws, warm).await;
        let frames = turn(&mut ws).await;
        let done = frames.last().cloned().unwrap_or_default();
        assert_eq!(done["type"], "response.completed", "{frames:?}");
        assert_eq!(done["response"]["output"], json!([]), "{done}");
        let id = done["response"]["id"].as_str().unwrap_or_default().to_string();
        let mut next_turn = create(json!([{"role": "user", "content": "now answer"}]));
        next_turn["previous_response_id"] = json!(id);
        send(&mut ws, next_turn).await;
        let second = turn(&mut ws).await;
        assert_eq!(second.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{second:?}");
        let messages = env.fake.ws_messages();
        let creates: Vec<&Value> = messages.iter().filter(|m| m["type"] == "response.create").collect();
        if upstream_ws {
            assert_eq!(creates.len(), 2, "{messages:?}");
            assert_eq!(creates[0]["generate"], false, "{}", creates[0]);
            // The turn chained on the warm-up's response, with only its new item.
            assert!(creates[1]["previous_response_id"].is_string(), "{}", creates[1]);
            assert_eq!(creates[1]["input"].as_array().map(Vec::len), Some(1), "{}", creates[1]);
            assert!(creates[1].get("generate").is_none(), "{}", creates[1]);
            assert_eq!(env.fake.ws_connections_opened(), 1);
        } else {
            assert!(creates.is_empty(), "{messages:?}");
            // Only the turn reached the backend, with the warm-up's input before its own.
            let bodies = env.upstream_bodies();
            assert_eq!(bodies.len(), 1, "{bodies:?}");
            assert!(bodies[0].get("generate").is_none(), "{}", bodies[0]);
            assert_eq!(bodies[0]["input"].as_array().map(Vec::len), Some(2), "{}", bodies[0]);
        }
    }
}

/// A client that opens each process with a warm-up (the official CLI, one process per `exec` turn): the
/// gateway keeps the conversation's upstream connection after the client's own closed, so the next process's
/// warm-up is answered here and its turn chains on that connection's last turn with only its new item, instead
/// of the warm-up taking the chain's place and the turn going whole.
#[tokio::test]
async fn a_later_process_warm_up_keeps_the_upstream_chain() {
    let config_toml = Some("[upstream]\ntransport = \"websocket\"\n".to_string());
    let env = start(Setup { config_toml, ..Setup::default() }).await;
    let first = json!({"role": "user", "content": "the first message of a long session"});
    let mut history = vec![first.clone()];
    // The first process: its warm-up, then its turn chained on it.
    let mut ws = connect(&env, None, "proc-1").await.unwrap_or_else(|e| panic!("{e}"));
    // One conversation throughout, named as the official client names it (its thread id as the cache key).
    let create = |input: Value| {
        let mut c = create(input);
        c["prompt_cache_key"] = json!("thread-1");
        c
    };
    let mut warm = create(json!([]));
    warm["generate"] = json!(false);
    send(&mut ws, warm.clone()).await;
    let warmed = turn(&mut ws).await;
    let warm_id = warmed.last().map(|f| f["response"]["id"].clone()).unwrap_or_default();
    let mut first_turn = create(json!([first]));
    first_turn["previous_response_id"] = warm_id;
    send(&mut ws, first_turn).await;
    let answered = turn(&mut ws).await;
    let done = answered.last().cloned().unwrap_or_default();
    assert_eq!(done["type"], "response.completed", "{answered:?}");
    history.extend(done["response"]["output"].as_array().cloned().unwrap_or_default());
    drop(ws);
    // The second process: the same conversation, its warm-up, then the whole history and one new message.
    history.push(json!({"role": "user", "content": "and one more thing"}));
    let mut ws = connect(&env, None, "proc-2").await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut ws, warm).await;
    let warmed = turn(&mut ws).await;
    assert_eq!(warmed.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{warmed:?}");
    let warm_id = warmed.last().map(|f| f["response"]["id"].clone()).unwrap_or_default();
    let mut next_turn = create(json!(history));
    next_turn["previous_response_id"] = warm_id;
    send(&mut ws, next_turn).await;
    let second = turn(&mut ws).await;
    assert_eq!(second.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{second:?}");
    let messages = env.fake.ws_messages();
    let creates: Vec<&Value> = messages.iter().filter(|m| m["type"] == "response.create").collect();
    // The first process's warm-up and turn, then only the second process's turn.
    assert_eq!(creates.len(), 3, "{messages:?}");
    assert_eq!(creates[0]["generate"], false, "{}", creates[0]);
    assert!(creates[2].get("generate").is_none(), "{}", creates[2]);
    assert!(creates[2]["previous_response_id"].is_string(), "{}", creates[2]);
    // Only the new message, on the connection that holds the rest (the fake refuses a chain it does not hold).
    assert_eq!(creates[2]["input"].as_array().map(Vec::len), Some(1), "only the new message: {}", creates[2]);
    assert_eq!(env.fake.ws_connections_opened(), 1);
}

/// The end of the closing handshake as the client sees it: the server's Close frame (its code), then the end of
/// the stream. `Err` when the connection ended without one (what clients report as 1006).
async fn close_reply(ws: &mut Socket) -> Result<u16, String> {
    let reply = loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Err(_) => return Err("no close reply within 3 s".into()),
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            // Frames of a turn still on their way before the reply.
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("{e}")),
            Ok(None) => return Err("the stream ended without a close frame".into()),
        }
    };
    let code = reply.map(|f| u16::from(f.code)).ok_or("a close frame without a code")?;
    match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        Ok(None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed))) => Ok(code),
        other => Err(format!("after the close reply: {other:?}")),
    }
}

/// RFC 6455 5.5.1: a Close frame is answered with a Close frame before the connection is dropped. The gateway used
/// to drop it at once, and node's and Python's clients reported 1006 after their own normal 1000.
#[tokio::test]
async fn a_clients_close_is_answered_with_a_close_frame_echoing_its_code_idle_or_mid_turn() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let env = start(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-close").await.unwrap_or_else(|e| panic!("{e}"));
    send(&mut ws, create(json!([{"role": "user", "content": "hello"}]))).await;
    let frames = turn(&mut ws).await;
    assert_eq!(frames.last().map(|f| f["type"].clone()), Some(json!("response.completed")), "{frames:?}");
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(close_reply(&mut ws).await, Ok(1000));

    // Mid-turn: the turn ends (the client left), and the close is still answered, with the client's own code.
    let mut busy = connect(&env, None, "ws-close-busy").await.unwrap_or_else(|e| panic!("{e}"));
    env.fake.enqueue(None, scenario(json!({"kind": "slow", "text": "tick ".repeat(60), "deltas": 60, "delay_ms": 50})));
    send(&mut busy, create(json!([{"role": "user", "content": "slowly"}]))).await;
    loop {
        if next(&mut busy).await["type"] == "response.output_text.delta" {
            break;
        }
    }
    busy.close(Some(CloseFrame { code: CloseCode::Away, reason: "".into() })).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(close_reply(&mut busy).await, Ok(1001));
}

/// A socket's turn that did not say `store: false` is kept among the gateway's responses: an HTTP request can
/// chain on it (and one that said `store: false`, as the official client does, stays the socket's own).
#[tokio::test]
async fn a_kept_websocket_turn_can_be_chained_over_http() {
    let env = start(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-kept").await.unwrap_or_else(|e| panic!("{e}"));
    let mut kept = create(json!([{"role": "user", "content": "remember me"}]));
    kept["store"] = json!(true);
    send(&mut ws, kept).await;
    let done = turn(&mut ws).await.pop().unwrap_or_default();
    let kept_id = done["response"]["id"].clone();
    send(&mut ws, create(json!([{"role": "user", "content": "only mine"}]))).await;
    let done = turn(&mut ws).await.pop().unwrap_or_default();
    let own_id = done["response"]["id"].clone();

    let chained = json!({"model": "gpt-5.4", "input": "next", "previous_response_id": kept_id});
    let (status, _, text) = env.post("/v1/responses", &chained).await;
    assert_eq!(status, 200, "{text}");
    let last = env.upstream_bodies().pop().unwrap_or_default();
    // As the socket's client sent it, made what the backend takes (`type: message`) like any HTTP input.
    assert_eq!((&last["input"][0]["type"], &last["input"][0]["content"]), (&json!("message"), &json!("remember me")));
    assert_eq!(last["input"][1]["role"], "assistant", "{last}");
    let (status, _, text) =
        env.post("/v1/responses", &json!({"model": "gpt-5.4", "input": "x", "previous_response_id": own_id})).await;
    assert_eq!((status, json(&text)["error"]["code"].clone()), (400, json!("previous_response_not_found")));
}

/// A warm-up that did not say `store: false` is kept among the gateway's responses like a turn: an HTTP request
/// can chain on its (empty) response, which brings the warm-up's input.
#[tokio::test]
async fn a_kept_warm_up_can_be_chained_over_http() {
    let env = start(Setup::default()).await;
    let mut ws = connect(&env, None, "ws-warm-kept").await.unwrap_or_else(|e| panic!("{e}"));
    let mut warm = create(json!([{"role": "user", "content": "warm and kept"}]));
    warm["generate"] = json!(false);
    warm["store"] = json!(true);
    send(&mut ws, warm).await;
    let done = turn(&mut ws).await.pop().unwrap_or_default();
    assert_eq!(done["type"], "response.completed", "{done}");
    let chained = json!({"model": "gpt-5.4", "input": "next", "previous_response_id": done["response"]["id"]});
    let (status, _, text) = env.post("/v1/responses", &chained).await;
    assert_eq!(status, 200, "{text}");
    let last = env.upstream_bodies().pop().unwrap_or_default();
    assert_eq!(last["input"][0]["content"], "warm and kept", "{last}");
    assert!(last.get("generate").is_none(), "{last}");
}
