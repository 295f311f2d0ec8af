//! The non-streaming message and error bodies.

use super::support::*;

// non-stream

#[test]
fn render_message_golden() {
    let mut c = Collected::new();
    for e in [
        Event::Created { response_id: "resp".into(), model: None },
        Event::ItemDone {
            output_index: 0,
            item: DoneItem::Reasoning {
                id: "rs_9".into(),
                summary: vec!["a".into(), "b".into()],
                encrypted_content: Some("EC".into()),
            },
        },
        Event::ItemDone {
            output_index: 1,
            item: DoneItem::Reasoning { id: "rs_10".into(), summary: vec![], encrypted_content: Some("EC2".into()) },
        },
        Event::ItemDone {
            output_index: 2,
            item: DoneItem::Message { id: "m".into(), text: "Hi".into(), refusal: None },
        },
        Event::ItemDone {
            output_index: 3,
            item: DoneItem::FunctionCall {
                id: "fc".into(),
                call_id: "call_1".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into(),
            },
        },
        Event::ItemDone {
            output_index: 4,
            item: DoneItem::FunctionCall {
                id: "fc2".into(),
                call_id: "call_2".into(),
                name: "g".into(),
                arguments: "".into(),
            },
        },
        completed(usage(50, 20, 9)),
    ] {
        c.on_event(e);
    }
    let m = render_message(&c, "msg_x", "claude-opus-4-1", &AnthropicOptions { include_thinking: true });
    assert_eq!(
        m,
        json!({
            "id":"msg_x","type":"message","role":"assistant","model":"claude-opus-4-1",
            "content":[
                {"type":"thinking","thinking":"a\n\nb","signature":anthropic::encode_signature("rs_9","EC")},
                {"type":"thinking","thinking":"","signature":anthropic::encode_signature("rs_10","EC2")},
                {"type":"text","text":"Hi"},
                {"type":"tool_use","id":"call_1","name":"f","input":{"x":1}},
                {"type":"tool_use","id":"call_2","name":"g","input":{}}
            ],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":30,"output_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":20}
        })
    );
    let hidden = render_message(&c, "msg_x", "m", &AnthropicOptions { include_thinking: false });
    assert_eq!(hidden["content"].as_array().map(Vec::len), Some(3));

    let mut c = Collected::new();
    c.on_event(text_delta("m", "cut here"));
    c.on_event(Event::Finished {
        terminal: Terminal::Cut(Finish::StopSequence("##".into())),
        usage: None,
        output: vec![],
    });
    let m = render_message(&c, "i", "m", &AnthropicOptions::default());
    assert_eq!((m["stop_reason"].clone(), m["stop_sequence"].clone()), (json!("stop_sequence"), json!("##")));
    assert_eq!(m["content"], json!([{"type":"text","text":"cut here"}]));
}

#[test]
fn error_response_shape() {
    let (status, body) =
        error_response(&GatewayError::new(ErrorKind::RateLimited, "slow down").with_retry_after(3), "req_7");
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_7"})
    );
}

// ---------------------------------------------------------------------------------------------------------

/// The 0.171 usage: tokens written to the prompt cache are Anthropic's cache creation, read ones its cache read,
/// and `input_tokens` the rest, so the three add up to the backend's whole input.
#[test]
fn cache_writes_are_cache_creation_in_the_whole_message() {
    let mut c = Collected::new();
    c.on_event(text_delta("m", "Hi"));
    let u = Usage { cache_write_tokens: 300, budget_units: Some(2.5), ..usage(1000, 600, 9).unwrap_or_default() };
    c.on_event(completed(Some(u)));
    let m = render_message(&c, "msg_x", "claude-sonnet-4-5", &AnthropicOptions::default());
    assert_eq!(
        m["usage"],
        json!({"input_tokens":100,"output_tokens":9,"cache_creation_input_tokens":300,"cache_read_input_tokens":600})
    );
}
