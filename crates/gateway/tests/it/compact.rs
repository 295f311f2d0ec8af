//! Remote compaction (issue 25): `POST /v1/responses/compact` goes to the backend's compact endpoint on the
//! account that holds the conversation, and the compaction item comes back and goes on untouched.

use serde_json::{Value, json};

use crate::harness::{Setup, json, start};

fn pooled() -> Setup {
    Setup { accounts: 2, store_accounts: true, linked: false, ..Setup::default() }
}

#[tokio::test]
async fn compaction_runs_on_the_conversations_account_and_its_item_round_trips() {
    let env = start(pooled()).await;
    let key = "conv-compact-1";
    let first = json!({"model":"gpt-5.4","input":"remember the number 7","prompt_cache_key":key});
    let (status, _, text) = env.post("/v1/responses", &first).await;
    assert_eq!(status, 200, "{text}");
    let owner = env.fake.requests_to("/responses").last().and_then(|r| r.account_id.clone());

    // What the Codex CLI sends (codex-rs CompactionInput): no stream, store or include.
    let compact = json!({"model":"gpt-5.4","instructions":"","tools":[],"parallel_tool_calls":true,
        "prompt_cache_key":key,
        "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"remember the number 7"}]},
                 {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]}]});
    let (status, h, text) = env.post("/v1/responses/compact", &compact).await;
    assert_eq!(status, 200, "{text}");
    assert!(h.get("x-codex-primary-used-percent").is_some(), "the account's limit headers: {h:?}");
    let v = json(&text);
    let output = v["output"].as_array().cloned().unwrap_or_default();
    let compactions: Vec<&Value> = output.iter().filter(|i| i["type"] == "compaction").collect();
    assert_eq!(compactions.len(), 1, "exactly one compaction item: {v}");
    let sent = env.fake.requests_to("/responses/compact");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].path, "/backend-api/codex/responses/compact");
    assert_eq!(sent[0].account_id, owner, "compacted on the account holding the conversation");
    assert_eq!(sent[0].body, compact, "the body goes upstream as the client sent it");

    // The next turn carries the compacted history untouched; the fake opens the sealed item for its owner.
    let mut input = output.clone();
    input.push(json!({"type":"message","role":"user","content":[{"type":"input_text","text":"which number?"}]}));
    let next = json!({"model":"gpt-5.4","input":input,"prompt_cache_key":key});
    let (status, _, text) = env.post("/v1/responses", &next).await;
    assert_eq!(status, 200, "{text}");
    let up = env.upstream_bodies().last().cloned().unwrap_or_default();
    let carried = up["input"].as_array().and_then(|i| i.iter().find(|x| x["type"] == "compaction").cloned());
    assert_eq!(carried.as_ref(), Some(compactions[0]), "passed on byte for byte");
}

#[tokio::test]
async fn a_tampered_compaction_item_is_refused_by_the_backend() {
    let env = start(Setup::default()).await;
    let input = json!([{"type":"compaction","encrypted_content":"gAAAAAnot-ours"},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"go on"}]}]);
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":input})).await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn compact_requests_are_checked_in_the_openai_shape() {
    let env = start(Setup::default()).await;
    let (status, _, text) = env.post("/v1/responses/compact", &json!({"model":"gpt-5.4"})).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["param"], "input");
    let (status, _, text) = env.post("/v1/responses/compact", &json!({"input":[]})).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(json(&text)["error"]["param"], "model");
    let (status, _, text) = env.post("/v1/responses/compact", &json!({"model":"no-such-model","input":[]})).await;
    assert_eq!(status, 404, "{text}");
    // fake-codex is as strict as the backend: the compact endpoint is not a stream.
    let (status, _, text) =
        env.post("/v1/responses/compact", &json!({"model":"gpt-5.4","input":[],"stream":true})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("stream"), "{text}");
}
