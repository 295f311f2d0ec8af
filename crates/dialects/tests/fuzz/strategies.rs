//! Input generators shared by the targets: random JSON with odd strings and numbers, byte soups that look like
//! JSON, and structure-aware mutations of a valid document (fields replaced by values of random types, removed,
//! added, deeply nested; numbers out of every range; trailing bytes).

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Strings that trip careless code: empty, control and format characters, combining marks, astral characters,
/// numbers and JSON in strings, long repeats.
pub fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        1 => Just(String::new()),
        1 => prop::sample::select(vec![
            "\u{0}", "\u{feff}", "\u{202e}abc", "a\u{301}\u{302}", "😀🏳️‍🌈", "\r\n", " ", "\\", "\"", "{}", "[]",
            "null", "true", "0", "-1", "1e999", "NaN", "data: x\n\n", "models/", "gpt-5.4", "user", "assistant",
            "system", "tool", "model", "function", "text", "image", "tool_use", "tool_result", "thinking",
            "input_text", "message", "function_call", "auto", "none", "required", "ANY", "AUTO", "NONE",
        ]).prop_map(str::to_string),
        1 => ("[a-z]", 100usize..3000).prop_map(|(c, n)| c.repeat(n)),
    ]
}

/// Object keys: half of them names the decoders and the event parser read, so random objects reach their code.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        odd_string(),
        prop::sample::select(vec![
            "model",
            "messages",
            "role",
            "content",
            "type",
            "text",
            "input",
            "instructions",
            "tools",
            "tool_choice",
            "name",
            "parameters",
            "input_schema",
            "arguments",
            "call_id",
            "id",
            "tool_use_id",
            "tool_call_id",
            "image_url",
            "url",
            "source",
            "data",
            "media_type",
            "system",
            "max_tokens",
            "max_output_tokens",
            "stop",
            "stop_sequences",
            "stream",
            "stream_options",
            "include_usage",
            "reasoning",
            "effort",
            "summary",
            "thinking",
            "budget_tokens",
            "signature",
            "contents",
            "parts",
            "functionCall",
            "functionResponse",
            "inlineData",
            "mimeType",
            "fileData",
            "generationConfig",
            "thinkingConfig",
            "systemInstruction",
            "toolConfig",
            "functionDeclarations",
            "prompt",
            "images",
            "format",
            "options",
            "num_predict",
            "think",
            "response_format",
            "json_schema",
            "schema",
            "properties",
            "items",
            "required",
            "usage",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "cached_tokens",
            "output_tokens_details",
            "reasoning_tokens",
            "response",
            "item",
            "item_id",
            "delta",
            "output_index",
            "summary_index",
            "output",
            "incomplete_details",
            "reason",
            "error",
            "code",
            "message",
            "encrypted_content",
            "action",
            "query",
            "sources",
            "refusal",
            "status",
        ])
        .prop_map(str::to_string),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0i64, -1, 1, 2, 3, 1024, i64::MAX, i64::MIN]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
    ]
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Bytes that are mostly JSON tokens (so parsers get past the first byte), with raw bytes mixed in.
pub fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", "\"", "null", "true", "false", "0", "-", "1.5e3", "1e999", " ", "\n",
            "\\u0000", "\\ud800", "\\\"", "\"model\"", "\"messages\"", "\"contents\"", "\"input\"", "\"role\"",
            "\"content\"", "\"parts\"", "\"text\"", "\"tools\"", "\"type\"", "\"prompt\"", "\"stream\"",
        ]).prop_map(|t| t.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(token, 0..64).prop_map(|v| v.concat())
}

/// Raw number literals no `serde_json::Value` holds, spliced into the text in place of a marker string.
/// (The empty entry stands for a 1 followed by 400 zeros.)
const HUGE_NUMBERS: [&str; 6] = ["1e999", "18446744073709551616", "-9223372036854775809", "1.0e-400", "-0", ""];
const MARKER: &str = "\u{1}huge\u{1}";

/// One edit at the node a path of choices leads to.
#[derive(Debug, Clone)]
pub enum Op {
    Replace(Value),
    /// Replace a string, number or bool by another of its type (keeps the document valid more often, so the
    /// decoders' later checks see odd values).
    SameType {
        string: String,
        number: Value,
        flag: bool,
    },
    Remove,
    Insert(String, Value),
    /// Wrap the node in this many arrays or objects (past serde_json's recursion limit at the high end).
    Nest {
        depth: usize,
        objects: bool,
    },
    /// Replace the node with a number literal out of range (see [`HUGE_NUMBERS`]).
    Huge,
    /// Repeat the array's items (or make an array of the node) this many times.
    Repeat(usize),
    /// Replace every number under the node by an extreme one (the seed's bits pick which, number by number).
    Extremes(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => json_value().prop_map(Op::Replace),
        4 => (odd_string(), number(), any::<bool>()).prop_map(|(string, number, flag)| Op::SameType { string, number, flag }),
        2 => Just(Op::Remove),
        2 => (field_name(), json_value()).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (1usize..140, any::<bool>()).prop_map(|(depth, objects)| Op::Nest { depth, objects }),
        1 => Just(Op::Huge),
        1 => (0usize..50).prop_map(Op::Repeat),
        2 => any::<usize>().prop_map(Op::Extremes),
    ]
}

