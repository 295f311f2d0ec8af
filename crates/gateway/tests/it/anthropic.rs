//! Anthropic Messages through the real server: the stream's event sequence, tool and thinking round trips,
//! images, count_tokens, auth, errors, usage, emulated limits, keepalives and reasoning across accounts.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

const KEY: &str = "sk-anthropic-it";

fn msg(text: &str) -> Value {
    json!({"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":text}]})
}

fn with(mut body: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// `(event name, data)` of every SSE event; asserts each has an `event:` line whose name is the data's `type`.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: ")).map(str::to_string);
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).map(json);
            let (Some(name), Some(data)) = (name, data) else { panic!("event without name or data: {block:?}") };
            assert_eq!(data["type"], name.as_str(), "data.type matches the event name");
            (name, data)
        })
        .collect()
}

/// Checks the stream rules of spec §2 and returns the content blocks it built (start block + accumulated
/// deltas), the final message_delta and the names of all events.
fn check_stream(body: &str) -> (Vec<Value>, Value, Vec<String>) {
    let evs = events(body);
    let names: Vec<String> = evs.iter().map(|(n, _)| n.clone()).collect();
    let real: Vec<&(String, Value)> = evs.iter().filter(|(n, _)| n != "ping").collect();
    assert_eq!(real.first().map(|(n, _)| n.as_str()), Some("message_start"), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "message_start").count(), 1, "{names:?}");
    assert_eq!(real.last().map(|(n, _)| n.as_str()), Some("message_stop"), "{names:?}");
    let start = &real[0].1["message"];
    assert!(start["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(start["role"], "assistant");
    assert!(start["usage"]["input_tokens"].is_u64() && start["usage"]["output_tokens"].is_u64());
    let mut blocks: Vec<Value> = Vec::new();
    let mut open: Option<usize> = None;
    let mut partial = String::new();
    let mut delta = Value::Null;
    for (name, data) in &real[1..] {
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "a block opened while another is open: {names:?}");
                assert_eq!(data["index"], blocks.len(), "blocks are indexed 0, 1, 2...");
                open = Some(blocks.len());
                blocks.push(data["content_block"].clone());
                partial.clear();
            }
            "content_block_delta" => {
                let i = open.unwrap_or_else(|| panic!("delta outside a block: {names:?}"));
                assert_eq!(data["index"], i);
                let b = &mut blocks[i];
                let d = &data["delta"];
                match (b["type"].as_str(), d["type"].as_str()) {
                    (Some("text"), Some("text_delta")) => {
                        b["text"] =
                            json!(format!("{}{}", b["text"].as_str().unwrap_or(""), d["text"].as_str().unwrap_or("")))
                    }
                    (Some("thinking"), Some("thinking_delta")) => {
                        b["thinking"] = json!(format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap_or(""),
                            d["thinking"].as_str().unwrap_or("")
                        ))
                    }
                    (Some("thinking"), Some("signature_delta")) => {
                        assert_eq!(b["signature"], "", "one signature_delta per thinking block");
                        b["signature"] = d["signature"].clone();
                    }
                    (Some("tool_use"), Some("input_json_delta")) => {
                        partial.push_str(d["partial_json"].as_str().unwrap_or(""))
                    }
                    other => panic!("delta {other:?} does not fit the open block"),
                }
            }
            "content_block_stop" => {
                let i = open.take().unwrap_or_else(|| panic!("stop without an open block"));
                assert_eq!(data["index"], i);
                if blocks[i]["type"] == "tool_use" {
                    blocks[i]["input"] = if partial.is_empty() { json!({}) } else { json(&partial) };
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with a block open");
                delta = data.clone();
            }
            "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(!delta.is_null(), "message_delta present: {names:?}");
    (blocks, delta, names)
}

async fn stream(env: &TestEnv, body: &Value) -> (Vec<Value>, Value, Vec<String>) {
    let (status, headers, text) = env.post("/v1/messages?beta=true", &with(body.clone(), json!({"stream":true}))).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().starts_with("text/event-stream")
    );
    check_stream(&text)
}

