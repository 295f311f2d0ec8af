//! Strict request validation and authentication of the Responses endpoints.

use super::*;

/// An edit of a valid body that makes it invalid.
type Mutation = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn strict_rejections() {
    let (fake, c) = start().await;
    for field in
        ["max_output_tokens", "temperature", "top_p", "metadata", "previous_response_id", "user", "frequency_penalty"]
    {
        let mut b = body();
        b[field] = json!(1);
        expect_400(&fake, &c, &b, &format!("Unsupported parameter: {field}")).await;
    }
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|b| b["store"] = json!(true)), "Store must be set to false"),
        (
            Box::new(|b| {
                b.as_object_mut().unwrap().shift_remove("store");
            }),
            "Store must be set to false",
        ),
        (Box::new(|b| b["stream"] = json!(false)), "Stream must be set to true"),
        (Box::new(|b| b["instructions"] = Value::Null), "Instructions are required"),
        (Box::new(|b| b["input"] = json!([{"role": "system", "content": "x"}])), "System messages are not allowed"),
        (
            Box::new(|b| b["input"] = json!([{"type": "function_call_output", "call_id": "c1", "output": "x"}])),
            "No tool call found for function call output with call_id c1",
        ),
        (
            Box::new(|b| {
                b["input"] = json!([{"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"}])
            }),
            "No tool output found for function call c2",
        ),
        (
            Box::new(
                |b| b["input"] = json!([{"type": "function_call", "call_id": "c3", "name": "f", "arguments": {}}, {"type": "function_call_output", "call_id": "c3", "output": "x"}]),
            ),
            "input[0].arguments",
        ),
        (
            Box::new(|b| {
                b["tools"] = json!([{"type": "function", "name": "f", "parameters": {}, "defer_loading": true}])
            }),
            "Unknown parameter: 'tools[0].defer_loading'",
        ),
        (
            Box::new(|b| b["tools"] = json!([{"type": "function", "name": "f", "input_schema": {}}])),
            "Unknown parameter: 'tools[0].input_schema'",
        ),
        (Box::new(|b| b["reasoning"] = json!({"effort": "max"})), "Invalid value: 'max'"),
        (Box::new(|b| b["input"] = json!([{"type": "item_reference", "id": "msg_1"}])), "item_reference"),
        (
            Box::new(|b| b["model"] = json!("gpt-4o")),
            "The 'gpt-4o' model is not supported when using Codex with a ChatGPT account.",
        ),
        (Box::new(|b| b["tool_choice"] = json!({"type": "function", "name": "nope"})), "Tool choice 'nope' not found"),
        (Box::new(|b| b["text"] = json!({"format": {"type": "json_schema", "schema": {}}})), "text.format.name"),
        (
            Box::new(|b| b["input"] = json!([{"role": "user", "content": [{"type": "output_text", "text": "x"}]}])),
            "Invalid value: 'output_text'",
        ),
        (
            Box::new(|b| {
                b["input"] =
                    json!([{"role": "user", "content": [{"type": "input_text", "text": "x", "cache_control": {}}]}])
            }),
            "cache_control",
        ),
        (
            Box::new(|b| {
                b["input"] =
                    json!([{"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}])
            }),
            "image_url",
        ),
        (Box::new(|b| b["input"] = json!([{"type": "reasoning", "id": "rs_1"}])), "input[0].summary"),
        (Box::new(|b| b["input"] = json!([{"type": "reasoning"}])), "input[0].summary"),
        (
            Box::new(|b| {
                b["input"] = json!([{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "forged"}])
            }),
            "could not be verified",
        ),
    ];
    for (mutate, needle) in &cases {
        let mut b = body();
        mutate(&mut b);
        expect_400(&fake, &c, &b, needle).await;
    }
    // priority is fine for gpt-5.4 but not for the mini model.
    let mut b = body();
    b["service_tier"] = json!("priority");
    assert_eq!(post(&fake, &c, &b).await.status(), 200);
    b["model"] = json!("gpt-5.4-mini");
    expect_400(&fake, &c, &b, "priority").await;
    // A rejected request does not consume a queued scenario.
    fake.enqueue(None, Scenario::text("queued"));
    let mut bad = body();
    bad["temperature"] = json!(0.2);
    expect_400(&fake, &c, &bad, "temperature").await;
    assert_eq!(text_of(&events(&fake, &c, &body()).await), "queued");
    // Valid rich input is accepted: tool round trip, images, assistant text, developer message.
    let mut rich = body();
    rich["input"] = json!([
        {"type": "message", "role": "developer", "content": "be brief", "id": "m0"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c9", "name": "f", "arguments": "{}", "status": "completed"},
        {"type": "function_call_output", "call_id": "c9", "output": [{"type": "input_text", "text": "out"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}, {"type": "input_image", "image_url": "https://example.com/b.png"}]}
    ]);
    rich["tools"] = json!([{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": false}, {"type": "web_search"}, {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}}]);
    rich["tool_choice"] = json!({"type": "function", "name": "f"});
    rich["reasoning"] = json!({"effort": "xhigh", "summary": "auto"});
    rich["text"] = json!({"verbosity": "low"});
    rich["client_metadata"] = json!({"a": "b"});
    let evs = events(&fake, &c, &rich).await;
    assert!(text_of(&evs).ends_with("[saw 2 image(s)]"), "{}", text_of(&evs));
}

#[tokio::test]
async fn auth_failures() {
    let (fake, c) = start().await;
    let other = fake.add_account(AccountSpec::default());
    let send = |token: &str, account: Option<&str>, originator: bool| {
        let mut rb = client().post(format!("{}/responses", fake.codex_base_url())).bearer_auth(token).json(&body());
        if let Some(a) = account {
            rb = rb.header("ChatGPT-Account-ID", a);
        }
        if originator {
            rb = rb.header("originator", "codex_cli_rs");
        }
        rb.send()
    };
    assert_eq!(send("garbage", Some(&c.account_id), true).await.unwrap().status(), 401);
    let r = send(&c.access_token, Some(&other.account_id), true).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(send(&c.access_token, None, true).await.unwrap().status(), 403);
    let r = send(&c.access_token, Some(&c.account_id), false).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], "missing originator");
    assert_eq!(send(&c.access_token, Some(&c.account_id), true).await.unwrap().status(), 200);
    // API-key mode.
    fake.add_api_key("sk-test");
    let api = |key: &str, b: Value| {
        client().post(format!("{}/responses", fake.openai_api_base())).bearer_auth(key).json(&b).send()
    };
    assert_eq!(api("sk-nope", body()).await.unwrap().status(), 401);
    let r = api("sk-test", body()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("response.completed"));
    let mut b = body();
    b["max_output_tokens"] = json!(5);
    let r = api("sk-test", b).await.unwrap();
    assert_eq!(r.status(), 400);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["param"], "max_output_tokens");
    let models: Value = client()
        .get(format!("{}/models", fake.openai_api_base()))
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == "gpt-5.5"));
    // Recorded with the account for authenticated calls.
    let recs = fake.requests_to("/backend-api/codex/responses");
    assert_eq!(recs.last().unwrap().account_id.as_deref(), Some(c.account_id.as_str()));
    assert_eq!(recs.last().unwrap().status, 200);
    assert_eq!(recs[0].status, 401);
}

