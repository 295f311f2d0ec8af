//! The thinking signature round trip, and the checker itself rejecting known breakages.

use super::support::*;

// thinking signature round trip

/// Stream a reasoning item, take the signature the client received, send it back in the next request.
#[test]
fn thinking_signature_round_trips_byte_for_byte() {
    let ec = "gAAAAABo_x+/=\"\\\u{1F600}\n".to_string();
    let out = encode_all(
        &[
            Event::ReasoningSummaryDelta { item_id: "rs_abc".into(), summary_index: 0, delta: "I think".into() },
            Event::ItemDone {
                output_index: 0,
                item: DoneItem::Reasoning {
                    id: "rs_abc".into(),
                    summary: vec!["I think".into()],
                    encrypted_content: Some(ec.clone()),
                },
            },
            Event::ItemDone {
                output_index: 1,
                item: DoneItem::Message { id: "m".into(), text: "Answer".into(), refusal: None },
            },
            Event::ItemDone {
                output_index: 2,
                item: DoneItem::Reasoning {
                    id: "rs_def".into(),
                    summary: vec![],
                    encrypted_content: Some("E2".into()),
                },
            },
            Event::ItemDone {
                output_index: 3,
                item: DoneItem::FunctionCall {
                    id: "fc".into(),
                    call_id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                },
            },
            completed(None),
        ],
        true,
    );
    assert!(check_stream(out.as_bytes()).is_ok(), "{out}");
    // Rebuild the assistant content as a client accumulator would.
    let mut content: Vec<Value> = Vec::new();
    for f in frames(out.as_bytes()) {
        let v: Value = serde_json::from_str(&f.data).unwrap_or_default();
        match v["type"].as_str() {
            Some("content_block_start") => content.push(v["content_block"].clone()),
            Some("content_block_delta") => {
                let Some(block) = content.last_mut() else { continue };
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("thinking_delta") => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap_or(""),
                            d["thinking"].as_str().unwrap_or("")
                        ))
                    }
                    Some("signature_delta") => block["signature"] = d["signature"].clone(),
                    Some("text_delta") => {
                        block["text"] = json!(format!(
                            "{}{}",
                            block["text"].as_str().unwrap_or(""),
                            d["text"].as_str().unwrap_or("")
                        ))
                    }
                    Some("input_json_delta") => {
                        block["input"] =
                            serde_json::from_str(d["partial_json"].as_str().unwrap_or("{}")).unwrap_or_default()
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    content.push(json!({"type":"thinking","thinking":"foreign","signature":"EqQBCkgIAxABGAIiQHh..."}));
    content.push(json!({"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4a"}));
    content.push(json!({"type":"text","text":"tail"}));
    let input = input_of(with_messages(json!([
        {"role":"user","content":"q"},
        {"role":"assistant","content":content},
        {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"done"}]}
    ])));
    assert_eq!(
        input,
        json!([
            {"type":"message","role":"user","content":[{"type":"input_text","text":"q"}]},
            {"type":"reasoning","id":"rs_abc","summary":[{"type":"summary_text","text":"I think"}],"encrypted_content":ec},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Answer"}]},
            {"type":"reasoning","id":"rs_def","summary":[],"encrypted_content":"E2"},
            {"type":"function_call","call_id":"call_1","name":"f","arguments":"{}"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"tail"}]},
            {"type":"function_call_output","call_id":"call_1","output":"done"}
        ])
    );
    // Our signature in a redacted_thinking block is accepted too; a trailing or duplicated one is dropped.
    let sig = anthropic::encode_signature("rs_z", "Z");
    let input = input_of(with_messages(json!([
        {"role":"assistant","content":[{"type":"redacted_thinking","data":sig},{"type":"text","text":"a"}]},
        {"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":sig},{"type":"text","text":"b"}]},
        {"role":"assistant","content":[{"type":"text","text":"c"},{"type":"thinking","thinking":"x","signature":anthropic::encode_signature("rs_y","Y")}]}
    ])));
    assert_eq!(
        input,
        json!([
            {"type":"reasoning","id":"rs_z","summary":[],"encrypted_content":"Z"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"a"}]},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"b"}]},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"c"}]}
        ])
    );
}

