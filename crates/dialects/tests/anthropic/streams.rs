//! Golden SSE streams.

use super::support::*;

// ---------------------------------------------------------------------------------------------------------
// stream goldens

#[test]
fn text_stream_golden() {
    let out = encode_all(
        &[
            Event::Created { response_id: "resp_1".into(), model: Some("gpt-5.4".into()) },
            Event::ItemAdded { output_index: 0, item: ItemStart::Message { id: "m1".into() } },
            text_delta("m1", "Hel"),
            text_delta("m1", "lo"),
            Event::ItemDone {
                output_index: 0,
                item: DoneItem::Message { id: "m1".into(), text: "Hello".into(), refusal: None },
            },
            completed(usage(100, 60, 7)),
        ],
        true,
    );
    assert_eq!(
        out,
        sse(&[
            "message_start",
            START,
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":40,"output_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":60}}"#,
            "message_stop",
            r#"{"type":"message_stop"}"#,
        ])
    );
}

/// Cache writes reach the final `message_delta` as `cache_creation_input_tokens`, out of `input_tokens`.
#[test]
fn cache_writes_are_cache_creation_in_the_stream() {
    let u = Usage { cache_write_tokens: 25, ..usage(100, 60, 7).unwrap_or_default() };
    let out = encode_all(&[text_delta("m1", "Hello"), completed(Some(u))], true);
    let delta = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.contains("\"message_delta\""))
        .unwrap_or_else(|| panic!("no message_delta: {out}"));
    let v: Value = serde_json::from_str(delta).unwrap_or_default();
    assert_eq!(
        v["usage"],
        json!({"input_tokens":15,"output_tokens":7,"cache_creation_input_tokens":25,"cache_read_input_tokens":60})
    );
}

