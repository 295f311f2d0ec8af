//! Responses passthrough: normalisation, unchanged events, assembly from `.done` items.

use serde_json::json;

use crate::harness::{Setup, json, scenario, start};

#[tokio::test]
async fn non_stream_is_assembled_from_done_items() {
    let env = start(Setup::default()).await;
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hello responses"})).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(v["status"], "completed");
    let out = v["output"].as_array().cloned().unwrap_or_default();
    assert!(!out.is_empty(), "the fake's completed.output is empty; items come from output_item.done: {v}");
    assert!(
        out.iter().any(|i| i["type"] == "message"
            && i["content"][0]["text"].as_str().unwrap_or_default().contains("hello responses"))
    );
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["input"][0]["role"], "user");
    assert!(up.get("instructions").is_none(), "the official client sends none");
}

#[tokio::test]
async fn stream_passes_events_through_and_normalises_the_request() {
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","stream":true,"store":true,"temperature":0.5,"max_output_tokens":100,"metadata":{"x":"y"},
        "input":[{"role":"system","content":"sys rules"},{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}],
        "tools":[{"type":"function","name":"f","parameters":{"type":"object"},"defer_loading":true,"cache_control":{"type":"ephemeral"}}],
        "reasoning":{"effort":"max","summary":"auto"},"include":["reasoning.encrypted_content"],"prompt_cache_key":"conv-42"});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(names.contains(&"response.output_text.delta"));
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["store"], false);
    assert_eq!(up["input"][0]["role"], "developer");
    assert_eq!(up["tools"][0], json!({"type":"function","name":"f","parameters":{"type":"object"}}));
    assert_eq!(up["reasoning"]["effort"], "xhigh");
    // The conversation's key goes upstream as the official client's is: a thread UUID (derived from the client's
    // key, the same on every turn), which the session and thread ids repeat.
    let key = up["prompt_cache_key"].as_str().unwrap_or_default().to_string();
    assert!(uuid::Uuid::try_parse(&key).is_ok(), "{key}");
    assert_eq!(key, codex_gateway::relay::exchange::thread_id_for("conv-42"));
    for k in ["temperature", "max_output_tokens", "metadata"] {
        assert!(up.get(k).is_none(), "{k} leaked");
    }
}

#[tokio::test]
async fn reasoning_items_round_trip_byte_for_byte() {
    let env = start(Setup::default()).await;
    let first = json!({"model":"gpt-5.4","input":"think","reasoning":{"effort":"low"},"include":["reasoning.encrypted_content"]});
    let (_, _, text) = env.post("/v1/responses", &first).await;
    let v = json(&text);
    let reasoning = v["output"].as_array().and_then(|o| o.iter().find(|i| i["type"] == "reasoning").cloned());
    let reasoning = reasoning.unwrap_or_else(|| panic!("no reasoning item: {v}"));
    let message =
        v["output"].as_array().and_then(|o| o.iter().find(|i| i["type"] == "message").cloned()).unwrap_or_default();
    let second = json!({"model":"gpt-5.4","reasoning":{"effort":"low"},"include":["reasoning.encrypted_content"],
        "input":[{"role":"user","content":"think"}, reasoning, message, {"role":"user","content":"again"}]});
    let (status, _, text) = env.post("/v1/responses", &second).await;
    // The fake refuses encrypted_content that was altered or moved to another account.
    assert_eq!(status, 200, "{text}");
}

/// `previous_response_id` is served from the responses the gateway keeps (stored_responses.rs, in this suite);
/// an item reference and a stored conversation are not.
#[tokio::test]
async fn stateful_features_are_refused_clearly() {
    let env = start(Setup::default()).await;
    let (status, _, text) =
        env.post("/v1/responses", &json!({"model":"gpt-5.4","input":[{"type":"item_reference","id":"msg_1"}]})).await;
    assert_eq!(status, 400);
    assert_eq!(json(&text)["error"]["param"], "input[0]");
    let (status, _, text) =
        env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"x","conversation":"conv_1"})).await;
    assert_eq!(status, 400);
    assert_eq!(json(&text)["error"]["param"], "conversation");
}

#[tokio::test]
async fn in_stream_failure_before_output_becomes_an_http_error() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"context_length_exceeded"})));
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"x","stream":true})).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn api_key_accounts_use_the_openai_responses_endpoint() {
    let env =
        start(Setup { accounts: 0, linked: false, openai_api_key: Some("sk-test-123".into()), ..Setup::default() })
            .await;
    let (status, _, text) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]})).await;
    assert_eq!(status, 200, "{text}");
    let reqs = env.fake.requests_to("/v1/responses");
    assert_eq!(reqs.len(), 1);
    let auth = reqs[0].headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-123"));
}

async fn unknown_events_seen(env: &crate::harness::TestEnv) -> u64 {
    let status = env.get_json("/admin/status").await;
    status["unknown_upstream_events"].as_u64().unwrap_or_else(|| panic!("no counter in {status}"))
}

/// An event type nobody knows used to be dropped without a trace (parsed as `Ignored`, like a keepalive). It is
/// now counted in `/admin/status`; translated answers are exactly what they are without it, and the Responses
/// passthrough forwards it as received. The counter is global to the test binary: it is checked for growth.
#[tokio::test]
async fn unknown_upstream_events_are_counted_and_change_no_answer() {
    let env = start(Setup::default()).await;
    let unknown = || scenario(json!({"kind":"unknown_event","event_type":"response.made_up","text":"plain answer"}));
    let before = unknown_events_seen(&env).await;

    env.fake.enqueue(None, unknown());
    let chat = json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"hi"}]});
    let (status, _, text) = env.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    let streamed: String = crate::harness::sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, "plain answer", "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(!text.contains("made_up"), "{text}");

    env.fake.enqueue(None, unknown());
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]});
    let (status, _, text) = env.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["choices"][0]["message"]["content"], "plain answer", "{text}");

    env.fake.enqueue(None, unknown());
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","stream":true,"input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert!(names.contains(&"response.made_up"), "the passthrough forwards it: {names:?}");
    assert_eq!(names.last(), Some(&"response.completed"));

    let after = unknown_events_seen(&env).await;
    assert!(after >= before + 3, "counted once per stream that carried one: {before} -> {after}");
}
