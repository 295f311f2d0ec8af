//! Input validation at the HTTP level, in every dialect: trailing bytes after the JSON body, empty
//! conversations, wrong methods (405 in the dialect's shape), orphan tool results; and the Responses
//! passthrough: `reasoning` sub-keys, reasoning items without `id`, multi-line `data:` events.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Setup, TestEnv, json, start};

const GENERATE: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

/// POST `body` as raw bytes with a JSON content type; (status, headers, text).
async fn post_raw(env: &TestEnv, url: &str, body: String) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = env
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

async fn send(env: &TestEnv, method: reqwest::Method, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = env
        .http
        .request(method.clone(), url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap_or_default())
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
    Ollama,
}

/// Assert that `text` is an invalid-request error body in `shape`, with `status` where the body repeats it.
fn assert_shape(shape: Shape, status: u16, text: &str) {
    let v = json(text);
    match shape {
        Shape::OpenAi => assert_eq!(v["error"]["type"], "invalid_request_error", "{text}"),
        Shape::Anthropic => {
            assert_eq!(
                (v["type"].as_str(), v["error"]["type"].as_str()),
                (Some("error"), Some("invalid_request_error"))
            )
        }
        Shape::Gemini => {
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{text}");
            assert_eq!(v["error"]["code"], status, "{text}");
        }
        Shape::Ollama => assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{text}"),
    }
}

/// Each dialect's JSON routes with a body they accept.
fn json_routes(env: &TestEnv) -> Vec<(String, Value, Shape)> {
    let bridge = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]});
    let anthropic = json!({"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"x"}]});
    let gemini = json!({"contents":[{"role":"user","parts":[{"text":"x"}]}]});
    vec![
        (env.url("/v1/chat/completions"), chat.clone(), Shape::OpenAi),
        (env.url("/v1/responses"), json!({"model":"gpt-5.4","input":"x"}), Shape::OpenAi),
        (env.url("/v1/messages"), anthropic.clone(), Shape::Anthropic),
        (env.url("/v1/messages/count_tokens"), anthropic, Shape::Anthropic),
        (env.url(GENERATE), gemini.clone(), Shape::Gemini),
        (env.url("/v1beta/models/gemini-2.5-flash:countTokens"), gemini, Shape::Gemini),
        (
            format!("{bridge}/api/chat"),
            json!({"model":"gpt-5.4","stream":false,"messages":[{"role":"user","content":"x"}]}),
            Shape::Ollama,
        ),
        (format!("{bridge}/api/generate"), json!({"model":"gpt-5.4","stream":false,"prompt":"x"}), Shape::Ollama),
    ]
}

#[tokio::test]
async fn trailing_bytes_after_the_json_body_are_refused_in_every_dialect() {
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    for (url, body, shape) in json_routes(&env) {
        for trailer in ["x", "{}", " ]"] {
            let (status, _, text) = post_raw(&env, &url, format!("{body}{trailer}")).await;
            assert_eq!(status, 400, "{url} with {trailer:?}: {text}");
            assert_shape(shape, 400, &text);
        }
        // Whitespace after the document is not trailing data.
        let (status, _, text) = post_raw(&env, &url, format!("{body} \r\n\t")).await;
        assert_eq!(status, 200, "{url}: {text}");
    }
}

#[tokio::test]
async fn empty_conversations_are_refused_before_the_upstream() {
    let env = start(Setup::default()).await;
    let (status, _, text) =
        env.post("/v1/messages", &json!({"model":"claude-sonnet-4-5","max_tokens":16,"messages":[]})).await;
    assert_eq!(status, 400, "{text}");
    assert_shape(Shape::Anthropic, 400, &text);
    assert!(json(&text)["error"]["message"].as_str().is_some_and(|m| m.contains("messages")), "{text}");
    for body in [json!({"contents": []}), json!({"systemInstruction": {"parts": [{"text": "s"}]}})] {
        let (status, _, text) = env.post(GENERATE, &body).await;
        assert_eq!(status, 400, "{text}");
        assert_shape(Shape::Gemini, 400, &text);
        let field = &json(&text)["error"]["details"];
        assert!(field.to_string().contains("\"field\":\"contents\""), "{text}");
    }
    let (status, _, text) = env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[]})).await;
    assert_eq!((status, json(&text)["error"]["param"].clone()), (400, json!("messages")));
    assert!(env.upstream_bodies().is_empty(), "an empty conversation never reaches the upstream");
}

