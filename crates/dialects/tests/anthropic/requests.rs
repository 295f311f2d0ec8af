//! Golden request translations.

use super::support::*;

// ---------------------------------------------------------------------------------------------------------
// request goldens

#[test]
fn claude_code_request_golden() {
    let body = json!({
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": true,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "{\"device_id\":\"d\",\"session_id\":\"s-1\"}"},
        "temperature": 1,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cch=abc;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "tools": [{
            "name": "Bash", "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
            "cache_control": {"type": "ephemeral"}, "defer_loading": false, "eager_input_streaming": true
        }],
        "messages": [
            {"role": "system", "content": "Today is Monday."},
            {"role": "user", "content": [{"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Listing."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt\nb.txt"},
                {"type": "text", "text": "thanks"}
            ]}
        ]
    });
    let (req, opts) = match decode(body.to_string().as_bytes(), Some("sess-hdr"), &LINEUP) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        Value::Object(req.body),
        json!({
            "instructions": "You are Claude Code.\n\nBe brief.",
            "input": [
                {"type":"message","role":"developer","content":[{"type":"input_text","text":"Today is Monday."}]},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"list files"}]},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Listing."}]},
                {"type":"function_call","call_id":"toolu_1","name":"Bash","arguments":"{\"command\":\"ls\"}"},
                {"type":"function_call_output","call_id":"toolu_1","output":"a.txt\nb.txt"},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"thanks"}]}
            ],
            "tools": [{
                "type":"function","name":"Bash","description":"Run a command",
                "parameters": {"type":"object","properties":{"command":{"type":"string"}},"required":["command"]},
                "strict": false
            }],
            "tool_choice": "auto",
            "parallel_tool_calls": true,
            "reasoning": {"effort":"high","summary":"auto"},
            "include": ["reasoning.encrypted_content"]
        })
    );
    assert_eq!(opts, AnthropicOptions { include_thinking: true });
    assert!(req.stream);
    assert_eq!(req.limits.max_output_tokens, Some(32000));
    assert_eq!(req.model.requested, "claude-sonnet-4-5-20250929");
    assert_eq!(req.model.slug, "gpt-5.4");
    // The header wins over metadata.user_id; both are hashed.
    let key = req.conversation_key.unwrap_or_default();
    assert!(key.starts_with("cc-") && !key.contains("sess-hdr"));
    let (from_meta, _) = dec(body.clone());
    assert_ne!(from_meta.conversation_key, Some(key));
    assert!(from_meta.conversation_key.is_some());
}

#[test]
fn billing_header_does_not_change_the_cache_key() {
    let with = |billing: &str| {
        let mut r = dec(json!({
            "model":"gpt-5.4","max_tokens":10,
            "system":[{"type":"text","text":format!("x-anthropic-billing-header: cch={billing};\nYou are helpful.")}],
            "messages":[{"role":"user","content":"hi"}]
        }))
        .0;
        r.finalize(None);
        // The instructions go upstream as the first developer message (the official client's shape).
        (r.body["input"][0]["content"][0]["text"].clone(), r.body["prompt_cache_key"].clone())
    };
    assert_eq!(with("1"), with("2"));
    assert_eq!(with("1").0, "You are helpful.");
}

