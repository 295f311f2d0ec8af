//! Responses events -> Anthropic Messages SSE (spec/dialects.md §2 "Stream").
//!
//! Invariants the SDK accumulators and Claude Code depend on, kept by construction:
//! - `message_start` exactly once, before anything else (sent on the first event of any kind);
//! - content blocks numbered 0, 1, 2... in emission order (never the upstream `output_index`), at most one open
//!   at a time, each closed by `content_block_stop` before the next starts;
//! - deltas only into the open block and of its type (text_delta / thinking_delta + one signature_delta /
//!   input_json_delta);
//! - exactly one `tool_use` block per function call, opened at `output_item.added`; its `partial_json` fragments
//!   concatenate to the call's arguments (the whole arguments once, from `.done`, when none were streamed);
//! - `message_delta` with the final stop reason and usage, then `message_stop`; or an `error` event last.
//!
//! Upstream output items stream one after another. Should an event for another item arrive while a block is
//! open, that block is closed first; argument deltas for a call whose block was already closed are dropped
//! (a second tool_use block for the same call would break Claude Code, field note 7).

use serde::Serialize;
use serde_json::json;

use super::AnthropicOptions;
use super::render::{
    ImageSource, UsageOut, WebSearchResult, error_event, image_source, signature_for, stop_reason, tool_input_json,
    usage_out, web_search_input, web_search_results,
};
use crate::assemble::image_mime;
use crate::error::GatewayError;
use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, ItemStart, Usage};
use crate::sse::{write_event, write_event_json};

// Frames are typed so their bytes are fixed (field order as Anthropic sends it, `type` first) whatever
// serde_json features the workspace enables.

#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: Delta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

/// `{}`: the initial `input` of a tool_use block.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text { text: &'a str },
    Thinking { thinking: &'a str, signature: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: Empty },
    ServerToolUse { id: &'a str, name: &'a str, input: Empty },
    WebSearchToolResult { tool_use_id: &'a str, content: Vec<WebSearchResult<'a>> },
    Image { source: ImageSource<'a> },
}

#[derive(Serialize)]
struct BlockStartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
struct BlockStopEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageStartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: MessageHead<'a>,
}

#[derive(Serialize)]
struct MessageHead<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct MessageDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta<'a>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The block currently open, and which upstream item feeds it.
#[derive(Debug, PartialEq)]
enum OpenKind {
    /// Reasoning summary of item `item`; `has_text` once a thinking_delta with text went out, `signed` once its
    /// signature_delta did.
    Thinking { item: String, has_text: bool, signed: bool },
    /// Text of message item `key` (`<id>#refusal` for refusal text).
    Text { key: String },
    /// The tool_use block of function call item `item`.
    ToolUse { item: String },
    /// A block written whole (server tool blocks): nothing else goes into it.
    Whole,
}

struct Open {
    index: u32,
    kind: OpenKind,
}

/// A function call that has its tool_use block; `sent` is the argument text streamed so far.
struct Call {
    item: String,
    sent: String,
}

crate::encoder::delegate!(AnthropicEncoder, keepalive = AnthropicEncoder::ping);

/// Streaming encoder: a pure state machine fed upstream events, writing Anthropic SSE bytes.
pub struct AnthropicEncoder {
    message_id: String,
    model: String,
    include_thinking: bool,
    input_estimate: u64,
    started: bool,
    finished: bool,
    next_index: u32,
    open: Option<Open>,
    calls: Vec<Call>,
    /// Reasoning items whose summary was (partly) streamed.
    thought: Vec<String>,
    /// Text keys (message item ids) whose text was (partly) streamed.
    texted: Vec<String>,
    any_tool_use: bool,
    /// Any output event seen; `response.completed.output` is replayed only when none arrived.
    saw_output: bool,
}

