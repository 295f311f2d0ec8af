//! The gateway's upstream path through each independent server: streaming and whole answers, a burst above the
//! server's stream limit on a fresh gateway, request bodies larger than the flow-control window, answers with
//! 45 extra headers, requests after the server closed its idle connections, nginx's reload (GOAWAY) with streams
//! open, and the resets the gateway sent. The gateway runs as its own process (its reset count is its own),
//! `CODEX_GATEWAY_INTEROP_BIN` may name another build to measure (a summary line per scenario is printed before
//! anything is asserted).

use std::path::Path;
use std::time::Duration;

use fake_codex::{AccountSpec, FakeCodex, FakeConfig};
use serde_json::{Value, json};

use super::servers::{Dir, EXTRA_HEADERS, IDLE_SECS, Kind, STREAM_LIMIT, Server};
use crate::crash::Gateway;
use crate::harness::scenario;

/// Requests of the burst: eight times the stream limit, so a fresh gateway needs several connections.
const BURST: usize = 8 * STREAM_LIMIT;
/// A request body larger than any server's initial flow-control window (64 KB by default).
const LARGE_BODY: usize = 300 * 1024;
/// fake-codex's slow answers' text.
const SLOW_TEXT: &str = "one two three four";
/// The text of every answer of the SSE origin served by hypercorn (`sse_origin.py`).
const HYPERCORN_TEXT: &str = "Hello from hypercorn.";

/// The gateway as its own process (`CODEX_GATEWAY_INTEROP_BIN`, or this build), its upstream the server at
/// `upstream` (trusting `cert`), its OAuth and usage calls going straight to the fake, one account in its store.
async fn gateway(fake: &FakeCodex, upstream: &str, cert: &Path, dir: &Dir) -> Gateway {
    let store = codex_gateway::store::Store::open(&dir.0.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    crate::harness::store_account(fake, &store);
    drop(store);
    let bin = std::env::var_os("CODEX_GATEWAY_INTEROP_BIN");
    let bin = bin.as_deref().unwrap_or(env!("CARGO_BIN_EXE_codex-gateway").as_ref());
    // HTTP SSE: the suite is about HTTP/2 (a proxy configured for it does not pass the Responses WebSocket on).
    let config = dir.write("config.toml", "[upstream]\ntransport = \"sse\"\n");
    let env = [
        ("CODEX_GATEWAY_UPSTREAM_BASE_URL", upstream.as_ref()),
        ("CODEX_GATEWAY_CA_BUNDLE", cert.as_os_str()),
        ("CODEX_GATEWAY_CONFIG", config.as_os_str()),
    ];
    crate::crash::spawn(bin, fake, &dir.0, &env).await
}

/// What one chat completion came to: its text, or what the client saw instead.
type Outcome = Result<String, String>;

/// The text of a chat answer, streamed (to `[DONE]`, no error event) or whole.
async fn ask(client: &reqwest::Client, base: &str, stream: bool, text: &str) -> Outcome {
    let body = json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":text}]});
    let response = client.post(format!("{base}/v1/chat/completions")).json(&body).send().await;
    let response = response.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status();
    let answer = response.text().await.map_err(|e| format!("{status}, body cut: {e}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {answer}"));
    }
    if !stream {
        let v: Value = serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer}"))?;
        return Ok(v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string());
    }
    let mut text = String::new();
    let mut done = false;
    for data in answer.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
        if v.get("error").is_some() {
            return Err(format!("in-stream error: {data}"));
        }
        text.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
    }
    if done { Ok(text) } else { Err(format!("no [DONE]: {answer}")) }
}

struct Suite {
    kind: Kind,
    fake: FakeCodex,
    client: reqwest::Client,
    gateway: Gateway,
    /// (scenario, requests, client-visible errors with the first one's text)
    results: Vec<(&'static str, usize, Vec<String>)>,
}

impl Suite {
    /// The request text of answers whose deltas come `slow` ms apart, and the text they answer.
    fn slow(&self, slow: u64, n: usize) -> (String, &'static str) {
        match self.kind {
            Kind::Hypercorn => (format!("slow:{slow}"), HYPERCORN_TEXT),
            _ => {
                for _ in 0..n {
                    let text = SLOW_TEXT;
                    self.fake.enqueue(None, scenario(json!({"kind":"slow","text":text,"deltas":4,"delay_ms":slow})));
                }
                ("hello".into(), SLOW_TEXT)
            }
        }
    }

    /// `n` requests at once with `text`; records the client-visible errors (and answers other than `expect`).
    async fn run(&mut self, name: &'static str, n: usize, stream: bool, text: String, expect: Option<&str>) {
        let expect = expect.or((self.kind == Kind::Hypercorn).then_some(HYPERCORN_TEXT));
        let asks = (0..n).map(|_| ask(&self.client, &self.gateway.base, stream, &text));
        let outcomes = futures_util::future::join_all(asks).await;
        let errors = outcomes
            .into_iter()
            .filter_map(|o| match (o, expect) {
                (Ok(text), Some(want)) if text != want => Some(format!("answered {text:?}, not {want:?}")),
                (Ok(_), _) => None,
                (Err(e), _) => Some(e),
            })
            .collect::<Vec<_>>();
        println!("interop {}: {name}: {} of {n} requests with client-visible errors", self.kind.name(), errors.len());
        self.results.push((name, n, errors));
    }