/// The official client never sends a reasoning item's `id` (codex-rs `Reasoning.id` is `skip_serializing`) and
/// the AI SDK's Responses provider (opencode) replays `{type, encrypted_content, summary}`: the fake refused
/// those items, stricter than the real backend.
#[tokio::test]
async fn reasoning_items_without_id_are_accepted() {
    let (fake, c) = start().await;
    let mut first = body();
    first["reasoning"] = json!({"effort": "low"});
    first["include"] = json!(["reasoning.encrypted_content"]);
    let evs = events(&fake, &c, &first).await;
    let mut reasoning = done_items(&evs).into_iter().find(|i| i["type"] == "reasoning").unwrap();
    reasoning.as_object_mut().unwrap().shift_remove("id");
    let mut second = first.clone();
    second["input"] = json!([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        reasoning,
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "again"}]}
    ]);
    assert_eq!(post(&fake, &c, &second).await.status(), 200);
    // Still checked: an id that is not a string, and encrypted content the fake did not issue.
    let mut b = body();
    b["input"] = json!([{"type": "reasoning", "id": 7, "summary": []}]);
    expect_400(&fake, &c, &b, "input[0].id").await;
    b["input"] = json!([{"type": "reasoning", "summary": [], "encrypted_content": "forged"}]);
    expect_400(&fake, &c, &b, "could not be verified").await;
}