#[test]
fn reasoning_text_and_tool_call_golden() {
    let out = encode_all(
        &[
            Event::Created { response_id: "r".into(), model: None },
            Event::ItemAdded { output_index: 0, item: ItemStart::Reasoning { id: "rs_1".into() } },
            Event::ReasoningSummaryPartAdded { item_id: "rs_1".into(), summary_index: 0 },
            Event::ReasoningSummaryDelta { item_id: "rs_1".into(), summary_index: 0, delta: "Plan".into() },
            Event::ReasoningSummaryPartAdded { item_id: "rs_1".into(), summary_index: 1 },
            Event::ReasoningSummaryDelta { item_id: "rs_1".into(), summary_index: 1, delta: "More".into() },
            Event::ItemDone {
                output_index: 0,
                item: DoneItem::Reasoning {
                    id: "rs_1".into(),
                    summary: vec!["Plan".into(), "More".into()],
                    encrypted_content: Some("ENC".into()),
                },
            },
            Event::ItemAdded { output_index: 1, item: ItemStart::Message { id: "m1".into() } },
            text_delta("m1", "Let me look."),
            Event::ItemDone {
                output_index: 1,
                item: DoneItem::Message { id: "m1".into(), text: "Let me look.".into(), refusal: None },
            },
            Event::ItemAdded {
                output_index: 2,
                item: ItemStart::FunctionCall { id: "fc_1".into(), call_id: "call_1".into(), name: "Bash".into() },
            },
            Event::FunctionArgsDelta { item_id: "fc_1".into(), delta: "{\"command\":".into() },
            Event::FunctionArgsDelta { item_id: "fc_1".into(), delta: "\"ls\"}".into() },
            Event::ItemDone {
                output_index: 2,
                item: DoneItem::FunctionCall {
                    id: "fc_1".into(),
                    call_id: "call_1".into(),
                    name: "Bash".into(),
                    arguments: "{\"command\":\"ls\"}".into(),
                },
            },
            completed(usage(10, 0, 20)),
        ],
        true,
    );
    let sig = anthropic::encode_signature("rs_1", "ENC");
    let sig_delta = format!(
        r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"signature_delta","signature":"{sig}"}}}}"#
    );
    assert_eq!(
        out,
        sse(&[
            "message_start",
            START,
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Plan"}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"\n\n"}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"More"}}"#,
            "content_block_delta",
            &sig_delta,
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me look."}}"#,
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
            "content_block_start",
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_1","name":"Bash","input":{}}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"command\":"}}"#,
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"ls\"}"}}"#,
            "content_block_stop",
            r#"{"type":"content_block_stop","index":2}"#,
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":10,"output_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#,
            "message_stop",
            r#"{"type":"message_stop"}"#,
        ])
    );
    // Thinking hidden: the same events give only the text and the tool call, renumbered from 0.
    let hidden = encode_all(
        &[
            Event::ItemAdded { output_index: 0, item: ItemStart::Reasoning { id: "rs_1".into() } },
            Event::ReasoningSummaryDelta { item_id: "rs_1".into(), summary_index: 0, delta: "Plan".into() },
            Event::ItemDone {
                output_index: 0,
                item: DoneItem::Reasoning { id: "rs_1".into(), summary: vec![], encrypted_content: Some("E".into()) },
            },
            text_delta("m1", "x"),
            completed(None),
        ],
        false,
    );
    assert!(!hidden.contains("thinking"));
    assert!(hidden.contains(r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#));
}

#[test]
fn tool_call_without_deltas_gets_one_block_with_full_arguments() {
    let added = Event::ItemAdded {
        output_index: 0,
        item: ItemStart::FunctionCall { id: "fc".into(), call_id: "c".into(), name: "f".into() },
    };
    let done = |args: &str| Event::ItemDone {
        output_index: 0,
        item: DoneItem::FunctionCall { id: "fc".into(), call_id: "c".into(), name: "f".into(), arguments: args.into() },
    };
    for (args, expected) in [("{\"a\":[1,2]}", "{\"a\":[1,2]}"), ("", "{}"), ("{\"a\":", "{\"_raw\":\"{\\\"a\\\":\"}")]
    {
        let out = encode_all(&[added.clone(), done(args), completed(None)], true);
        let blocks = check_stream(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(blocks.len(), 1, "{out}");
        assert_eq!(blocks[0].json, expected);
        // `.done` without `.added` opens the block itself, once.
        let out = encode_all(&[done(args), completed(None)], true);
        let blocks = check_stream(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!((blocks.len(), blocks[0].json.as_str()), (1, expected));
    }
    // Arguments partly streamed: the rest comes from `.done`, never a second block.
    let out = encode_all(
        &[
            added,
            Event::FunctionArgsDelta { item_id: "fc".into(), delta: "{\"a\"".into() },
            done("{\"a\":1}"),
            completed(None),
        ],
        true,
    );
    let blocks = check_stream(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!((blocks.len(), blocks[0].json.as_str()), (1, "{\"a\":1}"));
    assert!(out.contains(r#""stop_reason":"tool_use""#));
}

#[test]
fn stop_reasons() {
    let stop = |terminal: Terminal| {
        let out = encode_all(&[text_delta("m", "x"), Event::Finished { terminal, usage: None, output: vec![] }], true);
        assert!(check_stream(out.as_bytes()).is_ok(), "{out}");
        let md = frames(out.as_bytes()).into_iter().find(|f| f.event.as_deref() == Some("message_delta"));
        let v: Value = serde_json::from_str(&md.map(|f| f.data).unwrap_or_default()).unwrap_or_default();
        (v["delta"]["stop_reason"].clone(), v["delta"]["stop_sequence"].clone(), v["usage"]["input_tokens"].clone())
    };
    assert_eq!(stop(Terminal::Completed), (json!("end_turn"), Value::Null, json!(42)));
    assert_eq!(stop(Terminal::Incomplete { reason: "max_output_tokens".into() }).0, json!("max_tokens"));
    assert_eq!(stop(Terminal::Incomplete { reason: "content_filter".into() }).0, json!("refusal"));
    assert_eq!(stop(Terminal::Cut(Finish::Length)).0, json!("max_tokens"));
    assert_eq!(
        stop(Terminal::Cut(Finish::StopSequence("END".into()))),
        (json!("stop_sequence"), json!("END"), json!(42))
    );
}

#[test]
fn failure_mid_stream_is_an_error_event() {
    let mut enc = AnthropicEncoder::new("msg_1".into(), "claude-sonnet-4-5".into(), &AnthropicOptions::default(), 42);
    let mut out = Vec::new();
    enc.on_event(&text_delta("m", "partial"), &mut out);
    enc.on_event(
        &Event::failed(Some("context_length_exceeded".into()), "Your input exceeds the context window".into()),
        &mut out,
    );
    assert!(enc.is_finished());
    enc.on_event(&text_delta("m", "late"), &mut out);
    let text = String::from_utf8(out).unwrap_or_default();
    assert!(check_stream(text.as_bytes()).is_ok(), "{text}");
    assert!(text.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long: Your input exceeds the context window\"}}\n\n"
    ), "{text}");
    assert!(!text.contains("late"));

    // The gateway's own in-stream errors (upstream cut, timeout).
    let mut enc = AnthropicEncoder::new("msg_1".into(), "m".into(), &AnthropicOptions::default(), 0);
    let mut out = Vec::new();
    enc.on_event(&Event::Created { response_id: "r".into(), model: None }, &mut out);
    AnthropicEncoder::ping(&mut out);
    enc.error(&GatewayError::new(ErrorKind::Overloaded, "busy"), &mut out);
    let text = String::from_utf8(out).unwrap_or_default();
    assert!(check_stream(text.as_bytes()).is_ok(), "{text}");
    assert!(text.contains("event: ping\ndata: {\"type\":\"ping\"}\n\n"));
    assert!(text.contains(r#""type":"overloaded_error""#));
}

#[test]
fn web_search_blocks() {
    let ws = DoneItem::WebSearchCall {
        id: "ws_1".into(),
        query: Some("rust serde".into()),
        sources: vec![
            json!({"type":"url","url":"https://serde.rs","title":"Serde"}),
            json!({"type":"url","url":"https://docs.rs"}),
        ],
    };
    let out = encode_all(
        &[
            Event::ItemAdded {
                output_index: 0,
                item: ItemStart::Other { id: "ws_1".into(), kind: "web_search_call".into() },
            },
            Event::ItemDone { output_index: 0, item: ws.clone() },
            text_delta("m", "Found it."),
            completed(None),
        ],
        true,
    );
    let blocks = check_stream(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let kinds: Vec<&str> = blocks.iter().map(|b| b.kind.as_str()).collect();
    assert_eq!(kinds, ["server_tool_use", "web_search_tool_result", "text"]);
    assert_eq!(blocks[0].json, r#"{"query":"rust serde"}"#);
    assert!(out.contains(
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"web_search_tool_result","tool_use_id":"ws_1","content":[{"type":"web_search_result","url":"https://serde.rs","title":"Serde","encrypted_content":"","page_age":null},{"type":"web_search_result","url":"https://docs.rs","title":"https://docs.rs","encrypted_content":"","page_age":null}]}}"#
    ), "{out}");
    assert!(out.contains(r#""stop_reason":"end_turn""#));

    let mut c = Collected::new();
    c.on_event(Event::ItemDone { output_index: 0, item: ws });
    c.on_event(completed(None));
    let m = render_message(&c, "msg_1", "m", &AnthropicOptions::default());
    assert_eq!(
        m["content"],
        json!([
            {"type":"server_tool_use","id":"ws_1","name":"web_search","input":{"query":"rust serde"}},
            {"type":"web_search_tool_result","tool_use_id":"ws_1","content":[
                {"type":"web_search_result","url":"https://serde.rs","title":"Serde","encrypted_content":"","page_age":null},
                {"type":"web_search_result","url":"https://docs.rs","title":"https://docs.rs","encrypted_content":"","page_age":null}
            ]}
        ])
    );
}

#[test]
fn completed_output_is_used_when_no_items_streamed() {
    let out = encode_all(
        &[Event::Finished {
            terminal: Terminal::Completed,
            usage: None,
            output: vec![DoneItem::Message { id: "m".into(), text: "late".into(), refusal: None }],
        }],
        true,
    );
    let blocks = check_stream(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(blocks.len(), 1);
    assert!(out.contains(r#""text":"late""#));
}

// ---------------------------------------------------------------------------------------------------------
