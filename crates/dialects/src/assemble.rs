//! Collects a whole upstream response from its events, for clients that did not ask for a stream.
//!
//! The backend's `response.completed.output` may be empty (litellm#26179), so items are taken from
//! `response.output_item.done` first, from deltas when a `.done` is missing, and from `completed.output` only
//! when nothing else arrived.

use crate::error::GatewayError;
use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, ItemStart, Usage};

/// What separates two messages of one answer in a dialect that carries its text as one string (Chat `content`,
/// Ollama `content`; Gemini's text parts, which clients join): a blank line, so a commentary message and the final
/// answer do not run together (`...with links.Here are a few...`).
pub const MESSAGE_SEPARATOR: &str = "\n\n";

/// The MIME type of an image the backend made, from its `output_format` (`png`, `jpeg`, `webp`).
pub fn image_mime(output_format: &str) -> String {
    match output_format {
        "png" | "jpeg" | "webp" | "gif" => format!("image/{output_format}"),
        "jpg" => "image/jpeg".into(),
        _ => "application/octet-stream".into(),
    }
}

/// One output item of the finished response, in output order.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputItem {
    Text(String),
    Refusal(String),
    Reasoning {
        id: String,
        summary: String,
        encrypted_content: Option<String>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    CustomToolCall {
        call_id: String,
        name: String,
        input: String,
    },
    WebSearch {
        id: String,
        query: Option<String>,
        sources: Vec<serde_json::Value>,
    },
    /// An image the hosted `image_generation` tool made: base64 data and its MIME type.
    Image {
        b64: String,
        mime: String,
    },
}

/// A response assembled from events.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub response_id: String,
    pub model: Option<String>,
    pub items: Vec<OutputItem>,
    pub usage: Usage,
    /// Set when the response ended normally (or was cut by the gateway).
    pub finish: Option<Finish>,
    /// Set when the upstream reported a failure.
    pub error: Option<GatewayError>,
    /// Item ids in `items` order, so `.done` can replace what deltas built.
    ids: Vec<String>,
}

