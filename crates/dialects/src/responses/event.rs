//! Typed view of the Codex backend's SSE events (the Responses streaming protocol).
//!
//! Only the fields the dialect encoders need are parsed; everything else is skipped by serde. Parsing happens in
//! two cheap steps: read `type`, then deserialize the payload struct of that type.

use serde::Deserialize;
use serde_json::Value;

/// Token usage as reported in `response.completed` / `response.incomplete`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, cached included (Codex/OpenAI convention).
    pub input_tokens: u64,
    pub cached_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
}

/// An output item at the moment it starts streaming.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemStart {
    Message { id: String },
    Reasoning { id: String },
    FunctionCall { id: String, call_id: String, name: String },
    Other { id: String, kind: String },
}

/// A finished output item, as carried by `response.output_item.done`.
#[derive(Debug, Clone, PartialEq)]
pub enum DoneItem {
    Message {
        id: String,
        text: String,
        refusal: Option<String>,
    },
    /// `encrypted_content` is kept byte for byte: dialects hand it to clients as an opaque signature.
    Reasoning {
        id: String,
        summary: Vec<String>,
        encrypted_content: Option<String>,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    CustomToolCall {
        id: String,
        call_id: String,
        name: String,
        input: String,
    },
    WebSearchCall {
        id: String,
        query: Option<String>,
        sources: Vec<Value>,
    },
    Other {
        kind: String,
        raw: Value,
    },
}

/// How the upstream response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Terminal {
    Completed,
    /// `response.incomplete` with its `incomplete_details.reason`.
    Incomplete {
        reason: String,
    },
    /// The gateway cut the stream itself (emulated stop sequence or token cap).
    Cut(crate::outcome::Finish),
}

/// One upstream event, reduced to what translation needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Created {
        response_id: String,
        model: Option<String>,
    },
    ItemAdded {
        output_index: u32,
        item: ItemStart,
    },
    TextDelta {
        item_id: String,
        delta: String,
    },
    RefusalDelta {
        item_id: String,
        delta: String,
    },
    ReasoningSummaryDelta {
        item_id: String,
        summary_index: u32,
        delta: String,
    },
    ReasoningSummaryPartAdded {
        item_id: String,
        summary_index: u32,
    },
    FunctionArgsDelta {
        item_id: String,
        delta: String,
    },
    ItemDone {
        output_index: u32,
        item: DoneItem,
    },
    /// The response finished. `output` is what `response.completed.output` carried (often empty).
    Finished {
        terminal: Terminal,
        usage: Option<Usage>,
        output: Vec<DoneItem>,
    },
    /// `response.failed` or an `error` event.
    Failed {
        code: Option<String>,
        message: String,
    },
    /// Keepalives, `in_progress`, `*.done` duplicates of deltas and anything not needed.
    Ignored,
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct CreatedPayload {
    response: ResponseHead,
}
#[derive(Deserialize)]
struct ResponseHead {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
}

#[derive(Deserialize)]
struct ItemAddedPayload {
    #[serde(default)]
    output_index: u32,
    item: RawItem,
}

#[derive(Deserialize)]
struct DeltaPayload {
    #[serde(default)]
    item_id: String,
    #[serde(default)]
    delta: String,
    #[serde(default)]
    summary_index: u32,
}

#[derive(Deserialize)]
struct ItemDonePayload {
    #[serde(default)]
    output_index: u32,
    item: RawItem,
}

/// Superset of the item fields we read; missing ones default.
#[derive(Deserialize, Default)]
struct RawItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    call_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: String,
    #[serde(default)]
    input: String,
    #[serde(default)]
    content: Vec<RawPart>,
    #[serde(default)]
    summary: Vec<RawPart>,
    #[serde(default)]
    encrypted_content: Option<String>,
    #[serde(default)]
    action: Option<Value>,
}

#[derive(Deserialize, Default)]
struct RawPart {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    refusal: String,
}

