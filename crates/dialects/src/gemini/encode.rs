//! Responses events -> Gemini `GenerateContentResponse` stream chunks.
//!
//! Each chunk is a whole response object carrying only the new parts (spec §3): text deltas as `{text}` parts,
//! reasoning summaries as `{text, thought:true}` when the client asked for thoughts, each function call as one
//! whole `{functionCall:{id, name, args}}` part on its `output_item.done`. The upstream reasoning item travels in
//! `thoughtSignature` on the next function call part, or on a signature-only thought part in the final chunk
//! when no call follows; it is never merged into a text part. The last chunk always carries `finishReason` and
//! `usageMetadata`.
//!
//! Framing (spec C1): with `alt=sse` every chunk is `data: <json>\n\n` and nothing else — no `event:` lines, no
//! comments, no `[DONE]` (python-genai parses any other non-empty line as JSON; js-genai needs the blank-line
//! terminator). Without `alt=sse` the body is one JSON array, written incrementally: `[` chunk `,\r\n` chunk `]`.
//! There is no frame a Gemini client ignores, so keepalives are not written at all.

use serde::Serialize;
use serde_json::{Value, json};

use super::render::{error_body, finish_reason, usage_metadata};
use super::signature::encode_signature;
use crate::assemble::{MESSAGE_SEPARATOR, image_mime};
use crate::error::GatewayError;
use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, ItemStart, Usage};
use crate::sse::write_data_json;

/// How chunks are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `?alt=sse`: `data: <json>\n\n` per chunk.
    Sse,
    /// No `alt=sse`: the chunks as the elements of one JSON array.
    JsonArray,
}

/// Streaming encoder: a pure state machine fed upstream events, writing Gemini chunks.
// Typed text chunk. Field order is the order `chunk` builds them in, so both paths give the same bytes
// (`typed_chunk_tests` compares them).
#[derive(Serialize)]
struct TextChunk<'a> {
    candidates: [TextCandidate<'a>; 1],
    #[serde(rename = "modelVersion")]
    model_version: &'a str,
    #[serde(rename = "responseId")]
    response_id: &'a str,
}

#[derive(Serialize)]
struct TextCandidate<'a> {
    content: TextContent<'a>,
    index: u32,
}

#[derive(Serialize)]
struct TextContent<'a> {
    parts: [TextPart<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    thought: bool,
}

/// Append one chunk in the stream's framing (`chunks` written so far); false if nothing was written.
fn frame<T: Serialize + ?Sized>(framing: Framing, chunks: usize, value: &T, out: &mut Vec<u8>) -> bool {
    let mark = out.len();
    match framing {
        Framing::Sse => write_data_json(out, value),
        Framing::JsonArray => {
            out.extend_from_slice(if chunks == 0 { b"[" } else { b",\r\n" });
            if !crate::sse::write_json(out, value) {
                out.truncate(mark);
            }
        }
    }
    out.len() != mark
}

crate::encoder::delegate!(GeminiEncoder);

pub struct GeminiEncoder {
    framing: Framing,
    response_id: String,
    model: String,
    include_thoughts: bool,
    /// Signatures of reasoning items not yet attached to a part.
    pending_signatures: Vec<String>,
    /// A message with text ended: the next message's text starts after [`MESSAGE_SEPARATOR`] (clients join text
    /// parts as they come). Set at the message's `.done`, read at the next one's `.added`: no work per delta.
    after_text: bool,
    /// Reasoning summary parts begun, so later ones start after a blank line as in every dialect.
    thought_parts: u32,
    calls: usize,
    chunks: usize,
    finished: bool,
}

impl GeminiEncoder {
    pub fn new(framing: Framing, response_id: String, model: String, include_thoughts: bool) -> Self {
        GeminiEncoder {
            framing,
            response_id,
            model,
            include_thoughts,
            pending_signatures: Vec::new(),
            after_text: false,
            thought_parts: 0,
            calls: 0,
            chunks: 0,
            finished: false,
        }
    }

    fn write<T: Serialize + ?Sized>(&mut self, value: &T, out: &mut Vec<u8>) {
        if frame(self.framing, self.chunks, value, out) {
            self.chunks += 1;
        }
    }

    fn close_array(&mut self, out: &mut Vec<u8>) {
        if self.framing == Framing::JsonArray {
            if self.chunks == 0 {
                out.push(b'[');
            }
            out.extend_from_slice(b"]");
        }
    }

    fn chunk(&mut self, parts: Vec<Value>, out: &mut Vec<u8>) {
        let v = json!({
            "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
            "modelVersion": self.model,
            "responseId": self.response_id,
        });
        self.write(&v, out);
    }

    /// A chunk with one text part, typed: the same bytes as [`GeminiEncoder::chunk`] with
    /// `{"text": ..}` (plus `"thought": true`), without building a `Value` per delta.
    fn text_chunk(&mut self, text: &str, thought: bool, out: &mut Vec<u8>) {
        let chunk = TextChunk {
            candidates: [TextCandidate {
                content: TextContent { parts: [TextPart { text, thought }], role: "model" },
                index: 0,
            }],
            model_version: &self.model,
            response_id: &self.response_id,
        };
        if frame(self.framing, self.chunks, &chunk, out) {
            self.chunks += 1;
        }
    }

