//! A conversation that moves to another account (docs/protocol.md, "Long sessions"): its account runs out of
//! quota mid-session, the next turn goes to another account with the visible history and without the reasoning
//! sealed to the first one (no refused attempt first), and the ledger says where it came from; a compacted history
//! cannot move and the client is told why in its own dialect; reasoning the backend refuses as foreign is left out
//! once, for every dialect alike.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, start};
use crate::usage::rows;

fn pooled() -> Setup {
    Setup { accounts: 2, store_accounts: true, linked: false, ..Setup::default() }
}

/// Exhaust `account`'s quota at the fake: its next request is refused with a usage limit.
fn exhaust(env: &TestEnv, account: &str) {
    env.fake.set_quota(account, 100.0, 10.0, Some(codex_gateway::auth::now_unix() + 600));
}

fn items_of<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    body["input"].as_array().into_iter().flatten().filter(|i| i["type"] == kind).collect()
}

/// The value of the gateway's `conversation_moves` counter.
async fn moves_counted(env: &TestEnv) -> f64 {
    let text = env.http.get(env.url("/metrics")).send().await.unwrap_or_else(|e| panic!("{e}")).text().await;
    let text = text.unwrap_or_default();
    text.lines()
        .find(|l| l.contains("conversation_moves") && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no conversation_moves in /metrics:\n{text}"))
}

#[tokio::test]
async fn a_responses_conversation_moves_without_its_reasoning_and_the_ledger_says_from_where() {
    let env = start(pooled()).await;
    let key = "conv-move-responses";
    let first = json!({"model":"gpt-5.4","input":"think about it","prompt_cache_key":key,
        "reasoning":{"effort":"medium","summary":"auto"},"include":["reasoning.encrypted_content"]});
    let (status, _, text) = env.post("/v1/responses", &first).await;
    assert_eq!(status, 200, "{text}");
    let answer = json(&text);
    let output = answer["output"].as_array().cloned().unwrap_or_default();
    assert!(output.iter().any(|i| i["type"] == "reasoning" && i["encrypted_content"].is_string()), "{answer}");
    let home = env.fake.requests_to("/responses").last().and_then(|r| r.account_id.clone()).unwrap_or_default();
    exhaust(&env, &home);

    let mut input = vec![json!({"role":"user","content":"think about it"})];
    input.extend(output);
    input.push(json!({"role":"user","content":"and now?"}));
    let next = json!({"model":"gpt-5.4","input":input,"prompt_cache_key":key,
        "reasoning":{"effort":"medium","summary":"auto"},"include":["reasoning.encrypted_content"]});
    let (status, _, text) = env.post("/v1/responses", &next).await;
    assert_eq!(status, 200, "{text}");
    let sent = env.fake.requests_to("/responses");
    let attempts: Vec<_> = sent.iter().skip(1).collect();
    assert_eq!(attempts.len(), 2, "the home account's refusal, then the move: {attempts:?}");
    assert_eq!(attempts[0].account_id.as_deref(), Some(home.as_str()));
    assert_eq!(attempts[0].status, 429, "the home account is out of quota");
    assert_eq!(
        items_of(&attempts[0].answered_body(), "reasoning").len(),
        1,
        "its own reasoning went to the home account"
    );
    let moved = attempts[1];
    let moved_body = moved.answered_body();
    assert_eq!(moved.status, 200);
    assert_ne!(moved.account_id.as_deref(), Some(home.as_str()));
    assert!(items_of(&moved_body, "reasoning").is_empty(), "no sealed reasoning to another account: {moved_body}");
    let messages = items_of(&moved_body, "message").len()
        + moved_body["input"].as_array().into_iter().flatten().filter(|i| i.get("type").is_none()).count();
    assert_eq!(messages, 3, "the visible history moves whole: {moved_body}");

    let ledger = rows(&env, 2).await;
    let moved_row = ledger.iter().find(|r| r["moved_from"].is_string()).unwrap_or_else(|| panic!("{ledger:?}"));
    let first_row = ledger.iter().find(|r| r["moved_from"].is_null()).unwrap_or_else(|| panic!("{ledger:?}"));
    assert_eq!(moved_row["moved_from"], first_row["account"], "moved from the account of the first turn");
    assert_ne!(moved_row["account"], first_row["account"], "{moved_row}");
    assert_eq!(ledger.iter().filter(|r| r["moved_from"].is_string()).count(), 1, "the first turn did not move");
    assert_eq!(moves_counted(&env).await, 1.0);
}

#[tokio::test]
async fn an_anthropic_conversation_moves_without_a_refused_attempt() {
    let env = start(pooled()).await;
    let thinking = json!({"type":"enabled","budget_tokens":2048});
    let session = [("x-claude-code-session-id", "sess-move-1")];
    let msg = |messages: Value| json!({"model":"claude-sonnet-4-5","max_tokens":1024,"thinking":thinking,"messages":messages});
    let (status, _, text) =
        env.post_with("/v1/messages", &msg(json!([{"role":"user","content":"think"}])), &session).await;
    assert_eq!(status, 200, "{text}");
    let content = json(&text)["content"].clone();
    assert!(content.as_array().into_iter().flatten().any(|b| b["type"] == "thinking"), "{content}");
    let home = env.fake.requests_to("/responses")[0].account_id.clone().unwrap_or_default();
    exhaust(&env, &home);
    let history = json!([
        {"role":"user","content":"think"},
        {"role":"assistant","content":content},
        {"role":"user","content":"more"}
    ]);
    let (status, _, text) = env.post_with("/v1/messages", &msg(history), &session).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["type"], "message");
    let sent = env.fake.requests_to("/responses");
    let last = sent.last().unwrap_or_else(|| panic!("no request"));
    assert_eq!(last.status, 200);
    assert_ne!(last.account_id.as_deref(), Some(home.as_str()));
    assert!(items_of(&last.answered_body(), "reasoning").is_empty(), "{}", last.body);
    assert!(
        !sent.iter().any(|r| r.status == 400),
        "the move left the reasoning behind before it went, so no account refused it: {sent:?}"
    );
}

