//! The Gemini dialect through the real server: strict stream framing, JSON-array mode, function calls with
//! rewritten ids, thought signatures the fake verifies, errors with RetryInfo, countTokens, the Gemini CLI's
//! classifier call, auth and the model routes.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

const SSE: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
const ARRAY: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn user(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

/// Every block of a Gemini SSE body must be exactly `data: <json object>`; returns the objects.
fn strict_chunks(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "the body ends with a blank line: {body:?}");
    body.split_terminator("\n\n")
        .map(|block| {
            let data = block.strip_prefix("data: ").unwrap_or_else(|| panic!("non-data block {block:?} in {body}"));
            assert!(!data.contains('\n'), "one line per block: {block:?}");
            let v = json(data);
            assert!(v.is_object(), "{data}");
            v
        })
        .collect()
}

fn parts(chunks: &[Value]) -> Vec<Value> {
    chunks.iter().flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default()).collect()
}

fn visible_text(chunks: &[Value]) -> String {
    parts(chunks)
        .iter()
        .filter(|p| p.get("thought").is_none())
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn sse_stream_is_strict_data_framing_with_final_finish_and_usage() {
    let env = start(Setup::default()).await;
    let (status, headers, body) = env.post(SSE, &user("hello gemini")).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].to_str().unwrap_or_default().starts_with("text/event-stream"));
    let chunks = strict_chunks(&body);
    assert!(visible_text(&chunks).contains("You said: hello gemini"), "{body}");
    let last = chunks.last().cloned().unwrap_or_default();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(last["usageMetadata"]["promptTokenCount"].as_u64().unwrap_or(0) > 0);
    assert!(last["usageMetadata"]["totalTokenCount"].as_u64().unwrap_or(0) > 0);
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["candidates"][0].get("finishReason").is_none()));
    assert!(chunks.iter().all(|c| c["modelVersion"] == "gemini-2.5-flash"));
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["model"], "gpt-5.4", "flash maps to gpt-5.4");
    assert_eq!(up["include"], json!(["reasoning.encrypted_content"]));
}

#[tokio::test]
async fn silence_sends_nothing_that_breaks_framing() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_KEEPALIVE_SECS", "1".into())], ..Setup::default() }).await;
    env.fake.enqueue(None, scenario(json!({"kind":"silence","ms":2500,"then":{"kind":"text","text":"late answer"}})));
    let (status, _, body) = env.post(SSE, &user("x")).await;
    assert_eq!(status, 200);
    let chunks = strict_chunks(&body);
    assert_eq!(visible_text(&chunks), "late answer");
}

#[tokio::test]
async fn without_alt_sse_the_stream_is_one_json_array() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"alpha beta gamma","deltas":3})));
    let (status, headers, body) = env.post(ARRAY, &user("x")).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].to_str().unwrap_or_default().starts_with("application/json"));
    let chunks = json(&body).as_array().cloned().unwrap_or_default();
    assert!(chunks.len() >= 2, "{body}");
    assert_eq!(visible_text(&chunks), "alpha beta gamma");
    assert_eq!(chunks.last().map(|c| c["candidates"][0]["finishReason"].clone()), Some(json!("STOP")));
}

/// A functionCall turn from the stream, as a client would put it back into `contents`.
async fn call_turn(env: &TestEnv, path: &str, body: &Value) -> Vec<Value> {
    let (status, _, text) = env.post(path, body).await;
    assert_eq!(status, 200, "{text}");
    parts(&strict_chunks(&text)).into_iter().filter(|p| p.get("functionCall").is_some()).collect()
}