/// Edits as (path of choices, op); [`mutate`] applies them to a template.
pub fn edits() -> impl Strategy<Value = Vec<(Vec<u32>, Op)>> {
    prop::collection::vec((prop::collection::vec(any::<u32>(), 0..7), op()), 1..5)
}

/// What happens to the serialised text afterwards.
#[derive(Debug, Clone)]
pub enum Raw {
    Keep,
    Trailing(Vec<u8>),
    Truncate(usize),
    Flip(usize, u8),
    Bom,
}

pub fn raw() -> impl Strategy<Value = Raw> {
    prop_oneof![
        6 => Just(Raw::Keep),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Raw::Trailing),
        1 => any::<usize>().prop_map(Raw::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Raw::Flip(i, b)),
        1 => Just(Raw::Bom),
    ]
}

/// Apply `edits` to `template`, serialise it, then apply `raw`.
pub fn mutate(template: &Value, edits: &[(Vec<u32>, Op)], raw: &Raw) -> Vec<u8> {
    let mut doc = template.clone();
    for (path, op) in edits {
        apply(&mut doc, path, op);
    }
    let mut text = serde_json::to_string(&doc).unwrap_or_default();
    let marker = serde_json::to_string(MARKER).unwrap_or_default();
    let mut i = 0;
    while let Some(pos) = text.find(&marker) {
        let lit = HUGE_NUMBERS[i % HUGE_NUMBERS.len()];
        let lit = if lit.is_empty() { "1".to_string() + &"0".repeat(400) } else { lit.to_string() };
        text.replace_range(pos..pos + marker.len(), &lit);
        i += 1;
    }
    let mut bytes = text.into_bytes();
    match raw {
        Raw::Keep => {}
        Raw::Trailing(t) => bytes.extend_from_slice(t),
        Raw::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
        Raw::Flip(i, b) => {
            if !bytes.is_empty() {
                let i = i % bytes.len();
                bytes[i] = *b;
            }
        }
        Raw::Bom => bytes.splice(0..0, [0xef, 0xbb, 0xbf]).for_each(drop),
    }
    bytes
}

/// Walk `path` (each choice picks a child, or stops here when it says so) and apply `op` there.
fn apply(node: &mut Value, path: &[u32], op: &Op) {
    if let Some((&choice, rest)) = path.split_first()
        && choice % 5 != 0
    {
        match node {
            Value::Object(m) if !m.is_empty() => {
                let len = m.len();
                if let Some(child) = m.values_mut().nth(choice as usize % len) {
                    return apply(child, rest, op);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let len = a.len();
                if let Some(child) = a.get_mut(choice as usize % len) {
                    return apply(child, rest, op);
                }
            }
            _ => {}
        }
    }
    edit(node, op);
}

fn edit(node: &mut Value, op: &Op) {
    match op {
        Op::Replace(v) => *node = v.clone(),
        Op::SameType { string, number, flag } => match node {
            Value::String(s) => *s = string.clone(),
            Value::Number(_) => *node = number.clone(),
            Value::Bool(b) => *b = *flag,
            _ => {}
        },
        // Removing is done by the parent; here it empties the node's own contents instead when it has any.
        Op::Remove => match node {
            Value::Object(m) if !m.is_empty() => {
                let key = m.keys().next().cloned().unwrap_or_default();
                m.shift_remove(&key);
            }
            Value::Array(a) if !a.is_empty() => {
                a.remove(0);
            }
            other => *other = Value::Null,
        },
        Op::Insert(k, v) => match node {
            Value::Object(m) => {
                m.insert(k.clone(), v.clone());
            }
            Value::Array(a) => a.push(v.clone()),
            other => *other = v.clone(),
        },
        Op::Nest { depth, objects } => {
            let mut v = node.take();
            for _ in 0..*depth {
                v = if *objects {
                    Value::Object(Map::from_iter([("a".to_string(), v)]))
                } else {
                    Value::Array(vec![v])
                };
            }
            *node = v;
        }
        Op::Huge => *node = Value::String(MARKER.to_string()),
        Op::Repeat(n) => match node {
            Value::Array(a) if !a.is_empty() => {
                let items = a.clone();
                for _ in 0..*n {
                    a.extend(items.iter().cloned());
                    if a.len() > 4096 {
                        break;
                    }
                }
            }
            other => *other = Value::Array(vec![other.clone(); *n]),
        },
        Op::Extremes(seed) => extremes(node, &mut seed.clone()),
    }
}

fn extremes(node: &mut Value, seed: &mut usize) {
    match node {
        Value::Number(_) => {
            // Mostly the two ends of u64 (sums and differences of counters overflow there), one bit per number.
            *node = match (*seed & 1, *seed & 0b110) {
                (0, 0) => Value::from(i64::MIN),
                (0, _) => Value::from(u64::MAX),
                _ => Value::from(0),
            };
            *seed = seed.rotate_right(3);
        }
        Value::Array(a) => a.iter_mut().for_each(|v| extremes(v, seed)),
        Value::Object(m) => m.values_mut().for_each(|v| extremes(v, seed)),
        _ => {}
    }
}
