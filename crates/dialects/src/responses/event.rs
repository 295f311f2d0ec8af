//! Typed view of the Codex backend's SSE events (the Responses streaming protocol).
//!
//! Only the fields the dialect encoders need are parsed; everything else is skipped by serde. Parsing is one pass
//! that reads `type` and captures the few fields any event type uses, unparsed ([`Wire`]); the event's branch
//! then parses just the captured fields it needs.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::ignored::IGNORED_TYPES;
use crate::failure::{Refusal, classify_event_refusal};
use serde_json::value::RawValue;

/// Token usage as reported in `response.completed` / `response.incomplete`: the one place the backend's usage is
/// read; every dialect, the ledger and the planner take it from here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// All input tokens, cached and cache writes included (Codex/OpenAI convention).
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache (`input_tokens_details.cached_tokens`).
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (`input_tokens_details.cache_write_tokens`, 0.171), beside the
    /// cached ones: part of `input_tokens`, not read from the cache.
    pub cache_write_tokens: u64,
    /// All output tokens, reasoning included.
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
    /// What the response cost in the backend's own units (`codex_rollout_budget_units`, 0.171): opaque, possibly
    /// fractional, not tokens. `None` when the backend does not report it.
    pub budget_units: Option<f64>,
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
    /// The hosted `image_generation` tool's finished image: `result` is the image, base64, in `output_format`
    /// (`png` when the item names none). Empty when the generation produced none.
    ImageGeneration {
        id: String,
        result: String,
        output_format: String,
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
        reason: IncompleteReason,
    },
    /// The gateway cut the stream itself (emulated stop sequence or token cap).
    Cut(crate::outcome::Finish),
}

/// Why the upstream ended a response as incomplete (`incomplete_details.reason`), read once where the event is
/// parsed: the finish each dialect reports, and whether a response the content filter ended before any output is
/// a refusal (`failure::Refusal::before_output`), are decided on this, not on the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncompleteReason {
    /// The output token cap.
    MaxOutputTokens,
    /// The upstream's content filter stopped the response.
    ContentFilter,
    /// A reason this gateway does not know (or none), as the upstream wrote it: reported as a length cut.
    Other(String),
}

impl From<&str> for IncompleteReason {
    fn from(reason: &str) -> IncompleteReason {
        match reason {
            "max_output_tokens" => IncompleteReason::MaxOutputTokens,
            "content_filter" => IncompleteReason::ContentFilter,
            other => IncompleteReason::Other(other.to_string()),
        }
    }
}

/// One upstream event, reduced to what translation needs. Delta payloads and their item ids borrow from the SSE
/// payload they were parsed from when it has no escapes (nearly always): a stream's hundreds of deltas then cost
/// no allocation each. [`Event::into_owned`] detaches an event that must outlive its payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Created {
        response_id: String,
        model: Option<String>,
    },
    ItemAdded {
        output_index: u32,
        item: ItemStart,
    },
    TextDelta {
        item_id: Cow<'a, str>,
        delta: Cow<'a, str>,
    },
    RefusalDelta {
        item_id: Cow<'a, str>,
        delta: Cow<'a, str>,
    },
    ReasoningSummaryDelta {
        item_id: Cow<'a, str>,
        summary_index: u32,
        delta: Cow<'a, str>,
    },
    ReasoningSummaryPartAdded {
        item_id: String,
        summary_index: u32,
    },
    FunctionArgsDelta {
        item_id: Cow<'a, str>,
        delta: Cow<'a, str>,
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
    /// `response.failed` or an `error` event, classified once where it is parsed (`failure::classify_event`);
    /// or a frame the relay could not parse at all (`Reason::MalformedEvent`, built by the relay's reader). Boxed:
    /// rare, and it keeps the events every stream is made of small.
    Failed(Box<Refusal>),
    /// Event types the protocol defines that translation does not need: keepalives, `in_progress`, content-part
    /// bookkeeping, `*.done` duplicates of deltas, progress of tool items that end in `output_item.done`.
    Ignored,
    /// An event type this gateway does not know. Translated like [`Event::Ignored`] (the Responses passthrough
    /// forwards it as received), but told apart so the relay counts and logs it: a new upstream event must not
    /// vanish without a trace. `kind` borrows the payload's `type`.
    Unknown {
        kind: Cow<'a, str>,
    },
}

