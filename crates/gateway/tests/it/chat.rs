//! Chat Completions through the real server: mapping, streaming shape, limits emulation, models.

use serde_json::{Value, json};

use crate::harness::{Setup, json, scenario, sse_data, start};

#[tokio::test]
async fn non_stream_answer_with_usage_and_request_id() {
    let env = start(Setup::default()).await;
    let (status, headers, body) = env
        .post_with(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello gateway"}]}),
            &[("x-request-id", "my-req-1")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("my-req-1"));
    let v = json(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap_or_default().contains("hello gateway"));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    // Upstream got what the backend insists on.
    let up = &env.upstream_bodies()[0];
    assert!(up.get("instructions").is_none(), "the official client sends none");
    assert_eq!(up["input"][0]["role"], "developer");
    assert_eq!(up["input"][0]["content"][0]["text"], "be brief");
    assert_eq!(up["store"], false);
    assert_eq!(up["stream"], true);
    assert!(up["prompt_cache_key"].as_str().is_some());
    // Without a client id the gateway makes one.
    let (_, headers, _) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]})).await;
    assert!(headers.get("x-request-id").is_some());
}

/// Model calls with a small body and a large one (more than one read of the connection) answer alike, with the
/// client's request id, on the bare paths too.
#[tokio::test]
async fn every_model_path_and_body_size_answers_alike() {
    let env = start(Setup::default()).await;
    let big = "y".repeat(300_000);
    for (path, content) in [("/chat/completions", "bare path"), ("/v1/chat/completions", big.as_str())] {
        let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":content}]});
        let (status, headers, text) = env.post_with(path, &body, &[("x-request-id", "same-id")]).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("same-id"), "{path}");
        assert_eq!(json(&text)["object"], "chat.completion", "{path}");
    }
    for input in ["bare path", big.as_str()] {
        let (status, headers, text) = env.post("/responses", &json!({"model":"gpt-5.4","input":input})).await;
        assert_eq!(status, 200, "{text}");
        assert!(headers.get("x-request-id").is_some());
        assert_eq!(json(&text)["object"], "response");
    }
    assert_eq!(env.upstream_bodies().len(), 4);
}

#[tokio::test]
async fn stream_follows_the_chunk_rules() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(
            json!({"kind":"tool_call","name":"get_weather","arguments":{"city":"Paris"},"text_before":"Let me check."}),
        ),
    );
    let (status, headers, body) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","stream":true,"stream_options":{"include_usage":true},
                    "messages":[{"role":"user","content":"weather?"}],
                    "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().starts_with("text/event-stream")
    );
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| json(d)).collect();
    let ids: std::collections::HashSet<&str> = chunks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one id for all chunks");
    let roles = chunks.iter().filter(|c| c["choices"][0]["delta"].get("role").is_some()).count();
    assert_eq!(roles, 1, "exactly one role delta");
    let mut args = String::new();
    let mut first_tool_deltas = 0;
    for c in &chunks {
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].as_array() {
            assert_eq!(tc[0]["index"], 0);
            if tc[0].get("id").is_some() {
                first_tool_deltas += 1;
                assert_eq!(tc[0]["function"]["name"], "get_weather");
            }
            args.push_str(tc[0]["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    assert_eq!(first_tool_deltas, 1, "id and name only once");
    assert_eq!(json(&args), json!({"city":"Paris"}));
    let finish: Vec<&Value> = chunks.iter().filter(|c| !c["choices"][0]["finish_reason"].is_null()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "tool_calls");
    let usage_chunk = chunks.last().cloned().unwrap_or_default();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert!(usage_chunk["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()));
}

#[tokio::test]
async fn tool_round_trip_maps_calls_and_outputs() {
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","messages":[
        {"role":"system","content":"sys"},
        {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"result-1"},
        {"role":"system","content":"late system"},
        {"role":"user","content":"and now?"}
    ],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}});
    let (status, _, text) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let up = &env.upstream_bodies()[0];
    let input = up["input"].as_array().cloned().unwrap_or_default();
    // The leading system text is the first developer message, as the official client sends its instructions.
    assert_eq!(input[0]["role"], "developer");
    assert_eq!(input[0]["content"][0]["text"], "sys");
    let input = &input[1..];
    assert_eq!(
        input[0]["content"][1],
        json!({"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"})
    );
    assert_eq!(input[1], json!({"type":"function_call","call_id":"call_1","name":"f","arguments":"{\"a\":1}"}));
    assert_eq!(input[2], json!({"type":"function_call_output","call_id":"call_1","output":"result-1"}));
    assert_eq!(input[3]["role"], "developer");
    assert_eq!(up["tool_choice"], json!({"type":"function","name":"f"}));
    assert_eq!(up["tools"][0], json!({"type":"function","name":"f","parameters":{"type":"object"},"strict":false}));
}

#[tokio::test]
async fn model_suffixes_set_effort_and_tier() {
    let env = start(Setup::default()).await;
    let (status, _, text) = env
        .post("/v1/chat/completions", &json!({"model":"gpt-5.4-high-fast","messages":[{"role":"user","content":"x"}]}))
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["model"], "gpt-5.4-high-fast");
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["model"], "gpt-5.4");
    assert_eq!(up["reasoning"]["effort"], "high");
    assert_eq!(up["service_tier"], "priority");
}