#[tokio::test]
async fn function_call_round_trip_with_rewritten_ids_and_thought_signature() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"tool_call","name":"run_shell_command","arguments":{"command":"echo hi"},"call_id":"call_77"})),
    );
    let tools = json!([{"functionDeclarations": [{"name": "run_shell_command", "description": "Run a command",
        "parameters": {"type": "OBJECT", "properties": {"command": {"type": "STRING"}}, "required": ["command"]}}]}]);
    let mut first = user("run it");
    first["tools"] = tools.clone();
    let calls = call_turn(&env, SSE, &first).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        call["functionCall"],
        json!({"id": "call_77", "name": "run_shell_command", "args": {"command": "echo hi"}})
    );
    let signature = call["thoughtSignature"].as_str().unwrap_or_default().to_string();
    assert!(!signature.is_empty(), "the reasoning item rides on the functionCall part: {call}");
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["tools"][0]["parameters"]["properties"]["command"]["type"], "string");

    // Gemini CLI style: ids rewritten to `${name}__${id}`, the result carries the same id.
    let mut model_part = call.clone();
    model_part["functionCall"]["id"] = json!("run_shell_command__call_77");
    let next = json!({"tools": tools, "contents": [
        {"role": "user", "parts": [{"text": "run it"}]},
        {"role": "model", "parts": [model_part]},
        {"role": "user", "parts": [{"functionResponse": {"id": "run_shell_command__call_77", "name": "run_shell_command",
            "response": {"output": "hi-from-tool"}}}]},
    ]});
    let (status, _, text) = env.post(SSE, &next).await;
    assert_eq!(status, 200, "the fake accepted the echoed reasoning item: {text}");
    assert!(visible_text(&strict_chunks(&text)).contains("Tool result: hi-from-tool"), "{text}");
    let up = &env.upstream_bodies()[1];
    let input = up["input"].as_array().cloned().unwrap_or_default();
    let reasoning: Vec<&Value> = input.iter().filter(|i| i["type"] == "reasoning").collect();
    assert_eq!(reasoning.len(), 1, "{input:?}");
    assert!(reasoning[0]["encrypted_content"].as_str().is_some_and(|e| !e.is_empty()));
    let call_ids: Vec<&Value> = input
        .iter()
        .filter(|i| i["type"] == "function_call" || i["type"] == "function_call_output")
        .map(|i| &i["call_id"])
        .collect();
    assert_eq!(call_ids, [&json!("call_77"), &json!("call_77")]);

    // An altered signature (same format, other bytes) is refused by the backend, and the turn goes once more
    // without it (as reasoning sealed to another account does, docs/protocol.md "Long sessions"); a foreign one is
    // dropped before it goes.
    let mut tampered = call.clone();
    let forged = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let raw = engine.decode(&signature).unwrap_or_default();
        let mut text = String::from_utf8_lossy(&raw).to_string();
        text = text.replacen("\"ec\":\"", "\"ec\":\"X", 1);
        engine.encode(text)
    };
    tampered["thoughtSignature"] = json!(forged);
    let mut altered = next.clone();
    altered["contents"][1]["parts"] = json!([tampered]);
    let before = env.fake.requests_to("/responses").len();
    let (status, _, text) = env.post(SSE, &altered).await;
    assert_eq!(status, 200, "{text}");
    let tries: Vec<_> = env.fake.requests_to("/responses").into_iter().skip(before).collect();
    let reasoned = |r: &fake_codex::RecordedRequest| {
        r.body["input"].as_array().into_iter().flatten().filter(|i| i["type"] == "reasoning").count()
    };
    assert_eq!(tries.iter().map(|r| (r.status, reasoned(r))).collect::<Vec<_>>(), [(400, 1), (200, 0)]);
    let mut foreign = call.clone();
    foreign["thoughtSignature"] = json!("skip_thought_signature_validator");
    let mut skipped = next.clone();
    skipped["contents"][1]["parts"] = json!([foreign]);
    let (status, _, text) = env.post(SSE, &skipped).await;
    assert_eq!(status, 200, "{text}");
    let last = env.upstream_bodies().pop().unwrap_or_default();
    assert!(last["input"].as_array().is_some_and(|i| i.iter().all(|x| x["type"] != "reasoning")));
}

#[tokio::test]
async fn results_without_ids_pair_by_name_and_order() {
    let env = start(Setup::default()).await;
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "two lookups"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {"x": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "b", "response": {"result": "rb"}}},
                                    {"functionResponse": {"name": "a", "response": {"result": "ra"}}}]},
    ], "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]});
    let (status, _, text) = env.post(GENERATE, &body).await;
    assert_eq!(status, 200, "{text}");
    let input = env.upstream_bodies()[0]["input"].as_array().cloned().unwrap_or_default();
    let call_a = input.iter().find(|i| i["name"] == "a").map(|i| i["call_id"].clone());
    let out_a = input.iter().find(|i| i["output"] == "ra").map(|i| i["call_id"].clone());
    assert!(call_a.is_some() && call_a == out_a, "{input:?}");
}