impl AnthropicEncoder {
    /// `message_id` is the client-visible `msg_...` id; `model` the id the client asked for;
    /// `input_tokens_estimate` goes into `message_start` (final numbers follow in `message_delta`).
    pub fn new(message_id: String, model: String, opts: &AnthropicOptions, input_tokens_estimate: u64) -> Self {
        AnthropicEncoder {
            message_id,
            model,
            include_thinking: opts.include_thinking,
            input_estimate: input_tokens_estimate,
            started: false,
            finished: false,
            next_index: 0,
            open: None,
            calls: Vec::new(),
            thought: Vec::new(),
            texted: Vec::new(),
            any_tool_use: false,
            saw_output: false,
        }
    }

    /// A keepalive: `event: ping`. Safe anywhere in the stream (and before `message_start`).
    pub fn ping(out: &mut Vec<u8>) {
        write_event(out, "ping", br#"{"type":"ping"}"#);
    }

    /// True after `message_stop` or an `error` event: nothing more will be written.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feed one upstream event.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(out);
        match event {
            Event::Created { .. } | Event::Ignored | Event::Unknown { .. } => {}
            Event::ItemAdded { item, .. } => {
                self.saw_output = true;
                if let ItemStart::FunctionCall { id, call_id, name } = item
                    && !self.calls.iter().any(|c| c.item == *id)
                {
                    self.open_tool_use(out, id, call_id, name);
                }
            }
            Event::TextDelta { item_id, delta } => {
                self.saw_output = true;
                self.text(out, item_id, delta);
            }
            Event::RefusalDelta { item_id, delta } => {
                self.saw_output = true;
                self.text(out, &format!("{item_id}#refusal"), delta);
            }
            Event::ReasoningSummaryPartAdded { item_id, summary_index } => {
                self.saw_output = true;
                if *summary_index > 0
                    && let Some(Open { kind: OpenKind::Thinking { item, has_text: true, .. }, .. }) = &self.open
                    && item == item_id
                {
                    self.delta(out, Delta::Thinking { thinking: "\n\n" });
                }
            }
            Event::ReasoningSummaryDelta { item_id, delta, .. } => {
                self.saw_output = true;
                if self.include_thinking && !delta.is_empty() {
                    self.thinking(out, item_id, delta);
                }
            }
            Event::FunctionArgsDelta { item_id, delta } => {
                self.saw_output = true;
                if !delta.is_empty()
                    && matches!(&self.open, Some(Open { kind: OpenKind::ToolUse { item }, .. }) if item == item_id)
                {
                    if let Some(call) = self.calls.iter_mut().find(|c| c.item == *item_id) {
                        call.sent.push_str(delta);
                    }
                    self.delta(out, Delta::InputJson { partial_json: delta });
                }
            }
            Event::ItemDone { item, .. } => {
                self.saw_output = true;
                self.done(out, item);
            }
            Event::Finished { terminal, usage, output } => {
                if !self.saw_output {
                    for item in output {
                        self.done(out, item);
                    }
                }
                // `tool_use` is decided from the blocks emitted, in `finish`.
                let finish = Finish::from_terminal(terminal, false);
                self.finish(out, &finish, usage.as_ref());
            }
            Event::Failed(refusal) => {
                let err = refusal.to_error();
                self.error(&err, out);
            }
        }
    }