#[test]
fn images_and_documents() {
    let input = input_of(with_messages(json!([{"role":"user","content":[
        {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}},
        {"type":"image","source":{"type":"url","url":"https://example.com/a.jpg"}},
        {"type":"document","source":{"type":"text","media_type":"text/plain","data":"hello"},"title":"notes.txt"},
        {"type":"document","source":{"type":"text","media_type":"text/plain","data":"untitled"}},
        {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"},"title":"spec"},
        {"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBER"}},
        {"type":"text","text":"what are these?"}
    ]}])));
    assert_eq!(
        input,
        json!([{"type":"message","role":"user","content":[
            {"type":"input_image","image_url":"data:image/png;base64,iVBOR","detail":"auto"},
            {"type":"input_image","image_url":"https://example.com/a.jpg","detail":"auto"},
            {"type":"input_text","text":"Document: notes.txt\n\nhello"},
            {"type":"input_text","text":"untitled"},
            {"type":"input_file","filename":"spec.pdf","file_data":"data:application/pdf;base64,JVBER"},
            {"type":"input_file","filename":"document.pdf","file_data":"data:application/pdf;base64,JVBER"},
            {"type":"input_text","text":"what are these?"}
        ]}])
    );
    let e = dec_err(with_messages(json!([{"role":"user","content":[
        {"type":"document","source":{"type":"url","url":"https://example.com/a.pdf"}}
    ]}])));
    assert_eq!((e.kind, e.param.as_deref()), (ErrorKind::InvalidRequest, Some("messages[0].content[0].source")));
    assert!(e.message.contains("not supported"), "{}", e.message);
    let e = dec_err(with_messages(json!([{"role":"user","content":[
        {"type":"image","source":{"type":"file","file_id":"file_1"}}
    ]}])));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].source.type"));
}

#[test]
fn tool_results_with_images_errors_orphans_and_missing_results() {
    let input = input_of(with_messages(json!([
        {"role":"user","content":"go"},
        {"role":"assistant","content":[
            {"type":"tool_use","id":"t1","name":"Read","input":{"path":"a.png"}},
            {"type":"tool_use","id":"t2","name":"Bash","input":{}},
            {"type":"tool_use","id":"t3","name":"Bash","input":{"command":"sleep 100"}}
        ]},
        {"role":"user","content":[
            {"type":"text","text":"(interrupted)"},
            {"type":"tool_result","tool_use_id":"t2","is_error":true,"content":[{"type":"text","text":"exit 1"}]},
            {"type":"tool_result","tool_use_id":"t1","content":[
                {"type":"text","text":"the image:"},
                {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}
            ]}
        ]}
    ])));
    assert_eq!(
        input,
        json!([
            {"type":"message","role":"user","content":[{"type":"input_text","text":"go"}]},
            {"type":"function_call","call_id":"t1","name":"Read","arguments":"{\"path\":\"a.png\"}"},
            {"type":"function_call","call_id":"t2","name":"Bash","arguments":"{}"},
            {"type":"function_call","call_id":"t3","name":"Bash","arguments":"{\"command\":\"sleep 100\"}"},
            {"type":"function_call_output","call_id":"t2","output":"[tool error] exit 1"},
            {"type":"function_call_output","call_id":"t1","output":[
                {"type":"input_text","text":"the image:"},
                {"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"auto"}
            ]},
            {"type":"function_call_output","call_id":"t3","output":"(no result)"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"(interrupted)"}]}
        ])
    );
}

#[test]
fn orphan_and_duplicate_tool_results_are_refused() {
    // They went upstream as user text; the Messages API refuses them, and so does every dialect here
    // (docs/parameter-policy.md, "Tool history").
    let call = json!({"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]});
    let orphan = dec_err(with_messages(json!([
        {"role":"user","content":"go"},
        call,
        {"role":"user","content":[
            {"type":"tool_result","tool_use_id":"t1","content":"ok"},
            {"type":"tool_result","tool_use_id":"t9","content":"from nowhere"}
        ]}
    ])));
    assert_eq!(
        (orphan.kind, orphan.param.as_deref()),
        (ErrorKind::InvalidRequest, Some("messages[2].content[1].tool_use_id"))
    );
    assert!(orphan.message.contains("t9"), "{}", orphan.message);
    let duplicate = dec_err(with_messages(json!([
        call,
        {"role":"user","content":[
            {"type":"tool_result","tool_use_id":"t1"},
            {"type":"tool_result","tool_use_id":"t1","content":"again"}
        ]}
    ])));
    assert_eq!(duplicate.param.as_deref(), Some("messages[1].content[1].tool_use_id"));
    // A result two messages after its call no longer answers it: the pending call got its placeholder.
    let late = dec_err(with_messages(json!([
        call,
        {"role":"user","content":"never mind"},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"late"}]}
    ])));
    assert_eq!(late.param.as_deref(), Some("messages[2].content[0].tool_use_id"));
}

