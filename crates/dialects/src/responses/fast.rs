//! The fast path of [`Event::parse`] for the events nearly every stream is made of: text, refusal, reasoning
//! summary and function-argument deltas, read by a scanner over flat JSON objects instead of serde.
//!
//! Why: under callgrind, serde's pass over a delta payload (capturing `type`, `item_id` and `delta`, skipping
//! `content_index`, `logprobs`, `output_index`, `sequence_number`) was ~45% of the gateway's instructions per
//! streamed request at one event per frame (bench/notes.md, "Fifteenth session"). A delta is one flat object of
//! strings, integers and empty arrays; this reads that shape in one pass of a few instructions per byte.
//!
//! Exactness is the rule, not a hope: the scanner answers only for input it fully understands and that serde
//! would accept with the same result, and gives up (`None`, and [`Event::parse`] runs the full parse) on
//! anything else: nested objects or non-empty arrays, escapes outside the `delta` and `item_id` values, numbers
//! that are not plain integers, keys with escapes, a field [`super::event`]'s `Wire` reads given twice (serde
//! refuses duplicates), `null` or missing values, any event type but the four deltas, trailing bytes. Escaped
//! `delta` and `item_id` strings are decoded by serde_json itself, on just that value.

use std::borrow::Cow;

use super::event::Event;

/// The top-level fields the full parse captures (`event::Wire`): serde refuses an object that repeats one, so the
/// scanner does too.
const WIRE_FIELDS: [&str; 10] =
    ["type", "item_id", "delta", "summary_index", "output_index", "item", "response", "code", "message", "error"];

/// Which delta event a `type` names.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Refusal,
    ReasoningSummary,
    FunctionArgs,
}

fn kind_of(name: &str) -> Option<Kind> {
    match name {
        "response.output_text.delta" => Some(Kind::Text),
        "response.refusal.delta" => Some(Kind::Refusal),
        "response.reasoning_summary_text.delta" => Some(Kind::ReasoningSummary),
        "response.function_call_arguments.delta" => Some(Kind::FunctionArgs),
        _ => None,
    }
}

/// The event `data` carries, if it is a delta of the plain shape described in the module doc; `None` means
/// "use the full parse", never "malformed".
pub(super) fn parse_delta(data: &str) -> Option<Event<'_>> {
    let b = data.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let mut kind = None;
    let mut item_id = None;
    let mut delta = None;
    let mut summary_index: Option<u32> = None;
    let mut seen = 0u16;
    loop {
        let (key, after) = plain_str(b, i)?;
        let key = &data[key];
        i = ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        if let Some(bit) = WIRE_FIELDS.iter().position(|f| *f == key) {
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
        }
        i = match key {
            "type" => {
                let (v, after) = plain_str(b, i)?;
                // Decided as soon as it is known (the real backend sends `type` first): other events go to the
                // full parse without scanning the rest.
                kind = Some(kind_of(&data[v])?);
                after
            }
            "item_id" => {
                let (v, after) = any_str(data, i)?;
                item_id = Some(v);
                after
            }
            "delta" => {
                let (v, after) = any_str(data, i)?;
                delta = Some(v);
                after
            }
            "summary_index" => {
                let (n, after) = uint(b, i)?;
                summary_index = Some(u32::try_from(n).ok()?);
                after
            }
            _ => skip_value(b, i)?,
        };
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    if ws(b, i + 1) != b.len() {
        return None;
    }
    let (item_id, delta) = (item_id?, delta?);
    Some(match kind? {
        Kind::Text => Event::TextDelta { item_id, delta },
        Kind::Refusal => Event::RefusalDelta { item_id, delta },
        Kind::FunctionArgs => Event::FunctionArgsDelta { item_id, delta },
        // Absent is 0, as in the full parse (`opt`).
        Kind::ReasoningSummary => {
            Event::ReasoningSummaryDelta { item_id, summary_index: summary_index.unwrap_or(0), delta }
        }
    })
}

