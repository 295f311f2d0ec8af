//! Integration tests of the fake Codex backend over real HTTP on 127.0.0.1: strict validation,
//! auth and OAuth flows, SSE shapes, reasoning round trips, prompt cache, quota, scenarios, the
//! control API, TLS mode and the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use fake_codex::{AccountCreds, AccountSpec, FakeCodex, FakeConfig, Scenario};
pub use serde_json::{Value, json};
pub use std::time::Duration;

#[path = "fake/auth.rs"]
mod auth;
#[path = "fake/chatgpt.rs"]
mod chatgpt;
#[path = "fake/scenarios.rs"]
mod scenarios;
#[path = "fake/stream.rs"]
mod stream;
#[path = "fake/tls.rs"]
mod tls;
#[path = "fake/validation.rs"]
mod validation;

async fn start() -> (FakeCodex, AccountCreds) {
    start_with(FakeConfig::default()).await
}

async fn start_with(cfg: FakeConfig) -> (FakeCodex, AccountCreds) {
    let fake = FakeCodex::start(cfg).await.unwrap();
    let creds = fake.add_account(AccountSpec::default());
    (fake, creds)
}

/// The fake-codex binary started with `--port 0` and `args`, its stdout lines after the first, and the base URL
/// that first line announced.
async fn spawn_binary(
    args: &[&std::ffi::OsStr],
) -> (tokio::process::Child, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-codex"))
        .args(["--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("fake-codex listening on ").unwrap().to_string();
    (child, lines, url)
}

/// A client that trusts `pem` (a TLS fake's certificate) as a root.
fn trusting(pem: &[u8]) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(pem).unwrap();
    reqwest::Client::builder().add_root_certificate(root).no_proxy().build().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy().build().unwrap()
}

fn body() -> Value {
    json!({
        "model": "gpt-5.4",
        "instructions": "You are a test.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "store": false,
        "stream": true,
    })
}

async fn post(fake: &FakeCodex, c: &AccountCreds, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/responses", fake.codex_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .header("originator", "codex_cli_rs")
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parse SSE text into (event name, data JSON) pairs.
fn sse(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut ev = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    ev = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (ev, data)
        })
        .collect()
}

async fn events(fake: &FakeCodex, c: &AccountCreds, body: &Value) -> Vec<(String, Value)> {
    let r = post(fake, c, body).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    sse(&r.text().await.unwrap())
}

fn types(evs: &[(String, Value)]) -> Vec<&str> {
    evs.iter().map(|(e, _)| e.as_str()).collect()
}

fn done_items(evs: &[(String, Value)]) -> Vec<Value> {
    evs.iter().filter(|(e, _)| e == "response.output_item.done").map(|(_, d)| d["item"].clone()).collect()
}

fn completed(evs: &[(String, Value)]) -> Value {
    evs.iter().find(|(e, _)| e == "response.completed").map(|(_, d)| d["response"].clone()).unwrap()
}

fn text_of(evs: &[(String, Value)]) -> String {
    evs.iter()
        .filter(|(e, _)| e == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
        .collect()
}

async fn expect_400(fake: &FakeCodex, c: &AccountCreds, b: &Value, needle: &str) {
    let r = post(fake, c, b).await;
    assert_eq!(r.status(), 400, "expected 400 for {needle}");
    let j: Value = r.json().await.unwrap();
    let detail = j["detail"].as_str().unwrap();
    assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
}
