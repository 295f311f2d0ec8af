//! The fast path of [`Event::parse`] for the events nearly every stream is made of: text, refusal, reasoning
//! summary and function-argument deltas, read by a scanner over flat JSON objects instead of serde.
//!
//! Why: under callgrind, serde's pass over a delta payload (capturing `type`, `item_id` and `delta`, skipping
//! `content_index`, `logprobs`, `output_index`, `sequence_number`) was ~45% of the gateway's instructions per
//! streamed request at one event per frame (docs/performance.md, "Delta scanner"). A delta is one flat object of
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

/// What a key is to the scanner: one of the fields the full parse captures (`event::Wire`; serde refuses an object
/// that repeats one, so the scanner does too), or any other (skipped; repeats are fine).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Type,
    ItemId,
    Delta,
    SummaryIndex,
    /// Captured by `Wire` but not read for deltas: only its repetition matters.
    OtherWire(u8),
    Other,
}

impl Key {
    /// Matched as byte strings of constant length, which compile to a few integer compares (no `memcmp` call).
    #[inline(always)]
    fn of(key: &[u8]) -> Key {
        match key {
            b"type" => Key::Type,
            b"item_id" => Key::ItemId,
            b"delta" => Key::Delta,
            b"summary_index" => Key::SummaryIndex,
            b"output_index" => Key::OtherWire(4),
            b"item" => Key::OtherWire(5),
            b"response" => Key::OtherWire(6),
            b"code" => Key::OtherWire(7),
            b"message" => Key::OtherWire(8),
            b"error" => Key::OtherWire(9),
            _ => Key::Other,
        }
    }

    /// Its bit in the set of `Wire` fields seen.
    #[inline(always)]
    fn wire_bit(self) -> u16 {
        match self {
            Key::Type => 1,
            Key::ItemId => 1 << 1,
            Key::Delta => 1 << 2,
            Key::SummaryIndex => 1 << 3,
            Key::OtherWire(n) => 1 << n,
            Key::Other => 0,
        }
    }
}

/// Which delta event a `type` names.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Refusal,
    ReasoningSummary,
    FunctionArgs,
}

#[inline(always)]
fn kind_of(name: &[u8]) -> Option<Kind> {
    match name {
        b"response.output_text.delta" => Some(Kind::Text),
        b"response.refusal.delta" => Some(Kind::Refusal),
        b"response.reasoning_summary_text.delta" => Some(Kind::ReasoningSummary),
        b"response.function_call_arguments.delta" => Some(Kind::FunctionArgs),
        _ => None,
    }
}

/// The event `data` carries, if it is a delta of the plain shape described in the module doc; `None` means
/// "use the full parse", never "malformed". One scanner for every payload of that shape, whitespace and escapes
/// included.
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
        let (start, end, escaped) = string_at(b, i)?;
        if escaped {
            return None;
        }
        let key = Key::of(&b[start..end]);
        let bit = key.wire_bit();
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        i = ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        i = match key {
            Key::Type => {
                let (start, end, escaped) = string_at(b, i)?;
                if escaped {
                    return None;
                }
                // Decided as soon as it is known (the real backend sends `type` first): other events go to the
                // full parse without scanning the rest.
                kind = Some(kind_of(&b[start..end])?);
                end + 1
            }
            Key::ItemId | Key::Delta => {
                let (text, after) = text_at(data, i)?;
                if key == Key::ItemId {
                    item_id = Some(text);
                } else {
                    delta = Some(text);
                }
                after
            }
            Key::SummaryIndex => {
                let (n, end) = summary_index_at(b, i)?;
                summary_index = Some(n);
                end
            }
            Key::OtherWire(_) | Key::Other => skip_value(b, i)?,
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
    event(kind?, item_id?, delta?, summary_index)
}

/// The event of a delta whose fields were all read.
fn event<'a>(kind: Kind, item_id: Cow<'a, str>, delta: Cow<'a, str>, summary_index: Option<u32>) -> Option<Event<'a>> {
    Some(match kind {
        Kind::Text => Event::TextDelta { item_id, delta },
        Kind::Refusal => Event::RefusalDelta { item_id, delta },
        Kind::FunctionArgs => Event::FunctionArgsDelta { item_id, delta },
        // Absent is 0, as in the full parse (`opt`).
        Kind::ReasoningSummary => {
            Event::ReasoningSummaryDelta { item_id, summary_index: summary_index.unwrap_or(0), delta }
        }
    })
}

/// A `summary_index` value at `i`: the number and where it ends; `None` for anything but a plain integer that
/// fits a `u32` (the full parse reads the rest).
fn summary_index_at(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let end = int_end(b, i)?;
    let n = b[i..end].iter().try_fold(0u32, |n, c| n.checked_mul(10)?.checked_add(u32::from(c - b'0')))?;
    Some((n, end))
}

/// Past JSON whitespace from `i`.
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` (8 bytes of a string, little-endian) that ends or interrupts a plain string
/// run: `"`, `\` or a control character. Only the lowest flag is exact (a borrow can flag bytes above a true
/// one), and only the lowest is used. Bytes of 0x80 and above (UTF-8 sequences) are never flagged.
fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_quote = quote.wrapping_sub(ONES) & !quote;
    let zero_backslash = backslash.wrapping_sub(ONES) & !backslash;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (zero_quote | zero_backslash | control) & HIGH
}

