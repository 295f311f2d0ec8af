//! Anthropic Messages dialect: golden request translations, golden SSE streams, the thinking signature round
//! trip, and a property test holding the encoder to the invariants of the Anthropic SDK stream accumulators.

use std::collections::HashMap;

use dialects::anthropic::{
    self, AnthropicEncoder, AnthropicOptions, countable_text, decode, decode_for_count, decode_with, error_response,
    render_message,
};
use dialects::assemble::Collected;
use dialects::outcome::Finish;
use dialects::sse::{SseFrame, SseParser};
use dialects::{DoneItem, ErrorKind, Event, GatewayError, ItemStart, Terminal, UpstreamRequest, Usage};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------
// helpers

fn dec(body: Value) -> (UpstreamRequest, AnthropicOptions) {
    match decode(body.to_string().as_bytes(), None) {
        Ok(r) => r,
        Err(e) => panic!("decode failed: {e}"),
    }
}

fn dec_err(body: Value) -> GatewayError {
    match decode(body.to_string().as_bytes(), None) {
        Ok(_) => panic!("expected an error for {body}"),
        Err(e) => e,
    }
}

fn input_of(body: Value) -> Value {
    dec(body).0.body["input"].clone()
}

fn with_messages(messages: Value) -> Value {
    json!({"model":"gpt-5.4","max_tokens":100,"messages":messages})
}

fn frames(bytes: &[u8]) -> Vec<SseFrame> {
    let mut p = SseParser::default();
    let mut out = Vec::new();
    assert!(p.push(bytes, &mut out).is_ok());
    p.finish(&mut out);
    out
}

fn encode_all(events: &[Event], include_thinking: bool) -> String {
    let mut enc =
        AnthropicEncoder::new("msg_1".into(), "claude-sonnet-4-5".into(), &AnthropicOptions { include_thinking }, 42);
    let mut out = Vec::new();
    for e in events {
        enc.on_event(e, &mut out);
    }
    assert!(enc.is_finished());
    String::from_utf8(out).unwrap_or_default()
}

fn usage(input: u64, cached: u64, output: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens: input,
        cached_tokens: cached,
        output_tokens: output,
        reasoning_tokens: 0,
        total_tokens: input + output,
    })
}

fn completed(u: Option<Usage>) -> Event {
    Event::Finished { terminal: Terminal::Completed, usage: u, output: vec![] }
}

fn text_delta(item: &str, d: &str) -> Event {
    Event::TextDelta { item_id: item.into(), delta: d.into() }
}

/// Lines of an SSE text, for readable golden comparisons.
fn sse(lines: &[&str]) -> String {
    let mut s = String::new();
    for pair in lines.chunks(2) {
        s.push_str(&format!("event: {}\ndata: {}\n\n", pair[0], pair[1]));
    }
    s
}

const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}"#;

// ---------------------------------------------------------------------------------------------------------
// stream checker: the invariants of the SDK accumulators (anthropic-sdk-typescript MessageStream, the Python
// SDK's accumulate_event, the AI SDK's zod schemas) and of Claude Code.

#[derive(Debug)]
struct Block {
    kind: String,
    json: String,
    signatures: usize,
}

