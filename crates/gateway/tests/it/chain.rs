//! Long sessions over the upstream WebSocket (issue 61): a turn that continues the conversation on the same
//! connection goes as the official client sends it, `previous_response_id` and only the new items, whatever
//! dialect the client speaks and resends its whole history in; anything else (a changed earlier message, a
//! backend that lost the response) goes whole, and the client sees no difference.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, start};

const WEBSOCKET: &str = "[upstream]\ntransport = \"websocket\"\n";

async fn env() -> TestEnv {
    start(Setup { config_toml: Some(WEBSOCKET.into()), ..Setup::default() }).await
}

/// The size of each `response.create` message the fake received, and whether it chained.
fn sent(env: &TestEnv) -> Vec<(usize, bool)> {
    env.fake
        .ws_messages()
        .iter()
        .filter(|m| m["type"] == "response.create")
        .map(|m| (m.to_string().len(), m.get("previous_response_id").is_some_and(|p| !p.is_null())))
        .collect()
}

async fn chat(env: &TestEnv, messages: &Value) -> String {
    let body = json!({"model": "gpt-5.4", "messages": messages, "user": "conversation-1"});
    let (status, _, text) = env.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{text}");
    json(&text)["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_chat_clients_later_turns_send_only_what_is_new() {
    let env = env().await;
    let long = "a long first message ".repeat(3000);
    let mut messages = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": long}]);
    for turn in 2..=4 {
        let answer = chat(&env, &messages).await;
        let list = messages.as_array_mut().unwrap_or_else(|| panic!("an array"));
        list.push(json!({"role": "assistant", "content": answer}));
        list.push(json!({"role": "user", "content": format!("turn {turn}")}));
    }
    chat(&env, &messages).await;
    let sent = sent(&env);
    assert_eq!(sent.len(), 4, "{sent:?}");
    let first = sent[0].0;
    assert!(first > 60_000 && !sent[0].1, "{sent:?}");
    for (size, chained) in &sent[1..] {
        assert!(*chained, "a later turn chains: {sent:?}");
        assert!(*size * 10 <= first, "a later turn sends at most 10% of the first's bytes: {sent:?}");
    }
    // The backend had the whole conversation: its last answer echoes the last message.
    let last = env.fake.requests_to("/codex/responses").pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(last.body["input"].as_array().map(Vec::len), Some(1), "only the new message: {}", last.body["input"]);
}

#[tokio::test]
async fn an_edited_history_or_a_backend_that_lost_the_response_gets_the_whole_input() {
    let env = env().await;
    let mut messages = json!([{"role": "user", "content": "first"}]);
    let answer = chat(&env, &messages).await;
    if let Some(l) = messages.as_array_mut() {
        l.extend([json!({"role": "assistant", "content": answer}), json!({"role": "user", "content": "second"})]);
    }
    chat(&env, &messages).await;
    // The client changed an earlier message: nothing to continue.
    messages[0]["content"] = json!("first, edited");
    chat(&env, &messages).await;
    let chained: Vec<bool> = sent(&env).iter().map(|s| s.1).collect();
    assert_eq!(chained, [false, true, false]);
    // The backend does not hold the response any more: the turn goes whole on a new connection, and the client
    // gets its answer.
    let answer = chat(&env, &messages).await;
    let list = messages.as_array_mut().unwrap_or_else(|| panic!("an array"));
    list.push(json!({"role": "assistant", "content": answer}));
    list.push(json!({"role": "user", "content": "third"}));
    env.fake.set_ws_forget_responses(true);
    let opened = env.fake.ws_connections_opened();
    let answer = chat(&env, &messages).await;
    assert!(answer.contains("third"), "{answer}");
    let tail: Vec<bool> = sent(&env).iter().rev().take(2).map(|s| s.1).collect();
    assert_eq!(tail, [false, true], "the chained message was refused, then the whole input went");
    assert_eq!(env.fake.ws_connections_opened(), opened + 1, "on a new connection");
}

#[tokio::test]
async fn an_anthropic_clients_thinking_history_continues_the_chain() {
    let env = env().await;
    let ask = |messages: &Value| {
        json!({"model": "gpt-5.4", "max_tokens": 1000, "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": messages, "metadata": {"user_id": "session-9"}})
    };
    let mut messages = json!([{"role": "user", "content": "think about it"}]);
    let (status, _, text) = env.post("/v1/messages", &ask(&messages)).await;
    assert_eq!(status, 200, "{text}");
    // The client resends the answer's blocks as it got them (thinking with its signature, then the text).
    let content = json(&text)["content"].clone();
    if let Some(l) = messages.as_array_mut() {
        l.extend([json!({"role": "assistant", "content": content}), json!({"role": "user", "content": "and then?"})]);
    }
    let (status, _, text) = env.post("/v1/messages", &ask(&messages)).await;
    assert_eq!(status, 200, "{text}");
    let chained: Vec<bool> = sent(&env).iter().map(|s| s.1).collect();
    assert_eq!(chained, [false, true], "{:?}", env.fake.ws_messages());
}
