//! Account stewardship through the whole gateway (issue 71; docs/accounts.md, "Risk signals"): a conversation the
//! upstream refused under its usage policy, or whose account it deactivated, is held on that account (its next
//! turns never reach another account, and when its own cannot serve the client is told so in its dialect); a new
//! conversation still goes to a healthy account; an operator releases the hold; the refusal shows in the record,
//! the ledger, the account summary and the metrics; a created key is suspended after repeated refusals only when
//! that is switched on.

use fake_codex::AccountCreds;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, scenario, start};
use crate::usage::rows;

fn pooled(n: usize) -> Setup {
    Setup { accounts: n, store_accounts: true, linked: false, ..Setup::default() }
}

/// The gateway's id of a fake account (what the admin API names it by).
fn gateway_id(c: &AccountCreds) -> String {
    codex_gateway::accounts::account_key(&c.account_id, Some(&c.email))
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":text}]})
}

/// One Chat turn of conversation `conv` (named by the `session-id` header, as clients do).
async fn turn(env: &TestEnv, conv: &str, text: &str, stream: bool) -> (u16, String) {
    let (status, _, body) = env.post_with("/v1/chat/completions", &chat(text, stream), &[("session-id", conv)]).await;
    (status, body)
}

/// The fake account that answered the last upstream request.
fn last_account(env: &TestEnv) -> &AccountCreds {
    let id = env.fake.requests_to("/responses").last().and_then(|r| r.account_id.clone()).unwrap_or_default();
    env.accounts.iter().find(|a| a.account_id == id).unwrap_or_else(|| panic!("no account {id}"))
}

/// The other fake account of a pool of two.
fn other<'a>(env: &'a TestEnv, one: &AccountCreds) -> &'a AccountCreds {
    env.accounts.iter().find(|a| a.account_id != one.account_id).unwrap_or_else(|| panic!("a pool of one"))
}

/// The thread id conversation `conv` goes upstream with (its `prompt_cache_key` there).
fn thread(conv: &str) -> String {
    codex_gateway::relay::exchange::thread_id_for(conv)
}

/// Upstream requests of conversation `conv` per fake account id, by the thread id in their body.
fn seen_by(env: &TestEnv, conv: &str) -> Vec<String> {
    let thread = thread(conv);
    env.fake
        .requests_to("/responses")
        .iter()
        .filter(|r| r.body["prompt_cache_key"] == thread.as_str())
        .filter_map(|r| r.account_id.clone())
        .collect()
}

async fn admin(env: &TestEnv, method: reqwest::Method, path: &str) -> (u16, Value) {
    let resp = env.http.request(method, env.url(path)).send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

fn summary<'a>(accounts: &'a Value, id: &str) -> &'a Value {
    accounts.as_array().into_iter().flatten().find(|a| a["id"] == id).unwrap_or_else(|| panic!("{id}: {accounts}"))
}