/// `reasoning.context` is accepted only by models whose catalog entry has `supports_reasoning_context`.
#[tokio::test]
async fn reasoning_context_only_for_models_that_support_it() {
    let (fake, c) = start().await;
    let mut b = body();
    b["reasoning"] = json!({"effort": "low", "context": "all_turns"});
    expect_400(&fake, &c, &b, "Unknown parameter: 'reasoning.context'").await;
    let pro = fake.add_account(AccountSpec { plan: "pro".into(), ..AccountSpec::default() });
    let catalog: Value = client()
        .get(format!("{}/models?client_version=0.169.0", fake.codex_base_url()))
        .bearer_auth(&pro.access_token)
        .header("ChatGPT-Account-ID", &pro.account_id)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = |slug: &str| catalog["models"].as_array().unwrap().iter().find(|m| m["slug"] == slug).cloned();
    assert_eq!(entry("gpt-5.6-sol").unwrap()["supports_reasoning_context"], true);
    assert_eq!(entry("gpt-5.4").unwrap()["supports_reasoning_context"], false);
    b["model"] = json!("gpt-5.6-sol");
    assert_eq!(post(&fake, &pro, &b).await.status(), 200);
    b["reasoning"]["context"] = json!("everything");
    expect_400(&fake, &pro, &b, "Invalid value: 'everything'").await;
    // The plus plan does not see the model at all.
    b["reasoning"]["context"] = json!("auto");
    expect_400(&fake, &c, &b, "not supported when using Codex with a ChatGPT account").await;
}

/// The Codex CLI 0.169 sends `internal_chat_message_metadata_passthrough` on messages, reasoning items, function
/// calls and their outputs to its built-in provider (the backend): accepted there as an object, refused anywhere
/// else (the fake refused it on messages and the real CLI could not run through it).
#[tokio::test]
async fn metadata_passthrough_only_where_the_official_client_sends_it() {
    let (fake, c) = start().await;
    let md = json!({"content_item_kinds": ["user.text"], "turn_id": "t1"});
    let mut b = body();
    b["input"] = json!([
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}],
         "internal_chat_message_metadata_passthrough": md},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}",
         "internal_chat_message_metadata_passthrough": md},
        {"type": "function_call_output", "call_id": "c1", "output": "ok",
         "internal_chat_message_metadata_passthrough": md},
        {"type": "reasoning", "summary": [], "internal_chat_message_metadata_passthrough": md}
    ]);
    assert_eq!(post(&fake, &c, &b).await.status(), 200);
    b["input"][0]["internal_chat_message_metadata_passthrough"] = json!("x");
    expect_400(&fake, &c, &b, "input[0].internal_chat_message_metadata_passthrough").await;
    b["input"] = json!([{"type": "message", "role": "user", "content": "hi"}]);
    b["internal_chat_message_metadata_passthrough"] = md.clone();
    expect_400(&fake, &c, &b, "internal_chat_message_metadata_passthrough").await;
    let mut b = body();
    b["input"] = json!([{"type": "custom_tool_call_output", "call_id": "c9", "output": "x",
        "internal_chat_message_metadata_passthrough": md}]);
    expect_400(&fake, &c, &b, "input[0].internal_chat_message_metadata_passthrough").await;
}