#[test]
fn tool_result_variants() {
    let input = input_of(with_messages(json!([
        {"role":"assistant","content":[
            {"type":"tool_use","id":"a","name":"f","input":{}},
            {"type":"tool_use","id":"b","name":"f","input":{}},
            {"type":"tool_use","id":"c","name":"f","input":{}}
        ]},
        {"role":"user","content":[
            {"type":"tool_result","tool_use_id":"a"},
            {"type":"tool_result","tool_use_id":"b","is_error":true,"content":[
                {"type":"image","source":{"type":"url","url":"https://x/y.png"}}
            ]},
            {"type":"tool_result","tool_use_id":"c","content":[{"type":"tool_reference","tool_name":"WebFetch"}]}
        ]}
    ])));
    assert_eq!(
        input,
        json!([
            {"type":"function_call","call_id":"a","name":"f","arguments":"{}"},
            {"type":"function_call","call_id":"b","name":"f","arguments":"{}"},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"a","output":""},
            {"type":"function_call_output","call_id":"b","output":[
                {"type":"input_text","text":"[tool error]"},
                {"type":"input_image","image_url":"https://x/y.png","detail":"auto"}
            ]},
            {"type":"function_call_output","call_id":"c","output":"(tool `WebFetch` is available)"}
        ])
    );
}

#[test]
fn tool_use_at_the_end_and_system_between_call_and_result() {
    // A system message between a call and its result waits until the output is in place.
    let input = input_of(with_messages(json!([
        {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"x":1}}]},
        {"role":"system","content":[{"type":"text","text":"reminder"}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]},
        {"role":"assistant","content":[{"type":"tool_use","id":"t2","name":"f","input":{}}]}
    ])));
    assert_eq!(
        input,
        json!([
            {"type":"function_call","call_id":"t1","name":"f","arguments":"{\"x\":1}"},
            {"type":"function_call_output","call_id":"t1","output":"ok"},
            {"type":"message","role":"developer","content":[{"type":"input_text","text":"reminder"}]},
            {"type":"function_call","call_id":"t2","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"t2","output":"(no result)"}
        ])
    );
}

#[test]
fn tools_and_tool_choice() {
    let base = |tools: Value, choice: Value| json!({"model":"gpt-5.4","max_tokens":1,"messages":[{"role":"user","content":"q"}],"tools":tools,"tool_choice":choice});
    let f = json!({"name":"f","input_schema":{"type":"object","properties":{}},"strict":true,"type":"custom"});
    let ws = json!({"type":"web_search_20250305","name":"web_search","max_uses":5,"allowed_domains":["docs.rs"],
        "blocked_domains":["x.com"],"user_location":{"type":"approximate","city":"Paris","country":"FR"}});
    let (req, _) = dec(base(
        json!([f, ws, {"type":"tool_search_tool_regex_20251119","name":"tool_search"}]),
        json!({"type":"auto","disable_parallel_tool_use":true}),
    ));
    assert_eq!(
        req.body["tools"],
        json!([
            {"type":"function","name":"f","parameters":{"type":"object","properties":{}},"strict":true},
            {"type":"web_search","filters":{"allowed_domains":["docs.rs"]},"user_location":{"type":"approximate","city":"Paris","country":"FR"}}
        ])
    );
    assert_eq!(
        (req.body["tool_choice"].clone(), req.body["parallel_tool_calls"].clone()),
        (json!("auto"), json!(false))
    );
    let choice = |c: Value| {
        let (r, _) = dec(base(
            json!([{"name":"f","input_schema":{"type":"object"}}, {"type":"web_search_20250305","name":"web_search"}]),
            c,
        ));
        (r.body["tool_choice"].clone(), r.body["parallel_tool_calls"].clone())
    };
    assert_eq!(choice(json!({"type":"any"})), (json!("required"), json!(true)));
    assert_eq!(choice(json!({"type":"tool","name":"f"})), (json!({"type":"function","name":"f"}), json!(true)));
    assert_eq!(choice(json!({"type":"tool","name":"web_search"})), (json!("required"), json!(true)));
    assert_eq!(choice(json!({"type":"none"})), (json!("none"), json!(true)));
    assert_eq!(choice(json!({"type":"any","disable_parallel_tool_use":true})), (json!("required"), json!(false)));

    let e = dec_err(base(json!([{"type":"bash_20250124","name":"bash"}]), json!({"type":"auto"})));
    assert_eq!(e.param.as_deref(), Some("tools[0].type"));
    assert!(e.message.contains("bash_20250124") && e.message.contains("`bash`"), "{}", e.message);
    let e = dec_err(base(
        json!([{"type":"text_editor_20250728","name":"str_replace_based_edit_tool"}]),
        json!({"type":"auto"}),
    ));
    assert!(e.message.contains("text_editor_20250728"));
    let e = dec_err(base(json!([f]), json!({"type":"tool","name":"nope"})));
    assert_eq!(e.param.as_deref(), Some("tool_choice.name"));
    let e = dec_err(base(json!([f]), json!({"type":"sometimes"})));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
}

