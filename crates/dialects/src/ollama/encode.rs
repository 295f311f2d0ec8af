//! Responses events -> Ollama NDJSON lines, the non-streaming answers, and the error body.
//!
//! Stream (spec §4, C1): one JSON object per line, no blank lines. Text as `message.content` (chat) or
//! `response` (generate) fragments, reasoning summaries as `thinking` when the client asked to think, each tool
//! call whole on one line with `arguments` as an object, and a final `done:true` line with `done_reason`, token
//! counts and durations in nanoseconds. A failure after the first line is one `{"error":"..."}` line.
//!
//! Images the model generates (the hosted `image_generation` tool) go only where the official clients can read
//! them. `/api/generate` has `image` (base64), Ollama's own image generation field, in ollama-python's
//! `GenerateResponse` and ollama-js's alike: each image is a line of its own, a whole answer carries the first.
//! A chat message has no such field: `message.images` is a list of `Image` objects to ollama-python (0.6.3
//! refuses base64 strings there: its `Message` type fails to validate, so the whole answer is lost), and of
//! strings or bytes to ollama-js (which cannot send `{value}` objects back in a later turn). So a chat answer
//! says in its text where an image was left out ([`image_note`]), and the client can ask for it elsewhere.

use serde_json::{Map, Value, json};

use crate::assemble::{Collected, MESSAGE_SEPARATOR, OutputItem, image_mime};
use crate::error::GatewayError;
use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, ItemStart, Usage};

/// Which Ollama route the answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Generate,
}

/// Ollama's `done_reason` (spec C4).
pub fn done_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop | Finish::StopSequence(_) | Finish::ToolCalls | Finish::ContentFilter => "stop",
    }
}

/// `(status, {"error":"..."})`.
pub fn error_body(err: &GatewayError) -> (u16, Value) {
    (err.status(), json!({ "error": err.message }))
}

/// Nanoseconds since the request arrived; injected so the encoder stays pure and testable.
pub type Clock = Box<dyn FnMut() -> u64 + Send>;

// Typed text lines. Field order is Ollama's own (the order the generic `Map` path inserts its members), so the
// bytes equal those of that path (`typed_line_tests` compares them).
#[derive(serde::Serialize)]
struct ChatTextLine<'a> {
    model: &'a str,
    created_at: &'a str,
    message: TextMessage<'a>,
    done: bool,
}

#[derive(serde::Serialize)]
struct TextMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(serde::Serialize)]
struct GenerateTextLine<'a> {
    model: &'a str,
    created_at: &'a str,
    response: &'a str,
    done: bool,
}

crate::encoder::delegate!(OllamaEncoder);

/// Streaming encoder: upstream events in, NDJSON lines out.
pub struct OllamaEncoder {
    endpoint: Endpoint,
    model: String,
    created_at: String,
    think: bool,
    clock: Clock,
    first_output_ns: Option<u64>,
    calls: usize,
    reasoning_parts: u32,
    /// A message with text ended: the next message starts with [`MESSAGE_SEPARATOR`] (set at its `.done`, read at
    /// the next one's `.added`: no work per delta).
    after_text: bool,
    finished: bool,
}

impl OllamaEncoder {
    pub fn new(endpoint: Endpoint, model: String, created_at: String, think: bool, clock: Clock) -> Self {
        OllamaEncoder {
            endpoint,
            model,
            created_at,
            think,
            clock,
            first_output_ns: None,
            calls: 0,
            reasoning_parts: 0,
            after_text: false,
            finished: false,
        }
    }

    fn line(&self, v: &Value, out: &mut Vec<u8>) {
        if crate::sse::write_json(out, v) {
            out.push(b'\n');
        }
    }

    fn head(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("model".into(), json!(self.model));
        m.insert("created_at".into(), json!(self.created_at));
        m
    }

    /// One line carrying `content` / `thinking` / `tool_calls`.
    fn delta(&mut self, content: &str, thinking: Option<&str>, tool_calls: Option<Value>, out: &mut Vec<u8>) {
        if self.first_output_ns.is_none() {
            self.first_output_ns = Some((self.clock)());
        }
        if thinking.is_none() && tool_calls.is_none() {
            // Plain text, nearly every line of a stream: typed, same bytes as the map below.
            let written = match self.endpoint {
                Endpoint::Chat => crate::sse::write_json(
                    out,
                    &ChatTextLine {
                        model: &self.model,
                        created_at: &self.created_at,
                        message: TextMessage { role: "assistant", content },
                        done: false,
                    },
                ),
                Endpoint::Generate => crate::sse::write_json(
                    out,
                    &GenerateTextLine {
                        model: &self.model,
                        created_at: &self.created_at,
                        response: content,
                        done: false,
                    },
                ),
            };
            if written {
                out.push(b'\n');
            }
            return;
        }
        let mut m = self.head();
        match self.endpoint {
            Endpoint::Chat => {
                let mut msg = json!({"role": "assistant", "content": content});
                if let Some(t) = thinking {
                    msg["thinking"] = json!(t);
                }
                if let Some(tc) = tool_calls {
                    msg["tool_calls"] = tc;
                }
                m.insert("message".into(), msg);
            }
            Endpoint::Generate => {
                m.insert("response".into(), json!(content));
                if let Some(t) = thinking {
                    m.insert("thinking".into(), json!(t));
                }
            }
        }
        m.insert("done".into(), json!(false));
        self.line(&Value::Object(m), out);
    }

