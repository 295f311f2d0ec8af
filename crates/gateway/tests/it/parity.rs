//! The upstream request as Codex CLI 0.171 sends it (issue 72): `text.verbosity` from the model's catalog when
//! the client chose none, the client's new top-level fields passed on and never invented, a message over the
//! upstream WebSocket's advertised size sent over HTTP instead (never an account's failure), and an effort change
//! inside a conversation sent as a `configuration_update` item so that the cached prompt survives it.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, json, start};

const WEBSOCKET: &str = "[upstream]\ntransport = \"websocket\"\n";

/// The last Responses request the fake received.
fn last_upstream(env: &TestEnv) -> Value {
    env.fake.requests_to("/codex/responses").pop().map(|r| r.body).unwrap_or(Value::Null)
}

async fn answered(env: &TestEnv, body: &Value) -> Value {
    let (status, _, text) = env.post("/v1/responses", body).await;
    assert_eq!(status, 200, "{text}");
    json(&text)
}

#[tokio::test]
async fn the_catalogs_default_verbosity_goes_when_the_client_chose_none() {
    let env = start(Setup::default()).await;
    // The catalog is read when the account is first used; the model list reads it too.
    env.get_json("/v1/models").await;
    answered(&env, &json!({"model": "gpt-5.4", "input": "hi"})).await;
    // fake-codex's entries say `support_verbosity: true`, `default_verbosity: "low"` (as the real catalog does).
    assert_eq!(last_upstream(&env)["text"]["verbosity"], "low", "{}", last_upstream(&env));
    // The client's own choice stays, and the rest of `text` with it.
    let format = json!({"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": false});
    answered(&env, &json!({"model": "gpt-5.4", "input": "hi", "text": {"verbosity": "high", "format": format}})).await;
    let sent = last_upstream(&env);
    assert_eq!(sent["text"]["verbosity"], "high");
    assert_eq!(sent["text"]["format"]["name"], "x");
}

