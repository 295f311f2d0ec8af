//! Responses events -> Chat Completions chunks (streaming) and the non-streaming completion object.
//!
//! Stream rules (spec/dialects.md §1): one `role` delta, first; tool call `id`/`name` only in a call's first
//! delta, `index` counting calls from 0; a closing chunk with `finish_reason`; an optional usage chunk with
//! `choices: []`; `data: [DONE]`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::assemble::{Collected, MESSAGE_SEPARATOR, OutputItem, image_mime};
use crate::error::GatewayError;
use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, ItemStart, Usage};
use crate::sse::{write_data, write_data_json, write_json};

/// The Chat `finish_reason` for an outcome (spec C4).
pub fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::ToolCalls => "tool_calls",
        Finish::Length => "length",
        Finish::ContentFilter => "content_filter",
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [Choice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<[ImageOut; 1]>,
}

/// A generated image in a Chat message (`message.images`, `delta.images`): the shape OpenRouter and LiteLLM give
/// image output in Chat Completions, which has no field of its own for it (docs/protocol.md "Images").
#[derive(Serialize)]
struct ImageOut {
    #[serde(rename = "type")]
    kind: &'static str,
    image_url: ImageUrl,
    index: usize,
}

#[derive(Serialize)]
struct ImageUrl {
    url: String,
}

fn image_out(b64: &str, mime: &str, index: usize) -> ImageOut {
    ImageOut { kind: "image_url", image_url: ImageUrl { url: format!("data:{mime};base64,{b64}") }, index }
}

impl<'a> Delta<'a> {
    /// The key and value when the delta is exactly one text field.
    fn single_text(&self) -> Option<(&'static str, &'a str)> {
        if self.images.is_some() {
            return None;
        }
        match (self.role, self.content, self.reasoning_content, self.refusal, &self.tool_calls) {
            (None, Some(t), None, None, None) => Some(("content", t)),
            (None, None, Some(t), None, None) => Some(("reasoning_content", t)),
            (None, None, None, Some(t), None) => Some(("refusal", t)),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<FunctionDelta<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<CustomDelta<'a>>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct CustomDelta<'a> {
    name: &'a str,
    input: &'a str,
}

#[derive(Serialize, Clone, Copy)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedOut,
    completion_tokens_details: ReasoningOut,
}
/// `prompt_tokens_details`: the cached part of the prompt, and the part written to the cache under the name
/// OpenAI's Responses usage and OpenRouter's Chat usage give it (Chat Completions defines no field of its own;
/// the SDKs keep members they do not know).
#[derive(Serialize, Clone, Copy)]
struct CachedOut {
    cached_tokens: u64,
    cache_write_tokens: u64,
}
#[derive(Serialize, Clone, Copy)]
struct ReasoningOut {
    reasoning_tokens: u64,
}

fn usage_out(u: &Usage) -> UsageOut {
    UsageOut {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens,
        prompt_tokens_details: CachedOut { cached_tokens: u.cached_tokens, cache_write_tokens: u.cache_write_tokens },
        completion_tokens_details: ReasoningOut { reasoning_tokens: u.reasoning_tokens },
    }
}

/// The usage object of the Chat dialect.
pub fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(usage_out(u)).unwrap_or(Value::Null)
}

struct CallState {
    item_id: String,
    index: u32,
    args_sent: usize,
}

// SSE comment lines are ignored by every OpenAI client.
crate::encoder::delegate!(ChatEncoder, keepalive = |out: &mut Vec<u8>| out.extend_from_slice(b": keepalive\n\n"));

/// Streaming encoder: a pure state machine fed upstream events, writing SSE bytes.
pub struct ChatEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    calls: Vec<CallState>,
    reasoning_parts: u32,
    /// A message with text ended: the next message starts with [`MESSAGE_SEPARATOR`]. Set from the message's
    /// `.done` and read at the next message's `.added`, so text deltas carry no extra work.
    after_text: bool,
    images: usize,
    finished: bool,
    /// `data: {"id":...,"choices":[{"index":0,"delta":{`, rendered once: text deltas (nearly every chunk of a
    /// stream) are written as this head, one key and string, and a fixed tail, byte for byte what serialising
    /// the whole [`Chunk`] gives.
    text_head: Vec<u8>,
}