#[tokio::test]
async fn stream_event_sequence_with_thinking_and_text() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"reasoning_then_text","summary":"Thinking it over.","text":"The answer is 4."})),
    );
    let body = with(msg("2+2?"), json!({"thinking":{"type":"enabled","budget_tokens":2048}}));
    let (blocks, delta, _) = stream(&env, &body).await;
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0]["type"], "thinking");
    assert_eq!(blocks[0]["thinking"], "Thinking it over.");
    assert!(blocks[0]["signature"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(blocks[1], json!({"type":"text","text":"The answer is 4."}));
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap_or(0) > 0);
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["model"], "gpt-5.4", "claude-sonnet-* maps to gpt-5.4 by default");
    assert_eq!(up["reasoning"]["effort"], "low", "budget 2048 -> low");
    assert_eq!(up["stream"], true);
    assert!(up.get("max_output_tokens").is_none() && up.get("metadata").is_none());

    // Without thinking requested, reasoning is not shown.
    let (blocks, _, _) = stream(&env, &msg("plain")).await;
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["type"], "text");
}

#[tokio::test]
async fn non_stream_message_shape_and_request_id() {
    let env = start(Setup::default()).await;
    let (status, headers, text) = env
        .post_with("/v1/messages", &with(msg("hello"), json!({"system":"be brief"})), &[("x-request-id", "req-a1")])
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers.get("request-id").and_then(|v| v.to_str().ok()), Some("req-a1"));
    let v = json(&text);
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5", "the client's model id is echoed");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    assert!(v["content"][0]["text"].as_str().unwrap_or_default().contains("hello"));
    assert!(v["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0);
    // The system text goes upstream as the official client sends its base instructions: the first developer message.
    let up = &env.upstream_bodies()[0];
    assert!(up.get("instructions").is_none());
    assert_eq!(up["input"][0]["role"], "developer");
    assert_eq!(up["input"][0]["content"][0]["text"], "be brief");
}

#[tokio::test]
async fn tool_round_trip_pairs_ids() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"tool_call","name":"get_weather","arguments":{"city":"Paris"},"call_id":"call_w1","text_before":"Checking."})),
    );
    let tools = json!([{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}},"cache_control":{"type":"ephemeral"},"defer_loading":false}]);
    let first = with(msg("weather in Paris?"), json!({"tools": tools}));
    let (blocks, delta, _) = stream(&env, &first).await;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let tool_uses: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "tool_use").collect();
    assert_eq!(tool_uses.len(), 1, "exactly one tool_use block per call: {blocks:?}");
    let tu = tool_uses[0];
    assert_eq!(tu["name"], "get_weather");
    assert_eq!(tu["input"], json!({"city":"Paris"}));
    let id = tu["id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty());
    let up = &env.upstream_bodies()[0];
    assert_eq!(
        up["tools"][0],
        json!({"type":"function","name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":false})
    );

    let second = with(
        msg("x"),
        json!({"tools": tools, "messages":[
            {"role":"user","content":"weather in Paris?"},
            {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":id,"name":"get_weather","input":{"city":"Paris"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":id,"content":[{"type":"text","text":"sunny, 21C"}]}]}
        ]}),
    );
    let (status, _, text) = env.post("/v1/messages", &second).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert!(v["content"][0]["text"].as_str().unwrap_or_default().contains("sunny, 21C"), "{v}");
    let up = &env.upstream_bodies()[1];
    let items = up["input"].as_array().cloned().unwrap_or_default();
    let call = items.iter().find(|i| i["type"] == "function_call").cloned().unwrap_or_default();
    let output = items.iter().find(|i| i["type"] == "function_call_output").cloned().unwrap_or_default();
    assert_eq!(call["call_id"], id.as_str());
    assert_eq!(call["name"], "get_weather");
    assert_eq!(json(call["arguments"].as_str().unwrap_or("null")), json!({"city":"Paris"}));
    assert_eq!(output["call_id"], id.as_str());
}