#[test]
fn thinking_and_effort() {
    let r = |extra: Value| {
        let mut body = with_messages(json!([{"role":"user","content":"q"}]));
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        let (req, opts) = dec(body);
        (req.body["reasoning"].clone(), opts.include_thinking)
    };
    assert_eq!(
        r(json!({"thinking":{"type":"enabled","budget_tokens":1024}})),
        (json!({"effort":"low","summary":"auto"}), true)
    );
    assert_eq!(
        r(json!({"thinking":{"type":"enabled","budget_tokens":10000}})),
        (json!({"effort":"medium","summary":"auto"}), true)
    );
    assert_eq!(
        r(json!({"thinking":{"type":"enabled","budget_tokens":31999}})),
        (json!({"effort":"high","summary":"auto"}), true)
    );
    assert_eq!(
        r(json!({"thinking":{"type":"enabled","budget_tokens":64000}})),
        (json!({"effort":"xhigh","summary":"auto"}), true)
    );
    assert_eq!(
        r(json!({"thinking":{"type":"enabled","budget_tokens":100000}})),
        (json!({"effort":"max","summary":"auto"}), true)
    );
    assert_eq!(r(json!({"thinking":{"type":"adaptive"}})), (json!({"summary":"auto"}), true));
    // The client's word; the gateway holds it to what the model's catalog entry lists when it sends it.
    assert_eq!(
        r(json!({"thinking":{"type":"adaptive"},"output_config":{"effort":"max"}})),
        (json!({"effort":"max","summary":"auto"}), true)
    );
    assert_eq!(r(json!({"output_config":{"effort":"ultra"}})), (json!({"effort":"ultra"}), false));
    assert_eq!(r(json!({"thinking":{"type":"disabled"}})), (json!({"effort":"low"}), false));
    assert_eq!(r(json!({})), (json!({}), false));
    assert_eq!(r(json!({"output_config":{"effort":"medium"}})), (json!({"effort":"medium"}), false));
    let e =
        dec_err(json!({"model":"m","messages":[{"role":"user","content":"q"}],"output_config":{"effort":"extreme"}}));
    assert_eq!(e.param.as_deref(), Some("output_config.effort"));

    // Adaptive leaves the effort to the model suffix (then the gateway default) when the request is finalized.
    let (mut req, _) = dec(
        json!({"model":"gpt-5.4-xhigh","max_tokens":1,"thinking":{"type":"adaptive"},"messages":[{"role":"user","content":"q"}]}),
    );
    req.finalize(Some("medium"));
    assert_eq!(req.body["reasoning"], json!({"effort":"xhigh","summary":"auto"}));
    let (mut req, _) = dec(
        json!({"model":"claude-opus-4-1","max_tokens":1,"thinking":{"type":"adaptive"},"messages":[{"role":"user","content":"q"}]}),
    );
    req.finalize(Some("medium"));
    assert_eq!(
        (req.body["model"].clone(), req.body["reasoning"]["effort"].clone()),
        (json!("gpt-5.5"), json!("medium"))
    );
}