impl ChatEncoder {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        let mut text_head = Vec::with_capacity(id.len() + model.len() + 96);
        text_head.extend_from_slice(b"data: {\"id\":");
        write_json(&mut text_head, id.as_str());
        text_head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        text_head.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
        text_head.extend_from_slice(b",\"model\":");
        write_json(&mut text_head, model.as_str());
        text_head.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":{");
        ChatEncoder {
            id,
            created,
            model,
            include_usage,
            role_sent: false,
            calls: Vec::new(),
            reasoning_parts: 0,
            after_text: false,
            images: 0,
            finished: false,
            text_head,
        }
    }

    /// A chunk whose delta is the single string field `key` (the fast path of [`ChatEncoder::delta`]).
    fn text_chunk(&self, out: &mut Vec<u8>, key: &str, text: &str) {
        let mark = out.len();
        out.extend_from_slice(&self.text_head);
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        if !write_json(out, text) {
            out.truncate(mark);
            return;
        }
        out.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&'static str>) {
        let choices = [Choice { index: 0, delta, logprobs: None, finish_reason }];
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: if self.include_usage { Some(None) } else { None },
        };
        write_data_json(out, &chunk);
    }

    fn delta(&mut self, out: &mut Vec<u8>, mut delta: Delta<'_>) {
        if !self.role_sent {
            self.role_sent = true;
            delta.role = Some("assistant");
        } else if let Some((key, text)) = delta.single_text() {
            self.text_chunk(out, key, text);
            return;
        }
        self.chunk(out, delta, None);
    }

    fn call_first_delta(&mut self, out: &mut Vec<u8>, item_id: &str, call_id: &str, name: &str) -> u32 {
        let index = self.calls.len() as u32;
        self.calls.push(CallState { item_id: item_id.to_string(), index, args_sent: 0 });
        let tc = ToolCallDelta {
            index,
            id: Some(call_id),
            kind: Some("function"),
            function: Some(FunctionDelta { name: Some(name), arguments: "" }),
            custom: None,
        };
        self.delta(out, Delta { tool_calls: Some([tc]), ..Delta::default() });
        index
    }

    fn call_args(&mut self, out: &mut Vec<u8>, pos: usize, fragment: &str) {
        if fragment.is_empty() {
            return;
        }
        let index = match self.calls.get_mut(pos) {
            Some(c) => {
                c.args_sent += fragment.len();
                c.index
            }
            None => return,
        };
        let tc = ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: Some(FunctionDelta { name: None, arguments: fragment }),
            custom: None,
        };
        self.delta(out, Delta { tool_calls: Some([tc]), ..Delta::default() });
    }

    /// Feed one upstream event.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        match event {
            Event::TextDelta { delta, .. } if !delta.is_empty() => {
                self.delta(out, Delta { content: Some(delta), ..Delta::default() })
            }
            Event::RefusalDelta { delta, .. } if !delta.is_empty() => {
                self.delta(out, Delta { refusal: Some(delta), ..Delta::default() })
            }
            Event::ReasoningSummaryPartAdded { summary_index, .. } => {
                if *summary_index > 0 || self.reasoning_parts > 0 {
                    self.delta(out, Delta { reasoning_content: Some("\n\n"), ..Delta::default() });
                }
                self.reasoning_parts += 1;
            }
            Event::ReasoningSummaryDelta { delta, .. } if !delta.is_empty() => {
                self.delta(out, Delta { reasoning_content: Some(delta), ..Delta::default() })
            }
            Event::ItemAdded { item: ItemStart::FunctionCall { id, call_id, name }, .. } => {
                self.call_first_delta(out, id, call_id, name);
            }
            Event::ItemAdded { item: ItemStart::Message { .. }, .. } if self.after_text => {
                self.after_text = false;
                self.delta(out, Delta { content: Some(MESSAGE_SEPARATOR), ..Delta::default() });
            }
            Event::ItemDone { item: DoneItem::Message { text, .. }, .. } => {
                self.after_text |= !text.is_empty();
            }
            Event::ItemDone { item: DoneItem::ImageGeneration { result, output_format, .. }, .. }
                if !result.is_empty() =>
            {
                let image = image_out(result, &image_mime(output_format), self.images);
                self.images += 1;
                self.delta(out, Delta { images: Some([image]), ..Delta::default() });
            }
            Event::FunctionArgsDelta { item_id, delta } => {
                if let Some(pos) = self.calls.iter().position(|c| &c.item_id == item_id) {
                    self.call_args(out, pos, delta);
                }
            }
            Event::ItemDone { item: DoneItem::FunctionCall { id, call_id, name, arguments }, .. } => {
                let pos = match self.calls.iter().position(|c| &c.item_id == id) {
                    Some(p) => p,
                    None => {
                        self.call_first_delta(out, id, call_id, name);
                        self.calls.len() - 1
                    }
                };
                let sent = self.calls.get(pos).map(|c| c.args_sent).unwrap_or(0);
                if let Some(rest) = arguments.get(sent..) {
                    self.call_args(out, pos, rest);
                }
            }
            Event::ItemDone { item: DoneItem::CustomToolCall { call_id, name, input, .. }, .. } => {
                let index = self.calls.len() as u32;
                self.calls.push(CallState { item_id: call_id.clone(), index, args_sent: input.len() });
                let tc = ToolCallDelta {
                    index,
                    id: Some(call_id),
                    kind: Some("custom"),
                    function: None,
                    custom: Some(CustomDelta { name, input }),
                };
                self.delta(out, Delta { tool_calls: Some([tc]), ..Delta::default() });
            }
            Event::Finished { terminal, usage, .. } => {
                let finish = Finish::from_terminal(terminal, !self.calls.is_empty());
                self.finish(out, &finish, usage.as_ref());
            }
            Event::Failed(refusal) => {
                let err = refusal.to_error();
                self.error(&err, out);
            }
            _ => {}
        }
    }

    /// The closing chunk, the usage chunk if asked for, and `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>, finish: &Finish, usage: Option<&Usage>) {
        if self.finished {
            return;
        }
        if !self.role_sent {
            self.delta(out, Delta { content: Some(""), ..Delta::default() });
        }
        self.finished = true;
        self.chunk(out, Delta::default(), Some(finish_reason(finish)));
        if self.include_usage {
            let u = usage.copied().unwrap_or_default();
            let chunk = Chunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(usage_out(&u))),
            };
            write_data_json(out, &chunk);
        }
        write_data(out, b"[DONE]");
    }

    /// An error after the stream began: `data: {"error":{...}}` (the SDKs raise on it). No `[DONE]` follows.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        write_data_json(out, &err.openai_body());
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The non-streaming `chat.completion` object.
pub fn render_completion(c: &Collected, id: &str, created: u64, model: &str) -> Value {
    let text = c.text();
    let mut tool_calls = Vec::new();
    for item in &c.items {
        match item {
            OutputItem::FunctionCall { call_id, name, arguments } => tool_calls.push(json!({
                "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}
            })),
            OutputItem::CustomToolCall { call_id, name, input } => tool_calls.push(json!({
                "id": call_id, "type": "custom", "custom": {"name": name, "input": input}
            })),
            _ => {}
        }
    }
    let finish = c.finish.clone().unwrap_or(Finish::Stop);
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": c.refusal(),
    });
    let reasoning = c.reasoning_summary();
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let images: Vec<Value> = c
        .images()
        .enumerate()
        .filter_map(|(i, (b64, mime))| serde_json::to_value(image_out(b64, mime, i)).ok())
        .collect();
    if !images.is_empty() {
        message["images"] = Value::Array(images);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(&finish)}],
        "usage": usage_json(&c.usage),
    })
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn text_fast_path_matches_serialising_the_chunk() {
        for include_usage in [false, true] {
            let enc = ChatEncoder::new("chatcmpl-\"x\"".into(), 1_767_225_600, "gpt-5.4 \u{e9}".into(), include_usage);
            for text in ["Hi", "a\"b\\c\n\t\u{1}", "\u{e9}\u{1f600}", "</script>"] {
                for (key, delta) in [
                    ("content", Delta { content: Some(text), ..Delta::default() }),
                    ("reasoning_content", Delta { reasoning_content: Some(text), ..Delta::default() }),
                    ("refusal", Delta { refusal: Some(text), ..Delta::default() }),
                ] {
                    let (mut fast, mut slow) = (Vec::new(), Vec::new());
                    enc.text_chunk(&mut fast, key, text);
                    enc.chunk(&mut slow, delta, None);
                    assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
                }
            }
        }
    }
}