/// Every top-level field any event type reads, captured unparsed in one pass over the payload; the branch for
/// the event's `type` then parses only the fields it needs (a delta is one scan plus two small copies, instead
/// of a `type` scan followed by a second full parse).
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    item_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    #[serde(borrow, default)]
    summary_index: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_index: Option<&'a RawValue>,
    #[serde(borrow, default)]
    item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// An optional field: its type's default when absent or null.
fn opt<T: serde::de::DeserializeOwned + Default>(raw: Option<&RawValue>) -> Result<T, serde_json::Error> {
    match raw {
        Some(r) => serde_json::from_str::<Option<T>>(r.get()).map(Option::unwrap_or_default),
        None => Ok(T::default()),
    }
}

/// A required field that borrows from the payload.
fn borrowed<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, name: &'static str) -> Result<T, serde_json::Error> {
    match raw {
        Some(r) => serde_json::from_str(r.get()),
        None => Err(serde::de::Error::missing_field(name)),
    }
}

/// The required `item` of an `output_item` event ([`RawItem::parse`]).
fn item<'a>(raw: Option<&'a RawValue>) -> Result<RawItem<'a>, serde_json::Error> {
    match raw {
        Some(r) => RawItem::parse(r.get()),
        None => Err(serde::de::Error::missing_field("item")),
    }
}

/// A required field.
fn req<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>, name: &'static str) -> Result<T, serde_json::Error> {
    match raw {
        Some(r) => serde_json::from_str(r.get()),
        None => Err(serde::de::Error::missing_field(name)),
    }
}

/// A string field ("" when absent or null). Strings without escapes, nearly all of them, are borrowed.
fn string<'a>(raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, serde_json::Error> {
    let Some(r) = raw else { return Ok(Cow::Borrowed("")) };
    let text = r.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains('\\')
    {
        return Ok(Cow::Borrowed(inner));
    }
    opt::<String>(raw).map(Cow::Owned)
}

/// [`string`] for fields that are kept owned.
fn owned_string(raw: Option<&RawValue>) -> Result<String, serde_json::Error> {
    string(raw).map(Cow::into_owned)
}

#[derive(Deserialize)]
struct ResponseHead {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
}

/// Superset of the item fields we read; missing ones default. The type names (and a message's text, joined into
/// one string anyway) are borrowed from the payload: owned, they were an allocation each on every item.
///
/// An item is data the backend may extend at any time, so reading one never fails on a field's type: the text
/// fields take any JSON value ([`Lenient`]: `tool_search_call` sends an object as `arguments` and may send a null
/// `call_id`), and an item whose other fields do not fit is read by its type alone ([`RawItem::parse`]). What
/// the gateway does not know is the client's to see (passthrough) or skipped (translation), never a failure.
#[derive(Deserialize, Default)]
struct RawItem<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    id: Lenient,
    #[serde(default)]
    call_id: Lenient,
    #[serde(default)]
    name: Lenient,
    #[serde(default)]
    arguments: Lenient,
    #[serde(default)]
    input: Lenient,
    #[serde(default, borrow)]
    content: Vec<RawPart<'a>>,
    #[serde(default, borrow)]
    summary: Vec<RawPart<'a>>,
    #[serde(default)]
    encrypted_content: Option<String>,
    #[serde(default)]
    action: Option<Value>,
    /// `image_generation_call`: the image (base64) and its format.
    #[serde(default)]
    result: Lenient,
    #[serde(default)]
    output_format: Lenient,
}

/// Just an item's type: what is left of an item whose fields do not fit [`RawItem`].
#[derive(Deserialize)]
struct KindOnly<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
}

