//! The upstream Responses WebSocket against Python's `websockets` (`ws_origin.py`), an implementation of RFC 6455
//! and RFC 7692 the gateway did not write: the gateway offers permessage-deflate as the official client does,
//! compresses each message it sends on its own with the window the server asked for, and inflates what the server
//! compressed with its context, over the turns of one connection.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_codex::{FakeCodex, FakeConfig};
use serde_json::{Value, json};

use super::servers::{Dir, free_port};

/// The answer's text (`ws_origin.py`'s deltas).
const ORIGIN_TEXT: &str = "Hello from websockets.";

struct Origin {
    child: Child,
    port: u16,
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ws_origin.py` on a free port, recording into `record`; the test fails naming the setup script when the venv or
/// `websockets` is missing.
fn origin(record: &Path, plain: bool) -> Origin {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/interop/ws_origin.py");
    assert!(python.is_file(), "{} is missing: run scripts/setup-test-deps", python.display());
    let port = free_port();
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(record)
        .args(plain.then_some("plain"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("ws_origin.py: {e}"));
    let (line, _) = crate::harness::first_line(&mut child, Duration::from_secs(60), "ws_origin.py");
    assert_eq!(
        line.trim(),
        "listening",
        "ws_origin.py did not start (is `websockets` in .venv? scripts/setup-test-deps)"
    );
    Origin { child, port }
}

/// The origin's record: one line per message received.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// The streamed chat answer's text.
async fn ask(client: &reqwest::Client, base: &str, messages: &Value) -> String {
    let body = json!({"model": "gpt-5.4", "stream": true, "messages": messages});
    let response = client.post(format!("{base}/v1/chat/completions")).json(&body).send().await;
    let response = response.unwrap_or_else(|e| panic!("no answer: {e}"));
    let status = response.status();
    let answer = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.is_success(), "{status}: {answer}");
    assert!(answer.contains("data: [DONE]"), "{answer}");
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .map(|v| {
            assert!(v.get("error").is_none(), "in-stream error: {v}");
            v["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Two turns of one Chat conversation through a gateway whose upstream WebSocket is `ws_origin.py` (agreeing to
/// no extension when `plain`); what the origin recorded.
async fn two_turns(plain: bool) -> Vec<Value> {
    let dir = Dir::new("ws-origin");
    let record = dir.0.join("record.jsonl");
    let origin = origin(&record, plain);
    let fake = FakeCodex::start(FakeConfig::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let store = codex_gateway::store::Store::open(&dir.0.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    crate::harness::store_account(&fake, &store);
    drop(store);
    let config = dir.write("config.toml", "[upstream]\ntransport = \"websocket\"\n");
    let upstream = format!("http://127.0.0.1:{}/backend-api/codex", origin.port);
    let env = [("CODEX_GATEWAY_UPSTREAM_BASE_URL", upstream.as_ref()), ("CODEX_GATEWAY_CONFIG", config.as_os_str())];
    let gateway = crate::crash::spawn_gateway(&fake, &dir.0, &env).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_else(|e| panic!("{e}"));

    // A first message a text file long, which deflate shrinks; then a second turn of the same conversation.
    let file: String = (0..400).map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n")).collect();
    let mut messages = json!([{"role": "user", "content": format!("Here is the file:\n{file}\nWhat is it?")}]);
    assert_eq!(ask(&client, &gateway.base, &messages).await, ORIGIN_TEXT);
    let history = messages.as_array_mut().unwrap_or_else(|| panic!("an array"));
    history.push(json!({"role": "assistant", "content": ORIGIN_TEXT}));
    history.push(json!({"role": "user", "content": "And the second half?"}));
    assert_eq!(ask(&client, &gateway.base, &messages).await, ORIGIN_TEXT, "the second turn, on the same connection");
    drop(gateway);
    let seen = records(&record);
    for r in &seen {
        println!("interop websocket: {} B on the wire for a {} B message ({})", r["wire"], r["size"], r["agreed"]);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (n, r) in seen.iter().enumerate() {
        assert_eq!(r["offered"], "permessage-deflate; client_max_window_bits", "turn {n}: the official client's offer");
        assert_eq!(r["message"]["type"], "response.create", "turn {n} read by the origin as it was sent");
    }
    // The second turn chains on the first (only the new items).
    assert_eq!(seen[1]["message"]["previous_response_id"], "resp_ws_1", "{}", seen[1]["message"]);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_with_python_websockets() {
    let seen = two_turns(false).await;
    for (n, r) in seen.iter().enumerate() {
        let agreed = r["agreed"].as_str().unwrap_or_default();
        assert!(agreed.starts_with("permessage-deflate") && agreed.contains("client_max_window_bits=12"), "{agreed}");
        assert_eq!(r["compressed"], true, "turn {n} went compressed");
    }
    let (first_wire, first_size) = (seen[0]["wire"].as_u64().unwrap_or(0), seen[0]["size"].as_u64().unwrap_or(0));
    assert!(
        first_size > 20_000 && first_wire * 5 < first_size,
        "turn 1: {first_wire} B on the wire for {first_size} B"
    );
    // The second turn is chained (only its new items), compressed on its own: it costs what it adds.
    let second_wire = seen[1]["wire"].as_u64().unwrap_or(u64::MAX);
    assert!(second_wire * 10 < first_size, "turn 2: {second_wire} B on the wire against turn 1's {first_size} B");
}

/// A server that agrees to no extension (as a backend without permessage-deflate would) gets plain frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_declining_the_offer_gets_plain_frames() {
    let seen = two_turns(true).await;
    for (n, r) in seen.iter().enumerate() {
        assert_eq!(r["agreed"], Value::Null, "turn {n}: nothing agreed");
        assert_eq!(r["compressed"], false, "turn {n} went plain");
    }
}
