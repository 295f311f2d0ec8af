//! SSE answers: event order, reasoning, tool calls, prompt cache, quota, structured output.

use super::*;

#[tokio::test]
async fn default_text_stream_shape() {
    let (fake, c) = start().await;
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream");
    for name in [
        "x-codex-primary-used-percent",
        "x-codex-primary-window-minutes",
        "x-codex-primary-reset-at",
        "x-codex-secondary-used-percent",
        "x-codex-secondary-window-minutes",
        "x-codex-secondary-reset-at",
        "x-codex-credits-has-credits",
        "x-codex-credits-unlimited",
        "x-request-id",
        "openai-model",
    ] {
        assert!(h.contains_key(name), "missing header {name}");
    }
    assert_eq!(h["x-codex-primary-window-minutes"], "300");
    assert_eq!(h["openai-model"], "gpt-5.4");
    let evs = sse(&r.text().await.unwrap());
    assert_eq!(
        types(&evs),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (ev, data)) in evs.iter().enumerate() {
        assert_eq!(data["type"], json!(ev));
        assert_eq!(data["sequence_number"], json!(i));
    }
    assert_eq!(text_of(&evs), "Hello from fake-codex. You said: hi");
    let done = &evs[8].1;
    assert_eq!(done["text"], "Hello from fake-codex. You said: hi");
    let resp = completed(&evs);
    assert_eq!(resp["status"], "completed");
    assert_eq!(resp["output"], json!([]), "completed.output is empty by default");
    assert!(resp["id"].as_str().unwrap().starts_with("resp_"));
    let u = &resp["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(u["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap()
    );
    let item = &done_items(&evs)[0];
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["content"][0]["type"], "output_text");
    // completed_output fills response.completed.output.
    fake.enqueue(None, serde_json::from_value(json!({"kind": "text", "text": "x", "completed_output": true})).unwrap());
    let evs = events(&fake, &c, &body()).await;
    assert_eq!(completed(&evs)["output"][0]["content"][0]["text"], "x");
}

fn reasoning_body() -> Value {
    let mut b = body();
    b["reasoning"] = json!({"effort": "high", "summary": "auto"});
    b["include"] = json!(["reasoning.encrypted_content"]);
    b
}

#[tokio::test]
async fn reasoning_items_round_trip() {
    let (fake, c) = start().await;
    let evs = events(&fake, &c, &reasoning_body()).await;
    let items = done_items(&evs);
    assert_eq!(items[0]["type"], "reasoning");
    assert!(items[0]["id"].as_str().unwrap().starts_with("rs_"));
    assert!(!items[0]["summary"][0]["text"].as_str().unwrap().is_empty());
    let enc = items[0]["encrypted_content"].as_str().unwrap().to_string();
    assert!(types(&evs).contains(&"response.reasoning_summary_text.delta"));
    assert!(completed(&evs)["usage"]["output_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0);
    // Without include: no reasoning item.
    let mut b = reasoning_body();
    b["include"] = json!([]);
    assert_eq!(done_items(&events(&fake, &c, &b).await).len(), 1);
    // Round trip accepted unmodified, refused when modified or sent for another account.
    let mut next = reasoning_body();
    next["input"].as_array_mut().unwrap().push(items[0].clone());
    next["input"].as_array_mut().unwrap().push(json!({"role": "user", "content": "again"}));
    assert_eq!(post(&fake, &c, &next).await.status(), 200);
    let other = fake.add_account(AccountSpec::default());
    let r = post(&fake, &other, &next).await;
    assert_eq!(r.status(), 400);
    let mut tampered = next.clone();
    tampered["input"][1]["encrypted_content"] = json!(format!("{}x", &enc[..enc.len() - 2]));
    assert_eq!(post(&fake, &c, &tampered).await.status(), 400);
    // reasoning_then_text emits the item even without reasoning in the request.
    fake.enqueue(Some(&c.account_id), Scenario::reasoning_then_text("thinking", "answer"));
    let evs = events(&fake, &c, &body()).await;
    let items = done_items(&evs);
    assert_eq!(items[0]["summary"][0]["text"], "thinking");
    assert_eq!(items[1]["content"][0]["text"], "answer");
}

#[tokio::test]
async fn tool_calls_stream_arguments() {
    let (fake, c) = start().await;
    let args = json!({"cmd": "echo hi", "workdir": "/tmp", "timeout_ms": 1000});
    fake.enqueue(None, Scenario::tool_call("exec_command", args.clone()));
    let evs = events(&fake, &c, &body()).await;
    let deltas: String = evs
        .iter()
        .filter(|(e, _)| e == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert!(evs.iter().filter(|(e, _)| e == "response.function_call_arguments.delta").count() > 1);
    let done = evs.iter().find(|(e, _)| e == "response.function_call_arguments.done").unwrap();
    assert_eq!(deltas, done.1["arguments"].as_str().unwrap());
    let item = &done_items(&evs)[0];
    assert_eq!(item["arguments"].as_str().unwrap(), deltas);
    assert_eq!(serde_json::from_str::<Value>(&deltas).unwrap(), args);
    assert!(item["call_id"].as_str().unwrap().starts_with("call_"));
    // Send the result back: the default reply reports it.
    let mut b = body();
    let call = item.clone();
    b["input"].as_array_mut().unwrap().push(call.clone());
    b["input"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "hi\n"}));
    assert_eq!(text_of(&events(&fake, &c, &b).await), "Tool result: hi\n");
    // Parallel calls and the <<fake>> directive.
    let mut b = body();
    b["input"][0]["content"][0]["text"] = json!(
        r#"go <<fake {"kind":"tool_calls","calls":[{"name":"a","arguments":{}},{"name":"b","arguments":"{\"x\":1}"}]}>>"#
    );
    let items = done_items(&events(&fake, &c, &b).await);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["arguments"], "{\"x\":1}");
    assert_ne!(items[0]["call_id"], items[1]["call_id"]);
}