    /// Signature-only thought parts for all pending signatures but the last, which is returned.
    fn take_signatures(&mut self, parts: &mut Vec<Value>) -> Option<String> {
        let last = self.pending_signatures.pop();
        for sig in self.pending_signatures.drain(..) {
            parts.push(json!({"text": "", "thought": true, "thoughtSignature": sig}));
        }
        last
    }

    /// Feed one upstream event.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        match event {
            Event::TextDelta { delta, .. } | Event::RefusalDelta { delta, .. } if !delta.is_empty() => {
                self.text_chunk(delta, false, out);
            }
            Event::ReasoningSummaryDelta { delta, .. } if self.include_thoughts && !delta.is_empty() => {
                self.text_chunk(delta, true, out);
            }
            Event::ReasoningSummaryPartAdded { summary_index, .. } if self.include_thoughts => {
                if *summary_index > 0 || self.thought_parts > 0 {
                    self.text_chunk(MESSAGE_SEPARATOR, true, out);
                }
                self.thought_parts += 1;
            }
            Event::ItemAdded { item: ItemStart::Message { .. }, .. } if self.after_text => {
                self.after_text = false;
                self.text_chunk(MESSAGE_SEPARATOR, false, out);
            }
            Event::ItemDone { item: DoneItem::Message { text, .. }, .. } => self.after_text |= !text.is_empty(),
            Event::ItemDone { item: DoneItem::ImageGeneration { result, output_format, .. }, .. }
                if !result.is_empty() =>
            {
                self.chunk(vec![inline_data_part(result, &image_mime(output_format))], out);
            }
            Event::ItemDone { item: DoneItem::Reasoning { id, encrypted_content: Some(ec), .. }, .. } => {
                self.pending_signatures.push(encode_signature(id, ec));
            }
            Event::ItemDone { item: DoneItem::FunctionCall { call_id, name, arguments, .. }, .. } => {
                let mut parts = Vec::new();
                let signature = self.take_signatures(&mut parts);
                parts.push(function_call_part(call_id, name, arguments, signature));
                self.calls += 1;
                self.chunk(parts, out);
            }
            Event::Finished { terminal, usage, .. } => {
                let finish = Finish::from_terminal(terminal, self.calls > 0);
                self.finish(&finish, usage.as_ref(), out);
            }
            Event::Failed(refusal) => {
                let err = refusal.to_error();
                self.error(&err, out);
            }
            _ => {}
        }
    }

    /// The final chunk: pending signatures, `finishReason`, `usageMetadata`; then `]` in array mode.
    pub fn finish(&mut self, finish: &Finish, usage: Option<&Usage>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut parts = Vec::new();
        if let Some(sig) = self.take_signatures(&mut parts) {
            parts.push(json!({"text": "", "thought": true, "thoughtSignature": sig}));
        }
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        let v = json!({
            "candidates": [{
                "content": {"parts": parts, "role": "model"},
                "finishReason": finish_reason(finish),
                "index": 0,
            }],
            "usageMetadata": usage_metadata(&usage.copied().unwrap_or_default()),
            "modelVersion": self.model,
            "responseId": self.response_id,
        });
        self.write(&v, out);
        self.close_array(out);
    }

    /// An error after the stream began: `{"error":{...}}` as the last chunk (both SDKs raise on it), then close.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let (_, body) = error_body(err);
        self.write(&body, out);
        self.close_array(out);
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A generated image as a Gemini part (`inlineData`, as Gemini's own image models answer).
pub(super) fn inline_data_part(b64: &str, mime: &str) -> Value {
    json!({"inlineData": {"mimeType": mime, "data": b64}})
}

/// A whole function call part. `args` is the parsed arguments object (`{}` if the upstream sent none).
pub(super) fn function_call_part(call_id: &str, name: &str, arguments: &str, signature: Option<String>) -> Value {
    let args = match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    };
    let mut part = json!({"functionCall": {"id": call_id, "name": name, "args": args}});
    if let Some(sig) = signature {
        part["thoughtSignature"] = Value::String(sig);
    }
    part
}

#[cfg(test)]
mod typed_chunk_tests {
    use super::*;

    #[test]
    fn typed_text_chunk_has_the_bytes_of_the_value_chunk() {
        for framing in [Framing::Sse, Framing::JsonArray] {
            for (text, thought) in [("Hi \"there\"\n\u{e9}", false), ("thinking", true)] {
                let mut typed = GeminiEncoder::new(framing, "resp_1".into(), "gemini-2.5-pro".into(), true);
                let mut generic = GeminiEncoder::new(framing, "resp_1".into(), "gemini-2.5-pro".into(), true);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for _ in 0..2 {
                    typed.text_chunk(text, thought, &mut a);
                    let part = if thought { json!({"text": text, "thought": true}) } else { json!({"text": text}) };
                    generic.chunk(vec![part], &mut b);
                }
                assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
            }
        }
    }
}