#[derive(Deserialize)]
struct TerminalPayload {
    response: TerminalResponse,
}
#[derive(Deserialize)]
struct TerminalResponse {
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    output: Vec<Value>,
    #[serde(default)]
    incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    error: Option<RawError>,
}
#[derive(Deserialize)]
struct IncompleteDetails {
    #[serde(default)]
    reason: Option<String>,
}
#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<CachedDetails>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    output_tokens_details: Option<ReasoningDetails>,
    #[serde(default)]
    total_tokens: u64,
}
#[derive(Deserialize)]
struct CachedDetails {
    #[serde(default)]
    cached_tokens: u64,
}
#[derive(Deserialize)]
struct ReasoningDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}
#[derive(Deserialize, Default)]
struct RawError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}
#[derive(Deserialize)]
struct ErrorEventPayload {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<RawError>,
}

/// Why an event could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("malformed upstream event: {0}")]
pub struct EventParseError(#[from] serde_json::Error);

impl Event {
    /// Parse one SSE `data:` payload.
    pub fn parse(data: &str) -> Result<Event, EventParseError> {
        let head: TypeOnly = serde_json::from_str(data)?;
        Ok(match head.kind.as_ref() {
            "response.created" => {
                let p: CreatedPayload = serde_json::from_str(data)?;
                Event::Created { response_id: p.response.id, model: p.response.model }
            }
            "response.output_item.added" => {
                let p: ItemAddedPayload = serde_json::from_str(data)?;
                let item = match p.item.kind.as_str() {
                    "message" => ItemStart::Message { id: p.item.id },
                    "reasoning" => ItemStart::Reasoning { id: p.item.id },
                    "function_call" => {
                        ItemStart::FunctionCall { id: p.item.id, call_id: p.item.call_id, name: p.item.name }
                    }
                    _ => ItemStart::Other { id: p.item.id, kind: p.item.kind },
                };
                Event::ItemAdded { output_index: p.output_index, item }
            }
            "response.output_text.delta" => {
                let p: DeltaPayload = serde_json::from_str(data)?;
                Event::TextDelta { item_id: p.item_id, delta: p.delta }
            }
            "response.refusal.delta" => {
                let p: DeltaPayload = serde_json::from_str(data)?;
                Event::RefusalDelta { item_id: p.item_id, delta: p.delta }
            }
            "response.reasoning_summary_text.delta" => {
                let p: DeltaPayload = serde_json::from_str(data)?;
                Event::ReasoningSummaryDelta { item_id: p.item_id, summary_index: p.summary_index, delta: p.delta }
            }
            "response.reasoning_summary_part.added" => {
                let p: DeltaPayload = serde_json::from_str(data)?;
                Event::ReasoningSummaryPartAdded { item_id: p.item_id, summary_index: p.summary_index }
            }
            "response.function_call_arguments.delta" => {
                let p: DeltaPayload = serde_json::from_str(data)?;
                Event::FunctionArgsDelta { item_id: p.item_id, delta: p.delta }
            }
            "response.output_item.done" => {
                let p: ItemDonePayload = serde_json::from_str(data)?;
                Event::ItemDone { output_index: p.output_index, item: done_item(p.item, None) }
            }
            "response.completed" | "response.incomplete" => {
                let p: TerminalPayload = serde_json::from_str(data)?;
                let terminal = if head.kind == "response.completed" {
                    Terminal::Completed
                } else {
                    let reason = p.response.incomplete_details.and_then(|d| d.reason).unwrap_or_default();
                    Terminal::Incomplete { reason }
                };
                let output = p
                    .response
                    .output
                    .into_iter()
                    .filter_map(|v| {
                        let raw = v.clone();
                        serde_json::from_value::<RawItem>(v).ok().map(|item| done_item(item, Some(raw)))
                    })
                    .collect();
                Event::Finished { terminal, usage: p.response.usage.map(usage_from), output }
            }
            "response.failed" => {
                let p: TerminalPayload = serde_json::from_str(data)?;
                let err = p.response.error.unwrap_or_default();
                Event::Failed {
                    code: err.code,
                    message: err.message.unwrap_or_else(|| "the upstream response failed".into()),
                }
            }
            "error" => {
                let p: ErrorEventPayload = serde_json::from_str(data)?;
                let inner = p.error.unwrap_or_default();
                Event::Failed {
                    code: p.code.or(inner.code),
                    message: p.message.or(inner.message).unwrap_or_else(|| "upstream error".into()),
                }
            }
            _ => Event::Ignored,
        })
    }

    /// True for events after which the upstream stream is over.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Failed { .. })
    }
}

