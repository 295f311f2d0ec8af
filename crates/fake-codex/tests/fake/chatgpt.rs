//! The ChatGPT-login surface the official client reads (workspace routing discovery, user settings, the catalog
//! in the shape it parses) and the Responses WebSocket as the official client uses it (a warm-up, then turns that
//! chain from the previous response with only their new items).

use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn get(fake: &FakeCodex, path: &str, token: Option<&str>, account: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{}{path}", fake.base_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(a) = account {
        req = req.header("ChatGPT-Account-ID", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn workspace_discovery_lists_the_tokens_account_with_no_routing_constraint() {
    let (fake, c) = start().await;
    let other = fake.add_account(AccountSpec::default());
    let (status, body) =
        get(&fake, "/backend-api/wham/accounts/check", Some(&c.access_token), Some(&c.account_id)).await;
    assert_eq!(status, 200, "{body}");
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "only the workspace the token belongs to: {body}");
    assert_eq!(accounts[0]["id"], c.account_id.as_str());
    assert_eq!(accounts[0]["workspace_backend_origin"], "NO_CONSTRAINT");
    assert_eq!(accounts[0]["account_routing_override"], "NO_CONSTRAINT");
    assert!(accounts[0]["structure"].is_string(), "never null: the client refuses a null structure");
    assert_ne!(accounts[0]["id"], other.account_id.as_str());
    // As strict as the Responses endpoint: a token, and the account header that matches it.
    assert_eq!(get(&fake, "/backend-api/wham/accounts/check", None, Some(&c.account_id)).await.0, 401);
    let mismatch = get(&fake, "/backend-api/wham/accounts/check", Some(&c.access_token), Some(&other.account_id));
    assert_eq!(mismatch.await.0, 403);
    let (status, settings) =
        get(&fake, "/backend-api/wham/settings/user", Some(&c.access_token), Some(&c.account_id)).await;
    assert_eq!((status, settings.is_object()), (200, true));
    assert_eq!(get(&fake, "/backend-api/wham/settings/user", Some("nope"), Some(&c.account_id)).await.0, 401);
}

#[tokio::test]
async fn every_catalog_entry_has_what_the_official_client_requires_to_read_it() {
    let (fake, c) = start().await;
    let (status, body) =
        get(&fake, "/backend-api/codex/models?client_version=0.169.0", Some(&c.access_token), Some(&c.account_id))
            .await;
    assert_eq!(status, 200);
    let models = body["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for m in models {
        for key in [
            "slug",
            "display_name",
            "supported_reasoning_levels",
            "shell_type",
            "visibility",
            "supported_in_api",
            "priority",
            "support_verbosity",
            "truncation_policy",
            "experimental_supported_tools",
        ] {
            assert!(m.get(key).is_some_and(|v| !v.is_null()), "{} lacks {key}", m["slug"]);
        }
        assert!(m["base_instructions"].as_str().is_some_and(|s| !s.is_empty()), "{}", m["slug"]);
        assert!(["bytes", "tokens"].contains(&m["truncation_policy"]["mode"].as_str().unwrap()));
        for tier in m["service_tiers"].as_array().unwrap() {
            for key in ["id", "name", "description"] {
                assert!(tier[key].is_string(), "{}: tier {tier} lacks {key}", m["slug"]);
            }
        }
    }
}

#[tokio::test]
async fn a_body_without_instructions_is_served_as_the_official_client_sends_it() {
    let (fake, c) = start().await;
    let mut b = body();
    b.as_object_mut().unwrap().shift_remove("instructions");
    b["input"] = json!([
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "base instructions"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ]);
    let evs = events(&fake, &c, &b).await;
    assert!(text_of(&evs).contains("You said: hi"), "{}", text_of(&evs));
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(fake: &FakeCodex, c: &AccountCreds) -> Socket {
    let url = format!("{}/responses", fake.codex_base_url()).replacen("http", "ws", 1);
    let mut req = url.into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("authorization", format!("Bearer {}", c.access_token).parse().unwrap());
    h.insert("chatgpt-account-id", c.account_id.parse().unwrap());
    h.insert("originator", "codex_exec".parse().unwrap());
    h.insert("openai-beta", "responses_websockets=2026-02-06".parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    socket
}

/// Send one message; the frames of its answer, up to the terminal one.
async fn turn(socket: &mut Socket, msg: Value) -> Vec<Value> {
    socket.send(Message::Text(msg.to_string().into())).await.unwrap();
    let mut frames = Vec::new();
    loop {
        let Some(Ok(Message::Text(t))) = socket.next().await else { panic!("socket ended after {frames:?}") };
        let v: Value = serde_json::from_str(&t).unwrap();
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        // The backend's own frames around a turn (`codex.rate_limits`, `codex.response.metadata`, and
        // `responsesapi.websocket_timing`, which may come after the previous turn's end) are not its events: the
        // official client reads none of them as one.
        if kind.starts_with("codex.") || kind.starts_with("responsesapi.") {
            continue;
        }
        frames.push(v);
        if ["response.completed", "response.failed", "error"].contains(&kind.as_str()) {
            return frames;
        }
    }
}

fn create(mut b: Value, extra: Value) -> Value {
    b["type"] = json!("response.create");
    b.as_object_mut().unwrap().shift_remove("instructions");
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn response_id(frames: &[Value]) -> String {
    let done = frames.iter().find(|f| f["type"] == "response.completed").unwrap();
    done["response"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_websocket_warm_up_then_chained_turns_send_only_their_new_items() {
    let (fake, c) = start().await;
    let mut socket = connect(&fake, &c).await;
    // The warm-up: validated, completed at once, no output, and nothing charged.
    let warm = turn(&mut socket, create(body(), json!({"generate": false, "input": []}))).await;
    let kinds: Vec<&str> = warm.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["response.created", "response.completed"]);
    assert_eq!(warm[1]["response"]["output"], json!([]));
    let bad_warm = turn(&mut socket, create(body(), json!({"generate": false, "store": true}))).await;
    assert_eq!(bad_warm[0]["status"], 400, "a warm-up is validated like any request: {bad_warm:?}");
    let warm = turn(&mut socket, create(body(), json!({"generate": false, "input": []}))).await;
    // The first turn chains from the warm-up with its whole input as the new items.
    fake.enqueue(Some(&c.account_id), Scenario::tool_call("exec_command", json!({"cmd": "ls"})));
    let first = turn(&mut socket, create(body(), json!({"previous_response_id": response_id(&warm)}))).await;
    let call = first
        .iter()
        .find(|f| f["type"] == "response.output_item.done" && f["item"]["type"] == "function_call")
        .unwrap()["item"]["call_id"]
        .clone();
    // The next turn sends only the tool's output: valid only with the chain's call in front of it.
    let output = json!([{"type": "function_call_output", "call_id": call, "output": "a.txt"}]);
    let second =
        turn(&mut socket, create(body(), json!({"previous_response_id": response_id(&first), "input": output}))).await;
    let text: String = second
        .iter()
        .filter(|f| f["type"] == "response.output_text.delta")
        .map(|f| f["delta"].as_str().unwrap().to_string())
        .collect();
    assert!(text.contains("Tool result: a.txt"), "{second:?}");
    // A response this connection does not hold (an older one) is refused; the chain is then gone.
    let stale = turn(&mut socket, create(body(), json!({"previous_response_id": response_id(&first)}))).await;
    assert_eq!(stale[0]["type"], "error");
    assert_eq!(stale[0]["error"]["code"], "previous_response_not_found", "{stale:?}");
    // Each connection keeps its own: another socket cannot chain from this one's response.
    let mut other = connect(&fake, &c).await;
    let foreign = turn(&mut other, create(body(), json!({"previous_response_id": response_id(&second)}))).await;
    assert_eq!(foreign[0]["error"]["code"], "previous_response_not_found");
    // What the client sent is recorded as sent: the chain id and only the new items.
    let recorded: Vec<Value> = fake.requests_to("/codex/responses").into_iter().map(|r| r.body).collect();
    let chained = recorded.iter().find(|b| b["input"] == output).unwrap();
    assert_eq!(chained["previous_response_id"], json!(response_id(&first)));
}