    /// An error after the stream began: `event: error` with `{"type":"error","error":{type,message}}` (the SDKs
    /// raise on it). Nothing follows it.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.write(out, "error", &error_event(err));
    }

    /// Close the open block, then `message_delta` (stop reason, final usage) and `message_stop`.
    fn finish(&mut self, out: &mut Vec<u8>, finish: &Finish, usage: Option<&Usage>) {
        self.close(out);
        let usage = usage.copied().unwrap_or(Usage { input_tokens: self.input_estimate, ..Usage::default() });
        let (stop_reason, stop_sequence) = stop_reason(finish, self.any_tool_use);
        let delta = MessageDeltaEvent {
            kind: "message_delta",
            delta: StopDelta { stop_reason, stop_sequence },
            usage: usage_out(&usage),
        };
        self.write(out, "message_delta", &delta);
        self.write(out, "message_stop", &TypeOnly { kind: "message_stop" });
        self.finished = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let start = MessageStartEvent {
            kind: "message_start",
            message: MessageHead {
                id: &self.message_id,
                kind: "message",
                role: "assistant",
                model: &self.model,
                content: [],
                stop_reason: None,
                stop_sequence: None,
                usage: usage_out(&Usage { input_tokens: self.input_estimate, ..Usage::default() }),
            },
        };
        self.write(out, "message_start", &start);
    }

    fn write(&self, out: &mut Vec<u8>, event: &str, data: &impl Serialize) {
        write_event_json(out, event, data);
    }

    /// A delta into the open block. Callers make sure the block's type matches.
    fn delta(&self, out: &mut Vec<u8>, delta: Delta<'_>) {
        let Some(open) = &self.open else { return };
        let event = DeltaEvent { kind: "content_block_delta", index: open.index, delta };
        write_event_json(out, "content_block_delta", &event);
    }

    /// Close the open block. A thinking block closed before its item finished still gets its one
    /// signature_delta, empty (the real signature follows in a block of its own when the item is done).
    fn close(&mut self, out: &mut Vec<u8>) {
        if matches!(&self.open, Some(Open { kind: OpenKind::Thinking { signed: false, .. }, .. })) {
            self.sign(out, "");
        }
        if let Some(open) = self.open.take() {
            self.write(out, "content_block_stop", &BlockStopEvent { kind: "content_block_stop", index: open.index });
        }
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: StartBlock<'_>, kind: OpenKind) {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.write(
            out,
            "content_block_start",
            &BlockStartEvent { kind: "content_block_start", index, content_block: block },
        );
        self.open = Some(Open { index, kind });
    }

    fn open_tool_use(&mut self, out: &mut Vec<u8>, item: &str, call_id: &str, name: &str) {
        self.any_tool_use = true;
        self.calls.push(Call { item: item.to_string(), sent: String::new() });
        let block = StartBlock::ToolUse { id: call_id, name, input: Empty {} };
        self.open_block(out, block, OpenKind::ToolUse { item: item.to_string() });
    }

    fn text(&mut self, out: &mut Vec<u8>, key: &str, delta: &str) {
        if delta.is_empty() {
            return;
        }
        let is_open = matches!(&self.open, Some(Open { kind: OpenKind::Text { key: k }, .. }) if k == key);
        if !is_open {
            self.open_block(out, StartBlock::Text { text: "" }, OpenKind::Text { key: key.to_string() });
        }
        if !self.texted.iter().any(|k| k == key) {
            self.texted.push(key.to_string());
        }
        self.delta(out, Delta::Text { text: delta });
    }

    fn open_thinking(&mut self, out: &mut Vec<u8>, item: &str) {
        let block = StartBlock::Thinking { thinking: "", signature: "" };
        self.open_block(out, block, OpenKind::Thinking { item: item.to_string(), has_text: false, signed: false });
    }

    fn sign(&mut self, out: &mut Vec<u8>, signature: &str) {
        self.delta(out, Delta::Signature { signature });
        if let Some(Open { kind: OpenKind::Thinking { signed, .. }, .. }) = &mut self.open {
            *signed = true;
        }
    }

    fn thinking(&mut self, out: &mut Vec<u8>, item: &str, delta: &str) {
        let is_open = matches!(&self.open, Some(Open { kind: OpenKind::Thinking { item: i, .. }, .. }) if i == item);
        if !is_open {
            self.open_thinking(out, item);
        }
        if let Some(Open { kind: OpenKind::Thinking { has_text, .. }, .. }) = &mut self.open {
            *has_text = true;
        }
        if !self.thought.iter().any(|t| t == item) {
            self.thought.push(item.to_string());
        }
        self.delta(out, Delta::Thinking { thinking: delta });
    }

    /// Write a complete text block (text that arrived only in `.done`).
    fn whole_text(&mut self, out: &mut Vec<u8>, key: &str, text: &str) {
        let is_open = matches!(&self.open, Some(Open { kind: OpenKind::Text { key: k }, .. }) if k == key);
        if is_open {
            self.close(out);
        } else if !text.is_empty() && !self.texted.iter().any(|k| k == key) {
            self.text(out, key, text);
            self.close(out);
        }
    }

    fn done(&mut self, out: &mut Vec<u8>, item: &DoneItem) {
        match item {
            DoneItem::Message { id, text, refusal } => {
                self.whole_text(out, id, text);
                if let Some(r) = refusal {
                    self.whole_text(out, &format!("{id}#refusal"), r);
                }
            }
            DoneItem::Reasoning { id, summary, encrypted_content } => {
                if self.include_thinking {
                    self.reasoning_done(out, id, summary, encrypted_content.as_deref());
                }
            }
            DoneItem::FunctionCall { id, call_id, name, arguments } => {
                self.call_done(out, id, call_id, name, arguments)
            }
            DoneItem::CustomToolCall { id, call_id, name, input } => {
                if !self.calls.iter().any(|c| c.item == *id) {
                    self.open_tool_use(out, id, call_id, name);
                    let input = json!({"input": input}).to_string();
                    self.delta(out, Delta::InputJson { partial_json: &input });
                    self.close(out);
                }
            }
            DoneItem::WebSearchCall { id, query, sources } => {
                let block = StartBlock::ServerToolUse { id, name: "web_search", input: Empty {} };
                self.open_block(out, block, OpenKind::Whole);
                let input = web_search_input(query.as_deref()).to_string();
                self.delta(out, Delta::InputJson { partial_json: &input });
                let block = StartBlock::WebSearchToolResult { tool_use_id: id, content: web_search_results(sources) };
                self.open_block(out, block, OpenKind::Whole);
                self.close(out);
            }
            DoneItem::ImageGeneration { result, output_format, .. } if !result.is_empty() => {
                let mime = image_mime(output_format);
                self.open_block(out, StartBlock::Image { source: image_source(result, &mime) }, OpenKind::Whole);
                self.close(out);
            }
            DoneItem::ImageGeneration { .. } | DoneItem::Other { .. } => {}
        }
    }

    /// A reasoning item is complete: end its thinking block with the one signature_delta.
    fn reasoning_done(&mut self, out: &mut Vec<u8>, id: &str, summary: &[String], ec: Option<&str>) {
        let signature = signature_for(id, ec);
        let is_open = matches!(&self.open, Some(Open { kind: OpenKind::Thinking { item, .. }, .. }) if item == id);
        if is_open {
            self.sign(out, &signature);
            self.close(out);
            return;
        }
        let streamed = self.thought.iter().any(|t| t == id);
        let text = if streamed {
            String::new()
        } else {
            summary.iter().filter(|p| !p.is_empty()).map(String::as_str).collect::<Vec<_>>().join("\n\n")
        };
        // Its block was closed early (or never opened): a new block carries the signature, with the summary
        // text if none of it was streamed. Nothing at all when there is neither text nor encrypted content.
        if text.is_empty() && ec.is_none() {
            return;
        }
        self.open_thinking(out, id);
        if !text.is_empty() {
            self.delta(out, Delta::Thinking { thinking: &text });
        }
        self.sign(out, &signature);
        self.close(out);
    }

    /// A function call is complete. Its block exists already (from `.added`) unless the upstream skipped
    /// `.added`; arguments not yet streamed go out now, then the block closes. Never a second block.
    fn call_done(&mut self, out: &mut Vec<u8>, id: &str, call_id: &str, name: &str, arguments: &str) {
        let Some(pos) = self.calls.iter().position(|c| c.item == id) else {
            self.open_tool_use(out, id, call_id, name);
            self.delta(out, Delta::InputJson { partial_json: &tool_input_json(arguments) });
            self.close(out);
            return;
        };
        let is_open = matches!(&self.open, Some(Open { kind: OpenKind::ToolUse { item }, .. }) if item == id);
        if !is_open {
            return;
        }
        let sent = self.calls.get(pos).map(|c| c.sent.as_str()).unwrap_or_default();
        let rest = if sent.is_empty() {
            Some(tool_input_json(arguments))
        } else {
            arguments.strip_prefix(sent).filter(|r| !r.is_empty()).map(str::to_string)
        };
        if let Some(rest) = rest {
            self.delta(out, Delta::InputJson { partial_json: &rest });
        }
        self.close(out);
    }
}