#[tokio::test]
async fn wrong_methods_answer_405_in_the_dialect_shape_with_allow() {
    use reqwest::Method;
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    let bridge = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    let cases = [
        (Method::GET, env.url("/v1/chat/completions"), Shape::OpenAi, "POST"),
        (Method::GET, env.url("/v1/responses"), Shape::OpenAi, "POST"),
        (Method::DELETE, env.url("/v1/models"), Shape::OpenAi, "GET"),
        (Method::GET, env.url("/v1/messages"), Shape::Anthropic, "POST"),
        (Method::PUT, env.url("/v1/messages/count_tokens"), Shape::Anthropic, "POST"),
        (Method::PUT, env.url(GENERATE), Shape::Gemini, "POST"),
        // The model route must not take a method path: it answered 200 with a model named after the method.
        (Method::GET, env.url("/v1beta/models/gpt-5.4:generateContent"), Shape::Gemini, "POST"),
        (Method::POST, env.url("/v1beta/models/gpt-5.4"), Shape::Gemini, "GET"),
        (Method::GET, format!("{bridge}/api/chat"), Shape::Ollama, "POST"),
        (Method::POST, format!("{bridge}/api/tags"), Shape::Ollama, "GET"),
        (Method::GET, format!("{bridge}/v1/chat/completions"), Shape::OpenAi, "POST"),
    ];
    for (method, url, shape, allowed) in cases {
        let (status, headers, text) = send(&env, method.clone(), &url).await;
        assert_eq!(status, 405, "{method} {url}: {text}");
        assert_shape(shape, 405, &text);
        let allow = headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {url}: Allow {allow:?}");
    }
    assert!(env.upstream_bodies().is_empty());
}

#[tokio::test]
async fn orphan_tool_results_are_400_in_every_dialect() {
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    let bridge = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    let cases = [
        (
            env.url("/v1/chat/completions"),
            json!({"model":"gpt-5.4","messages":[{"role":"user","content":"go"},{"role":"tool","tool_call_id":"t9","content":"from nowhere"}]}),
            Shape::OpenAi,
        ),
        (
            env.url("/v1/messages"),
            json!({"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"go"},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"t9","content":"from nowhere"}]}]}),
            Shape::Anthropic,
        ),
        (
            env.url(GENERATE),
            json!({"contents":[{"role":"user","parts":[{"text":"go"}]},
                {"role":"user","parts":[{"functionResponse":{"name":"lookup","response":{"output":"from nowhere"}}}]}]}),
            Shape::Gemini,
        ),
        (
            format!("{bridge}/api/chat"),
            json!({"model":"gpt-5.4","stream":false,"messages":[{"role":"user","content":"go"},{"role":"tool","tool_name":"lookup","content":"from nowhere"}]}),
            Shape::Ollama,
        ),
    ];
    for (url, body, shape) in cases {
        let (status, _, text) = post_raw(&env, &url, body.to_string()).await;
        assert_eq!(status, 400, "{url}: {text}");
        assert_shape(shape, 400, &text);
    }
    assert!(env.upstream_bodies().is_empty(), "orphans are refused before the upstream");
    // The passthrough forwards the input as it is; the backend refuses the orphan and the client gets its 400.
    let body = json!({"model":"gpt-5.4","input":[{"role":"user","content":"go"},
        {"type":"function_call_output","call_id":"t9","output":"from nowhere"}]});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn reasoning_context_is_forwarded_only_where_the_catalog_supports_it() {
    // gpt-5.4 does not take `reasoning.context` (pydantic-ai sends it by default): every request failed.
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","input":"x","reasoning":{"effort":"low","context":"all_turns"}});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    let sent = env.upstream_bodies().pop().unwrap_or_default();
    assert_eq!(sent["reasoning"]["effort"], "low");
    assert!(sent["reasoning"].get("context").is_none(), "{sent}");
    // Other unknown sub-keys are refused like unknown top-level fields, before the upstream.
    let (status, _, text) =
        env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"x","reasoning":{"effort":"low","depth":3}})).await;
    assert_eq!((status, json(&text)["error"]["param"].clone()), (400, json!("reasoning.depth")), "{text}");
    assert_eq!(env.upstream_bodies().len(), 1);

    // A model whose catalog entry has `supports_reasoning_context` gets it.
    let env = start(Setup { plans: vec!["pro"], ..Setup::default() }).await;
    let body = json!({"model":"gpt-5.6-sol","input":"x","reasoning":{"effort":"low","context":"all_turns"}});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(env.upstream_bodies().pop().unwrap_or_default()["reasoning"]["context"], "all_turns");
}