/// Check an Anthropic SSE stream; returns the closed blocks (kind, concatenated input json).
fn check_stream(bytes: &[u8]) -> Result<Vec<Block>, String> {
    let frames = frames(bytes);
    let mut started = false;
    let mut ended = false;
    let mut delta_seen = false;
    let mut next_index = 0u64;
    let mut open: Option<(u64, Block)> = None;
    let mut closed = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let name = f.event.as_deref().ok_or(format!("frame {i} has no event name"))?;
        let data: Value = serde_json::from_str(&f.data).map_err(|e| format!("frame {i}: bad json {e}"))?;
        if data["type"] != name {
            return Err(format!("frame {i}: event `{name}` but data type {}", data["type"]));
        }
        if ended {
            return Err(format!("frame {i}: `{name}` after the end of the message"));
        }
        if name != "message_start" && name != "ping" && name != "error" && !started {
            return Err(format!("frame {i}: `{name}` before message_start"));
        }
        match name {
            "ping" => {}
            "message_start" => {
                if started {
                    return Err(format!("frame {i}: second message_start"));
                }
                started = true;
                let u = &data["message"]["usage"];
                if !u["input_tokens"].is_u64() || !u["output_tokens"].is_u64() {
                    return Err("message_start usage must be numeric".into());
                }
                if data["message"]["content"] != json!([]) {
                    return Err("message_start content must be empty".into());
                }
            }
            "content_block_start" => {
                if delta_seen {
                    return Err(format!("frame {i}: block after message_delta"));
                }
                if let Some((idx, _)) = &open {
                    return Err(format!("frame {i}: block {idx} still open"));
                }
                let index = data["index"].as_u64().ok_or("index must be a number")?;
                if index != next_index {
                    return Err(format!("frame {i}: block index {index}, expected {next_index}"));
                }
                next_index += 1;
                let cb = &data["content_block"];
                let kind = cb["type"].as_str().unwrap_or_default().to_string();
                match kind.as_str() {
                    "text" if cb["text"] == "" => {}
                    "thinking" if cb["thinking"] == "" && cb["signature"] == "" => {}
                    "tool_use" | "server_tool_use"
                        if cb["input"] == json!({}) && cb["id"].is_string() && cb["name"].is_string() => {}
                    "redacted_thinking" | "web_search_tool_result" => {}
                    _ => return Err(format!("frame {i}: bad content_block {cb}")),
                }
                open = Some((index, Block { kind, json: String::new(), signatures: 0 }));
            }
            "content_block_delta" => {
                let Some((idx, block)) = open.as_mut() else {
                    return Err(format!("frame {i}: delta with no open block"));
                };
                if data["index"].as_u64() != Some(*idx) {
                    return Err(format!("frame {i}: delta for index {} but block {idx} is open", data["index"]));
                }
                let d = &data["delta"];
                match (block.kind.as_str(), d["type"].as_str().unwrap_or_default()) {
                    ("text", "text_delta") if d["text"].is_string() => {}
                    ("thinking", "thinking_delta") if d["thinking"].is_string() && block.signatures == 0 => {}
                    ("thinking", "signature_delta") if d["signature"].is_string() => block.signatures += 1,
                    ("tool_use" | "server_tool_use", "input_json_delta") => {
                        block.json.push_str(d["partial_json"].as_str().ok_or("partial_json must be a string")?)
                    }
                    (k, t) => return Err(format!("frame {i}: `{t}` delta in a `{k}` block")),
                }
            }
            "content_block_stop" => {
                let Some((idx, block)) = open.take() else {
                    return Err(format!("frame {i}: stop with no open block"));
                };
                if data["index"].as_u64() != Some(idx) {
                    return Err(format!("frame {i}: stop for index {} but block {idx} is open", data["index"]));
                }
                if block.kind == "thinking" && block.signatures != 1 {
                    return Err(format!("frame {i}: thinking block with {} signature_deltas", block.signatures));
                }
                if block.kind == "tool_use" || block.kind == "server_tool_use" {
                    match serde_json::from_str::<Value>(&block.json) {
                        Ok(Value::Object(_)) => {}
                        _ => return Err(format!("frame {i}: tool input `{}` is not a JSON object", block.json)),
                    }
                }
                closed.push(block);
            }
            "message_delta" => {
                if let Some((idx, _)) = &open {
                    return Err(format!("frame {i}: message_delta while block {idx} is open"));
                }
                if delta_seen {
                    return Err(format!("frame {i}: second message_delta"));
                }
                delta_seen = true;
                if !data["delta"]["stop_reason"].is_string() || !data["usage"]["output_tokens"].is_u64() {
                    return Err(format!("frame {i}: bad message_delta {data}"));
                }
            }
            "message_stop" => {
                if !delta_seen {
                    return Err(format!("frame {i}: message_stop without message_delta"));
                }
                ended = true;
            }
            "error" => {
                if !data["error"]["type"].is_string() || !data["error"]["message"].is_string() {
                    return Err(format!("frame {i}: bad error {data}"));
                }
                ended = true;
            }
            other => return Err(format!("frame {i}: unknown event `{other}`")),
        }
    }
    if !ended {
        return Err("the stream ended without message_stop or error".into());
    }
    Ok(closed)
}

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
    let (req, opts) = match decode(body.to_string().as_bytes(), Some("sess-hdr")) {
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
        (r.body["instructions"].clone(), r.body["prompt_cache_key"].clone())
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
            ]},
            {"type":"tool_result","tool_use_id":"t9","content":"from nowhere"}
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
            {"type":"message","role":"user","content":[
                {"type":"input_text","text":"(interrupted)"},
                {"type":"input_text","text":"(result of tool call t9) from nowhere"}
            ]}
        ])
    );
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
            {"type":"tool_result","tool_use_id":"c","content":[{"type":"tool_reference","tool_name":"WebFetch"}]},
            {"type":"tool_result","tool_use_id":"a","content":"again"}
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
            {"type":"function_call_output","call_id":"c","output":"(tool `WebFetch` is available)"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"(result of tool call a) again"}]}
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
        r(json!({"thinking":{"type":"enabled","budget_tokens":100000}})),
        (json!({"effort":"xhigh","summary":"auto"}), true)
    );
    assert_eq!(r(json!({"thinking":{"type":"adaptive"}})), (json!({"summary":"auto"}), true));
    assert_eq!(
        r(json!({"thinking":{"type":"adaptive"},"output_config":{"effort":"max"}})),
        (json!({"effort":"xhigh","summary":"auto"}), true)
    );
    assert_eq!(r(json!({"thinking":{"type":"disabled"}})), (json!({"effort":"low"}), false));
    assert_eq!(r(json!({})), (json!({}), false));
    assert_eq!(r(json!({"output_config":{"effort":"medium"}})), (json!({"effort":"medium"}), false));
    let e = dec_err(json!({"model":"m","messages":[],"output_config":{"effort":"ultra"}}));
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
    let (req, _) = match decode_with(body.to_string().as_bytes(), None, &aliases) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!((req.model.slug.as_str(), req.model.effort.as_deref()), ("gpt-5.3-codex", Some("low")));
    assert_eq!(req.model.requested, "claude-3-5-haiku-latest");
    assert_eq!(anthropic::resolve_model("gpt-5.4-high", &aliases).slug, "gpt-5.4");
}