#[test]
fn limits_stream_format_and_aliases() {
    let body = json!({"model":"claude-3-5-haiku-latest","max_tokens":5,"stop_sequences":["END",""],"messages":[{"role":"user","content":"q"}],
        "output_config":{"format":{"type":"json_schema","schema":{"type":"object","properties":{"a":{"type":"string"}}}}},
        "top_k":3,"top_p":0.5,"service_tier":"auto","container":"c","mcp_servers":[],"some_future_field":{"x":1}});
    let (req, opts) = dec(body.clone());
    assert!(!req.stream);
    assert_eq!(req.limits.stop_sequences, vec!["END".to_string()]);
    assert_eq!(req.limits.max_output_tokens, Some(5));
    assert_eq!(req.model.slug, "gpt-5.4-mini");
    assert!(!opts.include_thinking);
    assert_eq!(
        req.body["text"],
        json!({"format":{"type":"json_schema","name":"output","schema":{"type":"object","properties":{"a":{"type":"string"}}},"strict":false}})
    );
    for k in [
        "max_tokens",
        "max_output_tokens",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "stop_sequences",
        "service_tier",
    ] {
        assert!(!req.body.contains_key(k), "{k} must not be forwarded");
    }
    let aliases: HashMap<String, String> = [("haiku".to_string(), "gpt-5.3-codex-low".to_string())].into();
    let (req, _) = match decode_with(body.to_string().as_bytes(), None, &aliases, &LINEUP) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!((req.model.slug.as_str(), req.model.effort.as_deref()), ("gpt-5.3-codex", Some("low")));
    assert_eq!(req.model.requested, "claude-3-5-haiku-latest");
    assert_eq!(anthropic::resolve_model("gpt-5.4-high", &aliases, &LINEUP).slug, "gpt-5.4");
}

#[test]
fn bad_requests_name_the_field() {
    let e = match decode(b"{not json", None, &LINEUP) {
        Err(e) => e,
        Ok(_) => panic!("expected error"),
    };
    assert_eq!(e.code.as_deref(), Some("invalid_json"));
    let e = dec_err(json!({"model":"m","max_tokens":1}));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = dec_err(json!({"model":"","messages":[]}));
    assert_eq!(e.param.as_deref(), Some("model"));
    // An empty conversation is refused here, as the Messages API does, instead of going upstream as empty input.
    let e = dec_err(json!({"model":"m","max_tokens":1,"messages":[]}));
    assert_eq!((e.kind, e.param.as_deref()), (ErrorKind::InvalidRequest, Some("messages")));
    assert!(decode_for_count(br#"{"model":"m","messages":[]}"#).is_err(), "count_tokens shares the check");
    let e = dec_err(with_messages(json!([{"role":"user","content":[{"type":"mystery"}]}])));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
    let e = dec_err(with_messages(json!([{"role":"tool","content":"x"}])));
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    let e = dec_err(with_messages(json!([{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}])));
    assert_eq!(e.param.as_deref(), Some("messages[0].content[0].id"));
}

#[test]
fn count_tokens_translation_and_text() {
    let body = json!({"model":"claude-sonnet-4-5","system":"SYS","tools":[{"name":"Tool","description":"DESC","input_schema":{"type":"object","properties":{"p":{"type":"string"}}}}],
        "messages":[{"role":"user","content":"hello"},{"role":"assistant","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"Tool","input":{"p":"v"}}]},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"RESULT"}]}]});
    let req = match decode_for_count(body.to_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let text = countable_text(&req);
    for needle in ["SYS", "hello", "hi", "Tool", "{\"p\":\"v\"}", "RESULT", "DESC", "\"properties\""] {
        assert!(text.contains(needle), "{needle} missing from {text:?}");
    }
}