    /// A generated image: on `/api/generate` a line with `image` (base64); in a chat, its note in the text, a
    /// paragraph of its own (see the module doc).
    fn image(&mut self, b64: &str, mime: &str, out: &mut Vec<u8>) {
        match self.endpoint {
            Endpoint::Generate => {
                if self.first_output_ns.is_none() {
                    self.first_output_ns = Some((self.clock)());
                }
                let mut m = self.head();
                m.insert("response".into(), json!(""));
                m.insert("image".into(), json!(b64));
                m.insert("done".into(), json!(false));
                self.line(&Value::Object(m), out);
            }
            Endpoint::Chat => {
                let mut text = String::new();
                if std::mem::take(&mut self.after_text) {
                    text.push_str(MESSAGE_SEPARATOR);
                }
                text.push_str(&image_note(mime, b64.len()));
                self.delta(&text, None, None, out);
                self.after_text = true;
            }
        }
    }

    pub fn on_event(&mut self, event: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        match event {
            Event::TextDelta { delta, .. } | Event::RefusalDelta { delta, .. } if !delta.is_empty() => {
                self.delta(delta, None, None, out);
            }
            Event::ReasoningSummaryPartAdded { .. } if self.think => {
                if self.reasoning_parts > 0 {
                    self.delta("", Some("\n\n"), None, out);
                }
                self.reasoning_parts += 1;
            }
            Event::ReasoningSummaryDelta { delta, .. } if self.think && !delta.is_empty() => {
                self.delta("", Some(delta), None, out);
            }
            Event::ItemAdded { item: ItemStart::Message { .. }, .. } if self.after_text => {
                self.after_text = false;
                self.delta(MESSAGE_SEPARATOR, None, None, out);
            }
            Event::ItemDone { item: DoneItem::Message { text, .. }, .. } => self.after_text |= !text.is_empty(),
            Event::ItemDone { item: DoneItem::ImageGeneration { result, output_format, .. }, .. }
                if !result.is_empty() =>
            {
                self.image(result, &image_mime(output_format), out);
            }
            Event::ItemDone { item: DoneItem::FunctionCall { call_id, name, arguments, .. }, .. }
                if self.endpoint == Endpoint::Chat =>
            {
                let call = tool_call(call_id, name, arguments, self.calls);
                self.calls += 1;
                self.delta("", None, Some(json!([call])), out);
            }
            Event::Finished { terminal, usage, .. } => {
                // Ollama has no tool-call finish reason: a turn with calls ends with `stop`.
                let finish = Finish::from_terminal(terminal, false);
                self.finish(&finish, usage.as_ref(), out);
            }
            Event::Failed(refusal) => {
                let err = refusal.to_error();
                self.error(&err, out);
            }
            _ => {}
        }
    }

    /// The `done:true` line with metrics.
    pub fn finish(&mut self, finish: &Finish, usage: Option<&Usage>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let total = (self.clock)();
        let mut m = self.head();
        match self.endpoint {
            Endpoint::Chat => {
                m.insert("message".into(), json!({"role": "assistant", "content": ""}));
            }
            Endpoint::Generate => {
                m.insert("response".into(), json!(""));
            }
        }
        m.insert("done".into(), json!(true));
        m.insert("done_reason".into(), json!(done_reason(finish)));
        metrics(&mut m, &usage.copied().unwrap_or_default(), total, self.first_output_ns.unwrap_or(total));
        self.line(&Value::Object(m), out);
    }

    /// An error after the stream began: one `{"error":"..."}` line, then the body ends.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.line(&error_body(err).1, out);
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Token counts and durations: prompt evaluation lasts until the first output, evaluation the rest. The model
/// is never "loaded", so `load_duration` is 0. Durations are at least 1 ns: clients divide by them.
fn metrics(m: &mut Map<String, Value>, u: &Usage, total_ns: u64, first_output_ns: u64) {
    let total = total_ns.max(2);
    let prompt = first_output_ns.clamp(1, total - 1);
    m.insert("total_duration".into(), json!(total));
    m.insert("load_duration".into(), json!(0));
    m.insert("prompt_eval_count".into(), json!(u.input_tokens));
    m.insert("prompt_eval_duration".into(), json!(prompt));
    m.insert("eval_count".into(), json!(u.output_tokens));
    m.insert("eval_duration".into(), json!(total - prompt));
}

fn tool_call(call_id: &str, name: &str, arguments: &str, index: usize) -> Value {
    let args = match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    };
    json!({"id": call_id, "function": {"index": index, "name": name, "arguments": args}})
}

