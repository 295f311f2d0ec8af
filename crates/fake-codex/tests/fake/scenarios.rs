//! Scripted faults and errors, zstd bodies, the catalog, keepalives and the control API.

use super::*;
use crate::auth::{refresh_body, token_post};

#[tokio::test]
async fn error_and_fault_scenarios() {
    let (fake, c) = start().await;
    fake.enqueue(None, Scenario::Cloudflare);
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("challenge-platform"));
    fake.enqueue(None, Scenario::OverloadInStream);
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(types(&evs).first(), Some(&"response.created"));
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "response.failed");
    assert_eq!(data["response"]["error"]["code"], "server_is_overloaded");
    assert!(!types(&evs).contains(&"response.output_item.added"));
    fake.enqueue(None, Scenario::ContextLengthExceeded);
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(evs.last().unwrap().1["response"]["error"]["code"], "context_length_exceeded");
    fake.enqueue(None, serde_json::from_value(json!({"kind": "http_error", "status": 400, "body": {"error": {"code": "cyber_policy"}}, "headers": {"x-test": "1"}})).unwrap());
    let r = post(&fake, &c, &body()).await;
    assert_eq!((r.status().as_u16(), r.headers()["x-test"].to_str().unwrap()), (400, "1"));
    for (s, status) in
        [(Scenario::Unauthorized, 401), (Scenario::ServerError { status: 502 }, 502), (Scenario::Overloaded, 503)]
    {
        fake.enqueue(None, s);
        assert_eq!(post(&fake, &c, &body()).await.status(), status);
    }
    // Cut: some deltas, then the body read fails.
    fake.enqueue(None, Scenario::Cut { after_deltas: 2 });
    let mut r = post(&fake, &c, &body()).await;
    let mut got = Vec::new();
    let err = loop {
        match r.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(err, "a cut stream must not end cleanly");
    let evs = sse(&String::from_utf8_lossy(&got));
    assert_eq!(evs.iter().filter(|(e, _)| e == "response.output_text.delta").count(), 2);
    assert!(!types(&evs).contains(&"response.completed"));
    // Incomplete.
    fake.enqueue(
        None,
        serde_json::from_value(json!({"kind": "incomplete", "reason": "max_output_tokens", "text": "part"})).unwrap(),
    );
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(evs.last().unwrap().1["response"]["incomplete_details"]["reason"], "max_output_tokens");
    // Silence: headers and response.created arrive at once, the rest after the pause.
    fake.enqueue(None, Scenario::Silence { ms: 400, then: Box::new(Scenario::text("late")), keepalive_every_ms: 0 });
    let started = std::time::Instant::now();
    let mut r = post(&fake, &c, &body()).await;
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("response.created"));
    assert!(started.elapsed() < Duration::from_millis(300));
    let mut rest = Vec::new();
    while let Some(b) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&b);
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(text_of(&sse(&String::from_utf8_lossy(&rest))), "late");
    // Custom items with web search and a failed end; account queue beats the global one.
    fake.enqueue(None, Scenario::text("global"));
    fake.enqueue(Some(&c.account_id), serde_json::from_value(json!({"kind": "custom", "items": [{"type": "web_search_call", "query": "q"}, {"type": "text", "text": "t"}], "end": {"type": "failed", "code": "rate_limit_exceeded", "message": "Please try again in 11.054s"}})).unwrap());
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(done_items(&evs)[0]["action"]["query"], "q");
    assert_eq!(evs.last().unwrap().0, "response.failed");
    assert_eq!(text_of(&events(&fake, &c, &body()).await), "global");
}

