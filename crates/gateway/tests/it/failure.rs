//! Upstream failures through the whole gateway: the one classifier's decisions (failover, cooldown, account
//! status) for an HTTP answer and for the same failure inside a 200 stream.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

fn pool_setup(n: usize) -> Setup {
    Setup { accounts: n, linked: false, store_accounts: true, ..Setup::default() }
}

fn chat(stream: bool) -> Value {
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":"x"}]})
}

fn upstream_requests(env: &TestEnv) -> usize {
    env.fake.requests_to("/responses").len()
}

/// The two classifiers used to disagree: a 429 `usage_not_included` failed over and cooled the account down,
/// the same code in a `response.failed` event went to the client at once. Now the stream follows the answer.
#[tokio::test]
async fn usage_not_included_inside_a_stream_fails_over_and_cools_down_like_the_http_answer() {
    for in_stream in [false, true] {
        let env = start(pool_setup(2)).await;
        let failure = if in_stream {
            json!({"kind":"failed","code":"usage_not_included","message":"Your plan does not include Codex."})
        } else {
            json!({"kind":"http_error","status":429,"body":{"error":{"type":"usage_not_included","message":"Your plan does not include Codex."}}})
        };
        for account in &env.accounts {
            env.fake.enqueue(Some(&account.account_id), scenario(failure.clone()));
        }
        let (status, _, text) = env.post("/v1/chat/completions", &chat(true)).await;
        assert_eq!(status, 403, "in_stream={in_stream}: {text}");
        assert_eq!(json(&text)["error"]["code"], "usage_not_included", "in_stream={in_stream}");
        assert_eq!(upstream_requests(&env), 2, "in_stream={in_stream}: both accounts were tried");
        // Both accounts now rest: the pool answers without asking the upstream, with a 503 (not a rate limit).
        let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
        assert_eq!(status, 503, "in_stream={in_stream}: {text}");
        assert_eq!(json(&text)["error"]["code"], "accounts_cooling_down", "in_stream={in_stream}");
        assert!(text.contains("usage_not_included"), "the cooldown says why: {text}");
        assert_eq!(upstream_requests(&env), 2, "in_stream={in_stream}");
    }
}

/// A 403 whose code says the account is deactivated disables the account (a status change, not a cooldown), and
/// the request stops there (issue 71): sent on, the conversation that got one account deactivated would be tried
/// on the next. Another conversation is served by the next account.
#[tokio::test]
async fn a_deactivated_account_is_disabled_and_the_request_stops() {
    let env = start(pool_setup(2)).await;
    let body = json!({"error":{"code":"account_deactivated","message":"This account has been deactivated."}});
    // Every account answers so (whichever is picked first): each request tries one and disables it.
    for account in &env.accounts {
        env.fake.enqueue(Some(&account.account_id), scenario(json!({"kind":"http_error","status":403,"body":body})));
    }
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!((status, json(&text)["error"]["code"].as_str()), (403, Some("account_deactivated")), "{text}");
    assert_eq!(upstream_requests(&env), 1, "the request stopped");
    let statuses = |accounts: Value| -> Vec<String> {
        let mut s: Vec<String> = accounts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["status"].as_str().map(str::to_string))
            .collect();
        s.sort();
        s
    };
    assert_eq!(statuses(env.get_json("/admin/accounts").await), ["active", "disabled"]);
    let another = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"another conversation"}]});
    let (status, _, text) = env.post("/v1/chat/completions", &another).await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(upstream_requests(&env), 2, "the other account took the new conversation");
    assert_eq!(statuses(env.get_json("/admin/accounts").await), ["disabled", "disabled"]);
    // Disabled, not cooling down: the pool says no account is enabled, without asking the upstream.
    let third = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"a third"}]});
    let (status, _, text) = env.post("/v1/chat/completions", &third).await;
    assert_eq!((status, json(&text)["error"]["code"].as_str()), (503, Some("no_account_available")), "{text}");
    assert_eq!(upstream_requests(&env), 2);
}

/// A request goes to at most `[routing] max_accounts_per_request` accounts (3 by default): a pool of five that
/// all fail is not asked five times, and the client gets one error.
#[tokio::test]
async fn a_request_is_tried_on_three_accounts_at_most() {
    let env = start(pool_setup(5)).await;
    for account in &env.accounts {
        env.fake.enqueue(Some(&account.account_id), scenario(json!({"kind":"server_error","status":500})));
    }
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(upstream_requests(&env), 3, "three accounts tried, not five");
    let tried: std::collections::HashSet<Option<String>> =
        env.fake.requests_to("/responses").iter().map(|r| r.account_id.clone()).collect();
    assert_eq!(tried.len(), 3, "three different accounts");
}

/// `max_accounts_per_request = 1`: the first account's failure is the answer.
#[tokio::test]
async fn one_account_per_request_when_so_configured() {
    let mut setup = pool_setup(2);
    setup.config_toml = Some("[routing]\nmax_accounts_per_request = 1\n".into());
    let env = start(setup).await;
    for account in &env.accounts {
        env.fake.enqueue(Some(&account.account_id), scenario(json!({"kind":"server_error","status":500})));
    }
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(upstream_requests(&env), 1);
}