    async fn resets(&self) -> u64 {
        let status = self.client.get(format!("{}/admin/status", self.gateway.base)).send().await;
        let status: Value = match status {
            Ok(s) => s.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        status["upstream_http2_resets_sent"].as_u64().unwrap_or(u64::MAX)
    }
}

/// The server's answers carry the extra header fields, over HTTP/2 (a check of the setup: the gateway's HPACK
/// decoding and CONTINUATION handling are exercised only if they are there).
async fn check_extra_headers(server: &Server, fake: &FakeCodex) {
    let cert = std::fs::read(server.cert()).unwrap_or_else(|e| panic!("{e}"));
    let root = reqwest::Certificate::from_pem(&cert).unwrap_or_else(|e| panic!("{e}"));
    let direct = reqwest::Client::builder().add_root_certificate(root).no_proxy().build();
    let direct = direct.unwrap_or_else(|e| panic!("{e}"));
    let account = fake.add_account(AccountSpec::default());
    let body = json!({"model":"gpt-5.4","instructions":"","store":false,"stream":true,
        "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]});
    let answer = direct
        .post(format!("https://127.0.0.1:{}/backend-api/codex/responses", server.port))
        .bearer_auth(&account.access_token)
        .header("chatgpt-account-id", &account.account_id)
        .header("originator", "codex_cli_rs")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", server.log()));
    assert_eq!(answer.version(), reqwest::Version::HTTP_2, "{} did not speak HTTP/2", server.kind.name());
    let extra = answer.headers().keys().filter(|k| k.as_str().starts_with("x-extra-")).count();
    assert_eq!(extra, EXTRA_HEADERS, "{}: {} {:?}", server.kind.name(), answer.status(), answer.headers());
}

async fn suite(kind: Kind) {
    let config = FakeConfig { extra_response_headers: EXTRA_HEADERS, ..FakeConfig::default() };
    let fake = FakeCodex::start(config).await.unwrap_or_else(|e| panic!("{e}"));
    let origin = fake.base_url();
    let server = tokio::task::spawn_blocking(move || Server::start(kind, &origin)).await;
    let server = server.unwrap_or_else(|e| panic!("{e}"));
    check_extra_headers(&server, &fake).await;
    let dir = Dir::new("gateway");
    let upstream = format!("https://127.0.0.1:{}/backend-api/codex", server.port);
    let gateway = gateway(&fake, &upstream, &server.cert(), &dir).await;
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build();
    let client = client.unwrap_or_else(|e| panic!("{e}"));
    let mut suite = Suite { kind, fake, client, gateway, results: Vec::new() };

    // A fresh gateway: the burst's streams above the limit wait for the server's SETTINGS, then spread over
    // connections.
    let (slow, answer) = suite.slow(100, BURST);
    suite.run("burst above the stream limit, fresh gateway", BURST, true, slow, Some(answer)).await;
    suite.run("streaming answers", 4, true, "hello".into(), None).await;
    suite.run("whole answers", 4, false, "hello".into(), None).await;
    let large = "x".repeat(LARGE_BODY);
    suite.run("request bodies larger than the flow-control window", 3, false, large, None).await;
    // Several connections are open; every one is closed by the server while idle.
    let (slow, answer) = suite.slow(50, BURST);
    suite.run("burst before the idle pause", BURST, true, slow, Some(answer)).await;
    tokio::time::sleep(Duration::from_millis(IDLE_SECS * 1000 + 800)).await;
    let (slow, answer) = suite.slow(50, BURST);
    suite.run("burst after the server closed its idle connections", BURST, true, slow, Some(answer)).await;
    if kind == Kind::Nginx {
        reload_mid_stream(&mut suite, &server).await;
    }
    let resets = suite.resets().await;
    println!("interop {}: RST_STREAM frames the gateway sent: {resets}", kind.name());

    for (name, n, errors) in &suite.results {
        assert!(
            errors.is_empty(),
            "{}: {name}: {} of {n} failed, e.g. {:?}",
            kind.name(),
            errors.len(),
            errors.first()
        );
    }
    // Every answer above was read to its end: nothing to cancel.
    assert_eq!(resets, 0, "{}: the gateway reset streams it had read to the end", kind.name());
    drop(server);
}

/// nginx reloads while streams are open: the old worker sends GOAWAY and gives its streams one second
/// (`worker_shutdown_timeout`). Requests sent meanwhile go to new connections with no client-visible error;
/// a stream still open when the old worker exits is cut, and its client gets the dialect's in-stream error.
async fn reload_mid_stream(suite: &mut Suite, server: &Server) {
    // Long streams: 20 deltas 150 ms apart (3 s), longer than the old worker is given.
    for _ in 0..4 {
        let long = json!({"kind":"slow","text":"a b c d e f g h i j k l m n o p q r s t","deltas":20,"delay_ms":150});
        suite.fake.enqueue(None, scenario(long));
    }
    let (client, base) = (suite.client.clone(), suite.gateway.base.clone());
    let long = tokio::spawn(async move {
        let asks = (0..4).map(|_| ask(&client, &base, true, "hello"));
        futures_util::future::join_all(asks).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.reload();
    tokio::time::sleep(Duration::from_millis(100)).await;
    suite.run("requests sent after the reload's GOAWAY", BURST, true, "hello".into(), None).await;
    let cut = long.await.unwrap_or_else(|e| panic!("{e}"));
    let mut wrong = Vec::new();
    for outcome in &cut {
        match outcome {
            // Finished before the old worker exited, or cut with the dialect's error event.
            Ok(text) if text == "a b c d e f g h i j k l m n o p q r s t" => {}
            Err(e) if e.starts_with("in-stream error") => {}
            other => wrong.push(format!("{other:?}")),
        }
    }
    let errors = cut.iter().filter(|o| o.is_err()).count();
    println!("interop nginx: streams open at the reload: {errors} of 4 cut, each with the dialect's in-stream error");
    suite.results.push(("streams open at the reload end with an answer or the dialect's error", 4, wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx() {
    suite(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_h2o() {
    suite(Kind::H2o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_caddy() {
    suite(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_hypercorn() {
    suite(Kind::Hypercorn).await;
}