#[tokio::test]
async fn zstd_body_catalog_and_keepalive() {
    let (fake, c) = start_with(FakeConfig { keepalive_events: true, ..FakeConfig::default() }).await;
    let raw = serde_json::to_vec(&body()).unwrap();
    let compressed = zstd::encode_all(&raw[..], 3).unwrap();
    let r = client()
        .post(format!("{}/responses", fake.codex_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .header("originator", "codex_exec")
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .body(compressed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let evs = sse(&r.text().await.unwrap());
    assert!(types(&evs).contains(&"keepalive"));
    let rec = fake.requests_to("/responses").pop().unwrap();
    assert_eq!(rec.body["model"], "gpt-5.4");
    // Catalog per plan, with ETag.
    let get_models = |cr: &AccountCreds, etag: Option<String>| {
        let mut rb = client()
            .get(format!("{}/models?client_version=0.169.0", fake.codex_base_url()))
            .bearer_auth(&cr.access_token)
            .header("ChatGPT-Account-ID", &cr.account_id);
        if let Some(e) = etag {
            rb = rb.header("if-none-match", e);
        }
        rb.send()
    };
    let r = get_models(&c, None).await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let cat: Value = r.json().await.unwrap();
    let slugs: Vec<&str> = cat["models"].as_array().unwrap().iter().map(|m| m["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex", "gpt-5.2"]);
    assert_eq!(cat["models"][1]["context_window"], 272000);
    assert_eq!(cat["models"][2]["service_tiers"], json!([]));
    assert_eq!(get_models(&c, Some(etag)).await.unwrap().status(), 304);
    let free = fake.add_account(AccountSpec { plan: "free".into(), ..AccountSpec::default() });
    let cat: Value = get_models(&free, None).await.unwrap().json().await.unwrap();
    assert_eq!(cat["models"].as_array().unwrap().len(), 1);
    expect_400(&fake, &free, &body(), "not supported when using Codex with a ChatGPT account").await;
    let custom = fake.add_account(AccountSpec { models: Some(vec!["gpt-5.2".into()]), ..AccountSpec::default() });
    let mut b = body();
    b["model"] = json!("gpt-5.2");
    assert_eq!(post(&fake, &custom, &b).await.status(), 200);
}

#[tokio::test]
async fn control_http_api() {
    let fake = FakeCodex::start(FakeConfig::default()).await.unwrap();
    let base = fake.base_url();
    let http = client();
    let c: AccountCreds = http
        .post(format!("{base}/_fake/accounts"))
        .json(&json!({"plan": "pro", "email": "a@b.test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((c.plan.as_str(), c.email.as_str()), ("pro", "a@b.test"));
    let ok = |path: String, b: Value| {
        let http = http.clone();
        async move {
            let r = http.post(path).json(&b).send().await.unwrap();
            assert_eq!(r.status(), 200, "{:?}", r.text().await);
        }
    };
    ok(format!("{base}/_fake/api-keys"), json!({"key": "sk-1"})).await;
    ok(
        format!("{base}/_fake/enqueue"),
        json!({"account_id": c.account_id, "scenario": {"kind": "text", "text": "from control"}}),
    )
    .await;
    assert_eq!(text_of(&events(&fake, &c, &body()).await), "from control");
    ok(format!("{base}/_fake/accounts/{}/quota-cost", c.account_id), json!({"percent_per_request": 100.0})).await;
    assert_eq!(post(&fake, &c, &body()).await.status(), 200);
    assert_eq!(post(&fake, &c, &body()).await.status(), 429);
    ok(
        format!("{base}/_fake/accounts/{}/quota", c.account_id),
        json!({"primary_used_percent": 0.0, "secondary_used_percent": 0.0}),
    )
    .await;
    ok(format!("{base}/_fake/accounts/{}/quota-cost", c.account_id), json!({"percent_per_request": 0.0})).await;
    assert_eq!(post(&fake, &c, &body()).await.status(), 200);
    ok(format!("{base}/_fake/accounts/{}/expire", c.account_id), json!({})).await;
    assert_eq!(post(&fake, &c, &body()).await.status(), 401);
    token_post(&fake, refresh_body(&c.refresh_token)).await;
    let calls: Vec<Value> = http.get(format!("{base}/_fake/token-calls")).send().await.unwrap().json().await.unwrap();
    assert_eq!(calls[0]["outcome"], "ok");
    let reqs: Vec<Value> =
        http.get(format!("{base}/_fake/requests?path=codex/responses")).send().await.unwrap().json().await.unwrap();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[4]["status"], 401);
    assert!(reqs.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()));
    let unknown = http.post(format!("{base}/_fake/accounts/nope/expire")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let bad =
        http.post(format!("{base}/_fake/enqueue")).json(&json!({"scenario": {"kind": "nope"}})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    ok(format!("{base}/_fake/reset-requests"), json!({})).await;
    assert!(fake.requests().is_empty());
    assert!(fake.token_calls().is_empty());
}

/// The account stewardship scenarios (issue 71): a policy refusal over HTTP (400, the code in an OpenAI error
/// object) and inside a stream (`response.failed` before any output), the content filter's end before any output,
/// and a deactivated account (403).
#[tokio::test]
async fn policy_refusal_content_filter_and_deactivation_scenarios() {
    let (fake, c) = start().await;
    fake.enqueue(None, Scenario::PolicyRefusal { code: "bio_policy".into() });
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("bio_policy"), Some("invalid_request_error"))
    );
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("biological")));
    fake.enqueue(None, serde_json::from_value(json!({"kind": "policy_refusal_in_stream"})).unwrap());
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(types(&evs).first(), Some(&"response.created"));
    assert_eq!(evs.last().unwrap().1["response"]["error"]["code"], "cyber_policy");
    assert!(!types(&evs).contains(&"response.output_item.added"), "refused before any output");
    fake.enqueue(None, Scenario::ContentFiltered);
    let evs = events(&fake, &c, &body()).await;
    let (last, data) = evs.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(data["response"]["incomplete_details"]["reason"], "content_filter");
    assert!(!types(&evs).contains(&"response.output_item.added"), "ended before any output");
    fake.enqueue(None, Scenario::Deactivated);
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "account_deactivated");
}
