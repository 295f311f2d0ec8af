//! The account pool: failover, exhaustion, plan routing, conversation affinity, concurrency limits.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};

fn pool_setup(n: usize) -> Setup {
    Setup { accounts: n, linked: false, store_accounts: true, ..Setup::default() }
}

fn chat(text: &str) -> Value {
    json!({"model":"gpt-5.4","messages":[{"role":"user","content":text}]})
}

/// Fake account ids that served `/responses` requests, in order.
fn served_by(env: &TestEnv) -> Vec<String> {
    env.fake.requests_to("/responses").into_iter().filter(|r| r.status == 200).filter_map(|r| r.account_id).collect()
}

#[tokio::test]
async fn exhausted_accounts_fail_over_invisibly_then_one_error_with_the_soonest_reset() {
    let env = start(pool_setup(3)).await;
    let now = codex_gateway::auth::now_unix();
    let ids: Vec<String> = env.accounts.iter().map(|a| a.account_id.clone()).collect();
    for i in 0..6 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("warm {i}"))).await;
        assert_eq!(status, 200, "{text}");
    }
    // Two accounts hit their limit mid-run.
    env.fake.set_quota(&ids[0], 100.0, 10.0, Some(now + 500));
    env.fake.set_quota(&ids[1], 100.0, 10.0, Some(now + 300));
    for i in 0..10 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("after {i}"))).await;
        assert_eq!(status, 200, "request {i}: {text}");
    }
    let last: Vec<String> = served_by(&env).into_iter().rev().take(10).collect();
    assert!(last.iter().all(|a| *a == ids[2]), "only the account with headroom serves: {last:?}");
    // Then the last one too: one error, with the soonest reset of all.
    env.fake.set_quota(&ids[2], 100.0, 10.0, Some(now + 900));
    let (status, headers, text) = env.post("/v1/chat/completions", &chat("none left")).await;
    assert_eq!(status, 429, "{text}");
    let retry: i64 = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((250..=301).contains(&retry), "soonest reset is ~300 s away, got {retry}");
    assert_eq!(json(&text)["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn overload_inside_a_200_stream_fails_over_before_any_output() {
    let env = start(pool_setup(2)).await;
    let ids: Vec<String> = env.accounts.iter().map(|a| a.account_id.clone()).collect();
    env.fake.enqueue(Some(&ids[0]), scenario(json!({"kind":"overload_in_stream"})));
    env.fake.enqueue(Some(&ids[1]), scenario(json!({"kind":"overload_in_stream"})));
    // Whichever account is picked first overloads; the other one's second queued scenario is not reached.
    let (status, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    // Both accounts overloaded: one error, in the dialect, as an HTTP status (nothing was streamed).
    assert_eq!(status, 503, "{text}");
    // Overload is transient: the next request is served at once, not refused by a cooldown.
    let (status, _, text) = env.post("/v1/chat/completions", &chat("again")).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn server_errors_fail_over_to_the_next_account() {
    let env = start(pool_setup(2)).await;
    let ids: Vec<String> = env.accounts.iter().map(|a| a.account_id.clone()).collect();
    env.fake.enqueue(Some(&ids[0]), scenario(json!({"kind":"server_error","status":500})));
    env.fake.enqueue(Some(&ids[1]), scenario(json!({"kind":"server_error","status":500})));
    let (status, _, text) = env.post("/v1/chat/completions", &chat("x")).await;
    // First account 500 -> second account 500 -> no third: one 502.
    assert_eq!(status, 502, "{text}");
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":"recovered"})));
    let (status, _, text) = env.post("/v1/chat/completions", &chat("y")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("recovered"), "{text}");
}

#[tokio::test]
async fn plan_routing_never_sends_a_model_to_a_plan_that_lacks_it() {
    let env = start(Setup { plans: vec!["free", "plus"], ..pool_setup(2) }).await;
    let free = env.accounts[0].account_id.clone();
    for i in 0..6 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("q{i}"))).await;
        assert_eq!(status, 200, "{text}");
    }
    let mini = json!({"model":"gpt-5.4-mini","messages":[{"role":"user","content":"small"}]});
    for _ in 0..4 {
        let (status, _, text) = env.post("/v1/chat/completions", &mini).await;
        assert_eq!(status, 200, "{text}");
    }
    for r in env.fake.requests_to("/responses") {
        if r.account_id.as_deref() == Some(free.as_str()) {
            assert_eq!(r.body["model"], "gpt-5.4-mini", "the free plan only ever gets its own model");
        }
    }
    assert!(served_by(&env).contains(&free), "the free account still serves what its plan has");
    // A model no account serves: a clear 404.
    let (status, _, text) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-7","messages":[{"role":"user","content":"x"}]})).await;
    assert_eq!(status, 404, "{text}");
}