fn finish_of(c: &Collected) -> Finish {
    c.finish.clone().unwrap_or(Finish::Stop)
}

/// What a chat answer says where the model generated an image it cannot carry (see the module doc): a paragraph
/// of text, so every client shows it and sends it back harmlessly in a later turn.
pub fn image_note(mime: &str, b64_len: usize) -> String {
    let kb = (b64_len / 4 * 3).div_ceil(1024);
    format!(
        "[The model generated an image here ({mime}, {kb} KB) that an Ollama chat message cannot carry. \
         Ollama's /api/generate returns it in `image`, as do this gateway's OpenAI, Anthropic, Gemini and \
         Responses APIs in their own fields.]"
    )
}

/// The answer's text with a note for each generated image ([`image_note`]) where the image was, each message and
/// note a paragraph, as the stream writes them. `notes_from`: the first image that gets a note (0: all).
fn text_with_notes(c: &Collected, notes_from: usize) -> String {
    let mut out = String::new();
    let mut image = 0;
    for item in &c.items {
        let piece = match item {
            OutputItem::Text(t) if !t.is_empty() => std::borrow::Cow::Borrowed(t.as_str()),
            OutputItem::Image { b64, mime } => {
                image += 1;
                if image <= notes_from {
                    continue;
                }
                std::borrow::Cow::Owned(image_note(mime, b64.len()))
            }
            _ => continue,
        };
        if !out.is_empty() {
            out.push_str(MESSAGE_SEPARATOR);
        }
        out.push_str(&piece);
    }
    out
}

/// The non-streaming `/api/chat` answer. `total_ns` is the measured request time.
pub fn render_chat(c: &Collected, model: &str, created_at: &str, think: bool, total_ns: u64) -> Value {
    let mut message = json!({"role": "assistant", "content": text_with_notes(c, 0)});
    let reasoning = c.reasoning_summary();
    if think && !reasoning.is_empty() {
        message["thinking"] = json!(reasoning);
    }
    let calls: Vec<Value> = c
        .items
        .iter()
        .filter_map(|i| match i {
            OutputItem::FunctionCall { call_id, name, arguments } => Some((call_id, name, arguments)),
            _ => None,
        })
        .enumerate()
        .map(|(k, (id, name, args))| tool_call(id, name, args, k))
        .collect();
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let mut m = Map::new();
    m.insert("model".into(), json!(model));
    m.insert("created_at".into(), json!(created_at));
    m.insert("message".into(), message);
    m.insert("done".into(), json!(true));
    m.insert("done_reason".into(), json!(done_reason(&finish_of(c))));
    metrics(&mut m, &c.usage, total_ns, 0);
    Value::Object(m)
}

/// The non-streaming `/api/generate` answer: the first generated image in `image`, a note for any other (one
/// answer has room for one image).
pub fn render_generate(c: &Collected, model: &str, created_at: &str, think: bool, total_ns: u64) -> Value {
    let mut m = Map::new();
    m.insert("model".into(), json!(model));
    m.insert("created_at".into(), json!(created_at));
    m.insert("response".into(), json!(text_with_notes(c, 1)));
    if let Some((b64, _)) = c.images().next() {
        m.insert("image".into(), json!(b64));
    }
    let reasoning = c.reasoning_summary();
    if think && !reasoning.is_empty() {
        m.insert("thinking".into(), json!(reasoning));
    }
    m.insert("done".into(), json!(true));
    m.insert("done_reason".into(), json!(done_reason(&finish_of(c))));
    metrics(&mut m, &c.usage, total_ns, 0);
    Value::Object(m)
}

#[cfg(test)]
mod typed_line_tests {
    use super::*;

    #[test]
    fn typed_text_line_has_the_bytes_of_the_map_line() {
        for endpoint in [Endpoint::Chat, Endpoint::Generate] {
            let mut enc =
                OllamaEncoder::new(endpoint, "gpt-5.4".into(), "2026-01-01T00:00:00Z".into(), false, Box::new(|| 1));
            let text = "Hi \"there\"\n\u{e9}";
            let mut typed = Vec::new();
            enc.delta(text, None, None, &mut typed);
            let mut m = enc.head();
            match endpoint {
                Endpoint::Chat => {
                    m.insert("message".into(), json!({"role": "assistant", "content": text}));
                }
                Endpoint::Generate => {
                    m.insert("response".into(), json!(text));
                }
            }
            m.insert("done".into(), json!(false));
            let mut generic = Vec::new();
            enc.line(&Value::Object(m), &mut generic);
            assert_eq!(String::from_utf8_lossy(&typed), String::from_utf8_lossy(&generic));
        }
    }
}