impl Collected {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, item_id: &str, make: impl FnOnce() -> OutputItem) -> Option<&mut OutputItem> {
        let pos = match self.ids.iter().position(|i| i == item_id) {
            Some(p) => p,
            None => {
                self.ids.push(item_id.to_string());
                self.items.push(make());
                self.items.len() - 1
            }
        };
        self.items.get_mut(pos)
    }

    /// Feed one event.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::Created { response_id, model } => {
                self.response_id = response_id;
                self.model = model;
            }
            Event::ItemAdded { item, .. } => match item {
                ItemStart::Message { id } => {
                    self.slot(&id, || OutputItem::Text(String::new()));
                }
                ItemStart::Reasoning { id } => {
                    let rid = id.clone();
                    self.slot(&id, || OutputItem::Reasoning {
                        id: rid,
                        summary: String::new(),
                        encrypted_content: None,
                    });
                }
                ItemStart::FunctionCall { id, call_id, name } => {
                    self.slot(&id, || OutputItem::FunctionCall { call_id, name, arguments: String::new() });
                }
                ItemStart::Other { .. } => {}
            },
            Event::TextDelta { item_id, delta } => {
                if let Some(OutputItem::Text(t)) = self.slot(&item_id, || OutputItem::Text(String::new())) {
                    t.push_str(&delta);
                }
            }
            Event::RefusalDelta { item_id, delta } => {
                let key = format!("{item_id}#refusal");
                if let Some(OutputItem::Refusal(t)) = self.slot(&key, || OutputItem::Refusal(String::new())) {
                    t.push_str(&delta);
                }
            }
            Event::ReasoningSummaryDelta { item_id, summary_index, delta } => {
                let rid = item_id.to_string();
                let make = || OutputItem::Reasoning { id: rid, summary: String::new(), encrypted_content: None };
                let _ = summary_index; // parts are separated on `summary_part.added`
                if let Some(OutputItem::Reasoning { summary, .. }) = self.slot(&item_id, make) {
                    summary.push_str(&delta);
                }
            }
            Event::ReasoningSummaryPartAdded { item_id, summary_index } => {
                if summary_index > 0
                    && let Some(pos) = self.ids.iter().position(|i| *i == item_id)
                    && let Some(OutputItem::Reasoning { summary, .. }) = self.items.get_mut(pos)
                    && !summary.is_empty()
                {
                    summary.push_str("\n\n");
                }
            }
            Event::FunctionArgsDelta { item_id, delta } => {
                if let Some(pos) = self.ids.iter().position(|i| *i == item_id)
                    && let Some(OutputItem::FunctionCall { arguments, .. }) = self.items.get_mut(pos)
                {
                    arguments.push_str(&delta);
                }
            }
            Event::ItemDone { item, .. } => self.on_done(item),
            Event::Finished { terminal, usage, output } => {
                if self.items.is_empty() {
                    for item in output {
                        self.on_done(item);
                    }
                }
                if let Some(u) = usage {
                    self.usage = u;
                }
                // A custom tool call is a tool call too: a stream says so with every call it sends
                // (`finish_reason: "tool_calls"`), and a whole answer must end the same way.
                let had_calls = self
                    .items
                    .iter()
                    .any(|i| matches!(i, OutputItem::FunctionCall { .. } | OutputItem::CustomToolCall { .. }));
                self.finish = Some(Finish::from_terminal(&terminal, had_calls));
            }
            Event::Failed(refusal) => {
                self.error = Some(refusal.to_error());
            }
            Event::Ignored | Event::Unknown { .. } => {}
        }
    }

    fn on_done(&mut self, item: DoneItem) {
        let (id, value) = match item {
            DoneItem::Message { id, text, refusal } => {
                if let Some(r) = refusal {
                    let key = format!("{id}#refusal");
                    if let Some(slot) = self.slot(&key, || OutputItem::Refusal(String::new())) {
                        *slot = OutputItem::Refusal(r);
                    }
                }
                if text.is_empty() && !self.ids.contains(&id) {
                    return;
                }
                (id, OutputItem::Text(text))
            }
            DoneItem::Reasoning { id, summary, encrypted_content } => {
                (id.clone(), OutputItem::Reasoning { id, summary: summary.join("\n\n"), encrypted_content })
            }
            DoneItem::FunctionCall { id, call_id, name, arguments } => {
                (id, OutputItem::FunctionCall { call_id, name, arguments })
            }
            DoneItem::CustomToolCall { id, call_id, name, input } => {
                (id, OutputItem::CustomToolCall { call_id, name, input })
            }
            DoneItem::WebSearchCall { id, query, sources } => {
                (id.clone(), OutputItem::WebSearch { id, query, sources })
            }
            DoneItem::ImageGeneration { id, result, output_format } => {
                if result.is_empty() {
                    return;
                }
                (id, OutputItem::Image { b64: result, mime: image_mime(&output_format) })
            }
            DoneItem::Other { .. } => return,
        };
        let slot_value = value.clone();
        if let Some(slot) = self.slot(&id, || slot_value) {
            *slot = value;
        }
    }

    /// The visible text of all message items, for dialects that carry an answer's text as one string: the
    /// messages of one answer (a commentary message, then the final answer) are separated by a blank line, as the
    /// streams of those dialects separate them ([`MESSAGE_SEPARATOR`]).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            if let OutputItem::Text(t) = item
                && !t.is_empty()
            {
                if !out.is_empty() {
                    out.push_str(MESSAGE_SEPARATOR);
                }
                out.push_str(t);
            }
        }
        out
    }

    /// The generated images, in output order: (base64 data, MIME type).
    pub fn images(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().filter_map(|i| match i {
            OutputItem::Image { b64, mime } => Some((b64.as_str(), mime.as_str())),
            _ => None,
        })
    }

    /// The concatenated reasoning summaries.
    pub fn reasoning_summary(&self) -> String {
        let parts: Vec<&str> = self
            .items
            .iter()
            .filter_map(|i| match i {
                OutputItem::Reasoning { summary, .. } if !summary.is_empty() => Some(summary.as_str()),
                _ => None,
            })
            .collect();
        parts.join("\n\n")
    }

    /// The refusal text, if the model refused.
    pub fn refusal(&self) -> Option<String> {
        self.items.iter().find_map(|i| match i {
            OutputItem::Refusal(r) if !r.is_empty() => Some(r.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Event<'_> {
        Event::parse(s).unwrap_or(Event::Ignored)
    }

    #[test]
    fn assembles_from_done_items_when_completed_output_is_empty() {
        let mut c = Collected::new();
        for e in [
            r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-5.4"}}"#,
            r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"message","id":"m1"}}"#,
            r#"{"type":"response.output_text.delta","item_id":"m1","delta":"Hel"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m1","delta":"lo"}"#,
            r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"message","id":"m1","content":[{"type":"output_text","text":"Hello"}]}}"#,
            r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"function_call","id":"fc1","call_id":"call_1","name":"f"}}"#,
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc1","delta":"{\"a\""}"#,
            r#"{"type":"response.output_item.done","output_index":1,"item":{"type":"function_call","id":"fc1","call_id":"call_1","name":"f","arguments":"{\"a\":1}"}}"#,
            r#"{"type":"response.completed","response":{"output":[],"usage":{"input_tokens":3,"output_tokens":2}}}"#,
        ] {
            c.on_event(ev(e));
        }
        assert_eq!(c.response_id, "resp_1");
        assert_eq!(c.text(), "Hello");
        assert_eq!(
            c.items[1],
            OutputItem::FunctionCall { call_id: "call_1".into(), name: "f".into(), arguments: "{\"a\":1}".into() }
        );
        assert_eq!(c.finish, Some(Finish::ToolCalls));
        assert_eq!(c.usage.total_tokens, 5);
    }

    #[test]
    fn falls_back_to_completed_output() {
        let mut c = Collected::new();
        c.on_event(ev(
            r#"{"type":"response.completed","response":{"output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"late"}]}]}}"#,
        ));
        assert_eq!(c.text(), "late");
        assert_eq!(c.finish, Some(Finish::Stop));
    }

    #[test]
    fn failure_becomes_error() {
        let mut c = Collected::new();
        c.on_event(ev(r#"{"type":"response.failed","response":{"error":{"code":"context_length_exceeded","message":"too long"}}}"#));
        assert_eq!(c.error.map(|e| e.kind), Some(crate::error::ErrorKind::ContextTooLong));
    }
}