/// A metric's value in `/metrics`, by a line's start (name and labels).
async fn metric(env: &TestEnv, prefix: &str) -> Option<f64> {
    let text = env.http.get(env.url("/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// The whole story over HTTP: refused, held (its next turn stays home; once home cannot serve, the client is told
/// so and no other account sees it), a new conversation served elsewhere, the signals visible, the hold released.
#[tokio::test]
async fn a_policy_refusal_holds_the_conversation_on_its_account_until_an_operator_releases_it() {
    let env = start(pooled(2)).await;
    let conv = "conv-held-http";
    let (status, text) = turn(&env, conv, "first", false).await;
    assert_eq!(status, 200, "{text}");
    let home = last_account(&env).clone();
    let away = other(&env, &home).clone();

    env.fake.enqueue(Some(&home.account_id), scenario(json!({"kind":"policy_refusal","code":"cyber_policy"})));
    let before = env.fake.requests_to("/responses").len();
    let (status, text) = turn(&env, conv, "second", false).await;
    assert_eq!(status, 400, "the refusal reaches the client as an invalid request: {text}");
    let error = &json(&text)["error"];
    assert_eq!(error["code"], "cyber_policy", "{text}");
    assert_eq!(error["type"], "invalid_request_error", "{text}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("high-risk cyber activity")), "{text}");
    assert_eq!(env.fake.requests_to("/responses").len(), before + 1, "never retried on another account");

    // Home can serve: the conversation goes on there.
    let (status, text) = turn(&env, conv, "third", false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(last_account(&env).account_id, home.account_id);

    // Home cannot serve now: the client is told why, and no account is asked.
    let (status, _) =
        admin(&env, reqwest::Method::POST, &format!("/admin/accounts/{}/disable", gateway_id(&home))).await;
    assert_eq!(status, 200);
    let before = env.fake.requests_to("/responses").len();
    let (status, text) = turn(&env, conv, "fourth", false).await;
    assert_eq!(status, 403, "{text}");
    let error = &json(&text)["error"];
    assert_eq!((error["code"].as_str(), error["type"].as_str()), (Some("conversation_held"), Some("permission_error")));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("cyber") && message.contains(&format!("/admin/conversations/{conv}/hold")), "{message}");
    assert_eq!(env.fake.requests_to("/responses").len(), before, "no upstream request for a held conversation");
    assert!(seen_by(&env, conv).iter().all(|a| *a == home.account_id), "the other account never saw it");

    // A new conversation goes to the healthy account.
    let (status, text) = turn(&env, "conv-fresh", "hello", false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(last_account(&env).account_id, away.account_id);

    // What the operator sees: the held list, the account's risk, the metrics, the request log.
    let (status, held) = admin(&env, reqwest::Method::GET, "/admin/conversations/held").await;
    assert_eq!((status, held["count"].as_u64()), (200, Some(1)), "{held}");
    assert_eq!(held["held"][0]["key"], conv);
    assert_eq!(held["held"][0]["account"], gateway_id(&home).as_str());
    assert_eq!(held["held"][0]["reason"], "policy:cyber");
    let accounts = env.get_json("/admin/accounts").await;
    let risk = &summary(&accounts, &gateway_id(&home))["risk"];
    assert_eq!((risk["policy_refusals"].as_u64(), risk["held_conversations"].as_u64()), (Some(1), Some(1)), "{risk}");
    assert_eq!(risk["policy_refusals_by_kind"]["cyber"], 1);
    assert_eq!(summary(&accounts, &gateway_id(&away))["risk"]["policy_refusals"], 0);
    assert_eq!(metric(&env, "codex_gateway_conversations_held ").await, Some(1.0));
    let refusals = metric(&env, "codex_gateway_policy_refusals_total{").await;
    assert_eq!(refusals, Some(1.0), "one series, for the home account and kind cyber");
    let ledger = rows(&env, 5).await;
    let refused = ledger.iter().filter(|r| r["refusal"] == "cyber").count();
    let held_rows = ledger.iter().filter(|r| r["held"] == "policy:cyber").count();
    assert_eq!((refused, held_rows), (1, 1), "{ledger:?}");

    // Released: the next turn moves to the account that can serve, as any conversation's would.
    let (status, released) = admin(&env, reqwest::Method::DELETE, &format!("/admin/conversations/{conv}/hold")).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["was"]["reason"], "policy:cyber");
    let (status, again) = admin(&env, reqwest::Method::DELETE, &format!("/admin/conversations/{conv}/hold")).await;
    assert_eq!((status, again["error"]["code"].as_str()), (404, Some("conversation_not_held")));
    let (status, text) = turn(&env, conv, "fifth", false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(last_account(&env).account_id, away.account_id);
    assert_eq!(metric(&env, "codex_gateway_conversations_held ").await, Some(0.0));
}

/// The same refusal inside a 200 stream (`response.failed` with `cyber_policy` before any output), and the content
/// filter's end before any output: an HTTP 400 in the client's dialect, the conversation held alike.
#[tokio::test]
async fn a_refusal_inside_a_stream_or_the_content_filters_end_holds_alike() {
    for (kind, code) in [
        (json!({"kind":"policy_refusal_in_stream","code":"cyber_policy"}), "cyber_policy"),
        (json!({"kind":"content_filtered"}), "content_filter"),
    ] {
        let env = start(pooled(2)).await;
        let conv = "conv-held-stream";
        let (status, _) = turn(&env, conv, "first", true).await;
        assert_eq!(status, 200);
        let home = last_account(&env).clone();
        env.fake.enqueue(Some(&home.account_id), scenario(kind));
        let (status, text) = turn(&env, conv, "second", true).await;
        assert_eq!(status, 400, "{code}: {text}");
        assert_eq!(json(&text)["error"]["code"], code, "{text}");
        let (status, _) =
            admin(&env, reqwest::Method::POST, &format!("/admin/accounts/{}/disable", gateway_id(&home))).await;
        assert_eq!(status, 200);
        let (status, text) = turn(&env, conv, "third", true).await;
        assert_eq!((status, json(&text)["error"]["code"].as_str()), (403, Some("conversation_held")), "{code}");
        assert!(seen_by(&env, conv).iter().all(|a| *a == home.account_id), "{code}: never on the other account");
    }
}

/// A refusal that comes after output already reached the client ends the stream with the dialect's error, and the
/// pool still learns of it: the refusal is counted and the conversation held.
#[tokio::test]
async fn a_refusal_after_the_first_byte_is_not_lost() {
    let env = start(pooled(2)).await;
    let conv = "conv-held-late";
    let (status, _) = turn(&env, conv, "first", true).await;
    assert_eq!(status, 200);
    let home = last_account(&env).clone();
    let late = json!({"kind":"custom","items":[{"type":"text","text":"Here is the start of"}],
        "end":{"type":"failed","code":"cyber_policy","message":"This request has been flagged for potentially high-risk cyber activity."}});
    env.fake.enqueue(Some(&home.account_id), scenario(late));
    let (status, text) = turn(&env, conv, "second", true).await;
    assert_eq!(status, 200, "the status line went out with the output: {text}");
    assert!(text.contains(r#""content":"Here "#) && text.contains("cyber_policy"), "output, then the error: {text}");
    let (_, held) = admin(&env, reqwest::Method::GET, "/admin/conversations/held").await;
    assert_eq!(held["held"][0]["key"], conv, "{held}");
    let accounts = env.get_json("/admin/accounts").await;
    assert_eq!(summary(&accounts, &gateway_id(&home))["risk"]["policy_refusals"], 1);
}

/// A deactivated account (403) is disabled and its conversation is not moved: the request stops with the
/// refusal in the client's dialect (Chat and Anthropic shapes), the next turn is refused as held, the other
/// account never sees it, and a new conversation goes to the healthy account.
#[tokio::test]
async fn a_deactivated_accounts_conversation_is_not_moved_and_its_client_is_refused_in_its_dialect() {
    for dialect in ["chat", "anthropic"] {
        let env = start(pooled(2)).await;
        let conv = "conv-deactivated";
        let send = |text: &'static str| {
            let env = &env;
            async move {
                let (status, _, body) = match dialect {
                    "chat" => env.post_with("/v1/chat/completions", &chat(text, false), &[("session-id", conv)]).await,
                    _ => {
                        let body = json!({"model":"claude-sonnet-4-5","max_tokens":256,
                            "messages":[{"role":"user","content":text}]});
                        env.post_with("/v1/messages", &body, &[("x-claude-code-session-id", conv)]).await
                    }
                };
                (status, json(&body))
            }
        };
        let (status, _) = send("first").await;
        assert_eq!(status, 200, "{dialect}");
        let home = last_account(&env).clone();
        let away = other(&env, &home).clone();
        env.fake.enqueue(Some(&home.account_id), scenario(json!({"kind":"deactivated"})));
        let before = env.fake.requests_to("/responses").len();
        let (status, body) = send("second").await;
        assert_eq!(status, 403, "{dialect}: {body}");
        assert_eq!(env.fake.requests_to("/responses").len(), before + 1, "{dialect}: stopped, not moved");
        match dialect {
            "chat" => {
                assert_eq!(body["error"]["type"], "permission_error", "{body}");
                assert_eq!(body["error"]["code"], "account_deactivated", "{body}");
            }
            _ => {
                assert_eq!(body["type"], "error", "{body}");
                assert_eq!(body["error"]["type"], "permission_error", "{body}");
                assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("deactivated")), "{body}");
            }
        }
        let accounts = env.get_json("/admin/accounts").await;
        assert_eq!(summary(&accounts, &gateway_id(&home))["status"], "disabled", "{dialect}");
        let (status, body) = send("third").await;
        assert_eq!(status, 403, "{dialect}: {body}");
        let message = match dialect {
            "chat" => {
                assert_eq!(body["error"]["code"], "conversation_held", "{body}");
                body["error"]["message"].as_str()
            }
            _ => body["error"]["message"].as_str(),
        };
        assert!(message.is_some_and(|m| m.contains("deactivated") && m.contains("release")), "{dialect}: {body}");
        assert_eq!(env.fake.requests_to("/responses").len(), before + 1, "{dialect}: the held turn asked no one");
        assert!(
            env.fake.requests_to("/responses").iter().all(|r| r.account_id.as_deref() == Some(&home.account_id)),
            "{dialect}: the other account saw nothing yet"
        );
        let (status, _) = turn(&env, "conv-new", "hello", false).await;
        assert_eq!(status, 200, "{dialect}");
        assert_eq!(last_account(&env).account_id, away.account_id, "{dialect}: a new conversation is served");
        // Released with every other hold of the account.
        let path = format!("/admin/accounts/{}/holds", gateway_id(&home));
        let (status, released) = admin(&env, reqwest::Method::DELETE, &path).await;
        assert_eq!((status, released["released"].as_array().map(Vec::len)), (200, Some(1)), "{released}");
        let (status, body) = send("fourth").await;
        assert_eq!(status, 200, "{dialect}: released, it moves: {body}");
        assert_eq!(last_account(&env).account_id, away.account_id);
    }
}

const ADMIN: &str = "admin-key";

/// A keyed gateway with `policy_refusals_per_key` set (or not), a created key, and its secret.
async fn keyed(limit: Option<u32>) -> (TestEnv, String, String) {
    let config_toml = limit.map(|n| format!("[routing]\npolicy_refusals_per_key = {n}\n"));
    let env = start(Setup {
        client_key: Some("shared-key".into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into())],
        config_toml,
        ..Setup::default()
    })
    .await;
    let resp = env
        .http
        .post(env.url("/admin/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name":"team"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key: Value = resp.json().await.unwrap_or_default();
    let id = key["id"].as_str().unwrap_or_default().to_string();
    let secret = key["secret"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty() && !secret.is_empty(), "no key was created: {key}");
    (env, id, secret)
}

async fn keyed_request(env: &TestEnv, secret: &str, conv: &str) -> (u16, Value) {
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(secret)
        .header("session-id", conv)
        .json(&chat("x", false))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

async fn key_summary(env: &TestEnv, id: &str) -> Value {
    let resp = env.http.get(env.url(&format!("/admin/keys/{id}"))).bearer_auth(ADMIN).send().await;
    resp.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default()
}

/// `policy_refusals_per_key = 2`: the key's second refused request suspends it; its next request is refused 403
/// `key_suspended_policy` without reaching the upstream, `keys list` shows it, and an operator lifts it.
#[tokio::test]
async fn a_key_is_suspended_after_repeated_policy_refusals_when_that_is_switched_on() {
    let (env, id, secret) = keyed(Some(2)).await;
    for (i, conv) in ["conv-k1", "conv-k2"].into_iter().enumerate() {
        env.fake.enqueue(None, scenario(json!({"kind":"policy_refusal","code":"bio_policy"})));
        let (status, body) = keyed_request(&env, &secret, conv).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bio_policy")), "refusal {i}: {body}");
    }
    // The key is refused at once; its row, written off the request's task, says so shortly.
    assert_eq!(key_summary(&env, &id).await["status"], "suspended");
    let mut written = Value::Null;
    for _ in 0..100 {
        written = key_summary(&env, &id).await["suspended_at"].clone();
        if written.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(written.is_string(), "the suspension was never stored");
    let before = env.fake.requests_to("/responses").len();
    let (code, body) = keyed_request(&env, &secret, "conv-k3").await;
    assert_eq!((code, body["error"]["code"].as_str()), (403, Some("key_suspended_policy")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("keys update team --resume")), "{body}");
    assert_eq!(env.fake.requests_to("/responses").len(), before, "refused before the upstream");
    let listed = key_summary(&env, &id).await;
    assert!(listed["suspended_reason"].as_str().is_some_and(|r| r.contains("2 requests refused")), "{listed}");
    assert_eq!(listed["usage"]["policy_refusals_24h"], 2, "{listed}");

    let resp = env
        .http
        .patch(env.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .json(&json!({"suspended": false}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lifted: Value = resp.json().await.unwrap_or_default();
    assert_eq!(lifted["status"], "active", "{lifted}");
    assert_eq!(lifted["usage"]["policy_refusals_24h"], 0, "it starts afresh: {lifted}");
    let (code, body) = keyed_request(&env, &secret, "conv-k4").await;
    assert_eq!(code, 200, "{body}");
}

/// Off by default: a key whose requests are refused again and again is never suspended.
#[tokio::test]
async fn a_key_is_never_suspended_when_the_setting_is_off() {
    let (env, id, secret) = keyed(None).await;
    for i in 0..4 {
        env.fake.enqueue(None, scenario(json!({"kind":"policy_refusal"})));
        let (status, _) = keyed_request(&env, &secret, &format!("conv-off-{i}")).await;
        assert_eq!(status, 400);
    }
    let (code, body) = keyed_request(&env, &secret, "conv-off-last").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(key_summary(&env, &id).await["status"], "active");
}
