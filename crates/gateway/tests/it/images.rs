//! The OpenAI Images API through the real server (issue 59): generations and edits (JSON and multipart) served
//! by fake-codex's image endpoints on a ChatGPT account, clear 400s for what the backend lacks, failover to
//! another account, no image account among API keys and Free plans, and the usage in the ledger.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, start};

fn pool(n: usize) -> Setup {
    Setup { accounts: n, linked: false, store_accounts: true, ..Setup::default() }
}

fn png_of(b64: &Value) -> Vec<u8> {
    let text = b64.as_str().unwrap_or_else(|| panic!("no b64_json: {b64}"));
    base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_else(|e| panic!("not base64: {e}"))
}

/// A multipart/form-data body: text fields, then files (name, bytes, content type).
fn multipart(texts: &[(&str, &str)], files: &[(&str, &[u8], &str)]) -> (String, Vec<u8>) {
    let boundary = "cgw-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    for (name, bytes, ct) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"in.png\"\r\nContent-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(env: &TestEnv, path: &str, ct: &str, body: Vec<u8>) -> (u16, String) {
    let resp = env.http.post(env.url(path)).header("content-type", ct).body(body).send().await;
    let resp = resp.unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn generations_come_back_as_b64_pngs_from_the_backends_image_endpoint() {
    let env = start(pool(1)).await;
    let body = json!({"prompt":"a red fox","n":2,"size":"1024x1536","quality":"low","background":"opaque",
        "response_format":"b64_json","user":"u1"});
    let (status, headers, text) = env.post_with("/v1/images/generations", &body, &[("x-request-id", "img-1")]).await;
    assert_eq!(status, 200, "{text}");
    let v = json(&text);
    let data = v["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 2, "{v}");
    for d in &data {
        assert_eq!(&png_of(&d["b64_json"])[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert_eq!(
        (v["size"].clone(), v["quality"].clone(), v["output_format"].clone()),
        (json!("1024x1536"), json!("low"), json!("png"))
    );
    assert!(v["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(headers.contains_key("x-codex-primary-used-percent"), "the account's limits go to the client");
    // What went upstream: the backend's fields only, the default model, the official client's identity.
    let sent = env.fake.requests_to("/images/generations");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/backend-api/codex/images/generations");
    assert_eq!(
        sent[0].body,
        json!({"prompt":"a red fox","model":"gpt-image-2","n":2,"size":"1024x1536","quality":"low","background":"opaque"})
    );
    let header = |name: &str| sent[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("chatgpt-account-id").as_deref(), Some(env.accounts[0].account_id.as_str()));
    assert!(header("originator").is_some() && header("authorization").is_some_and(|a| a.starts_with("Bearer ")));

    // The ledger holds the request as `images`, with its usage in image tokens.
    let rows = crate::usage::rows(&env, 1).await;
    let row = rows.iter().find(|r| r["request_id"] == "img-1").cloned().unwrap_or_default();
    assert_eq!(
        (row["api"].clone(), row["model"].clone(), row["status"].clone()),
        (json!("images"), json!("gpt-image-2"), json!(200)),
        "{row}"
    );
    assert_eq!(row["output_tokens"], v["usage"]["output_tokens"], "{row}");
    assert_eq!(row["input_tokens"], v["usage"]["input_tokens"], "{row}");
}

#[tokio::test]
async fn edits_take_multipart_files_and_json_image_urls() {
    let env = start(pool(1)).await;
    let png = fake_codex::images::png("input");
    let (ct, body) = multipart(
        &[("prompt", "add a hat"), ("model", "gpt-image-1.5"), ("n", "1")],
        &[("image[]", &png, "image/png"), ("image[]", &png, "application/octet-stream")],
    );
    let (status, text) = post_form(&env, "/v1/images/edits", &ct, body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(&png_of(&json(&text)["data"][0]["b64_json"])[..4], b"\x89PNG");
    let sent = env.fake.requests_to("/images/edits");
    let data_url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
    assert_eq!(sent[0].body["images"], json!([{"image_url": data_url}, {"image_url": data_url}]));
    assert_eq!(sent[0].body["model"], "gpt-image-1.5");

    let body = json!({"prompt":"brighter","images":[{"image_url": data_url}]});
    let (status, _, text) = env.post("/v1/images/edits", &body).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn what_the_backend_lacks_is_a_400_in_the_openai_shape() {
    let env = start(pool(1)).await;
    for (path, body, param) in [
        ("/v1/images/generations", json!({"prompt":"x","response_format":"url"}), "response_format"),
        ("/v1/images/generations", json!({"prompt":"x","model":"dall-e-3"}), "model"),
        ("/v1/images/generations", json!({"prompt":"x","quality":"hd"}), "quality"),
        ("/v1/images/generations", json!({"prompt":"x","stream":true}), "stream"),
        ("/v1/images/generations", json!({"size":"1024x1024"}), "prompt"),
        ("/v1/images/edits", json!({"prompt":"x"}), "image"),
    ] {
        let (status, _, text) = env.post(path, &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let e = json(&text);
        assert_eq!(
            (e["error"]["type"].clone(), e["error"]["param"].clone()),
            (json!("invalid_request_error"), json!(param)),
            "{text}"
        );
    }
    let png = fake_codex::images::png("x");
    let (ct, body) = multipart(&[("prompt", "x")], &[("image", &png, "image/png"), ("mask", &png, "image/png")]);
    let (status, text) = post_form(&env, "/v1/images/edits", &ct, body).await;
    assert_eq!((status, json(&text)["error"]["param"].clone()), (400, json!("mask")), "{text}");
    let (ct, body) = multipart(&[("prompt", "x")], &[("image", b"not an image", "text/plain")]);
    let (status, text) = post_form(&env, "/v1/images/edits", &ct, body).await;
    assert_eq!(status, 400, "{text}");
    assert!(env.fake.requests_to("/images/").is_empty(), "nothing refused went upstream");
}

/// An account whose quota is used up answers 429: the request moves to the next account, as a model call does.
#[tokio::test]
async fn an_exhausted_account_fails_over_to_the_next() {
    let env = start(pool(2)).await;
    for account in &env.accounts[..1] {
        env.fake.set_quota(&account.account_id, 100.0, 10.0, None);
    }
    for _ in 0..2 {
        let (status, _, text) = env.post("/v1/images/generations", &json!({"prompt":"x"})).await;
        assert_eq!(status, 200, "{text}");
    }
    let served: Vec<Option<String>> = env
        .fake
        .requests_to("/images/generations")
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.account_id)
        .collect();
    assert!(served.iter().all(|a| a.as_deref() == Some(env.accounts[1].account_id.as_str())), "{served:?}");
}

/// API keys and Free plans have no image endpoint here: a clear 503, nothing sent upstream.
#[tokio::test]
async fn without_a_paid_chatgpt_account_there_is_no_image_endpoint() {
    let env = start(Setup { plans: vec!["free"], ..pool(1) }).await;
    let (status, _, text) = env.post("/v1/images/generations", &json!({"prompt":"x"})).await;
    assert_eq!(status, 503, "{text}");
    assert_eq!(json(&text)["error"]["code"], "no_image_account");
    assert!(env.fake.requests_to("/images/").is_empty());
}

/// Inside a conversation: the hosted `image_generation` tool goes upstream as the client sent it, and its
/// partial images and final image come back to a Responses client untouched.
#[tokio::test]
async fn the_image_generation_tool_passes_through_responses_with_its_partial_images() {
    let env = start(pool(1)).await;
    let sse = concat!(
        "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5.4\"}}\n\n",
        "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"image_generation_call\",\"id\":\"ig_1\",\"status\":\"in_progress\"}}\n\n",
        "data: {\"type\":\"response.image_generation_call.partial_image\",\"item_id\":\"ig_1\",\"output_index\":0,\"partial_image_index\":0,\"partial_image_b64\":\"cGFydA==\"}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"image_generation_call\",\"id\":\"ig_1\",\"status\":\"completed\",\"result\":\"ZmluYWw=\"}}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"output\":[]}}\n\n",
    );
    env.fake.enqueue(None, fake_codex::Scenario::Replay { sse: sse.into() });
    let tool = json!({"type":"image_generation","output_format":"png","size":"1024x1024"});
    let body = json!({"model":"gpt-5.4","stream":true,"input":"draw a cat","tools":[tool]});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"partial_image_b64\":\"cGFydA==\""), "{text}");
    assert!(text.contains("\"result\":\"ZmluYWw=\""), "{text}");
    assert_eq!(env.upstream_bodies()[0]["tools"], json!([tool]));
}