#[tokio::test]
async fn dropped_parameters_never_reach_upstream() {
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}],"temperature":0.2,"top_p":0.9,
        "metadata":{"a":"b"},"user":"u","seed":1,"presence_penalty":0.1,"frequency_penalty":0.1,"logit_bias":{},"max_tokens":500});
    let (status, _, text) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let up = &env.upstream_bodies()[0];
    for k in ["temperature", "top_p", "metadata", "user", "seed", "max_output_tokens", "max_tokens", "logit_bias"] {
        assert!(up.get(k).is_none(), "{k} leaked upstream");
    }
}

#[tokio::test]
async fn stop_sequence_and_max_tokens_are_emulated() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"alpha beta STOP gamma delta","deltas":6})));
    let (_, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","stop":["STOP"],"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    let v = json(&text);
    assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    env.fake.enqueue(
        None,
        scenario(
            json!({"kind":"text","text":"one two three four five six seven eight nine ten eleven twelve","deltas":12}),
        ),
    );
    let (_, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","max_completion_tokens":4,"stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    let data = sse_data(&text);
    let content: String = data
        .iter()
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| json(d)["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert!(content.starts_with("one two"), "{content}");
    assert!(!content.contains("twelve"), "{content}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn json_schema_structured_output() {
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"give me a person"}],
        "response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}}}});
    let (status, _, text) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    let content = json(&text)["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string();
    let person = json(&content);
    assert!(person["name"].is_string() && person["age"].is_i64(), "{content}");
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["text"]["format"]["type"], "json_schema");
    assert_eq!(up["text"]["format"]["name"], "person");
    assert_eq!(up["text"]["format"]["strict"], true);
}

#[tokio::test]
async fn reasoning_summary_streams_as_reasoning_content() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"reasoning_then_text","summary":"thinking hard","text":"done"})));
    let (_, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    let reasoning: String = sse_data(&text)
        .iter()
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| json(d)["choices"][0]["delta"]["reasoning_content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(reasoning, "thinking hard");
}

#[tokio::test]
async fn models_endpoints() {
    let env = start(Setup::default()).await;
    let v: Value = env.get_json("/v1/models").await;
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> =
        v["data"].as_array().map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect()).unwrap_or_default();
    assert!(ids.contains(&"gpt-5.4"), "{v}");
    assert!(
        v["models"].as_array().is_some_and(|m| m.iter().any(|e| e["slug"] == "gpt-5.4")),
        "codex catalog shape too"
    );
    let codex: Value = env.get_json("/v1/models?client_version=0.169.0").await;
    assert!(codex["models"][0]["context_window"].as_u64().is_some());
    let one = env.http.get(env.url("/v1/models/gpt-5.4")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.status().as_u16(), 200);
    let missing = env.http.get(env.url("/v1/models/nope-1")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status().as_u16(), 404);
    let anthropic: Value = env
        .http
        .get(env.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(anthropic["data"][0]["type"], "model");
    assert_eq!(anthropic["has_more"], false);
}

/// The Codex CLI reads the catalog under `models` with its own type: the gateway types the fields it reads, but
/// passes every entry on as the upstream sent it, fields it does not know included.
#[tokio::test]
async fn codex_catalog_entries_pass_through_unchanged() {
    let env = start(Setup::default()).await;
    let v: Value = env.get_json("/v1/models?client_version=0.169.0").await;
    let models = v["models"].as_array().cloned().unwrap_or_default();
    assert!(!models.is_empty(), "{v}");
    for entry in &models {
        let slug = entry["slug"].as_str().unwrap_or_default();
        assert_eq!(entry, &fake_codex::catalog::codex_entry(slug), "{slug}");
        assert_eq!(entry["shell_type"], "shell_command", "a field the gateway does not type");
    }
    let one: Value = env.get_json("/v1/models/gpt-5.4-high").await;
    assert_eq!(one["models"], json!([fake_codex::catalog::codex_entry("gpt-5.4")]));
}

#[tokio::test]
async fn keepalive_comments_while_upstream_is_silent() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_KEEPALIVE_SECS", "1".into())], ..Setup::default() }).await;
    env.fake.enqueue(None, scenario(json!({"kind":"silence","ms":2500,"then":{"kind":"text","text":"late answer"}})));
    let (status, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(text.contains(": keepalive"), "{text}");
    let content: String = sse_data(&text)
        .iter()
        .filter(|d| d.starts_with('{'))
        .filter_map(|d| json(d)["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(content, "late answer");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_stream_at_once() {
    let env = start(Setup::default()).await;
    for dialect_path in ["/v1/chat/completions", "/v1/responses"] {
        env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"tick ".repeat(60),"deltas":60,"delay_ms":50})));
        let body = if dialect_path.ends_with("completions") {
            json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"x"}]})
        } else {
            json!({"model":"gpt-5.4","stream":true,"input":"x"})
        };
        let before = env.fake.stats()["streams_dropped"].as_u64().unwrap_or(0);
        let mut resp = env.http.post(env.url(dialect_path)).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
        let first = resp.chunk().await.unwrap_or_default();
        assert!(first.is_some_and(|c| !c.is_empty()), "the stream started");
        drop(resp);
        let dropped_at = std::time::Instant::now();
        let mut closed = false;
        while dropped_at.elapsed() < std::time::Duration::from_secs(2) {
            if env.fake.stats()["streams_dropped"].as_u64().unwrap_or(0) > before {
                closed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(closed, "{dialect_path}: the upstream stream was still open 2 s after the client left");
        // The fake would have kept streaming for ~3 s; it noticed within one delta interval of the client leaving.
        assert!(
            dropped_at.elapsed() < std::time::Duration::from_millis(500),
            "{dialect_path}: {:?}",
            dropped_at.elapsed()
        );
    }
}