#[test]
fn bad_requests_name_the_field() {
    let e = match decode(b"{not json", None) {
        Err(e) => e,
        Ok(_) => panic!("expected error"),
    };
    assert_eq!(e.code.as_deref(), Some("invalid_json"));
    let e = dec_err(json!({"model":"m","max_tokens":1}));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = dec_err(json!({"model":"","messages":[]}));
    assert_eq!(e.param.as_deref(), Some("model"));
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
        &Event::Failed {
            code: Some("context_length_exceeded".into()),
            message: "Your input exceeds the context window".into(),
        },
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
// property: whatever the upstream sends, the stream satisfies the accumulator invariants

#[derive(Debug, Clone)]
enum GenItem {
    Reasoning { parts: Vec<String>, ec: Option<String> },
    Text(String),
    Call { args: Value, stream_args: bool },
    Search(String),
}

#[derive(Debug, Clone)]
enum GenEnd {
    Completed,
    Incomplete(&'static str),
    Failed,
    StopSeq,
    CutMidway,
}

fn gen_item() -> impl Strategy<Value = GenItem> {
    let text = "[a-zé \\n\"{}]{0,12}";
    prop_oneof![
        (prop::collection::vec(text, 0..3), prop::option::of("[A-Za-z0-9+/=]{1,8}"))
            .prop_map(|(parts, ec)| GenItem::Reasoning { parts, ec }),
        text.prop_map(GenItem::Text),
        (prop::collection::btree_map("[a-z]{1,3}", "[a-z\"{ ]{0,5}", 0..3), any::<bool>())
            .prop_map(|(m, stream_args)| { GenItem::Call { args: json!(m), stream_args } }),
        "[a-z ]{0,8}".prop_map(GenItem::Search),
    ]
}

fn gen_end() -> impl Strategy<Value = GenEnd> {
    prop_oneof![
        Just(GenEnd::Completed),
        Just(GenEnd::Incomplete("max_output_tokens")),
        Just(GenEnd::Incomplete("content_filter")),
        Just(GenEnd::Failed),
        Just(GenEnd::StopSeq),
        Just(GenEnd::CutMidway),
    ]
}

/// Split `s` into pieces at char boundaries chosen by `cuts`.
fn split(s: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.push(0);
    points.push(chars.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| chars[w[0]..w[1]].iter().collect()).collect()
}

/// The upstream events for `items`. With `order`, the items' events are interleaved (each item keeps its own
/// order; a function call stays contiguous, as the Responses protocol streams one item at a time and a
/// tool_use block cannot be reopened).
fn build_events(items: &[GenItem], cuts: &[usize], end: &GenEnd, noise: bool, order: Option<&[usize]>) -> Vec<Event> {
    let mut ev = vec![Event::Created { response_id: "resp".into(), model: None }];
    let mut chunks: Vec<Vec<Vec<Event>>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let oi = i as u32;
        let mut it: Vec<Event> = Vec::new();
        if noise {
            it.push(Event::Ignored);
        }
        match item {
            GenItem::Reasoning { parts, ec } => {
                let id = format!("rs_{i}");
                it.push(Event::ItemAdded { output_index: oi, item: ItemStart::Reasoning { id: id.clone() } });
                for (k, p) in parts.iter().enumerate() {
                    it.push(Event::ReasoningSummaryPartAdded { item_id: id.clone(), summary_index: k as u32 });
                    for piece in split(p, cuts) {
                        it.push(Event::ReasoningSummaryDelta {
                            item_id: id.clone(),
                            summary_index: k as u32,
                            delta: piece,
                        });
                    }
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::Reasoning { id, summary: parts.clone(), encrypted_content: ec.clone() },
                });
            }
            GenItem::Text(t) => {
                let id = format!("msg_{i}");
                it.push(Event::ItemAdded { output_index: oi, item: ItemStart::Message { id: id.clone() } });
                for piece in split(t, cuts) {
                    it.push(text_delta(&id, &piece));
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::Message { id, text: t.clone(), refusal: None },
                });
            }
            GenItem::Call { args, stream_args } => {
                let id = format!("fc_{i}");
                let call_id = format!("call_{i}");
                let arguments = args.to_string();
                it.push(Event::ItemAdded {
                    output_index: oi,
                    item: ItemStart::FunctionCall { id: id.clone(), call_id: call_id.clone(), name: "tool".into() },
                });
                if *stream_args {
                    for piece in split(&arguments, cuts) {
                        it.push(Event::FunctionArgsDelta { item_id: id.clone(), delta: piece });
                    }
                }
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::FunctionCall { id, call_id, name: "tool".into(), arguments },
                });
            }
            GenItem::Search(q) => {
                let id = format!("ws_{i}");
                it.push(Event::ItemAdded {
                    output_index: oi,
                    item: ItemStart::Other { id: id.clone(), kind: "web_search_call".into() },
                });
                it.push(Event::ItemDone {
                    output_index: oi,
                    item: DoneItem::WebSearchCall {
                        id,
                        query: Some(q.clone()),
                        sources: vec![json!({"url":"https://a.b"})],
                    },
                });
            }
        }
        let atomic = matches!(item, GenItem::Call { .. }) || order.is_none();
        chunks.push(if atomic { vec![it] } else { it.into_iter().map(|e| vec![e]).collect() });
    }
    let mut queues: Vec<std::collections::VecDeque<Vec<Event>>> = chunks.into_iter().map(Into::into).collect();
    let mut k = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
        let pick = match order {
            Some(o) if !o.is_empty() => live[o[k % o.len()] % live.len()],
            _ => live[0],
        };
        k += 1;
        if let Some(chunk) = queues[pick].pop_front() {
            ev.extend(chunk);
        }
    }
    let u = usage(100, 10, 50);
    match end {
        GenEnd::Completed => ev.push(completed(u)),
        GenEnd::Incomplete(r) => ev.push(Event::Finished {
            terminal: Terminal::Incomplete { reason: (*r).into() },
            usage: u,
            output: vec![],
        }),
        GenEnd::Failed => ev.push(Event::Failed { code: Some("server_is_overloaded".into()), message: "busy".into() }),
        GenEnd::StopSeq => ev.push(Event::Finished {
            terminal: Terminal::Cut(Finish::StopSequence("X".into())),
            usage: u,
            output: vec![],
        }),
        GenEnd::CutMidway => {
            // The upstream dies in the middle of an item: keep a prefix, then fail.
            let keep = cuts.first().copied().unwrap_or(0) % ev.len().max(1);
            ev.truncate(keep.max(1));
            ev.push(Event::Failed { code: None, message: "stream cut".into() });
        }
    }
    ev
}