#[tokio::test]
async fn errors_are_google_shaped_with_retry_info() {
    let env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"usage_limit","resets_in_secs":90})));
    let (status, headers, text) = env.post(GENERATE, &user("x")).await;
    assert_eq!(status, 429, "{text}");
    assert!(headers.get("retry-after").is_some());
    let e = &json(&text)["error"];
    assert_eq!(e["code"], 429);
    assert_eq!(e["status"], "RESOURCE_EXHAUSTED");
    let retry = e["details"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["@type"] == "type.googleapis.com/google.rpc.RetryInfo"));
    assert!(retry.is_some_and(|r| r["retryDelay"].as_str().is_some_and(|d| d.ends_with('s'))), "{text}");

    // After output began: a last `{"error":...}` chunk, still strict framing. (A fresh gateway: the 429 put
    // the only account in cooldown.)
    let env = start(Setup::default()).await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"custom","items":[{"type":"text","text":"partial answer"}],
            "end":{"type":"failed","code":"server_is_overloaded","message":"busy"}})),
    );
    let (status, _, body) = env.post(SSE, &user("x")).await;
    assert_eq!(status, 200);
    let chunks = strict_chunks(&body);
    assert_eq!(chunks.last().map(|c| c["error"]["status"].clone()), Some(json!("UNAVAILABLE")), "{body}");

    // Bad input names the field.
    let (status, _, text) = env.post(GENERATE, &json!({"contents": "nope"})).await;
    assert_eq!(status, 400);
    assert_eq!(json(&text)["error"]["status"], "INVALID_ARGUMENT");
    let (status, _, text) = env.post("/v1beta/models/gemini-2.5-flash:embedContent", &user("x")).await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn count_tokens_is_local() {
    let env = start(Setup::default()).await;
    let (status, _, text) =
        env.post("/v1beta/models/gemini-2.5-pro:countTokens", &user("hello world, how are you today?")).await;
    assert_eq!(status, 200, "{text}");
    let n = json(&text)["totalTokens"].as_u64().unwrap_or(0);
    assert!((5..20).contains(&n), "{text}");
    let wrapped = json!({"generateContentRequest": {"model": "models/gemini-2.5-pro",
        "contents": [{"role": "user", "parts": [{"text": "hello world, how are you today?"}]}]}});
    let (_, _, text) = env.post("/v1beta/models/gemini-2.5-pro:countTokens", &wrapped).await;
    assert_eq!(json(&text)["totalTokens"].as_u64(), Some(n));
    assert!(env.upstream_bodies().is_empty(), "no upstream call");
}

#[tokio::test]
async fn classifier_call_gets_schema_valid_json() {
    let env = start(Setup::default()).await;
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "Classify the complexity of: fix a typo"}]}],
        "systemInstruction": {"parts": [{"text": "You are a router."}]},
        "generationConfig": {"temperature": 0, "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {
                "complexity_reasoning": {"type": "string"}, "complexity_score": {"type": "integer", "minimum": 1, "maximum": 100}},
                "required": ["complexity_reasoning", "complexity_score"]},
            "thinkingConfig": {"thinkingBudget": 0}}
    });
    let (status, _, text) = env.post("/v1beta/models/gemini-3.5-flash-lite:generateContent", &body).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let answer: String = v["candidates"][0]["content"]["parts"]
        .as_array()
        .map(|p| p.iter().filter(|x| x.get("thought").is_none()).filter_map(|x| x["text"].as_str()).collect())
        .unwrap_or_default();
    let parsed = json(&answer);
    assert!(parsed["complexity_reasoning"].is_string(), "{answer}");
    assert!(parsed["complexity_score"].as_i64().is_some_and(|s| (1..=100).contains(&s)), "{answer}");
    let up = &env.upstream_bodies()[0];
    assert_eq!(up["model"], "gpt-5.4-mini");
    assert_eq!(up["text"]["format"]["type"], "json_schema");
    assert!(up.get("temperature").is_none());
}

#[tokio::test]
async fn keys_in_header_query_or_bearer() {
    let env = start(Setup { client_key: Some("gk".into()), ..Setup::default() }).await;
    let (status, _, text) = env.post(GENERATE, &user("x")).await;
    assert_eq!(status, 401);
    assert_eq!(json(&text)["error"]["status"], "UNAUTHENTICATED");
    let (status, _, _) = env.post_with(GENERATE, &user("x"), &[("x-goog-api-key", "gk")]).await;
    assert_eq!(status, 200);
    let (status, _, _) = env.post(&format!("{GENERATE}?key=gk"), &user("x")).await;
    assert_eq!(status, 200);
    let (status, _, _) = env.post_with(GENERATE, &user("x"), &[("authorization", "Bearer gk")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn model_routes_and_v1_paths() {
    let env = start(Setup::default()).await;
    let list: Value = env.get_json("/v1beta/models").await;
    let names: Vec<&str> =
        list["models"].as_array().map(|m| m.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
    assert!(names.contains(&"models/gpt-5.4"), "{list}");
    assert!(list["models"][0]["inputTokenLimit"].as_u64().is_some());
    let one = env.http.get(env.url("/v1beta/models/gemini-2.5-pro")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.status().as_u16(), 200);
    let v: Value = one.json().await.unwrap_or_default();
    assert_eq!(v["name"], "models/gemini-2.5-pro");
    let missing = env.http.get(env.url("/v1beta/models/nope-1")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing.status().as_u16(), 404);
    // v1 shares `/v1/models/{id}` with the OpenAI route: POST is Gemini, GET stays OpenAI.
    let (status, _, text) = env.post("/v1/models/gemini-2.5-flash:generateContent", &user("via v1")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("You said: via v1"));
    let openai: Value = env.get_json("/v1/models/gpt-5.4").await;
    assert_eq!(openai["object"], "model");
    let (status, _, _) = env.post("/v1alpha/models/gemini-2.5-flash:generateContent", &user("x")).await;
    assert_eq!(status, 200);
}
