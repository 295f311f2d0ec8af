//! One record per request (issue 20): every outcome produces exactly one `RequestRecord` with its fields right.

use std::sync::Arc;
use std::time::{Duration, Instant};

use codex_gateway::record::{Api, RecordSink, RequestRecord};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, sse_data, start};

/// Gathers every record the gateway emits.
#[derive(Default)]
pub struct Collect(Mutex<Vec<RequestRecord>>);

impl RecordSink for Collect {
    fn record(&self, record: &RequestRecord) {
        self.0.lock().push(record.clone());
    }
}

impl Collect {
    /// Every record for `request_id` once one arrived (within 3 s; records of streams end with their body).
    pub async fn wait(&self, request_id: &str) -> Vec<RequestRecord> {
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            let found: Vec<RequestRecord> =
                self.0.lock().iter().filter(|r| r.request_id == request_id).cloned().collect();
            if !found.is_empty() || Instant::now() > until {
                // A moment more, so a second record for the same request (a bug) would be seen too.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return self.0.lock().iter().filter(|r| r.request_id == request_id).cloned().collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The one record of `request_id`.
    pub async fn one(&self, request_id: &str) -> RequestRecord {
        let mut all = self.wait(request_id).await;
        assert_eq!(all.len(), 1, "exactly one record for {request_id}: {all:?}");
        all.remove(0)
    }
}

async fn env_with(accounts: usize) -> (TestEnv, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    let setup = Setup {
        accounts,
        linked: accounts == 1,
        store_accounts: accounts > 1,
        record_sinks: vec![sink.clone()],
        ..Setup::default()
    };
    (start(setup).await, sink)
}

fn chat(stream: bool) -> Value {
    chat_saying(stream, "hello")
}

/// A chat request; a different text is another conversation (no account affinity between them).
fn chat_saying(stream: bool, text: &str) -> Value {
    json!({"model":"gpt-5.4","stream":stream,"stream_options":{"include_usage":true},
           "messages":[{"role":"user","content":text}]})
}

fn assert_served(r: &RequestRecord) {
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.error.is_none(), "{r:?}");
    assert!(!r.client_disconnected, "{r:?}");
    assert_eq!(r.account.as_deref(), r.accounts_tried.last().map(String::as_str), "{r:?}");
    let ttfb = r.time_to_first_byte.unwrap_or_else(|| panic!("a first byte: {r:?}"));
    assert!(ttfb <= r.duration, "{r:?}");
}

#[tokio::test]
async fn a_streamed_and_a_whole_answer_each_leave_one_complete_record() {
    let (env, sink) = env_with(1).await;
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"one two three","deltas":3})));
    let (status, _, text) = env.post_with("/v1/chat/completions", &chat(true), &[("x-request-id", "rec-stream")]).await;
    assert_eq!(status, 200, "{text}");
    let usage = sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|c| c["usage"].is_object())
        .map(|c| c["usage"].clone())
        .unwrap_or_else(|| panic!("a usage chunk: {text}"));
    let r = sink.one("rec-stream").await;
    assert_served(&r);
    assert_eq!((r.api, r.route.as_ref(), r.stream), (Api::named("chat"), "/v1/chat/completions", true));
    assert_eq!(r.model_requested.as_deref(), Some("gpt-5.4"));
    assert_eq!(r.model.as_deref(), Some("gpt-5.4"));
    assert_eq!((r.attempts, r.failovers, r.accounts_tried.len()), (1, 0, 1));
    assert_eq!(r.usage.input_tokens, usage["prompt_tokens"].as_u64().unwrap_or(0));
    assert_eq!(r.usage.output_tokens, usage["completion_tokens"].as_u64().unwrap_or(0));
    assert!(r.usage.output_tokens > 0, "{r:?}");
    // The effort the upstream was sent.
    let sent = env.upstream_bodies().last().cloned().unwrap_or_default();
    assert_eq!(r.effort.as_deref(), sent["reasoning"]["effort"].as_str());

    // Non-streaming, another dialect.
    let body = json!({"model":"gpt-5.4","input":"hi"});
    let (status, _, text) = env.post_with("/v1/responses", &body, &[("x-request-id", "rec-whole")]).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    let r = sink.one("rec-whole").await;
    assert_served(&r);
    assert_eq!((r.api, r.stream), (Api::named("responses"), false));
    assert_eq!(r.usage.input_tokens, v["usage"]["input_tokens"].as_u64().unwrap_or(0));
    assert_eq!(r.usage.output_tokens, v["usage"]["output_tokens"].as_u64().unwrap_or(0));
    assert!(r.usage.input_tokens > 0, "{r:?}");
}