impl<'a> RawItem<'a> {
    /// An item from its JSON text: every field the gateway reads, or, when one of them has a shape the gateway
    /// does not expect, the type alone. Errs only on text that is not a JSON object.
    fn parse(raw: &'a str) -> Result<RawItem<'a>, serde_json::Error> {
        serde_json::from_str::<RawItem<'a>>(raw).or_else(|full| match serde_json::from_str::<KindOnly<'a>>(raw) {
            Ok(k) => Ok(RawItem { kind: k.kind, ..RawItem::default() }),
            Err(_) => Err(full),
        })
    }
}

/// A text field of an item that accepts any JSON value: a string as itself, `null` as empty, anything else as
/// its JSON text.
#[derive(Default, Debug, Clone, PartialEq)]
struct Lenient(String);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lenient, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient(v))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(String::new()))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(String::new()))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Lenient, A::Error> {
                let v = Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Lenient(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Lenient, A::Error> {
                let v = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Lenient(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
struct RawPart<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Cow<'a, str>,
    #[serde(default)]
    refusal: String,
}

#[derive(Deserialize)]
struct TerminalResponse<'a> {
    #[serde(default)]
    usage: Option<RawUsage>,
    /// Kept unparsed: each item is read once into a [`RawItem`] (and into a `Value` only if its type is unknown).
    #[serde(borrow, default)]
    output: Vec<&'a RawValue>,
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
/// The usage object. The detail counts and the budget units are read leniently (a `null` or a value of another
/// type reads as absent): the backend added them over time, and a detail it writes differently must not cost the
/// whole terminal event, which carries the answer's outcome.
#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default, deserialize_with = "lenient")]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default, deserialize_with = "lenient")]
    output_tokens_details: Option<ReasoningDetails>,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default, deserialize_with = "lenient")]
    codex_rollout_budget_units: Option<f64>,
}
#[derive(Deserialize)]
struct InputDetails {
    #[serde(default, deserialize_with = "lenient")]
    cached_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    cache_write_tokens: Option<u64>,
}
#[derive(Deserialize)]
struct ReasoningDetails {
    #[serde(default, deserialize_with = "lenient")]
    reasoning_tokens: Option<u64>,
}