#[tokio::test]
async fn thinking_round_trip_carries_the_reasoning_item_byte_for_byte() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"reasoning_then_text","summary":"Let me think.","text":"Done."})));
    let thinking = json!({"type":"enabled","budget_tokens":2048});
    let (status, _, text) = env.post("/v1/messages", &with(msg("think"), json!({"thinking": thinking}))).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    let signature = v["content"][0]["signature"].as_str().unwrap_or_default().to_string();
    let reasoning = dialects::anthropic::decode_signature(&signature).unwrap_or_else(|| panic!("our signature"));

    let second = with(
        msg("x"),
        json!({"thinking": thinking, "messages":[
            {"role":"user","content":"think"},
            {"role":"assistant","content":v["content"].clone()},
            {"role":"user","content":"and now?"}
        ]}),
    );
    let (status, _, text) = env.post("/v1/messages", &second).await;
    assert_eq!(status, 200, "the fake accepted the encrypted reasoning: {text}");
    let up = &env.upstream_bodies()[1];
    let items: Vec<Value> = up["input"].as_array().cloned().unwrap_or_default();
    let r: Vec<&Value> = items.iter().filter(|i| i["type"] == "reasoning").collect();
    assert_eq!(r.len(), 1, "{items:?}");
    assert_eq!(r[0]["id"], reasoning.id.as_str());
    assert_eq!(r[0]["encrypted_content"], reasoning.encrypted_content.as_str());
    let pos = |kind: &str| items.iter().position(|i| i["type"] == kind || i["role"] == kind);
    assert!(pos("reasoning") < pos("assistant"), "reasoning precedes the assistant text it belongs to");

    // A signature that is not ours is dropped, never forwarded.
    let forged = with(
        msg("x"),
        json!({"messages":[
            {"role":"user","content":"think"},
            {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"EqQBCkYIBxgCKkBforged"},{"type":"text","text":"ok"}]},
            {"role":"user","content":"go on"}
        ]}),
    );
    let (status, _, text) = env.post("/v1/messages", &forged).await;
    assert_eq!(status, 200, "{text}");
    let up = &env.upstream_bodies()[2];
    assert!(!up["input"].as_array().into_iter().flatten().any(|i| i["type"] == "reasoning"), "{up}");
}

