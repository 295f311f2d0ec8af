//! Shared helpers: decoding shortcuts, event builders, and the stream checker holding output to the
//! invariants of the Anthropic SDK accumulators.

pub use std::collections::HashMap;

pub use dialects::anthropic::{
    self, AnthropicEncoder, AnthropicOptions, countable_text, decode, decode_for_count, decode_with, error_response,
    render_message,
};
pub use dialects::assemble::Collected;
pub use dialects::outcome::Finish;
pub use dialects::sse::{SseFrame, SseParser};
pub use dialects::{DoneItem, ErrorKind, Event, GatewayError, ItemStart, Terminal, UpstreamRequest, Usage};
pub use proptest::prelude::*;
pub use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------
// helpers

/// The lineup of the fake backend's Plus catalog (what the gateway's catalog names for the Claude families).
pub const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];

pub fn dec(body: Value) -> (UpstreamRequest, AnthropicOptions) {
    match decode(body.to_string().as_bytes(), None, &LINEUP) {
        Ok(r) => r,
        Err(e) => panic!("decode failed: {e}"),
    }
}

pub fn dec_err(body: Value) -> GatewayError {
    match decode(body.to_string().as_bytes(), None, &LINEUP) {
        Ok(_) => panic!("expected an error for {body}"),
        Err(e) => e,
    }
}

pub fn input_of(body: Value) -> Value {
    dec(body).0.body["input"].clone()
}

pub fn with_messages(messages: Value) -> Value {
    json!({"model":"gpt-5.4","max_tokens":100,"messages":messages})
}

pub fn frames(bytes: &[u8]) -> Vec<SseFrame> {
    let mut p = SseParser::default();
    let mut out = Vec::new();
    assert!(p.push(bytes, &mut out).is_ok());
    p.finish(&mut out);
    out
}

pub fn encode_all(events: &[Event], include_thinking: bool) -> String {
    let mut enc =
        AnthropicEncoder::new("msg_1".into(), "claude-sonnet-4-5".into(), &AnthropicOptions { include_thinking }, 42);
    let mut out = Vec::new();
    for e in events {
        enc.on_event(e, &mut out);
    }
    assert!(enc.is_finished());
    String::from_utf8(out).unwrap_or_default()
}

pub fn usage(input: u64, cached: u64, output: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens: input,
        cached_tokens: cached,
        output_tokens: output,
        total_tokens: input + output,
        ..Usage::default()
    })
}

pub fn completed(u: Option<Usage>) -> Event<'static> {
    Event::Finished { terminal: Terminal::Completed, usage: u, output: vec![] }
}

pub fn text_delta(item: &str, d: &str) -> Event<'static> {
    Event::TextDelta { item_id: item.to_string().into(), delta: d.to_string().into() }
}

/// Lines of an SSE text, for readable golden comparisons.
pub fn sse(lines: &[&str]) -> String {
    let mut s = String::new();
    for pair in lines.chunks(2) {
        s.push_str(&format!("event: {}\ndata: {}\n\n", pair[0], pair[1]));
    }
    s
}

pub const START: &str = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":42,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}"#;

// ---------------------------------------------------------------------------------------------------------
// stream checker: the invariants of the SDK accumulators (anthropic-sdk-typescript MessageStream, the Python
// SDK's accumulate_event, the AI SDK's zod schemas) and of Claude Code.

#[derive(Debug)]
pub struct Block {
    pub kind: String,
    pub json: String,
    pub signatures: usize,
}

/// Check an Anthropic SSE stream; returns the closed blocks (kind, concatenated input json).
pub fn check_stream(bytes: &[u8]) -> Result<Vec<Block>, String> {
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