/// `Some` when the value reads as a `T`; `None` for `null` or a value of another shape (see [`RawUsage`]).
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}
#[derive(Deserialize, Default)]
struct RawError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}
/// Why an event could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("malformed upstream event: {0}")]
pub struct EventParseError(#[from] serde_json::Error);

impl<'a> Event<'a> {
    /// Parse one SSE `data:` payload: every field any type reads captured unparsed, then the type's fields parsed.
    pub fn parse(data: &'a str) -> Result<Event<'a>, EventParseError> {
        let w: Wire<'a> = serde_json::from_str(data)?;
        Ok(match w.kind.as_ref() {
            "response.created" => Event::created(req(w.response, "response")?),
            "response.output_item.added" => Event::item_added(item(w.item)?, opt(w.output_index)?),
            "response.output_text.delta" => Event::TextDelta { item_id: string(w.item_id)?, delta: string(w.delta)? },
            "response.refusal.delta" => Event::RefusalDelta { item_id: string(w.item_id)?, delta: string(w.delta)? },
            "response.reasoning_summary_text.delta" => Event::ReasoningSummaryDelta {
                item_id: string(w.item_id)?,
                summary_index: opt(w.summary_index)?,
                delta: string(w.delta)?,
            },
            "response.reasoning_summary_part.added" => Event::ReasoningSummaryPartAdded {
                item_id: owned_string(w.item_id)?,
                summary_index: opt(w.summary_index)?,
            },
            "response.function_call_arguments.delta" => {
                Event::FunctionArgsDelta { item_id: string(w.item_id)?, delta: string(w.delta)? }
            }
            "response.output_item.done" => Event::item_done(item(w.item)?, opt(w.output_index)?),
            "response.completed" => Event::finished(borrowed(w.response, "response")?, false),
            "response.incomplete" => Event::finished(borrowed(w.response, "response")?, true),
            "response.failed" => {
                let r: TerminalResponse = borrowed(w.response, "response")?;
                let err = r.error.unwrap_or_default();
                let message = err.message.unwrap_or_else(|| "the upstream response failed".into());
                Event::failed(err.code, message)
            }
            "error" => {
                let code: Option<String> = opt(w.code)?;
                let message: Option<String> = opt(w.message)?;
                let inner: RawError = opt::<Option<RawError>>(w.error)?.unwrap_or_default();
                Event::failed(code.or(inner.code), message.or(inner.message).unwrap_or_else(|| "upstream error".into()))
            }
            // Known and not needed. Listed, so that only types nobody has seen reach `Unknown`; after the arms
            // above, so the events every stream is made of compare against none of these.
            kind if IGNORED_TYPES.contains(&kind) => Event::Ignored,
            _ => Event::Unknown { kind: w.kind },
        })
    }

    fn created(r: ResponseHead) -> Event<'static> {
        Event::Created { response_id: r.id, model: r.model }
    }

    fn item_added(item: RawItem<'_>, output_index: u32) -> Event<'static> {
        let item = match item.kind.as_ref() {
            "message" => ItemStart::Message { id: item.id.0 },
            "reasoning" => ItemStart::Reasoning { id: item.id.0 },
            "function_call" => ItemStart::FunctionCall { id: item.id.0, call_id: item.call_id.0, name: item.name.0 },
            _ => ItemStart::Other { id: item.id.0, kind: item.kind.into_owned() },
        };
        Event::ItemAdded { output_index, item }
    }

    fn item_done(item: RawItem<'_>, output_index: u32) -> Event<'static> {
        Event::ItemDone { output_index, item: done_item(item, None) }
    }

    /// `response.completed`, or `response.incomplete` with its reason.
    fn finished(r: TerminalResponse<'_>, incomplete: bool) -> Event<'static> {
        let terminal = if incomplete {
            let reason = r.incomplete_details.and_then(|d| d.reason).unwrap_or_default();
            Terminal::Incomplete { reason: IncompleteReason::from(reason.as_str()) }
        } else {
            Terminal::Completed
        };
        let output = r
            .output
            .into_iter()
            .filter_map(|raw| RawItem::parse(raw.get()).ok().map(|item| done_item(item, Some(raw))))
            .collect();
        Event::Finished { terminal, usage: r.usage.map(usage_from), output }
    }

    /// A failure event the upstream sent, with its `code` and `message`: classified here, once.
    pub fn failed(code: Option<String>, message: String) -> Event<'static> {
        Event::Failed(Box::new(classify_event_refusal(code, message)))
    }

    /// True for events after which the upstream stream is over.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Finished { .. } | Event::Failed { .. })
    }

    /// The same event, independent of the payload it was parsed from.
    pub fn into_owned(self) -> Event<'static> {
        let own = |c: Cow<'a, str>| Cow::Owned(c.into_owned());
        match self {
            Event::TextDelta { item_id, delta } => Event::TextDelta { item_id: own(item_id), delta: own(delta) },
            Event::RefusalDelta { item_id, delta } => Event::RefusalDelta { item_id: own(item_id), delta: own(delta) },
            Event::FunctionArgsDelta { item_id, delta } => {
                Event::FunctionArgsDelta { item_id: own(item_id), delta: own(delta) }
            }
            Event::ReasoningSummaryDelta { item_id, summary_index, delta } => {
                Event::ReasoningSummaryDelta { item_id: own(item_id), summary_index, delta: own(delta) }
            }
            Event::Created { response_id, model } => Event::Created { response_id, model },
            Event::ItemAdded { output_index, item } => Event::ItemAdded { output_index, item },
            Event::ReasoningSummaryPartAdded { item_id, summary_index } => {
                Event::ReasoningSummaryPartAdded { item_id, summary_index }
            }
            Event::ItemDone { output_index, item } => Event::ItemDone { output_index, item },
            Event::Finished { terminal, usage, output } => Event::Finished { terminal, usage, output },
            Event::Failed(refusal) => Event::Failed(refusal),
            Event::Ignored => Event::Ignored,
            Event::Unknown { kind } => Event::Unknown { kind: own(kind) },
        }
    }
}

fn usage_from(u: RawUsage) -> Usage {
    // Saturating: the counts come from the upstream, and an overflow here was a panic (debug) or a wrong total.
    let total = if u.total_tokens > 0 { u.total_tokens } else { u.input_tokens.saturating_add(u.output_tokens) };
    let (cached, cache_write) = match u.input_tokens_details {
        Some(d) => (d.cached_tokens.unwrap_or(0), d.cache_write_tokens.unwrap_or(0)),
        None => (0, 0),
    };
    Usage {
        input_tokens: u.input_tokens,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        output_tokens: u.output_tokens,
        reasoning_tokens: u.output_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        total_tokens: total,
        // A budget that is not a finite number is not one (JSON has no NaN, but a float can overflow to inf).
        budget_units: u.codex_rollout_budget_units.filter(|b| b.is_finite()),
    }
}

fn done_item(item: RawItem<'_>, raw: Option<&RawValue>) -> DoneItem {
    match item.kind.as_ref() {
        "message" => {
            let mut text = String::new();
            let mut refusal = None;
            for part in item.content {
                match part.kind.as_ref() {
                    "output_text" => text.push_str(&part.text),
                    "refusal" => refusal = Some(part.refusal),
                    _ => {}
                }
            }
            DoneItem::Message { id: item.id.0, text, refusal }
        }
        "reasoning" => DoneItem::Reasoning {
            id: item.id.0,
            summary: item.summary.into_iter().map(|p| p.text.into_owned()).collect(),
            encrypted_content: item.encrypted_content,
        },
        "function_call" => DoneItem::FunctionCall {
            id: item.id.0,
            call_id: item.call_id.0,
            name: item.name.0,
            arguments: item.arguments.0,
        },
        "custom_tool_call" => {
            DoneItem::CustomToolCall { id: item.id.0, call_id: item.call_id.0, name: item.name.0, input: item.input.0 }
        }
        "web_search_call" => {
            let action = item.action.unwrap_or(Value::Null);
            let query = action.get("query").and_then(Value::as_str).map(str::to_string);
            let sources = action.get("sources").and_then(Value::as_array).cloned().unwrap_or_default();
            DoneItem::WebSearchCall { id: item.id.0, query, sources }
        }
        "image_generation_call" => DoneItem::ImageGeneration {
            id: item.id.0,
            result: item.result.0,
            output_format: if item.output_format.0.is_empty() { "png".into() } else { item.output_format.0 },
        },
        other => DoneItem::Other {
            kind: other.to_string(),
            raw: raw.and_then(|r| serde_json::from_str(r.get()).ok()).unwrap_or(Value::Null),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ignored types parse to `Ignored` whatever their member order; a payload of another type is read as such.
    #[test]
    fn ignored_types_are_known_from_the_payload_type() {
        let backend =
            r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"r","status":"in_progress"}}"#;
        let sorted =
            r#"{"content_index":0,"item_id":"m","output_index":0,"text":"hi","type":"response.output_text.done"}"#;
        for data in [backend, sorted, r#"{"type":"keepalive"}"#] {
            assert_eq!(Event::parse(data).ok(), Some(Event::Ignored));
        }
        let nested = r#"{"type":"response.failed","response":{"type":"response.in_progress"}}"#;
        assert!(matches!(Event::parse(nested), Ok(Event::Failed(_))));
        let prefix_only = r#"{"type":"response.in_progress_x"}"#;
        assert!(matches!(Event::parse(prefix_only), Ok(Event::Unknown { .. })));
        assert!(Event::parse(r#"{"type":"response.created"}"#).is_err());
    }

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
                    total_tokens: 17,
                    ..Usage::default()
                }),
                output: vec![]
            })
        );
    }

    /// The 0.171 usage: cache writes beside the cached tokens, and the response's budget units (fractional).
    #[test]
    fn parses_cache_writes_and_budget_units() {
        let usage = |u: &str| match Event::parse(&format!(
            r#"{{"type":"response.completed","response":{{"id":"r","output":[],"usage":{u}}}}}"#
        )) {
            Ok(Event::Finished { usage, .. }) => usage,
            other => panic!("{other:?}"),
        };
        let u = usage(
            r#"{"input_tokens":14308,"input_tokens_details":{"cache_write_tokens":228,"cached_tokens":14080},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":14313,"codex_rollout_budget_units":12.75}"#,
        );
        assert_eq!(
            u,
            Some(Usage {
                input_tokens: 14308,
                cached_tokens: 14080,
                cache_write_tokens: 228,
                output_tokens: 5,
                reasoning_tokens: 0,
                total_tokens: 14313,
                budget_units: Some(12.75),
            })
        );
        // Details written another way cost only themselves, never the terminal event.
        let u = usage(
            r#"{"input_tokens":9,"input_tokens_details":{"cache_write_tokens":null,"cached_tokens":"4"},"output_tokens":2,"output_tokens_details":null,"codex_rollout_budget_units":"lots"}"#,
        );
        assert_eq!(
            u,
            Some(Usage { input_tokens: 9, output_tokens: 2, total_tokens: 11, budget_units: None, ..Usage::default() })
        );
        let u = usage(r#"{"input_tokens":1,"input_tokens_details":[],"codex_rollout_budget_units":null}"#);
        assert_eq!(u.map(|u| (u.cached_tokens, u.cache_write_tokens, u.budget_units)), Some((0, 0, None)));
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
    fn delta_strings_with_and_without_escapes() {
        let e = Event::parse(r#"{"type":"response.output_text.delta","item_id":"m1","delta":"a\"b\n\u00e9 ü"}"#).ok();
        assert_eq!(e, Some(Event::TextDelta { item_id: "m1".into(), delta: "a\"b\né ü".into() }));
        let e = Event::parse(r#"{"delta":"x","type":"response.function_call_arguments.delta","item_id":null}"#).ok();
        assert_eq!(e, Some(Event::FunctionArgsDelta { item_id: "".into(), delta: "x".into() }));
        assert!(Event::parse(r#"{"type":"response.output_text.delta","delta":7}"#).is_err());
        assert!(Event::parse(r#"{"type":"response.output_item.added","output_index":0}"#).is_err());
        let e = Event::parse(r#"{"type":"error","error":{"code":"c","message":"m"}}"#).ok();
        assert_eq!(e, Some(Event::failed(Some("c".into()), "m".into())));
        let Some(Event::Failed(refusal)) = e else { panic!("not a failure") };
        assert_eq!((refusal.code.as_deref(), refusal.message.as_str()), (Some("c"), "m"));
    }

    #[test]
    fn completed_output_items_including_unknown_kinds() {
        let e = Event::parse(r#"{"type":"response.completed","response":{"output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"hi"}]},{"type":"image_generation_call","id":"ig","result":"b64"},{"type":"mcp_call","id":"mc","output":"o"},"junk"]}}"#).ok();
        let Some(Event::Finished { output, .. }) = e else { panic!("not a finished event") };
        assert_eq!(
            output,
            vec![
                DoneItem::Message { id: "m".into(), text: "hi".into(), refusal: None },
                DoneItem::ImageGeneration { id: "ig".into(), result: "b64".into(), output_format: "png".into() },
                DoneItem::Other {
                    kind: "mcp_call".into(),
                    raw: serde_json::json!({"type":"mcp_call","id":"mc","output":"o"})
                },
            ]
        );
    }

    #[test]
    fn failed_and_unknown_events() {
        let e = Event::parse(r#"{"type":"response.failed","response":{"error":{"code":"context_length_exceeded","message":"too long"}}}"#).ok();
        let Some(Event::Failed(refusal)) = e else { panic!("not a failure") };
        assert_eq!((refusal.code.as_deref(), refusal.message.as_str()), (Some("context_length_exceeded"), "too long"));
        assert_eq!(refusal.reason, crate::failure::Reason::ContextTooLong, "classified as it is parsed");
        assert_eq!(Event::parse(r#"{"type":"keepalive"}"#).ok(), Some(Event::Ignored));
        assert!(Event::parse("not json").is_err());
    }

    /// Unknown types used to be `Ignored` like keepalives, so a new upstream event vanished without a trace.
    #[test]
    fn unknown_event_types_are_told_apart_from_known_ignored_ones() {
        for known in ["response.in_progress", "response.output_text.done", "response.content_part.added"] {
            let data = format!(r#"{{"type":"{known}","item_id":"m","output_index":0}}"#);
            assert_eq!(Event::parse(&data).ok(), Some(Event::Ignored), "{known}");
        }
        let e = Event::parse(r#"{"type":"response.brand_new.delta","delta":"x"}"#).ok();
        assert_eq!(e, Some(Event::Unknown { kind: "response.brand_new.delta".into() }));
        assert!(!Event::Unknown { kind: "x".into() }.is_terminal());
        let owned = Event::parse(r#"{"type":"codex.rate_limits"}"#).map(Event::into_owned).ok();
        assert_eq!(owned, Some(Event::Unknown { kind: "codex.rate_limits".into() }));
    }

    /// A tool search item (its `arguments` an object, its `call_id` null, as the real backend sends them) and an
    /// item whose fields have shapes nobody expects are read, never a malformed event: one such item made every
    /// route answer 502 and sent the request to every account of a pool in turn.
    #[test]
    fn items_of_unexpected_shapes_are_read_not_refused() {
        let added = r#"{"type":"response.output_item.added","output_index":1,"item":{"id":"tsc_1","type":"tool_search_call","status":"in_progress","arguments":{},"call_id":null,"execution":"server"}}"#;
        let done = r#"{"type":"response.output_item.done","output_index":1,"item":{"id":"tsc_1","type":"tool_search_call","status":"completed","arguments":{"paths":["get_weather"]},"call_id":null}}"#;
        let odd = r#"{"type":"response.output_item.done","output_index":2,"item":{"id":"x_1","type":"some_future_item","content":"not a list","summary":7}}"#;
        let sorted = r#"{"item":{"arguments":{"q":1},"call_id":null,"id":"tsc_2","type":"tool_search_call"},"output_index":0,"type":"response.output_item.done"}"#;
        for data in [added, done, odd, sorted] {
            let parsed = Event::parse(data);
            assert!(parsed.is_ok(), "{data}: {parsed:?}");
        }
        assert_eq!(
            Event::parse(added).ok(),
            Some(Event::ItemAdded {
                output_index: 1,
                item: ItemStart::Other { id: "tsc_1".into(), kind: "tool_search_call".into() }
            })
        );
        assert!(matches!(
            Event::parse(odd),
            Ok(Event::ItemDone { item: DoneItem::Other { kind, .. }, .. }) if kind == "some_future_item"
        ));
        // A function call whose arguments came as an object keeps them as JSON text.
        let call = r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"function_call","id":"fc","call_id":"c1","name":"f","arguments":{"a":1}}}"#;
        assert!(matches!(
            Event::parse(call),
            Ok(Event::ItemDone { item: DoneItem::FunctionCall { arguments, .. }, .. }) if arguments == r#"{"a":1}"#
        ));
        // In `response.completed`, such items are kept in the output rather than dropped.
        let completed = r#"{"type":"response.completed","response":{"output":[{"type":"tool_search_call","id":"t","arguments":{"x":[1]},"call_id":null},{"type":"message","id":"m","content":[{"type":"output_text","text":"hi"}]}]}}"#;
        match Event::parse(completed) {
            Ok(Event::Finished { output, .. }) => assert_eq!(output.len(), 2, "{output:?}"),
            other => panic!("{other:?}"),
        }
    }
}
