//! The Ollama bridge through the real server: off by default, NDJSON streaming with a metrics line, tools,
//! format json, the model routes Copilot-style clients need, CORS and Origin rules, and `/v1` on the same port.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

async fn bridge() -> (TestEnv, String) {
    let env = start(Setup { ollama: true, client_key: Some("main-key".into()), ..Setup::default() }).await;
    let base = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    (env, base)
}

async fn post(env: &TestEnv, url: String, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = env.http.post(&url).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

async fn get(env: &TestEnv, url: String) -> (u16, String) {
    let resp = env.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

/// NDJSON: one object per line, no blank lines.
fn lines(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n') && !body.contains("\n\n"), "{body:?}");
    body.lines().map(json).collect()
}

#[tokio::test]
async fn bridge_is_off_by_default() {
    let env = start(Setup::default()).await;
    assert!(env.ollama.is_none());
    let config = codex_gateway::config::Config::resolve(
        codex_gateway::config::RawConfig::default(),
        &codex_gateway::config::Overrides::default(),
        &std::collections::HashMap::<String, String>::new(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.ollama.enabled);
    // The main port does not speak Ollama.
    let (status, _) = get(&env, env.url("/api/tags")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn chat_streams_ndjson_with_a_metrics_line() {
    let (env, base) = bridge().await;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"reasoning_then_text","summary":"pondering","text":"Hi there, friend."})),
    );
    let body = json!({"model":"gpt-5.4","think":true,"messages":[{"role":"user","content":"hello bridge"}]});
    let (status, headers, text) = post(&env, format!("{base}/api/chat"), &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let ls = lines(&text);
    let content: String = ls.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    let thinking: String = ls.iter().filter_map(|l| l["message"]["thinking"].as_str()).collect();
    assert_eq!(content, "Hi there, friend.");
    assert_eq!(thinking, "pondering");
    assert!(ls[..ls.len() - 1].iter().all(|l| l["done"] == false && l["model"] == "gpt-5.4"));
    let last = ls.last().cloned().unwrap_or_default();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    for k in ["prompt_eval_count", "eval_count", "total_duration", "eval_duration", "prompt_eval_duration"] {
        assert!(last[k].as_u64().is_some_and(|n| n > 0), "{k}: {last}");
    }
    assert!(last["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    // No client key is needed on the bridge, even though the main port has one.
    assert_eq!(env.upstream_bodies()[0]["reasoning"]["summary"], "auto");
}

#[tokio::test]
async fn non_stream_chat_generate_and_format_json() {
    let (env, base) = bridge().await;
    let body = json!({"model":"gpt-5.4:latest","stream":false,"format":"json","messages":[{"role":"user","content":"json please"}]});
    let (status, _, text) = post(&env, format!("{base}/api/chat"), &body).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert_eq!(v["done"], true);
    assert_eq!(json(v["message"]["content"].as_str().unwrap_or_default()), json!({"answer":"ok"}));
    assert_eq!(env.upstream_bodies()[0]["text"]["format"]["type"], "json_object");

    let body = json!({"model":"gpt-5.4","prompt":"say generate-ok","stream":false,"options":{"temperature":0.1,"num_ctx":4096}});
    let (status, _, text) = post(&env, format!("{base}/api/generate"), &body).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    assert!(v["response"].as_str().unwrap_or_default().contains("You said: say generate-ok"), "{text}");
    assert!(env.upstream_bodies()[1].get("temperature").is_none());

    let (status, _, text) =
        post(&env, format!("{base}/api/generate"), &json!({"model":"gpt-5.4","prompt":"stream me"})).await;
    assert_eq!(status, 200);
    let ls = lines(&text);
    let response: String = ls.iter().filter_map(|l| l["response"].as_str()).collect();
    assert!(response.contains("You said: stream me"));

    // Empty messages: Ollama's load no-op, no upstream call.
    let before = env.upstream_bodies().len();
    let (status, _, text) = post(&env, format!("{base}/api/chat"), &json!({"model":"gpt-5.4","messages":[]})).await;
    assert_eq!((status, json(&text)["done_reason"].clone()), (200, json!("load")));
    assert_eq!(env.upstream_bodies().len(), before);
}

#[tokio::test]
async fn tool_calls_whole_on_one_line_and_results_pair_by_name() {
    let (env, base) = bridge().await;
    env.fake.enqueue(None, scenario(json!({"kind":"tool_call","name":"get_weather","arguments":{"city":"Paris"}})));
    let tools = json!([{"type":"function","function":{"name":"get_weather","description":"Weather",
        "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]);
    let body = json!({"model":"gpt-5.4","tools":tools,"messages":[{"role":"user","content":"weather in Paris?"}]});
    let (_, _, text) = post(&env, format!("{base}/api/chat"), &body).await;
    let ls = lines(&text);
    let calls: Vec<Value> =
        ls.iter().filter_map(|l| l["message"]["tool_calls"].as_array().cloned()).flatten().collect();
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], json!({"city":"Paris"}), "arguments are an object");

    let body = json!({"model":"gpt-5.4","stream":false,"tools":tools,"messages":[
        {"role":"user","content":"weather in Paris?"},
        {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
        {"role":"tool","tool_name":"get_weather","content":"sunny 21C"}
    ]});
    let (status, _, text) = post(&env, format!("{base}/api/chat"), &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(json(&text)["message"]["content"].as_str().unwrap_or_default().contains("Tool result: sunny 21C"));
    let input = env.upstream_bodies()[1]["input"].as_array().cloned().unwrap_or_default();
    let call = input.iter().find(|i| i["type"] == "function_call").map(|i| i["call_id"].clone());
    let output = input.iter().find(|i| i["type"] == "function_call_output").map(|i| i["call_id"].clone());
    assert!(call.is_some() && call == output, "{input:?}");
}

#[tokio::test]
async fn model_routes_for_copilot_style_clients() {
    let (env, base) = bridge().await;
    let (status, text) = get(&env, format!("{base}/")).await;
    assert_eq!((status, text.as_str()), (200, "Ollama is running"));
    let head = env.http.head(format!("{base}/")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(head.status().as_u16(), 200);
    let (_, text) = get(&env, format!("{base}/api/version")).await;
    let version = json(&text)["version"].as_str().unwrap_or_default().to_string();
    assert!(version.split('.').all(|s| s.parse::<u32>().is_ok()), "{version}");
    let (_, text) = get(&env, format!("{base}/api/tags")).await;
    let tags = json(&text);
    assert!(
        tags["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["name"] == "gpt-5.4" && x["details"]["family"].is_string()))
    );
    let (status, _, text) = post(&env, format!("{base}/api/show"), &json!({"model":"gpt-5.4"})).await;
    assert_eq!(status, 200);
    let show = json(&text);
    let arch = show["model_info"]["general.architecture"].as_str().unwrap_or_default().to_string();
    assert!(show["model_info"][format!("{arch}.context_length")].as_u64().is_some_and(|n| n > 100_000), "{show}");
    for cap in ["completion", "tools", "thinking", "vision"] {
        assert!(show["capabilities"].as_array().is_some_and(|c| c.contains(&json!(cap))), "{cap}: {show}");
    }
    let (status, _, text) = post(&env, format!("{base}/api/show"), &json!({"model":"llama3"})).await;
    assert_eq!(status, 404);
    assert_eq!(json(&text)["error"], "model \"llama3\" not found");
    let (status, _, text) =
        post(&env, format!("{base}/api/chat"), &json!({"model":"llama3","messages":[{"role":"user","content":"x"}]}))
            .await;
    assert_eq!((status, json(&text)["error"].clone()), (404, json!("model \"llama3\" not found")));
    let (status, _) = get(&env, format!("{base}/api/ps")).await;
    assert_eq!(status, 200);
    let (status, _, text) = post(&env, format!("{base}/api/embed"), &json!({"model":"gpt-5.4","input":"x"})).await;
    assert_eq!(status, 400);
    assert!(json(&text)["error"].as_str().is_some_and(|e| e.contains("not supported")));
}

#[tokio::test]
async fn openai_routes_on_the_bridge_port_and_origin_rules() {
    let (env, base) = bridge().await;
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"via bridge v1"}]});
    let (status, _, text) = post(&env, format!("{base}/v1/chat/completions"), &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("You said: via bridge v1"));
    let (status, text) = get(&env, format!("{base}/v1/models")).await;
    assert_eq!(status, 200);
    assert_eq!(json(&text)["object"], "list");

    // A page on another site may not use the bridge; a local one may, with CORS headers.
    let resp = env
        .http
        .post(format!("{base}/api/chat"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 403);
    let resp = env
        .http
        .get(format!("{base}/api/tags"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some("http://localhost:3000")
    );
    let preflight = env
        .http
        .request(reqwest::Method::OPTIONS, format!("{base}/api/chat"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
}

/// Where the recorded streams are (as the replay suite reads them): `CODEX_GATEWAY_REPLAY_DIR`, else
/// `../shared/replay` beside the repository.
fn recording(name: &str) -> Option<String> {
    let dir = match std::env::var_os("CODEX_GATEWAY_REPLAY_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/replay"),
    };
    std::fs::read_to_string(dir.join("captures").join(name)).ok()
}

/// The generated images of a recorded stream: (base64, output format) of each `image_generation_call` done.
fn recorded_images(sse: &str) -> Vec<(String, String)> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(json)
        .filter(|e| e["type"] == "response.output_item.done" && e["item"]["type"] == "image_generation_call")
        .map(|e| {
            (
                e["item"]["result"].as_str().unwrap_or_default().into(),
                e["item"]["output_format"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

/// issue 72: a real recorded stream in which the model generates an image, through the Ollama bridge. A chat
/// message has no field both official clients read for it (ollama-python refuses base64 strings in
/// `message.images` and loses the whole answer; ollama-js sends what it got there back as images), so the answer
/// carries none and says in its text where the image was; `/api/generate` gives it in `image`, Ollama's own
/// field. Streamed and whole.
#[tokio::test]
async fn generated_images_reach_ollama_clients_in_fields_they_read() {
    let Some(sse) = recording("l-image-generation-stream.sse") else {
        eprintln!("SKIPPED: no recordings (set CODEX_GATEWAY_REPLAY_DIR)");
        return;
    };
    let images = recorded_images(&sse);
    assert_eq!(images.len(), 1, "the recording's image");
    let (b64, format) = images[0].clone();
    let (env, base) = bridge().await;
    let ask = |path: &'static str, stream: bool| {
        let (env, base, sse) = (&env, base.clone(), sse.clone());
        async move {
            env.fake.enqueue(None, fake_codex::Scenario::Replay { sse });
            let body = if path == "/api/chat" {
                json!({"model": "gpt-5.4", "stream": stream, "messages": [{"role": "user", "content": "draw"}]})
            } else {
                json!({"model": "gpt-5.4", "stream": stream, "prompt": "draw"})
            };
            let (status, _, text) = post(env, format!("{base}{path}"), &body).await;
            assert_eq!(status, 200, "{path}: {text}");
            // Streamed: NDJSON lines; whole: one object.
            if stream { lines(&text) } else { vec![json(&text)] }
        }
    };
    for stream in [true, false] {
        let chat = ask("/api/chat", stream).await;
        assert!(chat.iter().all(|l| l["message"].get("images").is_none() && l.get("image").is_none()), "{chat:?}");
        let text: String = chat.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
        let note = dialects::ollama::image_note(&format!("image/{format}"), b64.len());
        assert_eq!(text.matches(&note).count(), 1, "stream {stream}: {text}");
        assert!(text.contains("\"frog,\" written in green font"), "the model's own text stays: {text}");

        let generate = ask("/api/generate", stream).await;
        let given: Vec<&str> = generate.iter().filter_map(|l| l["image"].as_str()).collect();
        assert_eq!(given, [b64.as_str()], "stream {stream}: one image, whole, in `image`");
        let text: String = generate.iter().filter_map(|l| l["response"].as_str()).collect();
        assert!(text.contains("frog") && !text.contains("[The model generated"), "{text}");
        assert_eq!(generate.last().map(|l| l["done"].clone()), Some(json!(true)));
    }
}