/// The official client never sends a reasoning item's `id`, and the AI SDK's Responses provider (opencode)
/// replays `{type, encrypted_content, summary}`: after its first tool call every request failed.
#[tokio::test]
async fn reasoning_items_without_id_round_trip_through_the_passthrough() {
    let env = start(Setup::default()).await;
    let first = json!({"model":"gpt-5.4","input":"think","reasoning":{"effort":"low"},"include":["reasoning.encrypted_content"]});
    let (_, _, text) = env.post("/v1/responses", &first).await;
    let v = json(&text);
    let mut reasoning = v["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "reasoning").cloned())
        .unwrap_or_else(|| panic!("no reasoning item: {v}"));
    if let Some(item) = reasoning.as_object_mut() {
        item.shift_remove("id");
    }
    let second = json!({"model":"gpt-5.4","reasoning":{"effort":"low"},"include":["reasoning.encrypted_content"],
        "input":[{"role":"user","content":"think"}, reasoning.clone(),
            {"role":"assistant","content":[{"type":"output_text","text":"ok"}]}, {"role":"user","content":"again"}]});
    let (status, _, text) = env.post("/v1/responses", &second).await;
    assert_eq!(status, 200, "{text}");
    let sent = env.upstream_bodies().pop().unwrap_or_default();
    assert_eq!(sent["input"][1], reasoning, "the gateway neither adds nor needs an id");
}

/// A stand-in upstream for byte-level control the fake does not offer: every `POST .../responses` gets `sse`
/// as it is, anything else a 404 (the catalog then falls back to the built-in list). Returns its base URL.
async fn raw_upstream(sse: &'static str) -> String {
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind raw upstream: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                // Read the whole body so closing the socket does not reset the connection under the answer.
                loop {
                    let done = match length {
                        Some(n) => buf.len() >= head_end + n,
                        None => !head.contains("chunked") || buf.ends_with(b"0\r\n\r\n"),
                    };
                    if done {
                        break;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                let answer = if head.starts_with("post ") && path.ends_with("/responses") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{sse}",
                        sse.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                };
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/backend-api/codex")
}

/// Events an SSE client reads from `body`: every line is a field (`event:`, `data:`) or a comment, `data:` lines
/// of one event join with `\n`, and each payload is JSON.
fn client_events(body: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in body.split('\n') {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(json(&data.join("\n")));
                data.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        } else {
            assert!(line.starts_with("event:") || line.starts_with(':'), "not an SSE field: {line:?} in {body}");
        }
    }
    events
}

/// Two events each sent as two `data:` lines (valid SSE: the lines join with `\n`, and the JSON stays valid).
const MULTI_LINE_STREAM: &str = "event: response.created\n\
data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"created_at\":1,\"status\":\"in_progress\",\"model\":\"gpt-5.4\",\"output\":[]}}\n\n\
event: response.output_item.added\n\
data: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\n\
data:  \"item\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"in_progress\",\"content\":[]}}\n\n\
event: response.output_text.delta\n\
data: {\"type\":\"response.output_text.delta\",\"sequence_number\":2,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"hi\"}\n\n\
event: response.completed\n\
data: {\"type\":\"response.completed\",\"sequence_number\":3,\n\
data:  \"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-5.4\",\"output\":[],\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n";

#[tokio::test]
async fn multi_line_data_events_are_reframed_by_the_passthrough() {
    let upstream = raw_upstream(MULTI_LINE_STREAM).await;
    let env = start(Setup { env: vec![("CODEX_GATEWAY_UPSTREAM_BASE_URL", upstream)], ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"x","stream":true})).await;
    assert_eq!(status, 200, "{text}");
    let events = client_events(&text);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["response.created", "response.output_item.added", "response.output_text.delta", "response.completed"],
        "{text}"
    );
    assert_eq!(events[1]["item"]["id"], "msg_1");
    assert_eq!(events[3]["response"]["usage"]["total_tokens"], 2);
}
