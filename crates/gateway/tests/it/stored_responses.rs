//! Chained Responses over HTTP, as OpenAI serves them (issue 72): a request naming a response the gateway keeps in
//! `previous_response_id` sends only its new items and the upstream gets the whole conversation (`store: false`);
//! a response the gateway does not hold (never seen, evicted, asked not to be kept, another key's) is OpenAI's own
//! `previous_response_not_found`, which clients' fallbacks look for.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

/// OpenAI's body for an id it does not hold.
fn not_found(id: &str) -> Value {
    json!({"error": {"message": format!("Previous response with id '{id}' not found."),
        "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}})
}

fn tool_call(call_id: &str) -> fake_codex::Scenario {
    scenario(json!({"kind": "tool_call", "name": "get_weather", "call_id": call_id, "arguments": {"city": "Oslo"}}))
}

/// The `response.completed` event's `response` of a streamed answer.
fn completed(sse: &str) -> Value {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["type"] == "response.completed")
        .map(|mut v| v["response"].take())
        .unwrap_or_else(|| panic!("no response.completed in {sse}"))
}

/// One turn; the response object (whole, or the completed event's when streamed).
async fn turn(env: &TestEnv, body: Value) -> Value {
    let stream = body["stream"] == true;
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    if stream { completed(&text) } else { json(&text) }
}

fn types(input: &Value) -> Vec<String> {
    input.as_array().into_iter().flatten().map(|i| i["type"].as_str().unwrap_or_default().to_string()).collect()
}

/// agno's and Semantic Kernel's Responses agents: the question, a tool call, its output sent alone with the
/// call's response id, the answer; then the next question chained on that answer.
async fn a_tool_loop_chained_by_id(stream: bool) {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, tool_call("call_w"));
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let first = turn(
        &env,
        json!({"model": "gpt-5.4", "stream": stream, "instructions": "Be brief.", "tools": tools,
            "input": [{"role": "user", "content": "weather in Oslo?"}]}),
    )
    .await;
    let call = first["output"].as_array().and_then(|o| o.iter().find(|i| i["type"] == "function_call").cloned());
    let call = call.unwrap_or_else(|| panic!("no call in {first}"));
    assert_eq!(call["call_id"], "call_w");

    let output = json!({"type": "function_call_output", "call_id": "call_w", "output": "sunny, 21 C"});
    let second = turn(
        &env,
        json!({"model": "gpt-5.4", "stream": stream, "instructions": "Be brief.", "tools": tools,
            "previous_response_id": first["id"], "input": [output]}),
    )
    .await;
    assert_eq!(second["status"], "completed", "{second}");

    let third = turn(
        &env,
        json!({"model": "gpt-5.4", "stream": stream, "previous_response_id": second["id"],
            "input": [{"role": "user", "content": "and tomorrow?"}]}),
    )
    .await;
    assert_eq!(third["status"], "completed", "{third}");

    let bodies = env.upstream_bodies();
    assert_eq!(bodies.len(), 3);
    for b in &bodies {
        assert_eq!(b["store"], false, "{b}");
        assert!(b.get("previous_response_id").is_none(), "{b}");
    }
    // The upstream got the whole conversation each time: the instructions of each request as its own first
    // developer message (not carried over, as at OpenAI), then every earlier item, then the new ones.
    assert_eq!(types(&bodies[1]["input"]), ["message", "message", "function_call", "function_call_output"]);
    assert_eq!(bodies[1]["input"][0]["role"], "developer");
    assert_eq!(bodies[1]["input"][2]["call_id"], "call_w");
    assert_eq!(bodies[1]["input"][3]["output"], "sunny, 21 C");
    assert_eq!(
        types(&bodies[2]["input"]),
        ["message", "function_call", "function_call_output", "message", "message"],
        "{}",
        bodies[2]
    );
    assert_eq!(bodies[2]["input"][3]["role"], "assistant", "the second answer is in the history");
    assert_eq!(bodies[2]["input"][4]["content"], "and tomorrow?");
}

#[tokio::test]
async fn a_two_turn_tool_loop_chained_by_previous_response_id_over_http() {
    a_tool_loop_chained_by_id(false).await;
}

#[tokio::test]
async fn a_streamed_tool_loop_chained_by_previous_response_id_over_http() {
    a_tool_loop_chained_by_id(true).await;
}

#[tokio::test]
async fn an_unknown_id_is_openais_previous_response_not_found() {
    let env = start(Setup::default()).await;
    for stream in [false, true] {
        let body = json!({"model": "gpt-5.4", "stream": stream, "input": "x", "previous_response_id": "resp_nope"});
        let (status, headers, text) = env.post("/v1/responses", &body).await;
        assert_eq!(status, 400, "{text}");
        assert!(headers.get("content-type").is_some_and(|v| v.to_str().unwrap_or_default() == "application/json"));
        assert_eq!(json(&text), not_found("resp_nope"));
    }
    assert!(env.upstream_bodies().is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn an_evicted_response_or_one_asked_not_to_be_kept_is_not_found() {
    let env = start(Setup { config_toml: Some("[server]\nstored_responses = 2\n".into()), ..Setup::default() }).await;
    let ask = |text: &str, store: bool| json!({"model": "gpt-5.4", "input": text, "store": store});
    let not_kept = turn(&env, ask("not kept", false)).await;
    let a = turn(&env, ask("a", true)).await;
    let b = turn(&env, ask("b", true)).await;
    let c = turn(&env, ask("c", true)).await;
    // Two are kept: `a` was the least recently used when `c` came.
    for (gone, stream) in [(&a, false), (&a, true), (&not_kept, false)] {
        let body = json!({"model": "gpt-5.4", "stream": stream, "input": "more", "previous_response_id": gone["id"]});
        let (status, _, text) = env.post("/v1/responses", &body).await;
        assert_eq!(status, 400, "{text}");
        assert_eq!(json(&text), not_found(gone["id"].as_str().unwrap_or_default()));
    }
    // Not kept themselves (`store: false`), so neither pushes the other out.
    for kept in [&b, &c] {
        let next = json!({"model": "gpt-5.4", "input": "more", "store": false, "previous_response_id": kept["id"]});
        assert_eq!(turn(&env, next).await["status"], "completed");
    }
    let last = env.upstream_bodies().pop().unwrap_or_default();
    assert_eq!(types(&last["input"]), ["message", "message", "message"], "{last}");
}

#[tokio::test]
async fn a_response_is_found_only_by_the_client_key_that_made_it() {
    let keys = "[keys.alice]\nsecret = \"sk-alice-0123456789\"\n[keys.bob]\nsecret = \"sk-bob-0123456789ab\"\n";
    let env = start(Setup { config_toml: Some(keys.into()), ..Setup::default() }).await;
    let post = |key: &'static str, body: Value| {
        let env = &env;
        async move {
            let auth = format!("Bearer {key}");
            env.post_with("/v1/responses", &body, &[("authorization", auth.as_str())]).await
        }
    };
    let (status, _, text) = post("sk-alice-0123456789", json!({"model": "gpt-5.4", "input": "mine"})).await;
    assert_eq!(status, 200, "{text}");
    let id = json(&text)["id"].clone();
    let next = json!({"model": "gpt-5.4", "input": "more", "previous_response_id": id});
    let (status, _, text) = post("sk-bob-0123456789ab", next.clone()).await;
    assert_eq!((status, json(&text)), (400, not_found(id.as_str().unwrap_or_default())));
    let (status, _, text) = post("sk-alice-0123456789", next).await;
    assert_eq!(status, 200, "{text}");
}
