//! What a recording's `expect` (index.json) asks of each dialect, and the checks that hold an answer to it: the
//! dialect's mapping of finish reasons and usage (spec/dialects.md C3, C4), which items a dialect can express,
//! and how it separates the messages of one answer (its own blocks or items, else a blank line in one text).

use serde::Deserialize;
use serde_json::Value;

use super::read::{Args, Call, Seen};
use super::{Dialect, Mode};

#[derive(Debug, Clone, Deserialize)]
pub struct Capture {
    pub name: String,
    pub file: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Expect {
    pub terminal: Option<String>,
    pub incomplete_reason: Option<String>,
    pub error: Option<ExpectError>,
    pub messages: Vec<Message>,
    pub reasoning_items: Vec<ReasoningItem>,
    pub function_calls: Vec<FunctionCall>,
    pub custom_tool_calls: Vec<CustomCall>,
    pub other_items: Vec<String>,
    pub usage: Option<Value>,
    #[serde(default)]
    pub vendor_events: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExpectError {
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReasoningItem {
    pub summary: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub call_id: String,
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CustomCall {
    pub name: String,
    pub call_id: String,
    pub input: String,
}

/// One check's name and, when it failed, why.
pub struct Check {
    pub name: &'static str,
    pub failure: Option<String>,
}

fn check(name: &'static str, ok: bool, why: impl FnOnce() -> String) -> Check {
    Check { name, failure: (!ok).then(why) }
}

/// How the recording ends for a client.
enum Ending<'a> {
    Completed,
    Incomplete(&'a str),
    /// The upstream reported a failure: the client gets an error carrying its message.
    Failed(&'a str),
    /// The recording stops without a terminal event: the client gets an error.
    Cut,
}

fn ending(e: &Expect) -> Ending<'_> {
    if let Some(err) = &e.error {
        return Ending::Failed(&err.message);
    }
    match e.terminal.as_deref() {
        Some("response.completed") => Ending::Completed,
        Some("response.incomplete") => Ending::Incomplete(e.incomplete_reason.as_deref().unwrap_or_default()),
        Some(_) | None => Ending::Cut,
    }
}

/// Whether the dialect can express a custom (free-form) tool call: Chat (`type: custom`) and Anthropic (a
/// `tool_use` with `{"input": ...}`) can; Gemini and Ollama clients can only declare function tools, so their
/// answers leave such a call out.
fn expresses_custom(d: Dialect) -> bool {
    match d {
        Dialect::Chat | Dialect::Responses | Dialect::Anthropic => true,
        Dialect::Gemini | Dialect::Ollama => false,
    }
}

/// The finish word a dialect gives an ending (spec C4).
fn finish_word(d: Dialect, mode: Mode, ending: &Ending<'_>, tool_calls: bool) -> Option<&'static str> {
    let incomplete = |reason: &str| match (d, reason) {
        (Dialect::Chat, "content_filter") => "content_filter",
        (Dialect::Chat | Dialect::Ollama, _) => "length",
        (Dialect::Anthropic, "content_filter") => "refusal",
        (Dialect::Anthropic, _) => "max_tokens",
        (Dialect::Gemini, "content_filter") => "SAFETY",
        (Dialect::Gemini, _) => "MAX_TOKENS",
        (Dialect::Responses, _) => "",
    };
    Some(match (ending, d) {
        (Ending::Failed(_) | Ending::Cut, _) => return None,
        (Ending::Completed, Dialect::Responses) => match mode {
            Mode::Stream => "response.completed",
            Mode::Whole => "completed",
        },
        (Ending::Incomplete(_), Dialect::Responses) => match mode {
            Mode::Stream => "response.incomplete",
            Mode::Whole => "incomplete",
        },
        (Ending::Completed, Dialect::Chat) if tool_calls => "tool_calls",
        (Ending::Completed, Dialect::Chat | Dialect::Ollama) => "stop",
        (Ending::Completed, Dialect::Anthropic) if tool_calls => "tool_use",
        (Ending::Completed, Dialect::Anthropic) => "end_turn",
        (Ending::Completed, Dialect::Gemini) => "STOP",
        (Ending::Incomplete(reason), _) => incomplete(reason),
    })
}

/// The calls a dialect's client should see, in the shape it carries them.
fn expected_calls(e: &Expect, d: Dialect) -> Vec<Call> {
    let json_args = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Object(Default::default()));
    let mut calls: Vec<Call> = e
        .function_calls
        .iter()
        .map(|f| Call {
            id: f.call_id.clone(),
            name: f.name.clone(),
            args: match d {
                Dialect::Chat | Dialect::Responses => Args::Text(f.arguments.clone()),
                Dialect::Anthropic | Dialect::Gemini | Dialect::Ollama => Args::Json(json_args(&f.arguments)),
            },
            custom: false,
        })
        .collect();
    if expresses_custom(d) {
        calls.extend(e.custom_tool_calls.iter().map(|c| Call {
            id: c.call_id.clone(),
            name: c.name.clone(),
            args: match d {
                Dialect::Anthropic => Args::Json(serde_json::json!({"input": c.input})),
                Dialect::Chat | Dialect::Responses | Dialect::Gemini | Dialect::Ollama => Args::Text(c.input.clone()),
            },
            custom: d != Dialect::Anthropic,
        }));
    }
    calls
}

/// The visible text a dialect's client should see: per message where it keeps them apart, else one text with
/// the messages separated by a blank line.
fn expected_texts(e: &Expect, d: Dialect) -> Vec<String> {
    let texts: Vec<String> = e.messages.iter().map(|m| m.text.clone()).filter(|t| !t.is_empty()).collect();
    match d {
        Dialect::Responses | Dialect::Anthropic => texts,
        Dialect::Chat | Dialect::Gemini | Dialect::Ollama => vec![texts.join("\n\n")],
    }
}

fn num(v: &Value, path: &[&str]) -> Option<u64> {
    let mut at = v;
    for p in path {
        at = at.get(*p)?;
    }
    at.as_u64()
}

/// Usage as each dialect reports it, compared field by field where the dialect has the field.
fn usage_matches(d: Dialect, want: &Value, seen: &Seen) -> Result<(), String> {
    let Some(got) = seen.usage else { return Err("no usage".into()) };
    let input = num(want, &["input_tokens"]);
    // Translated dialects report 0 for a detail the upstream left out; the passthrough leaves it out too.
    let zero = if d == Dialect::Responses { None } else { Some(0) };
    let cached = num(want, &["input_tokens_details", "cached_tokens"]).or(zero);
    let cache_write = num(want, &["input_tokens_details", "cache_write_tokens"]).or(zero);
    let output = num(want, &["output_tokens"]);
    let reasoning = num(want, &["output_tokens_details", "reasoning_tokens"]).or(zero);
    let total = num(want, &["total_tokens"]);
    let pairs: Vec<(&str, Option<u64>, Option<u64>)> = match d {
        Dialect::Chat | Dialect::Responses => vec![
            ("input", input, got.input),
            ("cached", cached, got.cached),
            ("cache_write", cache_write, got.cache_write),
            ("output", output, got.output),
            ("reasoning", reasoning, got.reasoning),
            ("total", total, got.total),
        ],
        Dialect::Anthropic => {
            vec![
                ("input", input, got.input),
                ("cached", cached, got.cached),
                ("cache_write", cache_write, got.cache_write),
                ("output", output, got.output),
            ]
        }
        Dialect::Gemini => vec![
            ("input", input, got.input),
            ("cached", cached, got.cached),
            ("output", output, got.output),
            ("reasoning", reasoning, got.reasoning),
            ("total", total, got.total),
        ],
        Dialect::Ollama => vec![("input", input, got.input), ("output", output, got.output)],
    };
    let wrong: Vec<String> = pairs
        .into_iter()
        .filter(|(_, w, g)| w.is_some() && w != g)
        .map(|(k, w, g)| format!("{k}: want {w:?}, got {g:?}"))
        .collect();
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
}

/// The events of a recording: (type, payload).
fn recorded_events(sse: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in sse.replace("\r\n", "\n").split("\n\n") {
        let mut name = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(v.strip_prefix(' ').unwrap_or(v).to_string());
            }
        }
        if let Some(data) = data {
            let kind = serde_json::from_str::<Value>(&data)
                .ok()
                .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
                .or(name)
                .unwrap_or_default();
            out.push((kind, data));
        }
    }
    out
}

/// The Responses passthrough forwards every event as it came, in order: only `response.completed` /
/// `.incomplete` may differ (their empty `output` filled from the `.done` items), and a stream the recording cut
/// ends with the gateway's `error` event. The backend's own `codex.*` events are the transport's business (over
/// the WebSocket they are its frames, not events) and are left out on both sides.
fn passthrough_untouched(e: &Expect, sse: &str, seen: &Seen) -> Result<(), String> {
    let vendor = |k: &str| e.vendor_events.iter().any(|v| v == k) || k.starts_with("codex.");
    let want: Vec<(String, String)> = recorded_events(sse).into_iter().filter(|(k, _)| !vendor(k)).collect();
    let mut got: Vec<(String, String)> = seen.events.iter().filter(|(k, _)| !vendor(k)).cloned().collect();
    if matches!(ending(e), Ending::Cut) && got.last().is_some_and(|(k, _)| k == "error") {
        got.pop();
    }
    if want.len() != got.len() {
        let kinds = |v: &[(String, String)]| v.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(",");
        return Err(format!("{} events forwarded, {} recorded: got [{}]", got.len(), want.len(), kinds(&got)));
    }
    for (i, ((wk, wd), (gk, gd))) in want.iter().zip(&got).enumerate() {
        let terminal = matches!(wk.as_str(), "response.completed" | "response.incomplete");
        // A payload that is not JSON and has no `event:` name has no type to compare, only its bytes.
        if (!wk.is_empty() && wk != gk) || (!terminal && wd != gd) {
            return Err(format!("event {i}: recorded {wk} {:.120}, forwarded {gk} {:.120}", wd, gd));
        }
    }
    Ok(())
}

/// Where two texts part, with a little of each around it.
fn differ(want: &str, got: &str) -> String {
    let at = want.chars().zip(got.chars()).take_while(|(a, b)| a == b).count();
    let from = at.saturating_sub(40);
    let part = |s: &str| s.chars().skip(from).take(100).collect::<String>();
    format!(
        "differ at char {at} ({} vs {} chars): want ...{:?}\n    got ...{:?}",
        want.chars().count(),
        got.chars().count(),
        part(want),
        part(got)
    )
}

/// Every check of one answer.
pub fn checks(c: &Capture, d: Dialect, mode: Mode, sse: &str, seen: &Seen) -> Vec<Check> {
    let e = &c.expect;
    let end = ending(e);
    let mut out = Vec::new();
    let calls = expected_calls(e, d);
    match &end {
        Ending::Failed(message) => {
            out.push(check("outcome", seen.error.as_deref().is_some_and(|m| m.contains(message)), || {
                format!("want an error carrying {message:?}, got status {} error {:?}", seen.status, seen.error)
            }))
        }
        Ending::Cut => out.push(check("outcome", seen.error.is_some(), || {
            format!("the recording stops without a terminal event: want an error, got {:?}", seen.finish)
        })),
        Ending::Completed | Ending::Incomplete(_) => {
            let want = finish_word(d, mode, &end, !calls.is_empty());
            out.push(check("outcome", seen.error.is_none() && seen.finish.as_deref() == want, || {
                format!(
                    "want finish {want:?}, got status {} finish {:?} error {:?}",
                    seen.status, seen.finish, seen.error
                )
            }));
        }
    }
    if matches!(end, Ending::Completed | Ending::Incomplete(_)) {
        let want = expected_texts(e, d);
        let got: Vec<String> = match d {
            Dialect::Responses | Dialect::Anthropic => seen.texts.iter().filter(|t| !t.is_empty()).cloned().collect(),
            Dialect::Chat | Dialect::Gemini | Dialect::Ollama => vec![seen.text()],
        };
        out.push(check("text", want == got, || differ(&format!("{want:?}"), &format!("{got:?}"))));
        out.push(check("tool_calls", calls == seen.calls, || format!("want {calls:?}\n    got {:?}", seen.calls)));
        // Summary parts and reasoning items alike are separated by a blank line in every dialect.
        let reasoning: Vec<&str> =
            e.reasoning_items.iter().flat_map(|r| &r.summary).map(String::as_str).filter(|p| !p.is_empty()).collect();
        let reasoning = reasoning.join("\n\n");
        out.push(check("reasoning", reasoning == seen.reasoning, || differ(&reasoning, &seen.reasoning)));
        if let Some(usage) = e.usage.as_ref().filter(|u| !u.is_null()) {
            out.push(check("usage", usage_matches(d, usage, seen).is_ok(), || {
                usage_matches(d, usage, seen).err().unwrap_or_default()
            }));
        }
        let images = e.other_items.iter().filter(|k| *k == "image_generation_call").count();
        if d == Dialect::Ollama {
            // An Ollama chat message has no field both official clients read for an image the model made: the
            // answer names each one in its text instead, and carries none (docs/protocol.md, Images).
            if images > 0 || !seen.images.is_empty() || seen.image_notes > 0 {
                out.push(check("images", seen.images.is_empty() && seen.image_notes == images, || {
                    format!(
                        "want {images} image note(s) and no image, got {} note(s) and {} image(s)",
                        seen.image_notes,
                        seen.images.len()
                    )
                }));
            }
        } else if images > 0 || !seen.images.is_empty() {
            out.push(check("images", seen.images.len() == images && seen.images.iter().all(|i| !i.is_empty()), || {
                format!("want {images} generated image(s), got {}", seen.images.len())
            }));
        }
        if d == Dialect::Responses {
            out.push(check("items", e.other_items == seen.items, || {
                format!("want {:?}, got {:?}", e.other_items, seen.items)
            }));
        }
    }
    if d == Dialect::Responses && mode == Mode::Stream && !matches!(end, Ending::Failed(_)) {
        let r = passthrough_untouched(e, sse, seen);
        out.push(check("passthrough", r.is_ok(), || r.err().unwrap_or_default()));
    }
    out
}