/// Compaction v2: a `/responses` request whose input ends with `{"type":"compaction_trigger"}` is answered with
/// exactly one sealed `compaction` item, which a later request carries back untouched; the marker anywhere but
/// last is refused.
#[tokio::test]
async fn a_compaction_trigger_yields_exactly_one_compaction_item() {
    let (fake, c) = start().await;
    let user = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]});
    let mut b = body();
    b["input"] = json!([user, {"type": "compaction_trigger"}]);
    let evs = events(&fake, &c, &b).await;
    let items = done_items(&evs);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["type"], "compaction");
    let sealed = items[0]["encrypted_content"].as_str().unwrap().to_string();
    let mut next = body();
    next["input"] = json!([user, {"type": "compaction", "encrypted_content": sealed}, user]);
    assert_eq!(post(&fake, &c, &next).await.status(), 200);
    next["input"][1]["encrypted_content"] = json!(format!("{sealed}x"));
    expect_400(&fake, &c, &next, "could not be verified").await;
    b["input"] = json!([{"type": "compaction_trigger"}, user]);
    expect_400(&fake, &c, &b, "compaction_trigger must be the last input item").await;
}

/// Responses Lite (`/_fake/models/{slug}/responses-lite`): the catalog flags the model, and only then are the tools
/// taken as a leading `additional_tools` developer item (their names count for `tool_choice`) with
/// `reasoning.context`, as the official client sends them to such a model; for any other model the item is refused.
#[tokio::test]
async fn additional_tools_only_for_a_model_the_catalog_flags_lite() {
    let (fake, c) = start().await;
    let mut b = body();
    b.as_object_mut().unwrap().shift_remove("tools");
    let tools = json!([{"type": "namespace", "name": "functions", "description": "",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": false}]}]);
    let item = json!({"type": "additional_tools", "id": "at_1", "role": "developer", "tools": tools});
    b["input"].as_array_mut().unwrap().insert(0, item);
    b["reasoning"] = json!({"effort": "low", "context": "all_turns"});
    b["tool_choice"] = json!({"type": "function", "name": "f"});
    expect_400(&fake, &c, &b, "Invalid value: 'additional_tools'").await;
    let entry =
        |catalog: &Value| catalog["models"].as_array().unwrap().iter().find(|m| m["slug"] == "gpt-5.4").cloned();
    let catalog = |c: &AccountCreds| {
        client()
            .get(format!("{}/models?client_version=0.169.0", fake.codex_base_url()))
            .bearer_auth(&c.access_token)
            .header("ChatGPT-Account-ID", &c.account_id)
            .send()
    };
    let before: Value = catalog(&c).await.unwrap().json().await.unwrap();
    assert_eq!(entry(&before).unwrap()["use_responses_lite"], false);
    fake.set_responses_lite("gpt-5.4", true);
    let after: Value = catalog(&c).await.unwrap().json().await.unwrap();
    assert_eq!(entry(&after).unwrap()["use_responses_lite"], true);
    let r = post(&fake, &c, &b).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    b["input"][0]["role"] = json!("user");
    expect_400(&fake, &c, &b, "additional_tools must have the developer role").await;
    b["input"][0]["role"] = json!("developer");
    b["input"][0]["tools"][0]["tools"][0]["parameters"] = json!("none");
    expect_400(&fake, &c, &b, "input[0].tools[0]").await;
}

/// A `configuration_update` item is taken exactly as the official client lays it (codex-rs
/// `ResponseItem::ConfigurationUpdate`: the type and the reasoning effort, no `id`), for a model the catalog
/// flags, and never right after another one (the official client replaces an adjacent update instead).
#[tokio::test]
async fn configuration_updates_as_the_official_client_lays_them() {
    let (fake, c) = start().await;
    let user = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]});
    let update = |effort: &str| json!({"type": "configuration_update", "reasoning": {"effort": effort}});
    let mut b = body();
    b["input"] = json!([user, update("high")]);
    expect_400(&fake, &c, &b, "not supported with this model").await;
    fake.set_effort_updates("gpt-5.4", true);
    assert_eq!(post(&fake, &c, &b).await.status(), 200);
    b["input"] = json!([user, update("high"), user, update("low")]);
    assert_eq!(post(&fake, &c, &b).await.status(), 200);
    b["input"] = json!([user, update("high"), update("low")]);
    expect_400(&fake, &c, &b, "may not follow another configuration_update").await;
    let mut with_id = update("high");
    with_id["id"] = json!("cu_1");
    b["input"] = json!([user, with_id]);
    expect_400(&fake, &c, &b, "input[1].id").await;
}
