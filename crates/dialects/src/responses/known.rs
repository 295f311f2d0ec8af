//! The non-delta events every stream carries (`response.created`, `output_item.added` and `.done`,
//! `response.completed` and `.incomplete`), parsed in one pass when the payload's `type` is its first member (the
//! real backend's order) or its last (sorted keys, as fake-codex writes them).
//!
//! Why: the general parse ([`Event::parse_wire`]) captures `item` or `response` unparsed to learn the type first,
//! then parses the capture again, and `response.completed`'s output items a third time. Those objects are the
//! largest an event has: the backend's `output_item.done` and `response.completed` repeat the whole answer, and its
//! response objects echo the request's settings. The second scan is what this saves, so the saving grows with
//! those objects: on fake-codex's small ones, ~1 K of the ~230 K instructions of a one-token request (callgrind,
//! docs/performance.md, "Known events in one serde pass"); most of such a parse is serde's work per key, which stays.
//!
//! Exact: the type is read from the payload's first or last bytes only where nothing but the top-level `type`
//! can stand there (a quote inside a JSON string is escaped), and the whole payload is then parsed by serde into a
//! struct that declares every field the general parse declares, so duplicates, wrong types, `null`s and trailing
//! bytes are refused or accepted as they are there. The test below checks the two parses agree.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::event::{Event, EventParseError, RawItem, ResponseHead, TerminalResponse, opt};

/// The event types read here.
#[derive(Clone, Copy)]
enum Kind {
    Created,
    ItemAdded,
    ItemDone,
    Completed,
    Incomplete,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "response.created" => Kind::Created,
            "response.output_item.added" => Kind::ItemAdded,
            "response.output_item.done" => Kind::ItemDone,
            "response.completed" => Kind::Completed,
            "response.incomplete" => Kind::Incomplete,
            _ => return None,
        })
    }
}

/// A payload of a known type: the one field it reads as `I` or `R`, typed; every other field of `event::Wire`
/// declared too (and skipped), so that serde refuses a repeated one as the general parse does.
#[derive(Deserialize)]
struct Typed<'a, I, R> {
    #[serde(rename = "type")]
    _kind: IgnoredAny,
    // No `default`: it would ask `I: Default`; a missing `Option` field is `None` anyway.
    item: Option<I>,
    response: Option<R>,
    #[serde(borrow, default)]
    output_index: Option<&'a RawValue>,
    #[serde(rename = "item_id", default)]
    _item_id: Option<IgnoredAny>,
    #[serde(rename = "delta", default)]
    _delta: Option<IgnoredAny>,
    #[serde(rename = "summary_index", default)]
    _summary_index: Option<IgnoredAny>,
    #[serde(rename = "code", default)]
    _code: Option<IgnoredAny>,
    #[serde(rename = "message", default)]
    _message: Option<IgnoredAny>,
    #[serde(rename = "error", default)]
    _error: Option<IgnoredAny>,
}