/// The checker itself must catch the failures seen in the field (litellm#13373, field notes 7 and 8).
#[test]
fn checker_rejects_broken_streams() {
    let tb =
        |i: u32| format!(r#"{{"type":"content_block_start","index":{i},"content_block":{{"type":"text","text":""}}}}"#);
    let tu = |i: u32| {
        format!(
            r#"{{"type":"content_block_start","index":{i},"content_block":{{"type":"tool_use","id":"c","name":"f","input":{{}}}}}}"#
        )
    };
    let stop = |i: u32| format!(r#"{{"type":"content_block_stop","index":{i}}}"#);
    let td =
        |i: u32| format!(r#"{{"type":"content_block_delta","index":{i},"delta":{{"type":"text_delta","text":"x"}}}}"#);
    let jd = |i: u32, j: &str| {
        format!(
            r#"{{"type":"content_block_delta","index":{i},"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
            json!(j)
        )
    };
    let th = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"x"}}"#;
    let md = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1}}"#;
    let ms = r#"{"type":"message_stop"}"#;
    let good = sse(&[
        "message_start",
        START,
        "content_block_start",
        &tb(0),
        "content_block_delta",
        &td(0),
        "content_block_stop",
        &stop(0),
        "message_delta",
        md,
        "message_stop",
        ms,
    ]);
    assert!(check_stream(good.as_bytes()).is_ok());
    let bad = [
        (
            "duplicate message_start",
            sse(&["message_start", START, "message_start", START, "message_delta", md, "message_stop", ms]),
        ),
        (
            "thinking delta in a text block",
            sse(&[
                "message_start",
                START,
                "content_block_start",
                &tb(0),
                "content_block_delta",
                th,
                "content_block_stop",
                &stop(0),
                "message_delta",
                md,
                "message_stop",
                ms,
            ]),
        ),
        (
            "a second tool_use block",
            sse(&[
                "message_start",
                START,
                "content_block_start",
                &tu(0),
                "content_block_delta",
                &jd(0, "{}"),
                "content_block_stop",
                &stop(0),
                "content_block_start",
                &tu(0),
                "content_block_stop",
                &stop(0),
                "message_delta",
                md,
                "message_stop",
                ms,
            ]),
        ),
        (
            "block not closed",
            sse(&[
                "message_start",
                START,
                "content_block_start",
                &tb(0),
                "content_block_start",
                &tb(1),
                "content_block_stop",
                &stop(1),
                "message_delta",
                md,
                "message_stop",
                ms,
            ]),
        ),
        (
            "delta for a closed block",
            sse(&[
                "message_start",
                START,
                "content_block_start",
                &tb(0),
                "content_block_stop",
                &stop(0),
                "content_block_delta",
                &td(0),
                "message_delta",
                md,
                "message_stop",
                ms,
            ]),
        ),
        (
            "tool input not an object",
            sse(&[
                "message_start",
                START,
                "content_block_start",
                &tu(0),
                "content_block_delta",
                &jd(0, r#"{"a""#),
                "content_block_stop",
                &stop(0),
                "message_delta",
                md,
                "message_stop",
                ms,
            ]),
        ),
        ("event name differs from type", sse(&["message_start", START, "message_stop", md, "message_stop", ms])),
        ("no message_stop", sse(&["message_start", START, "message_delta", md])),
        (
            "output after the end",
            sse(&["message_start", START, "message_delta", md, "message_stop", ms, "content_block_start", &tb(0)]),
        ),
    ];
    for (what, stream) in bad {
        assert!(check_stream(stream.as_bytes()).is_err(), "{what} was accepted");
    }
    let unnamed = format!(
        "data: {START}

"
    );
    assert!(check_stream(unnamed.as_bytes()).is_err());
}

// ---------------------------------------------------------------------------------------------------------