proptest! {
    // 400 cases by default (~0.2 s); PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn encoder_output_satisfies_the_accumulator_invariants(
        items in prop::collection::vec(gen_item(), 0..6),
        cuts in prop::collection::vec(0usize..40, 0..5),
        end in gen_end(),
        include_thinking in any::<bool>(),
        noise in any::<bool>(),
        pings in prop::collection::vec(0usize..60, 0..3),
        order in prop::option::of(prop::collection::vec(0usize..8, 1..12)),
    ) {
        let events = build_events(&items, &cuts, &end, noise, order.as_deref());
        let mut enc = AnthropicEncoder::new("msg_p".into(), "claude-sonnet-4-5".into(), &AnthropicOptions { include_thinking }, 7);
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if pings.contains(&i) && i > 0 {
                AnthropicEncoder::ping(&mut out);
            }
            enc.on_event(e, &mut out);
        }
        prop_assert!(enc.is_finished());
        let blocks = match check_stream(&out) {
            Ok(b) => b,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out)))),
        };
        if matches!(end, GenEnd::Completed | GenEnd::Incomplete(_) | GenEnd::StopSeq) {
            // Every call came through as exactly one tool_use block with the arguments it had.
            let calls: Vec<&Value> = items.iter().filter_map(|i| match i { GenItem::Call { args, .. } => Some(args), _ => None }).collect();
            let tool_inputs: Vec<Value> = blocks.iter().filter(|b| b.kind == "tool_use")
                .map(|b| serde_json::from_str(&b.json).unwrap_or(Value::Null)).collect();
            let mut expected: Vec<Value> = calls.into_iter().cloned().collect();
            let mut tool_inputs = tool_inputs;
            if order.is_some() {
                // Interleaving may reorder whole calls.
                expected.sort_by_key(Value::to_string);
                tool_inputs.sort_by_key(Value::to_string);
            }
            prop_assert_eq!(tool_inputs, expected);
            let thinking = blocks.iter().filter(|b| b.kind == "thinking").count();
            let thinking = if order.is_some() { thinking.min(1) } else { thinking };
            let expected_thinking = if include_thinking {
                items.iter().filter(|i| matches!(i, GenItem::Reasoning { parts, ec } if ec.is_some() || parts.iter().any(|p| !p.is_empty()))).count()
            } else { 0 };
            let expected_thinking = if order.is_some() { expected_thinking.min(1) } else { expected_thinking };
            prop_assert_eq!(thinking, expected_thinking);
            let text = String::from_utf8_lossy(&out);
            let any_call = items.iter().any(|i| matches!(i, GenItem::Call { .. }));
            let expected_reason = match &end {
                GenEnd::Completed if any_call => "tool_use",
                GenEnd::Completed => "end_turn",
                GenEnd::Incomplete("content_filter") => "refusal",
                GenEnd::Incomplete(_) => "max_tokens",
                _ => "stop_sequence",
            };
            let needle = format!("\"stop_reason\":\"{expected_reason}\"");
            prop_assert!(text.contains(&needle));
        }
    }
}