#[tokio::test]
async fn a_compacted_conversation_cannot_move_and_the_client_is_told_why() {
    let env = start(pooled()).await;
    let key = "conv-move-compacted";
    let first = json!({"model":"gpt-5.4","input":"remember the number 7","prompt_cache_key":key});
    let (status, _, text) = env.post("/v1/responses", &first).await;
    assert_eq!(status, 200, "{text}");
    let compact = json!({"model":"gpt-5.4","instructions":"","tools":[],"parallel_tool_calls":true,
        "prompt_cache_key":key,
        "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"remember the number 7"}]},
                 {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]}]});
    let (status, _, text) = env.post("/v1/responses/compact", &compact).await;
    assert_eq!(status, 200, "{text}");
    let home = env.fake.requests_to("/responses/compact")[0].account_id.clone().unwrap_or_default();
    exhaust(&env, &home);

    let mut input = json(&text)["output"].as_array().cloned().unwrap_or_default();
    input.push(json!({"type":"message","role":"user","content":[{"type":"input_text","text":"which number?"}]}));
    let before = env.fake.requests_to("/responses").len();
    let next = json!({"model":"gpt-5.4","input":input,"prompt_cache_key":key});
    let (status, _, text) = env.post("/v1/responses", &next).await;
    assert_eq!(status, 400, "{text}");
    let v = json(&text);
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], "conversation_sealed_to_another_account", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    let gateway_home = rows(&env, 1).await[0]["account"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("compacted") && message.contains(&gateway_home), "{message}");
    let after: Vec<_> = env.fake.requests_to("/responses").into_iter().skip(before).collect();
    assert!(
        after.iter().all(|r| r.account_id.as_deref() == Some(home.as_str())),
        "the compacted history went to no other account: {after:?}"
    );

    // Streamed, the same refusal comes before any event, as an error answer.
    let (status, _, text) = env
        .post(
            "/v1/responses",
            &json!({"stream": true, "model":"gpt-5.4",
        "input": next["input"], "prompt_cache_key": key}),
        )
        .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["code"], "conversation_sealed_to_another_account", "{text}");
}

#[tokio::test]
async fn reasoning_the_backend_refuses_as_foreign_is_left_out_once() {
    let env = start(pooled()).await;
    // A reasoning item made by one account, in a conversation the gateway has never seen (no home to move from).
    let first = json!({"model":"gpt-5.4","input":"think","prompt_cache_key":"conv-foreign-a",
        "reasoning":{"effort":"medium","summary":"auto"},"include":["reasoning.encrypted_content"]});
    let (status, _, text) = env.post("/v1/responses", &first).await;
    assert_eq!(status, 200, "{text}");
    let output = json(&text)["output"].as_array().cloned().unwrap_or_default();
    let maker = env.fake.requests_to("/responses")[0].account_id.clone().unwrap_or_default();
    exhaust(&env, &maker);
    let mut input = vec![json!({"role":"user","content":"think"})];
    input.extend(output);
    input.push(json!({"role":"user","content":"go on"}));
    let before = env.fake.requests_to("/responses").len();
    let next = json!({"model":"gpt-5.4","input":input,"prompt_cache_key":"conv-foreign-b",
        "reasoning":{"effort":"medium","summary":"auto"},"include":["reasoning.encrypted_content"]});
    let (status, _, text) = env.post("/v1/responses", &next).await;
    assert_eq!(status, 200, "{text}");
    let other: Vec<_> = env
        .fake
        .requests_to("/responses")
        .into_iter()
        .skip(before)
        .filter(|r| r.account_id.as_deref() != Some(maker.as_str()))
        .collect();
    assert_eq!(other.len(), 2, "refused once, then sent without reasoning: {other:?}");
    assert_eq!(other[0].status, 400);
    assert_eq!(items_of(&other[0].answered_body(), "reasoning").len(), 1);
    assert_eq!(other[1].status, 200);
    assert!(items_of(&other[1].answered_body(), "reasoning").is_empty());
}