#[tokio::test]
async fn images_go_upstream_as_input_image() {
    let env = start(Setup::default()).await;
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let body = with(
        msg("x"),
        json!({"messages":[{"role":"user","content":[
            {"type":"text","text":"what is this?"},
            {"type":"image","source":{"type":"base64","media_type":"image/png","data":png}}
        ]}]}),
    );
    let (status, _, text) = env.post("/v1/messages", &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(json(&text)["content"][0]["text"].as_str().unwrap_or_default().contains("[saw 1 image(s)]"), "{text}");
    let up = &env.upstream_bodies()[0];
    let part = &up["input"][0]["content"][1];
    assert_eq!(part["type"], "input_image");
    assert_eq!(part["image_url"], format!("data:image/png;base64,{png}").as_str());
}

#[tokio::test]
async fn count_tokens_with_and_without_beta() {
    let env = start(Setup::default()).await;
    let short = msg("hello world");
    let (status, headers, text) = env.post("/v1/messages/count_tokens", &short).await;
    assert_eq!(status, 200, "{text}");
    assert!(headers.get("request-id").is_some());
    let n = json(&text)["input_tokens"].as_u64().unwrap_or(0);
    assert!(n > 0);
    let (status, _, text) = env.post("/v1/messages/count_tokens?beta=true", &short).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["input_tokens"].as_u64(), Some(n));
    let long = with(short.clone(), json!({"system": "You are a careful assistant. ".repeat(50)}));
    let (_, _, text) = env.post("/v1/messages/count_tokens?beta=true", &long).await;
    assert!(json(&text)["input_tokens"].as_u64().unwrap_or(0) > n + 200);
    assert!(env.upstream_bodies().is_empty(), "counting is local");
    let (status, _, text) = env.post("/v1/messages/count_tokens", &json!({"model":"x"})).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn auth_by_x_api_key_or_bearer_and_errors_in_anthropic_shape() {
    let env = start(Setup { client_key: Some(KEY.into()), ..Setup::default() }).await;
    let auth = format!("Bearer {KEY}");
    for h in [("x-api-key", KEY), ("authorization", auth.as_str())] {
        let (status, _, text) = env
            .post_with(
                "/v1/messages?beta=true",
                &msg("hi"),
                &[
                    h,
                    ("anthropic-version", "2023-06-01"),
                    ("anthropic-beta", "made-up-beta-2099-01-01,claude-code-20250219"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{h:?}: {text}");
    }
    for headers in [vec![("x-api-key", "wrong")], vec![]] {
        let (status, resp_headers, text) = env.post_with("/v1/messages", &msg("hi"), &headers).await;
        assert_eq!(status, 401, "{text}");
        let v = json(&text);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(resp_headers.get("request-id").is_some());
        assert_eq!(v["request_id"].as_str(), resp_headers.get("request-id").and_then(|h| h.to_str().ok()));
    }
    let (status, _, text) = env.post_with("/v1/messages/count_tokens", &msg("hi"), &[("x-api-key", "nope")]).await;
    assert_eq!((status, json(&text)["error"]["type"].clone()), (401, json!("authentication_error")));
    // HEAD / and GET / are Claude Code's preflight: public.
    let head = env.http.head(env.url("/")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(head.status().as_u16(), 200);
    let get = env.http.get(env.url("/")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get.status().as_u16(), 200);
    // An unknown path under /v1/messages is a 404 in the Anthropic shape.
    let (status, headers, text) = env.post_with("/v1/messages/batches", &msg("hi"), &[("x-api-key", KEY)]).await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(json(&text)["error"]["type"], "not_found_error");
    assert!(headers.get("request-id").is_some());
}

#[tokio::test]
async fn unknown_model_is_a_404_not_found_error() {
    let env = start(Setup::default()).await;
    for body in
        [json!({"model":"claude-2.1"}), json!({"model":"gpt-9-turbo"}), json!({"model":"claude-2.1","stream":true})]
    {
        let (status, headers, text) = env.post("/v1/messages", &with(msg("x"), body.clone())).await;
        assert_eq!(status, 404, "{body}: {text}");
        let v = json(&text);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "not_found_error");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains(body["model"].as_str().unwrap_or("?")) && m.contains("model_aliases"), "{m}");
        assert_eq!(v["request_id"].as_str(), headers.get("request-id").and_then(|h| h.to_str().ok()));
    }
    assert!(env.upstream_bodies().is_empty(), "no silent fallback to another model");
    // Malformed bodies are invalid_request_error.
    let resp = env
        .http
        .post(env.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap_or_default();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn model_aliases_come_from_the_config() {
    let toml = "[anthropic]\nmodel_aliases = { opus = \"gpt-5.2\", \"claude-custom-1\" = \"gpt-5.3-codex-high\" }";
    let env = start(Setup { config_toml: Some(toml.into()), ..Setup::default() }).await;
    for (requested, slug, effort) in [
        ("claude-opus-4-1-20250805", "gpt-5.2", None),
        ("claude-custom-1", "gpt-5.3-codex", Some("high")),
        ("claude-haiku-4-5", "gpt-5.4-mini", None),
        ("gpt-5.4", "gpt-5.4", None),
    ] {
        let (status, _, text) = env.post("/v1/messages", &with(msg("x"), json!({"model": requested}))).await;
        assert_eq!(status, 200, "{requested}: {text}");
        assert_eq!(json(&text)["model"], requested);
        let up = env.upstream_bodies().pop().unwrap_or_default();
        assert_eq!(up["model"], slug, "{requested}");
        if let Some(e) = effort {
            assert_eq!(up["reasoning"]["effort"], e);
        }
    }
}

#[tokio::test]
async fn context_overflow_is_prompt_is_too_long() {
    let env = start(Setup::default()).await;
    for stream in [false, true] {
        env.fake.enqueue(None, scenario(json!({"kind":"context_length_exceeded"})));
        let (status, headers, text) = env.post("/v1/messages", &with(msg("x"), json!({"stream": stream}))).await;
        assert_eq!(status, 400, "stream={stream}: {text}");
        let v = json(&text);
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap_or_default().starts_with("prompt is too long"), "{v}");
        assert!(headers.get("request-id").is_some());
    }
    // After output began: an `event: error` with the same message.
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"custom","items":[{"type":"text","text":"partial"}],"end":{"type":"failed","code":"context_length_exceeded","message":"Your input exceeds the context window of this model."}})),
    );
    let (status, _, text) = env.post("/v1/messages", &with(msg("x"), json!({"stream": true}))).await;
    assert_eq!(status, 200, "{text}");
    let evs = events(&text);
    let (name, last) = evs.last().cloned().unwrap_or_default();
    assert_eq!(name, "error", "{text}");
    assert_eq!(last["error"]["type"], "invalid_request_error");
    assert!(last["error"]["message"].as_str().unwrap_or_default().starts_with("prompt is too long"), "{last}");
    assert!(!evs.iter().any(|(n, _)| n == "message_stop"));
}

#[tokio::test]
async fn usage_excludes_cached_input() {
    let env = start(Setup::default()).await;
    let session = [("x-claude-code-session-id", "sess-usage")];
    let body = with(msg("same prompt"), json!({"system": "A long system prompt. ".repeat(40)}));
    let (_, _, first) = env.post_with("/v1/messages", &body, &session).await;
    let (_, _, second) = env.post_with("/v1/messages", &body, &session).await;
    let (u1, u2) = (json(&first)["usage"].clone(), json(&second)["usage"].clone());
    assert_eq!(u1["cache_read_input_tokens"], 0, "{u1}");
    let cached = u2["cache_read_input_tokens"].as_u64().unwrap_or(0);
    assert!(cached > 0, "{u2}");
    assert_eq!(
        u2["input_tokens"].as_u64().unwrap_or(0) + cached,
        u1["input_tokens"].as_u64().unwrap_or(0),
        "{u1} {u2}"
    );
    assert_eq!(u2["cache_creation_input_tokens"], 0);
    // Streaming: the final numbers are in message_delta.
    let (_, delta, _) = stream_with(&env, &body, &session).await;
    assert_eq!(delta["usage"]["cache_read_input_tokens"].as_u64(), Some(cached));
    assert_eq!(delta["usage"]["input_tokens"], u2["input_tokens"]);
    let keys: Vec<Value> = env.upstream_bodies().iter().map(|b| b["prompt_cache_key"].clone()).collect();
    assert!(keys.iter().all(|k| *k == keys[0] && k.is_string()), "one conversation, one cache key: {keys:?}");
}