/// Past JSON whitespace from `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string at `i` with no escape: the range of its text, and the index past its closing quote. A control
/// character (which JSON does not allow raw in a string) or an escape gives `None`.
fn plain_str(b: &[u8], i: usize) -> Option<(std::ops::Range<usize>, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = memchr::memchr2(b'"', b'\\', b.get(start..)?)?;
    let end = start + len;
    if b[end] != b'"' || has_control(&b[start..end]) {
        return None;
    }
    Some((start..end, end + 1))
}

/// A string at `i`, borrowed when it has no escape; with escapes, decoded by serde_json from exactly its bytes
/// (so it is accepted and decoded exactly as the full parse would). `None` for anything but a valid string.
fn any_str(data: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = data.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut at = i + 1;
    let mut escaped = false;
    loop {
        let len = memchr::memchr2(b'"', b'\\', b.get(at..)?)?;
        at += len;
        if b[at] == b'"' {
            break;
        }
        // A backslash escapes the next byte (an ASCII letter or punctuation in valid JSON; serde checks).
        escaped = true;
        at += 2;
    }
    let end = at;
    if escaped {
        let text: String = serde_json::from_str(data.get(i..end + 1)?).ok()?;
        return Some((Cow::Owned(text), end + 1));
    }
    if has_control(&b[i + 1..end]) {
        return None;
    }
    Some((Cow::Borrowed(data.get(i + 1..end)?), end + 1))
}

/// Whether a byte below 0x20 is in `s` (written to vectorise: no early exit).
fn has_control(s: &[u8]) -> bool {
    s.iter().fold(false, |found, &c| found | (c < 0x20))
}

/// A non-negative integer at `i` in JSON's form (no leading zero, no fraction or exponent, which go to the full
/// parse), and the index past it.
fn uint(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let digits = b.get(i..)?.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && b[i] == b'0') || digits > 19 {
        return None;
    }
    let end = i + digits;
    if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
        return None;
    }
    let n = b[i..end].iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
    Some((n, end))
}