/// Runs `conversations` x `turns` interleaved multi-turn chats; returns (cached/input ratio, accounts used).
async fn agent_workload(env: &TestEnv, conversations: usize, turns: usize) -> (f64, HashSet<String>) {
    let mut histories: Vec<Vec<Value>> = (0..conversations)
        .map(|c| {
            vec![json!({"role":"system","content":format!("You are agent {c}. {}", "Follow the rules. ".repeat(40))})]
        })
        .collect();
    let (mut cached, mut input) = (0u64, 0u64);
    for turn in 0..turns {
        for (c, history) in histories.iter_mut().enumerate() {
            history.push(
                json!({"role":"user","content":format!("conversation {c} turn {turn}: {}", "details ".repeat(20))}),
            );
            let (status, _, text) =
                env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":history.clone()})).await;
            assert_eq!(status, 200, "{text}");
            let v = json(&text);
            cached += v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
            input += v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            history.push(json!({"role":"assistant","content":v["choices"][0]["message"]["content"].clone()}));
        }
    }
    let used: HashSet<String> = served_by(env).into_iter().collect();
    (cached as f64 / input.max(1) as f64, used)
}

#[tokio::test]
async fn conversation_affinity_keeps_the_prompt_cache_across_a_pool() {
    let single = start(pool_setup(1)).await;
    let (single_ratio, _) = agent_workload(&single, 20, 10).await;
    let pool = start(pool_setup(4)).await;
    let (pool_ratio, used) = agent_workload(&pool, 20, 10).await;
    eprintln!("cached-token ratio: single account {single_ratio:.3}, pool of 4 {pool_ratio:.3}");
    assert_eq!(used.len(), 4, "requests spread across all 4 accounts");
    assert!(single_ratio > 0.5, "the workload is cacheable: {single_ratio}");
    assert!(pool_ratio >= 0.95 * single_ratio, "pool {pool_ratio:.3} vs single {single_ratio:.3}");
    // Each conversation stayed on one account.
    let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
    for r in pool.fake.requests_to("/responses") {
        let key = r.body["prompt_cache_key"].as_str().unwrap_or_default().to_string();
        by_key.entry(key).or_default().insert(r.account_id.unwrap_or_default());
    }
    assert_eq!(by_key.len(), 20);
    assert!(by_key.values().all(|a| a.len() == 1), "{by_key:?}");
}

#[tokio::test]
async fn strategies_round_robin_and_sticky() {
    let rr = start(Setup { config_toml: Some("[routing]\nstrategy = \"round_robin\"".into()), ..pool_setup(3) }).await;
    for i in 0..6 {
        rr.post("/v1/chat/completions", &chat(&format!("distinct conversation {i}"))).await;
    }
    let used: HashSet<String> = served_by(&rr).into_iter().collect();
    assert_eq!(used.len(), 3);
    let sticky = start(Setup { config_toml: Some("[routing]\nstrategy = \"sticky\"".into()), ..pool_setup(3) }).await;
    for i in 0..6 {
        sticky.post("/v1/chat/completions", &chat(&format!("distinct conversation {i}"))).await;
    }
    let used: HashSet<String> = served_by(&sticky).into_iter().collect();
    assert_eq!(used.len(), 1);
}

#[tokio::test]
async fn concurrency_limit_queues_then_refuses_clearly() {
    let toml = "[routing]\nmax_concurrent_per_account = 1\nqueue_per_account = 1\nqueue_timeout_secs = 10";
    let env = start(Setup { config_toml: Some(toml.into()), ..pool_setup(1) }).await;
    for _ in 0..3 {
        env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"slow answer","deltas":4,"delay_ms":150})));
    }
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (http, url) = (env.http.clone(), env.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(i * 50)).await;
            let r = http.post(url).json(&chat(&format!("c{i}"))).send().await;
            match r {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(e) => (0, e.to_string()),
            }
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap_or((0, String::new())));
    }
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&(u16, String)> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok, 2, "one runs, one waits in the queue: {statuses:?}");
    assert_eq!(refused.len(), 1, "the third is refused: {statuses:?}");
    assert_eq!(json(&refused[0].1)["error"]["code"], "concurrency_limit");
}