/// A rate limit inside a 200 stream cools the account down for the time the message names; with every account
/// resting the pool answers one 429 `usage_limit_reached` (a typed cooldown reason, no longer a prefix of text).
#[tokio::test]
async fn rate_limits_in_a_stream_cool_down_and_pool_into_one_429() {
    let env = start(pool_setup(2)).await;
    let failure =
        json!({"kind":"failed","code":"rate_limit_exceeded","message":"Rate limit reached. Please try again in 40s."});
    for account in &env.accounts {
        env.fake.enqueue(Some(&account.account_id), scenario(failure.clone()));
    }
    let (status, headers, text) = env.post("/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("40"));
    let (status, headers, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 429, "{text}");
    assert_eq!(json(&text)["error"]["code"], "usage_limit_reached");
    let retry: u64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((38..=40).contains(&retry), "{retry}");
    assert_eq!(upstream_requests(&env), 2);
}

/// An upstream 404 `model_not_found` is the typed "unknown model" the routes word in their own dialect (it was
/// recognised by its code string before), and it is not tried on another account.
#[tokio::test]
async fn an_upstream_model_not_found_is_worded_by_each_dialect() {
    let env = start(Setup { ollama: true, ..pool_setup(2) }).await;
    let not_found = json!({"kind":"http_error","status":404,"body":{"error":{"code":"model_not_found","message":"The model does not exist."}}});
    env.fake.enqueue(None, scenario(not_found.clone()));
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!((status, json(&text)["error"]["code"].as_str()), (404, Some("model_not_found")), "{text}");
    assert_eq!(upstream_requests(&env), 1, "not tried on another account");

    env.fake.enqueue(None, scenario(not_found.clone()));
    let body = json!({"model":"gpt-5.4","max_tokens":16,"messages":[{"role":"user","content":"x"}]});
    let (status, _, text) = env.post("/v1/messages", &body).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("model: gpt-5.4 is not served by this gateway"), "{text}");

    env.fake.enqueue(None, scenario(not_found));
    let base = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    let url = format!("{base}/api/chat");
    let body = json!({"model":"gpt-5.4","stream":false,"messages":[{"role":"user","content":"x"}]});
    let resp = env.http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 404, "{text}");
    assert_eq!(json(&text)["error"], "model \"gpt-5.4\" not found");
}

/// A recorded-style stream: `created`, the given events, a message `Hi`, `completed`.
fn replayed(middle: &[&str]) -> fake_codex::Scenario {
    let mut sse = String::from(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5.4\"}}\n\n",
    );
    for e in middle {
        sse.push_str(e);
        sse.push_str("\n\n");
    }
    sse.push_str(concat!(
        "data: {\"type\":\"response.output_item.added\",\"output_index\":1,\"item\":{\"type\":\"message\",\"id\":\"m1\"}}\n\n",
        "data: {\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":1,\"delta\":\"Hi\"}\n\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":1,\"item\":{\"type\":\"message\",\"id\":\"m1\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}}\n\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"output\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1,\"total_tokens\":6}}}\n\n",
    ));
    fake_codex::Scenario::Replay { sse }
}

/// issue 59: a `tool_search_call` item (its `arguments` an object, its `call_id` null) made every route answer
/// 502 and sent the request to every account of a pool in turn. An item or event the gateway does not know is
/// the client's to see (passthrough) or skipped (translation), and an event it cannot read is not the account's
/// failure either: the answer ends with the dialect's error, and no other account is asked.
#[tokio::test]
async fn an_unknown_item_or_an_unreadable_event_is_never_an_accounts_failure() {
    let env = start(pool_setup(2)).await;
    let search = [
        r#"data: {"type":"response.output_item.added","output_index":0,"item":{"id":"tsc_1","type":"tool_search_call","arguments":{},"call_id":null}}"#,
        r#"data: {"type":"response.brand_new_progress","item_id":"tsc_1"}"#,
        r#"data: {"type":"response.output_item.done","output_index":0,"item":{"id":"tsc_1","type":"tool_search_call","arguments":{"paths":["x"]},"call_id":null}}"#,
    ];
    env.fake.enqueue(None, replayed(&search));
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["choices"][0]["message"]["content"], "Hi", "the unknown item is skipped");
    env.fake.enqueue(None, replayed(&search));
    let body = json!({"model":"gpt-5.4","stream":true,"input":"x"});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    for forwarded in search {
        assert!(text.contains(forwarded.trim_start_matches("data: ")), "not forwarded untouched: {forwarded}\n{text}");
    }
    assert_eq!(upstream_requests(&env), 2, "one upstream request per client request");

    // An event no parser can read, before any output: the client's error, from the account that served it.
    for stream in [false, true] {
        env.fake.enqueue(None, replayed(&["data: {\"type\":\"response.output_item.added\",\"item\":"]));
        let (status, _, text) = env.post("/v1/chat/completions", &chat(stream)).await;
        let error = if stream {
            assert_eq!(status, 200, "the status line goes out, then the dialect's in-stream error: {text}");
            crate::harness::sse_data(&text).iter().map(|d| json(d)).find(|v| v.get("error").is_some())
        } else {
            assert_eq!(status, 502, "{text}");
            Some(json(&text))
        };
        let error = error.unwrap_or_else(|| panic!("no error in {text}"));
        assert_eq!(error["error"]["code"], "malformed_event", "stream={stream}: {error}");
    }
    assert_eq!(upstream_requests(&env), 4, "no other account was asked");
    // Neither account rests: the next requests are served.
    for _ in 0..2 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
        assert_eq!(status, 200, "{text}");
    }
}
