//! The usage ledger through the real server: after a mixed workload (five dialects, streaming and not, an
//! upstream error, a failover, a bad request) the stored rows and rollups equal what the clients saw; the ledger
//! survives a restart; shutdown drains it; a full channel drops records and counts them.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, sse_data, start};

/// Tokens as the client saw them, in the ledger's convention (input includes cached, output includes reasoning);
/// `None` for a dialect that does not show the number.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    input: u64,
    cached: Option<u64>,
    output: u64,
    reasoning: Option<u64>,
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn chat_usage(u: &Value) -> Seen {
    Seen {
        input: n(&u["prompt_tokens"]),
        cached: Some(n(&u["prompt_tokens_details"]["cached_tokens"])),
        output: n(&u["completion_tokens"]),
        reasoning: Some(n(&u["completion_tokens_details"]["reasoning_tokens"])),
    }
}

fn responses_usage(u: &Value) -> Seen {
    Seen {
        input: n(&u["input_tokens"]),
        cached: Some(n(&u["input_tokens_details"]["cached_tokens"])),
        output: n(&u["output_tokens"]),
        reasoning: Some(n(&u["output_tokens_details"]["reasoning_tokens"])),
    }
}

fn gemini_usage(u: &Value) -> Seen {
    let thoughts = n(&u["thoughtsTokenCount"]);
    Seen {
        input: n(&u["promptTokenCount"]),
        cached: Some(n(&u["cachedContentTokenCount"])),
        output: n(&u["candidatesTokenCount"]) + thoughts,
        reasoning: Some(thoughts),
    }
}