#[tokio::test]
async fn failover_then_success_and_an_exhausted_pool_are_recorded_with_every_account_tried() {
    let (env, sink) = env_with(2).await;
    let ids: Vec<String> = env.accounts.iter().map(|a| a.account_id.clone()).collect();
    // The first account fails whenever it is picked; within two requests it is picked once.
    env.fake.enqueue(Some(&ids[0]), scenario(json!({"kind":"server_error","status":500})));
    for i in 0..2 {
        let body = chat_saying(false, &format!("conversation {i}"));
        let (status, _, text) =
            env.post_with("/v1/chat/completions", &body, &[("x-request-id", &format!("rec-fo-{i}"))]).await;
        assert_eq!(status, 200, "{text}");
    }
    let mut records = sink.wait("rec-fo-0").await;
    records.extend(sink.wait("rec-fo-1").await);
    assert_eq!(records.len(), 2);
    let r = records.iter().find(|r| r.failovers == 1).unwrap_or_else(|| panic!("one request failed over: {records:?}"));
    assert_served(r);
    assert_eq!((r.attempts, r.accounts_tried.len()), (2, 2), "{r:?}");
    assert_ne!(r.accounts_tried[0], r.accounts_tried[1]);

    // Both accounts fail: one 502 with both tried and the upstream's failure named.
    for id in &ids {
        env.fake.enqueue(Some(id), scenario(json!({"kind":"server_error","status":500})));
    }
    let (status, _, text) = env.post_with("/v1/chat/completions", &chat(false), &[("x-request-id", "rec-ex")]).await;
    assert_eq!(status, 502, "{text}");
    let r = sink.one("rec-ex").await;
    assert_eq!((r.status, r.attempts, r.failovers), (502, 2, 1), "{r:?}");
    assert_eq!(r.account, None);
    let err = r.error.as_ref().unwrap_or_else(|| panic!("an error: {r:?}"));
    assert_eq!(err.name(), "server_error");
    assert!(err.failure.is_some(), "{r:?}");
}

#[tokio::test]
async fn a_bad_request_a_cut_stream_and_a_client_that_leaves_are_each_one_record() {
    let (env, sink) = env_with(1).await;
    // Refused before any upstream call.
    let bad = json!({"model":"gpt-5.4","messages":"not a list"});
    let (status, _, text) = env.post_with("/v1/messages", &bad, &[("x-request-id", "rec-bad")]).await;
    assert_eq!(status, 400, "{text}");
    let r = sink.one("rec-bad").await;
    assert_eq!((r.api, r.status, r.attempts), (Api::named("anthropic"), 400, 0), "{r:?}");
    assert_eq!(r.error.as_ref().map(|e| e.name()), Some("invalid_request"));
    assert!(r.account.is_none() && r.accounts_tried.is_empty(), "{r:?}");

    // The upstream drops the connection after output reached the client: a 200 with an in-stream error, and the
    // record says how the stream ended (the fake cuts its chunked body: a reset while reading it).
    env.fake.enqueue(None, scenario(json!({"kind":"cut","after_deltas":2})));
    let gem = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]});
    let path = "/v1beta/models/gpt-5.4:streamGenerateContent?alt=sse";
    let (status, _, text) = env.post_with(path, &gem, &[("x-request-id", "rec-cut")]).await;
    assert_eq!(status, 200, "{text}");
    let r = sink.one("rec-cut").await;
    assert_eq!((r.api, r.status, r.stream), (Api::named("gemini"), 200, true), "{r:?}");
    assert_eq!(r.error.as_ref().map(|e| e.name()), Some("body_reset"), "{r:?}");
    assert!(!r.client_disconnected && r.time_to_first_byte.is_some(), "{r:?}");

    // The client leaves mid-stream: the record still comes, marked.
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"tick ".repeat(60),"deltas":60,"delay_ms":50})));
    let body = json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"hi"}]});
    let mut resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .header("x-request-id", "rec-left")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = resp.chunk().await.unwrap_or_default();
    assert!(first.is_some_and(|c| !c.is_empty()), "the stream started");
    drop(resp);
    let r = sink.one("rec-left").await;
    assert!(r.client_disconnected, "{r:?}");
    assert!(r.stream && r.time_to_first_byte.is_some(), "{r:?}");
    assert!(r.error.is_none(), "the client left; nothing failed: {r:?}");
}

#[tokio::test]
async fn calls_that_are_not_model_calls_get_one_record_each_with_the_route_pattern() {
    let (env, sink) = env_with(1).await;
    let get = |path: &str, id: &str| env.http.get(env.url(path)).header("x-request-id", id.to_string()).send();
    let status = |r: reqwest::Result<reqwest::Response>| r.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status(get("/v1/models/gpt-5.4", "rec-model").await), 200);
    assert_eq!(status(get("/no/such/path", "rec-404").await), 404);
    assert_eq!(status(get("/v1/chat/completions", "rec-405").await), 405);
    let count = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"count me"}]});
    let (code, _, text) = env.post_with("/v1/messages/count_tokens", &count, &[("x-request-id", "rec-count")]).await;
    assert_eq!(code, 200, "{text}");
    let gem = json!({"contents":[{"role":"user","parts":[{"text":"count me"}]}]});
    let (code, _, text) =
        env.post_with("/v1beta/models/gpt-5.4:countTokens", &gem, &[("x-request-id", "rec-gcount")]).await;
    assert_eq!(code, 200, "{text}");
    let refused = env
        .http
        .get(env.url("/v1/models"))
        .header("host", "rebound.example")
        .header("x-request-id", "rec-refused")
        .send()
        .await;
    assert_eq!(status(refused), 403);
    for (id, route, code) in [
        ("rec-refused", "(refused)", 403),
        ("rec-model", "/v1/models/{id}", 200),
        ("rec-404", "(none)", 404),
        ("rec-405", "/v1/chat/completions", 405),
        ("rec-count", "/v1/messages/count_tokens", 200),
        ("rec-gcount", "/v1beta/models/{model}:{method}", 200),
    ] {
        let r = sink.one(id).await;
        assert_eq!((r.api, r.route.as_ref(), r.status), (Api::Other, route, code), "{r:?}");
        assert!(r.account.is_none() && r.attempts == 0, "{r:?}");
    }
}