/// Past one value at `i` of the plain kinds a delta's other fields have: a string without escapes, an integer
/// (possibly negative), `true`, `false`, `null`, `[]` or `{}`. Anything else gives `None`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => plain_str(b, i).map(|(_, after)| after),
        b'-' => uint(b, i + 1).map(|(_, after)| after),
        b'0'..=b'9' => uint(b, i).map(|(_, after)| after),
        b'[' | b'{' => {
            let close = if b[i] == b'[' { b']' } else { b'}' };
            let j = ws(b, i + 1);
            (b.get(j) == Some(&close)).then_some(j + 1)
        }
        _ => ["true", "false", "null"]
            .iter()
            .find(|lit| b[i..].starts_with(lit.as_bytes()))
            .map(|lit| i + lit.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path's answer must be the full parse's, or no answer: checked on every case here.
    fn same_as_full(data: &str) -> Option<Event<'_>> {
        let fast = parse_delta(data);
        if let Some(fast) = &fast {
            let full = Event::parse_full(data).ok();
            assert_eq!(Some(fast), full.as_ref(), "fast path differs from the full parse on {data}");
        }
        fast
    }

    #[test]
    fn reads_the_backends_and_the_fakes_delta_shapes() {
        // The real backend: `type` first, `obfuscation` padding.
        let real = r#"{"type":"response.output_text.delta","sequence_number":12,"item_id":"msg_0a1","output_index":1,"content_index":0,"delta":" world","logprobs":[],"obfuscation":"xQ3"}"#;
        assert_eq!(same_as_full(real), Some(Event::TextDelta { item_id: "msg_0a1".into(), delta: " world".into() }));
        // fake-codex: keys sorted, `type` last.
        let fake = r#"{"content_index":0,"delta":"w1 ","item_id":"msg_x","logprobs":[],"output_index":0,"sequence_number":5,"type":"response.output_text.delta"}"#;
        assert!(matches!(same_as_full(fake), Some(Event::TextDelta { delta: Cow::Borrowed("w1 "), .. })));
        let spaced = " {\n \"type\" : \"response.refusal.delta\" ,\t\"item_id\":\"m\", \"delta\":\"no\" , \"x\": [ ] , \"y\":{ } } \n";
        assert_eq!(same_as_full(spaced), Some(Event::RefusalDelta { item_id: "m".into(), delta: "no".into() }));
        let args = r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":2,"delta":"{\"a\":"}"#;
        assert_eq!(same_as_full(args), Some(Event::FunctionArgsDelta { item_id: "fc_1".into(), delta: "{\"a\":".into() }));
        let reasoning = r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs","summary_index":3,"delta":"hm","n":-4,"t":true,"f":false,"z":null}"#;
        let expected = Event::ReasoningSummaryDelta { item_id: "rs".into(), summary_index: 3, delta: "hm".into() };
        assert_eq!(same_as_full(reasoning), Some(expected));
        let no_index = r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs","delta":"hm"}"#;
        assert!(matches!(same_as_full(no_index), Some(Event::ReasoningSummaryDelta { summary_index: 0, .. })));
    }

    /// Escaped and non-ASCII deltas come out decoded exactly as serde decodes them; unescaped ones borrow.
    #[test]
    fn escapes_and_unicode_decode_as_the_full_parse_does() {
        let cases = [
            (r#""line\nbreak \"q\" back\\slash \/ \t\r\b\f""#, "line\nbreak \"q\" back\\slash / \t\r\u{8}\u{c}"),
            (r#""\u00e9\u4e2d\ud83d\ude00 done""#, "é中😀 done"),
            (r#""déjà vu 中文 😀""#, "déjà vu 中文 😀"),
            (r#""ends with backslash \\""#, "ends with backslash \\"),
            (r#""""#, ""),
        ];
        for (json, text) in cases {
            let data = format!(r#"{{"type":"response.output_text.delta","item_id":"m","delta":{json},"sequence_number":1}}"#);
            match same_as_full(&data) {
                Some(Event::TextDelta { delta, .. }) => {
                    assert_eq!(delta, text);
                    assert_eq!(matches!(delta, Cow::Borrowed(_)), !json.contains('\\'), "{json}");
                }
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    /// Everything outside the plain shape goes to the full parse, which then decides (accepts or refuses) as it
    /// always did.
    #[test]
    fn anything_unusual_falls_back_to_the_full_parse() {
        let falls_back = [
            // Other event types, and ones with nested values.
            r#"{"type":"response.created","response":{"id":"r"}}"#,
            r#"{"type":"response.output_text.done","item_id":"m","text":"all"}"#,
            r#"{"type":"keepalive"}"#,
            // Shapes the scanner does not read.
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","logprobs":[{"t":1}]}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","x":1.5}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","x":1e3}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","x":"\u0041"}"#,
            r#"{"typ\u0065":"response.output_text.delta","item_id":"m","delta":"a"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":null}"#,
            r#"{"type":"response.output_text.delta","item_id":"m"}"#,
            r#"{"type":"response.reasoning_summary_text.delta","item_id":"m","delta":"a","summary_index":4294967296}"#,
            r#"{"type":"response.reasoning_summary_text.delta","item_id":"m","delta":"a","summary_index":null}"#,
            // Input serde refuses: duplicates of a field it reads, bad numbers, raw control characters,
            // unfinished or trailing input, bad escapes, lone surrogates.
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","delta":"b"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","output_index":0,"output_index":1}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","n":01}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","n":-}"#,
            "{\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"delta\":\"a\tb\"}",
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a"} x"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a""#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a",}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"\q"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"\ud800"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"\"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","t":tru}"#,
            "",
            "{}",
            "[]",
        ];
        for data in falls_back {
            assert_eq!(same_as_full(data), None, "{data}");
        }
        // A repeated field the full parse does not read is fine for both.
        let repeated = r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","logprobs":[],"logprobs":[]}"#;
        assert!(same_as_full(repeated).is_some());
    }

    /// Every cut of a delta payload: the fast path never answers for input the full parse refuses, nor differs.
    #[test]
    fn every_truncation_agrees_with_the_full_parse() {
        let data = r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":"a\"b\\n\u00e9","sequence_number":10,"logprobs":[]}"#;
        for end in 0..=data.len() {
            if let Some(cut) = data.get(..end) {
                same_as_full(cut);
            }
        }
    }
}