/// Poll `/admin/requests` until it holds `count` rows (the writer commits every 250 ms).
pub async fn rows(env: &TestEnv, count: usize) -> Vec<Value> {
    for _ in 0..100 {
        let page = env.get_json("/admin/requests?limit=1000").await;
        let rows = page["requests"].as_array().cloned().unwrap_or_default();
        if rows.len() >= count {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger never reached {count} rows");
}

fn by_id(rows: &[Value]) -> HashMap<String, Value> {
    rows.iter().map(|r| (r["request_id"].as_str().unwrap_or_default().to_string(), r.clone())).collect()
}

#[tokio::test]
async fn rows_and_rollups_after_a_mixed_workload_equal_what_the_clients_saw() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ollama: true, ..Setup::default() }).await;
    let mut seen: Vec<(&str, &str, u16, Seen)> = Vec::new();
    let post = |path: &'static str, id: &'static str, body: Value| {
        let env = &env;
        async move { env.post_with(path, &body, &[("x-request-id", id)]).await }
    };
    let think = || scenario(json!({"kind":"reasoning_then_text","summary":"hmm","text":"The answer is four."}));

    env.fake.enqueue(None, think());
    let (s, _, t) =
        post("/v1/chat/completions", "chat", json!({"model":"gpt-5.4","messages":[{"role":"user","content":"2+2?"}]}))
            .await;
    seen.push(("chat", "chat", s, chat_usage(&json(&t)["usage"])));

    let body = json!({"model":"gpt-5.4","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]});
    let (s, _, t) = post("/v1/chat/completions", "chat-stream", body).await;
    let last = sse_data(&t).iter().rev().skip(1).map(|d| json(d)).find(|c| !c["usage"].is_null()).unwrap_or_default();
    seen.push(("chat-stream", "chat", s, chat_usage(&last["usage"])));

    env.fake.enqueue(None, think());
    let (s, _, t) = post("/v1/responses", "responses", json!({"model":"gpt-5.4-mini","input":"hello"})).await;
    seen.push(("responses", "responses", s, responses_usage(&json(&t)["usage"])));

    let (s, _, t) =
        post("/v1/responses", "responses-stream", json!({"model":"gpt-5.4","input":"hi","stream":true})).await;
    let done = sse_data(&t).iter().map(|d| json(d)).find(|e| e["type"] == "response.completed").unwrap_or_default();
    seen.push(("responses-stream", "responses", s, responses_usage(&done["response"]["usage"])));

    let body = json!({"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"hey"}]});
    let (s, _, t) = post("/v1/messages", "anthropic", body).await;
    let u = &json(&t)["usage"];
    let cached = n(&u["cache_read_input_tokens"]);
    let a = Seen {
        input: n(&u["input_tokens"]) + cached,
        cached: Some(cached),
        output: n(&u["output_tokens"]),
        reasoning: None,
    };
    seen.push(("anthropic", "anthropic", s, a));

    let user = json!({"contents":[{"role":"user","parts":[{"text":"hello gemini"}]}]});
    env.fake.enqueue(None, think());
    let (s, _, t) = post("/v1beta/models/gemini-2.5-flash:generateContent", "gemini", user.clone()).await;
    seen.push(("gemini", "gemini", s, gemini_usage(&json(&t)["usageMetadata"])));

    let (s, _, t) = post("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "gemini-stream", user).await;
    let last = sse_data(&t).iter().map(|d| json(d)).rfind(|c| !c["usageMetadata"].is_null()).unwrap_or_default();
    seen.push(("gemini-stream", "gemini", s, gemini_usage(&last["usageMetadata"])));

    let bridge = env.ollama.clone().unwrap_or_default();
    let resp = env
        .http
        .post(format!("{bridge}/api/chat"))
        .header("x-request-id", "ollama")
        .json(&json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("ollama: {e}"));
    let s = resp.status().as_u16();
    let t = resp.text().await.unwrap_or_default();
    let end = t.lines().map(json).rfind(|l| l["done"] == true).unwrap_or_default();
    let o = Seen { input: n(&end["prompt_eval_count"]), cached: None, output: n(&end["eval_count"]), reasoning: None };
    seen.push(("ollama", "ollama", s, o));

    // An upstream error (no failover for a context overflow), a failover (the first account answers 500), a
    // request refused before any upstream call.
    env.fake.enqueue(None, scenario(json!({"kind":"context_length_exceeded"})));
    let (s, _, _) =
        post("/v1/chat/completions", "too-long", json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]}))
            .await;
    assert_eq!(s, 400);
    seen.push(("too-long", "chat", s, Seen { cached: Some(0), reasoning: Some(0), ..Seen::default() }));
    env.fake.enqueue(None, scenario(json!({"kind":"server_error","status":500})));
    let (s, _, t) =
        post("/v1/chat/completions", "failover", json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]}))
            .await;
    seen.push(("failover", "chat", s, chat_usage(&json(&t)["usage"])));
    let (s, _, _) = post("/v1/chat/completions", "bad", json!({"model":"gpt-5.4","messages":"nope"})).await;
    assert_eq!(s, 400);
    seen.push(("bad", "chat", s, Seen { cached: Some(0), reasoning: Some(0), ..Seen::default() }));

    let rows = by_id(&rows(&env, seen.len()).await);
    assert_eq!(rows.len(), seen.len(), "one row per request: {rows:#?}");
    let (mut input, mut output) = (0, 0);
    for (id, api, status, s) in &seen {
        let r = &rows[*id];
        assert_eq!(r["api"], *api, "{id}");
        assert_eq!(r["status"], *status, "{id}: {r}");
        assert_eq!(n(&r["input_tokens"]), s.input, "{id}: {r}");
        assert_eq!(n(&r["output_tokens"]), s.output, "{id}: {r}");
        if let Some(c) = s.cached {
            assert_eq!(n(&r["cached_tokens"]), c, "{id}: {r}");
        }
        if let Some(c) = s.reasoning {
            assert_eq!(n(&r["reasoning_tokens"]), c, "{id}: {r}");
        }
        if *status == 200 {
            assert!(s.output > 0, "{id}: the client saw tokens");
            assert!(r["account"].is_string() && r["error"].is_null(), "{id}: {r}");
        }
        input += s.input;
        output += s.output;
    }
    assert!(rows["chat"]["reasoning_tokens"].as_u64() > Some(0), "the reasoning scenario reports reasoning");
    assert_eq!(rows["chat-stream"]["stream"], true);
    assert_eq!(rows["chat"]["stream"], false);
    assert_eq!(rows["responses"]["model"], "gpt-5.4-mini");
    assert_eq!(rows["too-long"]["error"], "context_too_long", "{}", rows["too-long"]);
    assert_eq!(rows["too-long"]["error_code"], "context_length_exceeded");
    let f = &rows["failover"];
    assert_eq!((f["attempts"].as_u64(), f["failovers"].as_u64()), (Some(2), Some(1)), "{f}");
    let tried = f["accounts_tried"].as_array().cloned().unwrap_or_default();
    assert_eq!(tried.len(), 2, "{f}");
    assert_ne!(tried[0], tried[1]);
    assert_eq!(f["account"], tried[1], "the second account served");
    assert!(rows["bad"]["account"].is_null() && rows["bad"]["attempts"] == 0, "{}", rows["bad"]);

    // The rollups add up to the same, per dialect and in total.
    let usage = env.get_json("/admin/usage?from=1h&group_by=dialect").await;
    let t = &usage["totals"];
    assert_eq!(n(&t["requests"]), seen.len() as u64, "{usage}");
    assert_eq!(n(&t["errors"]), 2, "{usage}");
    assert_eq!((n(&t["input_tokens"]), n(&t["output_tokens"])), (input, output), "{usage}");
    assert!(t.get("cost_usd").is_none(), "no prices configured, no cost: {t}");
    for series in usage["series"].as_array().cloned().unwrap_or_default() {
        let api = series["group"].as_str().unwrap_or_default().to_string();
        let mine: Vec<&Seen> = seen.iter().filter(|(_, a, _, _)| *a == api).map(|(_, _, _, s)| s).collect();
        assert_eq!(n(&series["totals"]["requests"]), mine.len() as u64, "{api}");
        assert_eq!(n(&series["totals"]["output_tokens"]), mine.iter().map(|s| s.output).sum::<u64>(), "{api}");
    }
    assert_eq!(usage["series"].as_array().map(Vec::len), Some(5), "five dialects: {usage}");
    assert_eq!(env.get_json("/admin/status").await["usage_records_dropped"], 0);
}