#[tokio::test]
async fn request_country_and_the_other_new_fields_pass_on_and_are_never_invented() {
    let env = start(Setup::default()).await;
    answered(&env, &json!({"model": "gpt-5.4", "input": "hi"})).await;
    let plain = last_upstream(&env);
    for field in ["request_country", "access_programs", "prompt_cache_options"] {
        assert!(plain.get(field).is_none(), "{field} invented: {plain}");
    }
    let body = json!({"model": "gpt-5.4", "input": "hi", "request_country": "DE", "access_programs": ["p1"],
        "prompt_cache_options": {"ttl": "30m"}});
    answered(&env, &body).await;
    let sent = env.fake.requests_to("/codex/responses").pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(sent.body["request_country"], "DE");
    assert_eq!(sent.body["access_programs"], json!(["p1"]));
    assert_eq!(sent.body["prompt_cache_options"]["ttl"], "30m");
    // Their place after `client_metadata` is `identity::ordered`'s (its unit test reads the bytes as written).
    // The backend's own check holds: a country that is not a two-letter code is refused, not fixed.
    let (status, _, text) =
        env.post("/v1/responses", &json!({"model": "gpt-5.4", "input": "hi", "request_country": "Germany"})).await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn a_message_over_the_websockets_advertised_size_goes_over_http_on_the_same_account() {
    let env = start(Setup {
        accounts: 2,
        linked: false,
        store_accounts: true,
        config_toml: Some(WEBSOCKET.into()),
        ..Setup::default()
    })
    .await;
    env.fake.set_ws_max_message(Some(16 * 1024));
    let accounts_before = env.get_json("/admin/accounts").await;
    let turn = |key: &str, text: String| json!({"model": "gpt-5.4", "input": text, "prompt_cache_key": key});
    answered(&env, &turn("big", "x ".repeat(20_000))).await;
    let sent = env.fake.requests_to("/codex/responses");
    assert_eq!(sent.len(), 1, "one request, over HTTP: {:?}", sent.iter().map(|r| &r.http_version).collect::<Vec<_>>());
    assert_ne!(sent[0].http_version, "websocket");
    // The pool knew the limit from the handshake and did not send it: the backend refused nothing.
    assert_eq!(env.fake.ws_messages_too_large(), 0);
    assert!(env.fake.ws_messages().is_empty());
    // The conversation stays on HTTP for a while, as the official client's session does once it fell back; another
    // conversation's small turn still goes over the WebSocket.
    answered(&env, &turn("big", "small".into())).await;
    answered(&env, &turn("other", "small".into())).await;
    let transports: Vec<bool> =
        env.fake.requests_to("/codex/responses").iter().map(|r| r.http_version == "websocket").collect();
    assert_eq!(transports, [false, false, true]);
    // Never the account's failure: no failover (one request above), and both accounts are as they were.
    let statuses =
        |v: &Value| -> Vec<Value> { v.as_array().into_iter().flatten().map(|a| a["status"].clone()).collect() };
    assert_eq!(statuses(&env.get_json("/admin/accounts").await), statuses(&accounts_before));
}

/// The cached share of the input tokens of a conversation of five turns whose effort switches twice (low, low,
/// high, high, medium), the client resending its whole history each turn as every dialect but the official client
/// does.
async fn cached_ratio(env: &TestEnv, key: &str) -> (u64, u64) {
    let mut input: Vec<Value> = Vec::new();
    let (mut cached, mut total) = (0, 0);
    for (i, effort) in ["low", "low", "high", "high", "medium"].into_iter().enumerate() {
        input.push(json!({"role": "user", "content": format!("turn {i}: {}", "context ".repeat(200))}));
        let body = json!({"model": "gpt-5.4", "input": input, "prompt_cache_key": key, "reasoning": {"effort": effort},
            "stream": false});
        let answer = answered(env, &body).await;
        cached += answer["usage"]["input_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
        total += answer["usage"]["input_tokens"].as_u64().unwrap_or(0);
        for item in answer["output"].as_array().into_iter().flatten() {
            if item["type"] == "message" {
                input.push(json!({"role": "assistant", "content": item["content"][0]["text"]}));
            }
        }
    }
    (cached, total)
}

#[tokio::test]
async fn an_effort_change_goes_as_a_configuration_update_and_the_cache_survives() {
    let env = start(Setup::default()).await;
    env.get_json("/v1/models").await;
    // Before: a model the catalog does not flag; each switch rewrites the prompt's first tokens.
    let (before_cached, before_total) = cached_ratio(&env, "conversation-before").await;
    assert!(last_upstream(&env)["input"].as_array().into_iter().flatten().all(|i| i["type"] != "configuration_update"));
    assert_eq!(last_upstream(&env)["reasoning"]["effort"], "medium");
    // After: the catalog says `supports_reasoning_effort_updates`; the catalog is read again on a fresh gateway.
    drop(env);
    let env = start(Setup::default()).await;
    env.fake.set_effort_updates("gpt-5.4", true);
    env.get_json("/v1/models").await;
    let (after_cached, after_total) = cached_ratio(&env, "conversation-after").await;
    let sent: Vec<Value> = env.fake.requests_to("/codex/responses").into_iter().map(|r| r.body).collect();
    let updates = |body: &Value| -> Vec<Value> {
        body["input"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["type"] == "configuration_update")
            .map(|i| i["reasoning"]["effort"].clone())
            .collect()
    };
    // Every request keeps the conversation's first effort; each switch goes once, where it was made, and stays
    // there: in the last request's whole input, or (chained on the upstream WebSocket) in the request that made it.
    assert!(sent.iter().all(|b| b["reasoning"]["effort"] == "low"), "{sent:?}");
    let last = sent.last().cloned().unwrap_or_default();
    if last.get("previous_response_id").is_some_and(|p| p.is_string()) {
        let each: Vec<Vec<Value>> = sent[sent.len() - 5..].iter().map(updates).collect();
        assert_eq!(each, [vec![], vec![], vec![json!("high")], vec![], vec![json!("medium")]], "{sent:?}");
    } else {
        assert_eq!(updates(&last), [json!("high"), json!("medium")], "{last}");
    }
    let before = before_cached as f64 / before_total as f64;
    let after = after_cached as f64 / after_total as f64;
    eprintln!(
        "cached-token ratio of a conversation switching effort twice: before {before_cached}/{before_total} = \
         {before:.3}, after {after_cached}/{after_total} = {after:.3}"
    );
    assert!(after > before + 0.2, "before {before:.3}, after {after:.3}");
}