fn usage_from(u: RawUsage) -> Usage {
    let total = if u.total_tokens > 0 { u.total_tokens } else { u.input_tokens + u.output_tokens };
    Usage {
        input_tokens: u.input_tokens,
        cached_tokens: u.input_tokens_details.map(|d| d.cached_tokens).unwrap_or(0),
        output_tokens: u.output_tokens,
        reasoning_tokens: u.output_tokens_details.map(|d| d.reasoning_tokens).unwrap_or(0),
        total_tokens: total,
    }
}

fn done_item(item: RawItem, raw: Option<Value>) -> DoneItem {
    match item.kind.as_str() {
        "message" => {
            let mut text = String::new();
            let mut refusal = None;
            for part in item.content {
                match part.kind.as_str() {
                    "output_text" => text.push_str(&part.text),
                    "refusal" => refusal = Some(part.refusal),
                    _ => {}
                }
            }
            DoneItem::Message { id: item.id, text, refusal }
        }
        "reasoning" => DoneItem::Reasoning {
            id: item.id,
            summary: item.summary.into_iter().map(|p| p.text).collect(),
            encrypted_content: item.encrypted_content,
        },
        "function_call" => {
            DoneItem::FunctionCall { id: item.id, call_id: item.call_id, name: item.name, arguments: item.arguments }
        }
        "custom_tool_call" => {
            DoneItem::CustomToolCall { id: item.id, call_id: item.call_id, name: item.name, input: item.input }
        }
        "web_search_call" => {
            let action = item.action.unwrap_or(Value::Null);
            let query = action.get("query").and_then(Value::as_str).map(str::to_string);
            let sources = action.get("sources").and_then(Value::as_array).cloned().unwrap_or_default();
            DoneItem::WebSearchCall { id: item.id, query, sources }
        }
        other => DoneItem::Other { kind: other.to_string(), raw: raw.unwrap_or(Value::Null) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_delta_and_completed_usage() {
        let e = Event::parse(r#"{"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"Hi","sequence_number":3}"#).ok();
        assert_eq!(e, Some(Event::TextDelta { item_id: "m1".into(), delta: "Hi".into() }));
        let e = Event::parse(r#"{"type":"response.completed","response":{"id":"r","status":"completed","output":[],"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":2},"total_tokens":17}}}"#).ok();
        assert_eq!(
            e,
            Some(Event::Finished {
                terminal: Terminal::Completed,
                usage: Some(Usage {
                    input_tokens: 10,
                    cached_tokens: 4,
                    output_tokens: 7,
                    reasoning_tokens: 2,
                    total_tokens: 17
                }),
                output: vec![]
            })
        );
    }

    #[test]
    fn parses_reasoning_done_keeping_encrypted_content() {
        let e = Event::parse(r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"thinking"}],"encrypted_content":"gAAA+/=="}}"#).ok();
        assert_eq!(
            e,
            Some(Event::ItemDone {
                output_index: 0,
                item: DoneItem::Reasoning {
                    id: "rs_1".into(),
                    summary: vec!["thinking".into()],
                    encrypted_content: Some("gAAA+/==".into())
                }
            })
        );
    }

    #[test]
    fn failed_and_unknown_events() {
        let e = Event::parse(r#"{"type":"response.failed","response":{"error":{"code":"context_length_exceeded","message":"too long"}}}"#).ok();
        assert_eq!(e, Some(Event::Failed { code: Some("context_length_exceeded".into()), message: "too long".into() }));
        assert_eq!(Event::parse(r#"{"type":"keepalive"}"#).ok(), Some(Event::Ignored));
        assert!(Event::parse("not json").is_err());
    }
}