fn shared_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cgw-ledger-{}", uuid::Uuid::new_v4().simple()))
}

async fn chat(env: &TestEnv, id: &str) -> u16 {
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hello"}]});
    env.post_with("/v1/chat/completions", &body, &[("x-request-id", id)]).await.0
}

/// Stops the gateway and waits until `run` has returned.
async fn stop(env: &mut TestEnv) {
    env.stop_gateway();
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut env.gateway).await;
}

fn stored_rows(data: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(data.join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    conn.query_row("SELECT COUNT(*) FROM usage_requests", [], |r| r.get(0)).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let data = shared_dir();
    let setup = || Setup { env: vec![("CODEX_GATEWAY_DATA_DIR", data.display().to_string())], ..Setup::default() };
    let mut first = start(setup()).await;
    for i in 0..3 {
        assert_eq!(chat(&first, &format!("before-{i}")).await, 200);
    }
    rows(&first, 3).await;
    stop(&mut first).await;
    let second = start(setup()).await;
    assert_eq!(chat(&second, "after").await, 200);
    let ids: Vec<String> =
        rows(&second, 4).await.iter().filter_map(|r| r["request_id"].as_str().map(str::to_string)).collect();
    assert_eq!(ids, ["after", "before-2", "before-1", "before-0"], "newest first, old rows kept");
    let _ = std::fs::remove_dir_all(&data);
}

/// Requests answered just before shutdown are still in the batch the writer is gathering (it commits 250 ms
/// after a batch's first record): they are in the store when `run` has returned. (That the drain itself, not
/// the channel closing with the server's state, commits them is pinned by `usage::tests` in the library.)
#[tokio::test]
async fn shutdown_drains_the_writer_before_run_returns() {
    let data = shared_dir();
    let mut env =
        start(Setup { env: vec![("CODEX_GATEWAY_DATA_DIR", data.display().to_string())], ..Setup::default() }).await;
    for i in 0..8 {
        assert_eq!(chat(&env, &format!("r{i}")).await, 200);
    }
    stop(&mut env).await;
    assert!(env.gateway.is_finished(), "run returned");
    assert_eq!(stored_rows(&data), 8);
    let _ = std::fs::remove_dir_all(&data);
}

/// With a one-slot channel and the writer stuck on a locked database, further records are dropped, never
/// waited for: requests keep being answered at once, and every record is either stored or counted.
#[tokio::test]
async fn a_full_channel_drops_records_and_counts_them() {
    let env = start(Setup { config_toml: Some("[usage]\nchannel_capacity = 1".into()), ..Setup::default() }).await;
    env.get_json("/health").await; // the store exists once the gateway answers
    let lock = rusqlite::Connection::open(env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(chat(&env, "first").await, 200);
    // The writer's batch closes 250 ms after its first record; then it waits on the lock.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    for i in 0..20 {
        assert_eq!(chat(&env, &format!("burst-{i}")).await, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(3), "requests did not wait for the ledger");
    let dropped = env.get_json("/admin/status").await["usage_records_dropped"].as_u64().unwrap_or(0);
    lock.execute_batch("ROLLBACK").unwrap_or_else(|e| panic!("{e}"));
    assert!(dropped >= 15, "most of the burst was dropped: {dropped}");
    let stored = rows(&env, 21 - dropped as usize).await.len() as u64;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = env.get_json("/admin/status").await;
    assert_eq!(stored + n(&status["usage_records_dropped"]), 21, "every record stored or counted: {status}");
}

/// The two endpoints over HTTP: filters, keyset pages, CSV with proper quoting, prices, and a 400 in the OpenAI
/// shape that names the parameter.
#[tokio::test]
async fn admin_usage_and_requests_filter_paginate_export_and_refuse_bad_parameters() {
    let prices = "[usage.prices.\"gpt-5.4\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0";
    let env = start(Setup { config_toml: Some(prices.into()), ..Setup::default() }).await;
    for i in 0..4 {
        assert_eq!(chat(&env, &format!("p{i}")).await, 200);
    }
    let mini = json!({"model":"gpt-5.4-mini","messages":[{"role":"user","content":"hello"}]});
    let (s, _, _) = env.post_with("/v1/chat/completions", &mini, &[("x-request-id", "odd,\"id\"")]).await;
    assert_eq!(s, 200);
    env.fake.enqueue(None, scenario(json!({"kind":"context_length_exceeded"})));
    assert_eq!(chat(&env, "failed").await, 400);
    let all = rows(&env, 6).await;

    // Pages of two, newest first, no row twice.
    let mut ids = Vec::new();
    let mut path = "/admin/requests?limit=2".to_string();
    loop {
        let page = env.get_json(&path).await;
        let got = page["requests"].as_array().cloned().unwrap_or_default();
        assert!(got.len() <= 2);
        ids.extend(got.iter().filter_map(|r| r["request_id"].as_str().map(str::to_string)));
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/requests?limit=2&before={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = all.iter().filter_map(|r| r["request_id"].as_str().map(str::to_string)).collect();
    assert_eq!(ids, expected);
    assert_eq!(ids.first().map(String::as_str), Some("failed"), "newest first");

    let ids_of = |page: Value| -> Vec<String> {
        page["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["request_id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids_of(env.get_json("/admin/requests?status=400").await), ["failed"]);
    assert_eq!(ids_of(env.get_json("/admin/requests?status=2xx&model=gpt-5.4-mini").await), ["odd,\"id\""]);
    assert_eq!(ids_of(env.get_json("/admin/requests?key=nobody").await), Vec::<String>::new());
    let account = all[1]["account"].as_str().unwrap_or_default().to_string();
    assert_eq!(ids_of(env.get_json(&format!("/admin/requests?account={account}&limit=1000")).await).len(), 5);
    let priced = env.get_json("/admin/requests?model=gpt-5.4&status=200&limit=1").await;
    assert!(priced["requests"][0]["cost_usd"].as_f64() > Some(0.0), "{priced}");
    let unpriced = env.get_json("/admin/requests?model=gpt-5.4-mini").await;
    assert!(unpriced["requests"][0].get("cost_usd").is_none(), "{unpriced}");

    // CSV: a header, one line per row, the odd request id quoted.
    let resp = env.http.get(env.url("/admin/requests?format=csv")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let text = resp.text().await.unwrap_or_default();
    assert!(text.starts_with("id,request_id,started_time,api,"), "{text}");
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(text.contains(",\"odd,\"\"id\"\"\","), "quoted: {text}");
    let text = env.http.get(env.url("/admin/usage?format=csv&group_by=model")).send().await.map(|r| r.text());
    let text = match text {
        Ok(t) => t.await.unwrap_or_default(),
        Err(e) => panic!("{e}"),
    };
    assert!(text.starts_with("bucket_start,group,requests,"), "{text}");
    assert!(text.lines().any(|l| l.contains(",gpt-5.4-mini,1,")), "{text}");

    // Usage by model: the priced model has a cost, the other none.
    let usage = env.get_json("/admin/usage?group_by=model&bucket=day").await;
    let series = usage["series"].as_array().cloned().unwrap_or_default();
    let by = |m: &str| series.iter().find(|s| s["group"] == m).cloned().unwrap_or_default();
    assert_eq!(by("gpt-5.4")["totals"]["requests"], 5);
    assert!(by("gpt-5.4")["totals"]["cost_usd"].as_f64() > Some(0.0), "{usage}");
    assert!(by("gpt-5.4-mini")["totals"].get("cost_usd").is_none(), "{usage}");
    assert_eq!(usage["totals"]["cost_incomplete"], true, "{usage}");

    for (path, param) in [
        ("/admin/usage?bucket=week", "bucket"),
        ("/admin/usage?group_by=person", "group_by"),
        ("/admin/usage?from=yesterday", "from"),
        ("/admin/requests?limit=0", "limit"),
        ("/admin/requests?status=abc", "status"),
        ("/admin/requests?before=x", "before"),
        ("/admin/requests?colour=red", "colour"),
    ] {
        let resp = env.http.get(env.url(path)).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        let body: Value = resp.json().await.unwrap_or_default();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap_or_default().contains(param), "{path}: {body}");
    }
}

/// Usage as a client of one dialect shows it, in Responses terms where the dialect has the field: the whole
/// input, the cached part, the part written to the cache, and the budget units (Responses only).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Cache {
    input: u64,
    cached: Option<u64>,
    written: Option<u64>,
    budget: Option<f64>,
}

/// The usage object of an answer in `dialect` (`stream`ed or whole), read as its clients read it.
fn cache_usage(dialect: &str, stream: bool, text: &str) -> Cache {
    let data = || sse_data(text).iter().filter(|d| *d != "[DONE]").map(|d| json(d)).collect::<Vec<Value>>();
    match (dialect, stream) {
        ("chat", _) => {
            let u = if stream {
                data().into_iter().rfind(|c| !c["usage"].is_null()).unwrap_or_default()["usage"].clone()
            } else {
                json(text)["usage"].clone()
            };
            let d = &u["prompt_tokens_details"];
            Cache {
                input: n(&u["prompt_tokens"]),
                cached: d["cached_tokens"].as_u64(),
                written: d["cache_write_tokens"].as_u64(),
                budget: None,
            }
        }
        ("responses", _) => {
            let u = if stream {
                data().into_iter().find(|e| e["type"] == "response.completed").unwrap_or_default()["response"]["usage"]
                    .clone()
            } else {
                json(text)["usage"].clone()
            };
            let d = &u["input_tokens_details"];
            Cache {
                input: n(&u["input_tokens"]),
                cached: d["cached_tokens"].as_u64(),
                written: d["cache_write_tokens"].as_u64(),
                budget: u["codex_rollout_budget_units"].as_f64(),
            }
        }
        ("anthropic", _) => {
            let u = if stream {
                data().into_iter().rfind(|e| e["type"] == "message_delta").unwrap_or_default()["usage"].clone()
            } else {
                json(text)["usage"].clone()
            };
            let (read, created) = (n(&u["cache_read_input_tokens"]), n(&u["cache_creation_input_tokens"]));
            Cache {
                input: n(&u["input_tokens"]) + read + created,
                cached: Some(read),
                written: Some(created),
                budget: None,
            }
        }
        ("gemini", _) => {
            let u = if stream {
                data().into_iter().rfind(|c| !c["usageMetadata"].is_null()).unwrap_or_default()["usageMetadata"].clone()
            } else {
                json(text)["usageMetadata"].clone()
            };
            Cache {
                input: n(&u["promptTokenCount"]),
                cached: Some(n(&u["cachedContentTokenCount"])),
                ..Cache::default()
            }
        }
        _ => {
            let end = text.lines().map(json).rfind(|l| l["done"] == true).unwrap_or_default();
            Cache { input: n(&end["prompt_eval_count"]), ..Cache::default() }
        }
    }
}

/// issue 72: the 0.171 usage (cache writes beside the cached tokens, and the response's budget units) reaches every
/// dialect where it has a field, streamed and whole, and the ledger. A GPT-6.2 model reports cache writes (the
/// fake writes what a turn did not read from the cache); each conversation's second turn reads its first from
/// the cache and writes the rest, so both numbers are shown at once. What each client saw equals its ledger row.
#[tokio::test]
async fn cache_writes_and_budget_units_reach_every_dialect_and_the_ledger() {
    let env = start(Setup { plans: vec!["pro"], ollama: true, ..Setup::default() }).await;
    let bridge = env.ollama.clone().unwrap_or_default();
    let mut seen: Vec<(String, Cache)> = Vec::new();
    for dialect in ["chat", "responses", "anthropic", "gemini", "ollama"] {
        for stream in [false, true] {
            for turn in 0..2 {
                let first = format!("{dialect} {stream}: tell me about prompt caches");
                let later = [
                    json!({"role": "assistant", "content": "They keep a prefix."}),
                    json!({"role": "user", "content": "more"}),
                ];
                let mut messages = vec![json!({"role": "user", "content": first})];
                if turn == 1 {
                    messages.extend(later.iter().cloned());
                }
                let (url, body) = match dialect {
                    "chat" => {
                        let mut body = json!({"model": "gpt-6.2-sol", "messages": messages, "stream": stream});
                        if stream {
                            body["stream_options"] = json!({"include_usage": true});
                        }
                        (env.url("/v1/chat/completions"), body)
                    }
                    "responses" => {
                        (env.url("/v1/responses"), json!({"model": "gpt-6.2-sol", "input": messages, "stream": stream}))
                    }
                    "anthropic" => (
                        env.url("/v1/messages"),
                        json!({"model": "gpt-6.2-sol", "max_tokens": 1000, "messages": messages, "stream": stream}),
                    ),
                    "gemini" => {
                        let contents: Vec<Value> = messages
                            .iter()
                            .map(|m| {
                                let role = if m["role"] == "assistant" { "model" } else { "user" };
                                json!({"role": role, "parts": [{"text": m["content"]}]})
                            })
                            .collect();
                        let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
                        (env.url(&format!("/v1beta/models/gpt-6.2-sol:{method}")), json!({"contents": contents}))
                    }
                    _ => (
                        format!("{bridge}/api/chat"),
                        json!({"model": "gpt-6.2-sol", "messages": messages, "stream": stream}),
                    ),
                };
                let id = format!("{dialect}-{stream}-{turn}");
                let resp = env.http.post(&url).header("x-request-id", &id).json(&body).send().await;
                let resp = resp.unwrap_or_else(|e| panic!("{id}: {e}"));
                assert_eq!(resp.status().as_u16(), 200, "{id}");
                let text = resp.text().await.unwrap_or_default();
                seen.push((id, cache_usage(dialect, stream, &text)));
            }
        }
    }
    let rows = by_id(&rows(&env, seen.len()).await);
    for (id, shown) in &seen {
        let r = &rows[id];
        let (input, cached, written) = (n(&r["input_tokens"]), n(&r["cached_tokens"]), n(&r["cache_write_tokens"]));
        let budget = r["budget_units"].as_f64();
        assert!(budget.is_some_and(|b| b > 0.0), "{id}: the backend's budget units are kept: {r}");
        assert_eq!(shown.input, input, "{id}: {r}");
        if let Some(c) = shown.cached {
            assert_eq!(c, cached, "{id}: {r}");
        }
        if let Some(w) = shown.written {
            assert_eq!(w, written, "{id}: {r}");
        }
        if let Some(b) = shown.budget {
            assert_eq!(Some(b), budget, "{id}: the passthrough leaves the budget units as they came");
        }
        if id.ends_with("-0") {
            assert_eq!((cached, written), (0, input), "{id}: a first turn writes its whole input: {r}");
        } else {
            assert!(cached > 0 && written > 0 && cached + written == input, "{id}: read and written: {r}");
        }
    }
    // The rollups sum them too.
    let usage = env.get_json("/admin/usage?from=1h").await;
    let t = &usage["totals"];
    let written: u64 = seen.iter().map(|(id, _)| n(&rows[id]["cache_write_tokens"])).sum();
    assert_eq!(n(&t["cache_write_tokens"]), written, "{usage}");
    assert!(t["budget_units"].as_f64() > Some(0.0), "{usage}");
}