/// The type a payload names as its first member (`{"type":"NAME",`) or its last (`,"type":"NAME"}`).
fn kind_at_an_end(data: &str) -> Option<Kind> {
    let first = data.strip_prefix(r#"{"type":""#).and_then(|rest| rest.split_once(r#"","#)).map(|(name, _)| name);
    let last = || data.strip_suffix(r#""}"#).and_then(|rest| rest.rsplit_once(r#","type":""#)).map(|(_, name)| name);
    // A name with a quote or backslash is not a plain string's whole content: left to the general parse.
    first.or_else(last).filter(|name| !name.contains(['"', '\\'])).and_then(Kind::of)
}

fn missing(name: &'static str) -> EventParseError {
    EventParseError::from(<serde_json::Error as serde::de::Error>::missing_field(name))
}

/// The event, when `data` is of a type read here and names it at an end; `None` sends it to the general parse.
pub(super) fn parse(data: &str) -> Option<Result<Event<'static>, EventParseError>> {
    let kind = kind_at_an_end(data)?;
    Some(match kind {
        Kind::Created => serde_json::from_str::<Typed<IgnoredAny, ResponseHead>>(data)
            .map_err(EventParseError::from)
            .and_then(|w| w.response.map(Event::created).ok_or_else(|| missing("response"))),
        Kind::ItemAdded | Kind::ItemDone => match serde_json::from_str::<Typed<RawItem, IgnoredAny>>(data) {
            Ok(w) => w.item.ok_or_else(|| missing("item")).and_then(|item| {
                let index = opt(w.output_index)?;
                Ok(match kind {
                    Kind::ItemAdded => Event::item_added(item, index),
                    _ => Event::item_done(item, index),
                })
            }),
            // An item with a field of a shape the gateway does not expect: the general parse reads it by its type
            // alone (`RawItem::parse`) rather than failing the stream.
            Err(_) => Event::parse_wire(data).map(Event::into_owned),
        },
        Kind::Completed | Kind::Incomplete => serde_json::from_str::<Typed<IgnoredAny, TerminalResponse>>(data)
            .map_err(EventParseError::from)
            .and_then(|w| {
                let response = w.response.ok_or_else(|| missing("response"))?;
                Ok(Event::finished(response, matches!(kind, Kind::Incomplete)))
            }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This parse must give what the general one gives: the same event, or an error where it errs.
    fn agrees(data: &str) -> bool {
        let general = Event::parse_wire(data).ok();
        match parse(data) {
            Some(one_pass) => {
                assert_eq!(one_pass.ok(), general, "the parses differ on {data}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn reads_the_backends_and_the_fakes_orders() {
        let cases = [
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","model":"gpt-5.4","instructions":"be {brief}","tools":[{"type":"function","name":"f"}],"output":[]}}"#,
            r#"{"response":{"id":"resp_1","model":null,"output":[],"status":"in_progress"},"sequence_number":0,"type":"response.created"}"#,
            r#"{"type":"response.output_item.added","output_index":1,"item":{"id":"fc_1","type":"function_call","call_id":"c","name":"f","arguments":""}}"#,
            r#"{"item":{"content":[],"id":"msg_1","role":"assistant","status":"in_progress","type":"message"},"output_index":0,"sequence_number":2,"type":"response.output_item.added"}"#,
            r#"{"item":{"content":[{"annotations":[],"text":"a \"quoted\" \u00e9","type":"output_text"}],"id":"msg_1","type":"message"},"output_index":0,"type":"response.output_item.done"}"#,
            r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"image_generation_call","id":"ig"}}"#,
            r#"{"response":{"output":[{"type":"message","id":"m","content":[{"type":"output_text","text":"hi"}]},{"type":"x","id":"o"},"junk"],"usage":{"input_tokens":3,"output_tokens":2,"total_tokens":5}},"type":"response.completed"}"#,
            r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"},"output":[]}}"#,
        ];
        for data in cases {
            assert!(agrees(data), "not read in one pass: {data}");
            assert!(parse(data).is_some_and(|event| event.is_ok()), "{data}");
        }
    }

    #[test]
    fn bad_payloads_err_as_the_general_parse_does() {
        let errs = [
            r#"{"type":"response.created","response":null}"#,
            r#"{"type":"response.created","response":{"id":7}}"#,
            r#"{"type":"response.output_item.added","output_index":0}"#,
            r#"{"type":"response.output_item.added","item":"junk","output_index":0}"#,
            r#"{"type":"response.output_item.added","item":{"id":"m","type":"message"},"output_index":"0"}"#,
            r#"{"type":"response.output_item.done","item":{"id":"a","type":"message"},"item":{"id":"b","type":"message"}}"#,
            r#"{"type":"response.output_item.done","item":{"id":"m","type":"message"},"delta":1,"delta":2}"#,
            r#"{"type":"response.completed","response":{"output":[]},"type":"response.completed"}"#,
            r#"{"type":"response.completed","response":{"output":{}}}"#,
            r#"{"type":"response.completed","response":{"output":[]}} x"#,
            r#"{"type":"response.completed","response":{"output":[]}"#,
        ];
        for data in errs {
            assert!(agrees(data), "not read in one pass: {data}");
            assert!(parse(data).is_some_and(|event| event.is_err()), "accepted: {data}");
        }
    }

    /// A type not at an end, in a nested object, escaped, alone, or of another kind is left to the general parse.
    #[test]
    fn anything_else_is_left_to_the_general_parse() {
        for data in [
            r#"{"output_index":0,"type":"response.output_item.added","item":{"id":"m","type":"message"}}"#,
            r#"{"response":{"type":"response.created"},"x":{"type":"response.created"}}"#,
            r#"{"type":"response.created\"","response":{"id":"r"}}"#,
            r#"{"type":"response\u002ecreated","response":{"id":"r"}}"#,
            r#"{"type":"response.failed","response":{"error":{"code":"c","message":"m"}}}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"d"}"#,
            r#" {"type":"response.created","response":{"id":"r"}}"#,
            r#"{"type":"response.created"}"#,
        ] {
            assert!(!agrees(data), "read in one pass: {data}");
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            let kind = prop::sample::select(vec![
                "response.created",
                "response.output_item.added",
                "response.output_item.done",
                "response.completed",
                "response.incomplete",
            ]);
            let key = prop::sample::select(vec!["item", "response", "output_index", "delta", "sequence_number"]);
            let value = prop::sample::select(vec![
                "null",
                "0",
                "\"s\"",
                "[]",
                "{}",
                r#"{"id":"x","type":"message","content":[{"type":"output_text","text":"t"}]}"#,
                r#"{"id":"r","model":"m","output":[{"type":"reasoning","id":"rs","summary":[]}],"usage":{}}"#,
                r#"{"type":"function_call","call_id":1}"#,
                r#"{"output":[1,{"type":"y"}],"incomplete_details":null}"#,
            ]);
            (key, value, kind).prop_map(|(k, v, kind)| match k {
                "sequence_number" => format!(r#""type":"{kind}""#),
                _ => format!(r#""{k}":{v}"#),
            })
        }

        proptest! {
            #[test]
            fn one_pass_agrees_with_the_general_parse(
                fields in prop::collection::vec(field(), 0..5),
                kind in prop::sample::select(vec!["response.created", "response.output_item.done", "response.completed"]),
                last in any::<bool>(),
            ) {
                let head = format!(r#""type":"{kind}""#);
                let mut all = fields;
                if last { all.push(head) } else { all.insert(0, head) }
                let data = format!("{{{}}}", all.join(","));
                // `type` alone is at both ends and neither form: left to the general parse (an error either way).
                prop_assert!(agrees(&data) || all.len() == 1, "not read in one pass: {}", data);
            }
        }
    }
}