/// The index of the first `"`, `\` or control character at or after `i` (8 bytes per step).
fn next_special(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = specials(u64::from_le_bytes(word));
        if flags != 0 {
            return Some(i + (flags.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// A string at `i`: the range of its text (`start..end`, `end` at the closing quote) and whether it has escapes
/// (their validity is left to serde). A raw control character, which JSON does not allow in a string, gives
/// `None`.
fn string_at(b: &[u8], i: usize) -> Option<(usize, usize, bool)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut at = start;
    let mut escaped = false;
    loop {
        at = next_special(b, at)?;
        match b[at] {
            b'"' => return Some((start, at, escaped)),
            b'\\' => {
                escaped = true;
                at += 2;
            }
            _ => return None,
        }
    }
}

/// A string value at `i`, borrowed when it has no escape; with escapes, decoded by serde_json from exactly its
/// bytes (so it is accepted and decoded exactly as the full parse would). `None` for anything but a valid string.
fn text_at(data: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let (start, end, escaped) = string_at(data.as_bytes(), i)?;
    if escaped {
        let text: String = serde_json::from_str(data.get(i..end + 1)?).ok()?;
        return Some((Cow::Owned(text), end + 1));
    }
    Some((Cow::Borrowed(data.get(start..end)?), end + 1))
}

/// Past a non-negative integer at `i` in JSON's form (no leading zero); a fraction or exponent gives `None` (the
/// full parse reads those).
#[inline(always)]
fn int_end(b: &[u8], i: usize) -> Option<usize> {
    let first = *b.get(i)?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut j = i + 1;
    if first != b'0' {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
    }
    match b.get(j) {
        Some(b'.' | b'e' | b'E' | b'0'..=b'9') => None,
        _ => Some(j),
    }
}

/// Past one value at `i` of the plain kinds a delta's other fields have: a string without escapes, an integer
/// (possibly negative), `true`, `false`, `null`, `[]` or `{}`. Anything else gives `None`.
#[inline(always)]
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => match string_at(b, i)? {
            (_, end, false) => Some(end + 1),
            (_, _, true) => None,
        },
        b'-' => int_end(b, i + 1),
        b'0'..=b'9' => int_end(b, i),
        open @ (b'[' | b'{') => {
            let close = if open == b'[' { b']' } else { b'}' };
            let j = ws(b, i + 1);
            (b.get(j) == Some(&close)).then_some(j + 1)
        }
        b't' => b[i..].starts_with(b"true").then_some(i + 4),
        b'f' => b[i..].starts_with(b"false").then_some(i + 5),
        b'n' => b[i..].starts_with(b"null").then_some(i + 4),
        _ => None,
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
        let args =
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":2,"delta":"{\"a\":"}"#;
        assert_eq!(
            same_as_full(args),
            Some(Event::FunctionArgsDelta { item_id: "fc_1".into(), delta: "{\"a\":".into() })
        );
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
            let data =
                format!(r#"{{"type":"response.output_text.delta","item_id":"m","delta":{json},"sequence_number":1}}"#);
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

    /// Generated payloads of fields in any order, repeated or not, with values of every kind (escaped strings,
    /// nested values, odd numbers, `null`, unfinished strings): where the fast path answers, it answers as the full
    /// parse does.
    pub(super) mod generated {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z é中\"]{0,6}".prop_map(|s| format!("\"{s}\"")),
                prop::sample::select(vec![
                    r#""a\"b""#,
                    r#""\n""#,
                    r#""\u00e9""#,
                    r#""\ud83d\ude00""#,
                    r#""\ud800""#,
                    r#""\x""#,
                    "0",
                    "7",
                    "-3",
                    "01",
                    "-",
                    "1.5",
                    "2e3",
                    "4294967296",
                    "4294967295",
                    "null",
                    "nul",
                    "true",
                    "false",
                    "[]",
                    "[ ]",
                    "{}",
                    "[1]",
                    r#"{"a":1}"#,
                    "\"\t\"",
                    "\"",
                ])
                .prop_map(str::to_string),
            ]
        }

        /// One `"key":value` member: a key the scanner reads or skips (or an empty one), and for `type` one of the
        /// delta types, another type or an unfinished string.
        pub(in crate::responses::fast) fn field() -> impl Strategy<Value = String> {
            let key = prop::sample::select(vec![
                "type",
                "item_id",
                "delta",
                "summary_index",
                "output_index",
                "logprobs",
                "sequence_number",
                "x",
                "",
            ]);
            let kind = prop::sample::select(vec![
                r#""response.output_text.delta""#,
                r#""response.refusal.delta""#,
                r#""response.reasoning_summary_text.delta""#,
                r#""response.function_call_arguments.delta""#,
                r#""response.output_text.done""#,
                r#""response.output_text.delta"#,
            ]);
            (key, value(), kind).prop_map(|(k, v, kind)| match k {
                "type" => format!(r#""type":{kind}"#),
                _ => format!(r#""{k}":{v}"#),
            })
        }

        proptest! {
            #[test]
            fn fast_path_agrees_with_the_full_parse(fields in prop::collection::vec(field(), 0..8), ws in " ?") {
                let data = format!("{{{}}}", fields.join(&format!(",{ws}")));
                same_as_full(&data);
                let base = r#""type":"response.output_text.delta","item_id":"m","delta":"d""#;
                same_as_full(&format!("{{{base},{}}}", fields.join(",")));
            }
        }
    }

    /// The word-at-a-time search finds the first `"`, `\\` or control byte wherever it is, next to any other byte
    /// (UTF-8 sequences, bytes just above and below the searched ones).
    #[test]
    fn word_search_finds_the_first_special_byte() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'a', 0x21, 0x1f, 0x80, 0xff, b'"' + 1, b'\\' + 1, b'\\' - 1] {
                        let mut buf = vec![filler; len];
                        buf[at] = byte;
                        assert_eq!(next_special(&buf, 0), naive(&buf), "{buf:?}");
                    }
                }
            }
        }
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
