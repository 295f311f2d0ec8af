//! HTTP-level fuzzing (issue 19): random bodies under random content types against every POST route of every
//! dialect, on a running gateway with fake-codex's default replies. No answer may be a 5xx (with the fake's
//! default replies the upstream causes none), and the gateway still answers `/health` afterwards.
//!
//! Cases per route: `FUZZ_CASES` if set (scaled down: every case is a real request), else 12.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::harness::{Setup, start};

/// A valid body per route family, the starting point of the structure-aware cases.
fn template(path: &str) -> Value {
    let gemini =
        json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":20}});
    match path {
        p if p.contains("/messages") => {
            json!({"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]})
        }
        p if p.contains("chat/completions") => json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}),
        p if p.contains("responses") => json!({"model":"gpt-5.4","input":"hi"}),
        p if p.contains("models/") => gemini,
        "/api/chat" => json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":false}),
        "/api/generate" => json!({"model":"gpt-5.4","prompt":"hi","stream":false}),
        _ => json!({"model":"gpt-5.4","input":"hi"}),
    }
}

const MAIN_ROUTES: [&str; 16] = [
    "/v1/chat/completions",
    "/chat/completions",
    "/v1/responses",
    "/responses",
    "/v1/messages",
    "/v1/messages/count_tokens?beta=true",
    "/v1beta/models/gemini-2.5-pro:generateContent",
    "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
    "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
    "/v1beta/models/gemini-2.5-pro:countTokens",
    "/v1alpha/models/gemini-2.5-flash:generateContent",
    "/v1/models/gemini-2.5-pro:countTokens",
    "/v1beta/models/gemini-2.5-pro:embedContent",
    "/v1beta/models/gemini-2.5-pro:noSuchMethod",
    "/v1beta/models/no-method",
    "/v1beta/models/:generateContent",
];

const OLLAMA_ROUTES: [&str; 7] = [
    "/api/chat",
    "/api/generate",
    "/api/show",
    "/api/embed",
    "/api/embeddings",
    "/v1/chat/completions",
    "/v1/responses",
];

const CONTENT_TYPES: [Option<&str>; 7] = [
    Some("application/json"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=x"),
    Some("application/json; charset=utf-16"),
    Some("application/garbage; ;="),
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::String),
        Just(json!("gpt-5.4")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A body: random bytes, random JSON, or the template with one field replaced, dropped or added.
#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Json(Value),
    Replace(usize, Value),
    Drop(usize),
    Add(String, Value),
}

fn body() -> impl Strategy<Value = (Body, usize)> {
    let b = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        value().prop_map(Body::Json),
        (any::<usize>(), value()).prop_map(|(i, v)| Body::Replace(i, v)),
        any::<usize>().prop_map(Body::Drop),
        ("[a-z_]{1,10}", value()).prop_map(|(k, v)| Body::Add(k, v)),
    ];
    (b, 0..CONTENT_TYPES.len())
}

fn render(body: &Body, path: &str) -> Vec<u8> {
    let mut t = template(path);
    let keys: Vec<String> = t.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let key = |i: usize| keys.get(i % keys.len().max(1)).cloned().unwrap_or_default();
    match body {
        Body::Bytes(b) => return b.clone(),
        Body::Json(v) => return serde_json::to_vec(v).unwrap_or_default(),
        Body::Replace(i, v) => t[key(*i)] = v.clone(),
        Body::Drop(i) => {
            t.as_object_mut().map(|m| m.shift_remove(&key(*i)));
        }
        Body::Add(k, v) => t[k.as_str()] = v.clone(),
    }
    serde_json::to_vec(&t).unwrap_or_default()
}

#[tokio::test]
async fn random_bodies_on_every_post_route_never_get_a_5xx() {
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    let ollama = env.ollama.clone().unwrap_or_else(|| panic!("the Ollama bridge is on"));
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse::<u32>().ok()).map_or(12, |n| (n / 20).max(1));
    let mut runner = TestRunner::new(Config::default());
    let strategy = body();
    let routes =
        MAIN_ROUTES.iter().map(|r| (env.base.clone(), *r)).chain(OLLAMA_ROUTES.iter().map(|r| (ollama.clone(), *r)));
    let mut sent = 0;
    for (base, path) in routes {
        for _ in 0..cases {
            let (body, ct) = strategy.new_tree(&mut runner).unwrap_or_else(|e| panic!("strategy: {e}")).current();
            let bytes = render(&body, path);
            let mut req = env.http.post(format!("{base}{path}")).body(bytes.clone());
            if let Some(ct) = CONTENT_TYPES[ct] {
                req = req.header("content-type", ct);
            }
            let resp = req.send().await.unwrap_or_else(|e| panic!("POST {path} with {body:?}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_else(|e| panic!("POST {path} with {body:?}: body: {e}"));
            assert!(
                status < 500,
                "POST {path} ({:?}) {} -> {status}: {text}",
                CONTENT_TYPES[ct],
                String::from_utf8_lossy(&bytes)
            );
            sent += 1;
        }
    }
    assert!(sent >= 23 * cases as usize);
    let health = env.http.get(env.url("/health")).send().await.unwrap_or_else(|e| panic!("/health: {e}"));
    assert_eq!(health.status().as_u16(), 200);
}