/// A request's conversation identifiers as the upstream received them: the session, thread and request-id
/// headers, the window, the turn metadata (header and body copy), `client_metadata` and the prompt cache key.
fn identifiers(r: &fake_codex::RecordedRequest) -> Vec<String> {
    let header = |name: &str| r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut ids: Vec<String> =
        ["session-id", "thread-id", "x-client-request-id", "x-codex-window-id", "x-codex-parent-thread-id"]
            .iter()
            .filter_map(|h| header(h))
            .collect();
    let turn_fields = ["session_id", "thread_id", "window_id", "context_window_id", "turn_id", "root_turn_id"];
    let mut turn_metadata = |text: Option<&str>| {
        let meta: Value = text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        ids.extend(turn_fields.iter().filter_map(|f| meta[*f].as_str().map(str::to_string)));
    };
    turn_metadata(header("x-codex-turn-metadata").as_deref());
    let body = r.answered_body();
    let meta = &body["client_metadata"];
    turn_metadata(meta["x-codex-turn-metadata"].as_str());
    for f in ["session_id", "thread_id", "x-codex-window-id", "turn_id", "root_turn_id"] {
        ids.extend(meta[f].as_str().map(str::to_string));
    }
    ids.extend(body["prompt_cache_key"].as_str().map(str::to_string));
    ids
}

/// Issue 71: a conversation that moves takes no identifier of its previous account along. Its home account keeps
/// the ids it had (also for the attempt it refused); the account it moves to gets ids of its own, the same on each
/// of its turns; no id is seen by two accounts; and each account presents its own installation id. For a plain
/// client (ids derived from its session) and for an official client (its own thread id, window and metadata).
#[tokio::test]
async fn a_conversation_that_moves_takes_no_identifier_of_its_previous_account_along() {
    let official_thread = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for official in [false, true] {
        let env = start(pooled()).await;
        let send = |text: &'static str| {
            let env = &env;
            async move {
                let (status, _, body) = match official {
                    false => {
                        let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":text}]});
                        env.post_with("/v1/chat/completions", &body, &[("session-id", "conv-ids")]).await
                    }
                    true => {
                        let body = json!({"model":"gpt-5.4","input":text,"prompt_cache_key":official_thread,
                            "client_metadata":{"session_id":official_thread,"thread_id":official_thread}});
                        let window = format!("{official_thread}:0");
                        let headers = [
                            ("originator", "codex_exec"),
                            ("session_id", official_thread),
                            ("x-codex-window-id", window.as_str()),
                        ];
                        env.post_with("/v1/responses", &body, &headers).await
                    }
                };
                assert_eq!(status, 200, "official={official}: {body}");
            }
        };
        send("one").await;
        send("two").await;
        let home = env.fake.requests_to("/responses")[0].account_id.clone().unwrap_or_default();
        exhaust(&env, &home);
        send("three").await;
        send("four").await;
        let sent = env.fake.requests_to("/responses");
        assert_eq!(sent.len(), 5, "official={official}: two turns home, a refused attempt, two turns away");
        let (at_home, away): (Vec<_>, Vec<_>) = sent.iter().partition(|r| r.account_id.as_deref() == Some(&home));
        assert_eq!((at_home.len(), away.len()), (3, 2), "official={official}");
        let ids = |rs: &[&fake_codex::RecordedRequest]| -> std::collections::HashSet<String> {
            rs.iter().flat_map(|r| identifiers(r)).collect()
        };
        let (home_ids, away_ids) = (ids(&at_home), ids(&away));
        let shared: Vec<&String> = home_ids.intersection(&away_ids).collect();
        assert!(shared.is_empty(), "official={official}: ids seen by both accounts: {shared:?}");
        let session = |r: &fake_codex::RecordedRequest| {
            r.headers.iter().find(|(n, _)| n == "session-id").map(|(_, v)| v.clone()).unwrap_or_default()
        };
        // The home account keeps its ids, the other one keeps its own from turn to turn.
        assert!(at_home.iter().all(|r| session(r) == session(at_home[0])), "official={official}");
        assert_eq!(session(away[0]), session(away[1]), "official={official}");
        assert_eq!(at_home[0].body["prompt_cache_key"], Value::String(session(at_home[0])));
        assert_eq!(away[0].body["prompt_cache_key"], Value::String(session(away[0])));
        if official {
            assert_eq!(session(at_home[0]), official_thread, "the home account gets the caller's own thread id");
        }
        let installation = |r: &fake_codex::RecordedRequest| {
            r.answered_body()["client_metadata"]["x-codex-installation-id"].as_str().unwrap_or_default().to_string()
        };
        assert!(!installation(at_home[0]).is_empty(), "official={official}");
        assert_ne!(
            installation(at_home[0]),
            installation(away[0]),
            "official={official}: one installation per account"
        );
    }
}