fn cached(evs: &[(String, Value)]) -> u64 {
    completed(evs)["usage"]["input_tokens_details"]["cached_tokens"].as_u64().unwrap()
}

#[tokio::test]
async fn prompt_cache_per_account_and_key() {
    let (fake, c) = start().await;
    let other = fake.add_account(AccountSpec::default());
    let mut b = body();
    b["instructions"] = json!("long instructions ".repeat(100));
    b["prompt_cache_key"] = json!("conv-1");
    assert_eq!(cached(&events(&fake, &c, &b).await), 0);
    let mut b2 = b.clone();
    b2["input"].as_array_mut().unwrap().push(json!({"role": "user", "content": "more"}));
    let evs = events(&fake, &c, &b2).await;
    let hit = cached(&evs);
    assert!(hit > 400, "cached {hit}");
    assert!(hit < completed(&evs)["usage"]["input_tokens"].as_u64().unwrap());
    // Another account, another key, or no key: nothing cached.
    assert_eq!(cached(&events(&fake, &other, &b2).await), 0);
    let mut k2 = b2.clone();
    k2["prompt_cache_key"] = json!("conv-2");
    assert_eq!(cached(&events(&fake, &c, &k2).await), 0);
    let mut nokey = b2.clone();
    nokey.as_object_mut().unwrap().shift_remove("prompt_cache_key");
    assert_eq!(cached(&events(&fake, &c, &nokey).await), 0);
    // Changed instructions break the prefix.
    let mut changed = b2.clone();
    changed["instructions"] = json!("different");
    assert_eq!(cached(&events(&fake, &c, &changed).await), 0);
}

#[tokio::test]
async fn quota_exhaustion() {
    let (fake, c) = start().await;
    fake.set_quota_cost(&c.account_id, 50.0);
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.headers()["x-codex-primary-used-percent"], "50");
    r.text().await.unwrap();
    assert_eq!(post(&fake, &c, &body()).await.status(), 200);
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 429);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["type"], "usage_limit_reached");
    assert_eq!(j["error"]["plan_type"], "plus");
    assert!(j["error"]["resets_at"].as_i64().unwrap() > 0);
    let usage: Value = client()
        .get(format!("{}/wham/usage", fake.chatgpt_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["rate_limit"]["limit_reached"], true);
    assert_eq!(usage["rate_limit"]["primary_window"]["used_percent"], 100.0);
    assert_eq!(usage["rate_limit"]["secondary_window"]["limit_window_seconds"], 604800);
    // An explicit reset time is reported; a past one rolls the window.
    let soon = fake_codex::tokens::now_secs() + 120;
    fake.set_quota(&c.account_id, 100.0, 0.0, Some(soon));
    let j: Value = post(&fake, &c, &body()).await.json().await.unwrap();
    assert_eq!(j["error"]["resets_at"], soon);
    fake.set_quota(&c.account_id, 100.0, 0.0, Some(soon - 500));
    fake.set_quota_cost(&c.account_id, 0.0);
    assert_eq!(post(&fake, &c, &body()).await.status(), 200);
    // The usage_limit scenario.
    fake.enqueue(None, Scenario::usage_limit(30));
    let j: Value = post(&fake, &c, &body()).await.json().await.unwrap();
    assert_eq!(j["error"]["resets_in_seconds"].as_i64().unwrap() / 10, 3);
}

/// Check `value` against the subset of JSON Schema used below.
fn conforms(value: &Value, schema: &Value, root: &Value) -> bool {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return conforms(value, root.pointer(&r[1..]).unwrap(), root);
    }
    if let Some(e) = schema.get("enum") {
        return e.as_array().unwrap().contains(value);
    }
    if let Some(any) = schema.get("anyOf") {
        return any.as_array().unwrap().iter().any(|s| conforms(value, s, root));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let o = value.as_object().unwrap();
            schema["required"].as_array().into_iter().flatten().all(|k| o.contains_key(k.as_str().unwrap()))
                && schema["properties"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, s)| o.get(k).is_none_or(|v| conforms(v, s, root)))
        }
        Some("array") => {
            value.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|v| conforms(v, &schema["items"], root)))
        }
        Some("string") => value.is_string(),
        Some("integer") => value.as_i64().is_some_and(|n| n >= schema["minimum"].as_i64().unwrap_or(i64::MIN)),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("null") => value.is_null(),
        _ => true,
    }
}

#[tokio::test]
async fn json_schema_output_is_valid() {
    let (fake, c) = start().await;
    let schema = json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "priority": {"type": "integer", "minimum": 3},
            "status": {"enum": ["open", "closed"]},
            "owner": {"$ref": "#/$defs/person"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "number"}}, "required": ["name", "weight"], "additionalProperties": false}},
            "parent": {"anyOf": [{"type": "string"}, {"type": "null"}]}
        },
        "required": ["title", "priority", "status", "owner", "tags", "parent"],
        "additionalProperties": false,
        "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}, "admin": {"type": "boolean"}}, "required": ["name", "admin"]}}
    });
    let mut b = body();
    b["text"] = json!({"format": {"type": "json_schema", "name": "ticket", "schema": schema, "strict": true}});
    let out: Value = serde_json::from_str(&text_of(&events(&fake, &c, &b).await)).unwrap();
    assert!(conforms(&out, &schema, &schema), "{out}");
    assert_eq!(out["priority"], 3);
    b["text"] = json!({"format": {"type": "json_object"}});
    let out: Value = serde_json::from_str(&text_of(&events(&fake, &c, &b).await)).unwrap();
    assert!(out.is_object());
}