async fn stream_with(env: &TestEnv, body: &Value, headers: &[(&str, &str)]) -> (Vec<Value>, Value, Vec<String>) {
    let (status, _, text) = env.post_with("/v1/messages", &with(body.clone(), json!({"stream":true})), headers).await;
    assert_eq!(status, 200, "{text}");
    check_stream(&text)
}

#[tokio::test]
async fn conversation_key_from_session_header_then_metadata() {
    let env = start(Setup::default()).await;
    let meta = json!({"metadata":{"user_id": r#"{"device_id":"d1","account_uuid":"","session_id":"s-42"}"#}});
    env.post_with("/v1/messages", &msg("a"), &[("x-claude-code-session-id", "s-42")]).await;
    env.post_with("/v1/messages", &msg("b"), &[("x-claude-code-session-id", "s-42")]).await;
    env.post("/v1/messages", &with(msg("c"), meta)).await;
    env.post_with("/v1/messages", &msg("d"), &[("x-claude-code-session-id", "s-43")]).await;
    let keys: Vec<String> =
        env.upstream_bodies().iter().map(|b| b["prompt_cache_key"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(keys.len(), 4);
    assert!(keys[0] == keys[1] && keys[1] == keys[2], "{keys:?}");
    assert_ne!(keys[0], keys[3]);
    assert!(!keys[0].contains("s-42"), "client ids are hashed");
}

#[tokio::test]
async fn max_tokens_cut_and_stop_sequences() {
    let env = start(Setup::default()).await;
    let long = "word ".repeat(300);
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":long,"deltas":60})));
    let (blocks, delta, _) = stream(&env, &with(msg("x"), json!({"max_tokens": 10}))).await;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    let got = blocks[0]["text"].as_str().unwrap_or_default().len();
    assert!(got > 0 && got < long.len() / 2, "cut early: {got}");

    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"alpha beta STOP gamma","deltas":5})));
    let (blocks, delta, _) = stream(&env, &with(msg("x"), json!({"stop_sequences":["STOP"]}))).await;
    assert_eq!(delta["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta["delta"]["stop_sequence"], "STOP");
    assert_eq!(blocks[0]["text"], "alpha beta ");

    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"alpha beta STOP gamma"})));
    let (status, _, text) = env.post("/v1/messages", &with(msg("x"), json!({"stop_sequences":["STOP"]}))).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!((v["stop_reason"].clone(), v["stop_sequence"].clone()), (json!("stop_sequence"), json!("STOP")));
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":long})));
    let (_, _, text) = env.post("/v1/messages", &with(msg("x"), json!({"max_tokens": 10}))).await;
    assert_eq!(json(&text)["stop_reason"], "max_tokens");
    for up in env.upstream_bodies() {
        assert!(up.get("max_output_tokens").is_none() && up.get("stop").is_none(), "{up}");
    }
}

#[tokio::test]
async fn silence_gets_ping_keepalives() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_KEEPALIVE_SECS", "1".into())], ..Setup::default() }).await;
    env.fake.enqueue(None, scenario(json!({"kind":"silence","ms":2500,"then":{"kind":"text","text":"late answer"}})));
    let (blocks, _, names) = stream(&env, &msg("x")).await;
    assert!(names.iter().any(|n| n == "ping"), "{names:?}");
    assert_eq!(blocks[0]["text"], "late answer");
}

#[tokio::test]
async fn models_list_in_the_anthropic_shape() {
    let env = start(Setup::default()).await;
    let resp = env
        .http
        .get(env.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "unused")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap_or_default();
    let data = v["data"].as_array().cloned().unwrap_or_default();
    assert!(data.iter().any(|m| m["id"] == "gpt-5.4"), "{v}");
    assert!(data.iter().all(|m| m["type"] == "model" && m["display_name"].is_string() && m["created_at"].is_string()));
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], data[0]["id"]);
}
