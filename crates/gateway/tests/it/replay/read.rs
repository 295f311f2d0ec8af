//! What a client of each dialect reconstructs from the gateway's answer, streamed or whole, read the way the
//! official SDKs read it (spec/dialects.md): the visible text, the reasoning where the dialect has a place for it,
//! tool calls with their ids and arguments, usage in Responses terms, the finish reason or the error, and the
//! images an answer carries.

use serde_json::{Value, json};

use super::{Dialect, Mode};

/// A tool call as the client sees it: arguments as text (Chat, Responses) or as the JSON value the dialect
/// carries (Anthropic `input`, Gemini `args`, Ollama `arguments`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    pub args: Args,
    /// A custom (free-form) tool call rather than a function call.
    pub custom: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    Text(String),
    Json(Value),
}

/// Usage in Responses terms, mapped back from the dialect's fields (spec C3); `None` where the dialect omits one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub input: Option<u64>,
    pub cached: Option<u64>,
    pub cache_write: Option<u64>,
    pub output: Option<u64>,
    pub reasoning: Option<u64>,
    pub total: Option<u64>,
}

/// Everything a client reconstructs from one answer.
#[derive(Debug, Default)]
pub struct Seen {
    pub status: u16,
    /// Visible text: one entry per message where the dialect keeps messages apart (Responses items, Anthropic
    /// blocks), else one entry holding the whole text.
    pub texts: Vec<String>,
    pub reasoning: String,
    pub calls: Vec<Call>,
    pub usage: Option<Usage>,
    /// The dialect's own word for how the answer ended (`stop`, `tool_use`, `STOP`, a Responses status).
    pub finish: Option<String>,
    /// The error the client got (HTTP error body or in-stream error), as its message.
    pub error: Option<String>,
    /// Output item types of a Responses answer other than message, reasoning and tool calls, in order.
    pub items: Vec<String>,
    /// Generated images delivered to the client (base64 payloads).
    pub images: Vec<String>,
    /// Generated images an Ollama chat answer names in its text where it cannot carry them, taken out of `texts`.
    pub image_notes: usize,
    /// A Responses stream's events as forwarded: (type, payload).
    pub events: Vec<(String, String)>,
}

impl Seen {
    /// The visible text as one string, messages joined as the dialect presents them.
    pub fn text(&self) -> String {
        self.texts.join("")
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn n(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// `data:` payloads of an SSE body with their `event:` names.
fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut name = None;
        let mut data: Option<String> = None;
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(match data {
                    Some(d) => format!("{d}\n{v}"),
                    None => v.to_string(),
                });
            }
        }
        if let Some(d) = data {
            out.push((name, d));
        }
    }
    out
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Read one answer of `dialect` in `mode`.
pub fn read(dialect: Dialect, mode: Mode, status: u16, body: &str) -> Seen {
    let mut seen = Seen { status, ..Seen::default() };
    if status != 200 {
        seen.error = Some(error_message(dialect, &parse(body)).unwrap_or_else(|| body.to_string()));
        return seen;
    }
    match (dialect, mode) {
        (Dialect::Chat, Mode::Stream) => chat_stream(&mut seen, body),
        (Dialect::Chat, Mode::Whole) => chat_whole(&mut seen, &parse(body)),
        (Dialect::Responses, Mode::Stream) => responses_stream(&mut seen, body),
        (Dialect::Responses, Mode::Whole) => responses_whole(&mut seen, &parse(body)),
        (Dialect::Anthropic, Mode::Stream) => anthropic_stream(&mut seen, body),
        (Dialect::Anthropic, Mode::Whole) => anthropic_whole(&mut seen, &parse(body)),
        (Dialect::Gemini, Mode::Stream) => {
            for (_, data) in sse_events(body) {
                gemini_chunk(&mut seen, &parse(&data));
            }
        }
        (Dialect::Gemini, Mode::Whole) => gemini_chunk(&mut seen, &parse(body)),
        (Dialect::Ollama, Mode::Stream) => {
            for line in body.lines().filter(|l| !l.is_empty()) {
                ollama_line(&mut seen, &parse(line));
            }
        }
        (Dialect::Ollama, Mode::Whole) => ollama_line(&mut seen, &parse(body)),
    }
    if dialect == Dialect::Ollama {
        take_image_notes(&mut seen);
    }
    seen
}

/// The start and end of the note an Ollama chat answer has where an image was (`dialects::ollama::image_note`).
const NOTE_START: &str = "[The model generated an image here (";
const NOTE_END: &str = "in their own fields.]";

/// Take the image notes out of an Ollama answer's text, each with the blank line that set it apart, and count
/// them: the text is then the model's own.
fn take_image_notes(seen: &mut Seen) {
    for text in &mut seen.texts {
        while let Some(start) = text.find(NOTE_START) {
            let Some(len) = text[start..].find(NOTE_END) else { break };
            let mut from = start;
            let mut to = start + len + NOTE_END.len();
            if text[..from].ends_with("\n\n") {
                from -= 2;
            } else if text[to..].starts_with("\n\n") {
                to += 2;
            }
            text.replace_range(from..to, "");
            seen.image_notes += 1;
        }
    }
}

/// An error body's message, in the dialect's shape.
fn error_message(dialect: Dialect, v: &Value) -> Option<String> {
    let m = match dialect {
        Dialect::Ollama => v.get("error")?,
        Dialect::Chat | Dialect::Responses | Dialect::Anthropic | Dialect::Gemini => v.get("error")?.get("message")?,
    };
    m.as_str().map(str::to_string)
}

fn push_text(seen: &mut Seen, text: &str) {
    match seen.texts.last_mut() {
        Some(t) => t.push_str(text),
        None => seen.texts.push(text.to_string()),
    }
}

fn chat_usage(u: &Value) -> Usage {
    Usage {
        input: n(&u["prompt_tokens"]),
        cached: n(&u["prompt_tokens_details"]["cached_tokens"]),
        cache_write: n(&u["prompt_tokens_details"]["cache_write_tokens"]),
        output: n(&u["completion_tokens"]),
        reasoning: n(&u["completion_tokens_details"]["reasoning_tokens"]),
        total: n(&u["total_tokens"]),
    }
}

fn chat_images(seen: &mut Seen, images: &Value) {
    for img in images.as_array().into_iter().flatten() {
        let url = s(&img["image_url"]["url"]);
        seen.images.push(url.split_once("base64,").map(|(_, b)| b.to_string()).unwrap_or(url));
    }
}

fn chat_stream(seen: &mut Seen, body: &str) {
    for (_, data) in sse_events(body) {
        if data == "[DONE]" {
            continue;
        }
        let v = parse(&data);
        if let Some(e) = v.get("error") {
            seen.error = Some(s(&e["message"]));
            continue;
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            seen.usage = Some(chat_usage(u));
        }
        let Some(choice) = v["choices"].get(0) else { continue };
        let d = &choice["delta"];
        if let Some(t) = d["content"].as_str() {
            push_text(seen, t);
        }
        if let Some(t) = d["reasoning_content"].as_str() {
            seen.reasoning.push_str(t);
        }
        chat_images(seen, &d["images"]);
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let index = tc["index"].as_u64().unwrap_or(0) as usize;
            if index >= seen.calls.len() {
                let custom = tc["type"] == "custom";
                let name = if custom { s(&tc["custom"]["name"]) } else { s(&tc["function"]["name"]) };
                seen.calls.push(Call { id: s(&tc["id"]), name, args: Args::Text(String::new()), custom });
            }
            let fragment =
                tc["function"]["arguments"].as_str().or_else(|| tc["custom"]["input"].as_str()).unwrap_or_default();
            if let Some(Call { args: Args::Text(a), .. }) = seen.calls.get_mut(index) {
                a.push_str(fragment);
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            seen.finish = Some(f.to_string());
        }
    }
}

fn chat_whole(seen: &mut Seen, v: &Value) {
    let choice = &v["choices"][0];
    let m = &choice["message"];
    if let Some(t) = m["content"].as_str() {
        seen.texts.push(t.to_string());
    }
    seen.reasoning = s(&m["reasoning_content"]);
    chat_images(seen, &m["images"]);
    for tc in m["tool_calls"].as_array().into_iter().flatten() {
        let custom = tc["type"] == "custom";
        let (name, args) = if custom {
            (s(&tc["custom"]["name"]), s(&tc["custom"]["input"]))
        } else {
            (s(&tc["function"]["name"]), s(&tc["function"]["arguments"]))
        };
        seen.calls.push(Call { id: s(&tc["id"]), name, args: Args::Text(args), custom });
    }
    seen.finish = choice["finish_reason"].as_str().map(str::to_string);
    seen.usage = v.get("usage").map(chat_usage);
}

fn responses_usage(u: &Value) -> Usage {
    Usage {
        input: n(&u["input_tokens"]),
        cached: n(&u["input_tokens_details"]["cached_tokens"]),
        cache_write: n(&u["input_tokens_details"]["cache_write_tokens"]),
        output: n(&u["output_tokens"]),
        reasoning: n(&u["output_tokens_details"]["reasoning_tokens"]),
        total: n(&u["total_tokens"]),
    }
}

/// A finished Responses output item: tool calls, and the types that are neither messages nor reasoning.
fn responses_item(seen: &mut Seen, item: &Value) {
    match item["type"].as_str().unwrap_or_default() {
        "message" | "reasoning" => {}
        "function_call" => seen.calls.push(Call {
            id: s(&item["call_id"]),
            name: s(&item["name"]),
            args: Args::Text(s(&item["arguments"])),
            custom: false,
        }),
        "custom_tool_call" => seen.calls.push(Call {
            id: s(&item["call_id"]),
            name: s(&item["name"]),
            args: Args::Text(s(&item["input"])),
            custom: true,
        }),
        other => {
            seen.items.push(other.to_string());
            if other == "image_generation_call"
                && let Some(r) = item["result"].as_str()
            {
                seen.images.push(r.to_string());
            }
        }
    }
}

fn responses_stream(seen: &mut Seen, body: &str) {
    let mut text_ids: Vec<String> = Vec::new();
    let mut reasoning_parts = 0;
    for (name, data) in sse_events(body) {
        let v = parse(&data);
        let kind = v["type"].as_str().map(str::to_string).or(name).unwrap_or_default();
        seen.events.push((kind.clone(), data.clone()));
        match kind.as_str() {
            "response.output_text.delta" => {
                let id = s(&v["item_id"]);
                if text_ids.last() != Some(&id) {
                    text_ids.push(id);
                    seen.texts.push(String::new());
                }
                push_text(seen, v["delta"].as_str().unwrap_or_default());
            }
            "response.reasoning_summary_part.added" => {
                if reasoning_parts > 0 {
                    seen.reasoning.push_str("\n\n");
                }
                reasoning_parts += 1;
            }
            "response.reasoning_summary_text.delta" => seen.reasoning.push_str(v["delta"].as_str().unwrap_or_default()),
            "response.output_item.done" => responses_item(seen, &v["item"]),
            "response.completed" | "response.incomplete" => {
                seen.finish = Some(kind.clone());
                seen.usage = v["response"].get("usage").filter(|u| !u.is_null()).map(responses_usage);
            }
            "response.failed" => seen.error = Some(s(&v["response"]["error"]["message"])),
            "error" => seen.error = Some(v["message"].as_str().or(v["error"]["message"].as_str()).unwrap_or("").into()),
            _ => {}
        }
    }
}

fn responses_whole(seen: &mut Seen, v: &Value) {
    let mut summaries = Vec::new();
    for item in v["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                let text: String = item["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["type"] == "output_text")
                    .map(|p| s(&p["text"]))
                    .collect();
                seen.texts.push(text);
            }
            Some("reasoning") => {
                summaries.extend(item["summary"].as_array().into_iter().flatten().map(|p| s(&p["text"])));
            }
            _ => responses_item(seen, item),
        }
    }
    seen.reasoning = summaries.join("\n\n");
    seen.finish = v["status"].as_str().map(str::to_string);
    seen.usage = v.get("usage").filter(|u| !u.is_null()).map(responses_usage);
}

fn anthropic_usage(u: &Value) -> Usage {
    let cached = n(&u["cache_read_input_tokens"]);
    let cache_write = n(&u["cache_creation_input_tokens"]);
    Usage {
        input: n(&u["input_tokens"]).map(|i| i + cached.unwrap_or(0) + cache_write.unwrap_or(0)),
        cached,
        cache_write,
        output: n(&u["output_tokens"]),
        reasoning: None,
        total: None,
    }
}

/// One finished Anthropic content block (streamed blocks are rebuilt into this shape first).
fn anthropic_block(seen: &mut Seen, b: &Value, thinking: &mut Vec<String>) {
    match b["type"].as_str().unwrap_or_default() {
        "text" => seen.texts.push(s(&b["text"])),
        "thinking" => {
            let t = s(&b["thinking"]);
            if !t.is_empty() {
                thinking.push(t);
            }
        }
        "tool_use" => seen.calls.push(Call {
            id: s(&b["id"]),
            name: s(&b["name"]),
            args: Args::Json(b["input"].clone()),
            custom: false,
        }),
        "image" => seen.images.push(s(&b["source"]["data"])),
        other => seen.items.push(other.to_string()),
    }
}

fn anthropic_stream(seen: &mut Seen, body: &str) {
    let mut blocks: Vec<(Value, String)> = Vec::new();
    for (name, data) in sse_events(body) {
        let v = parse(&data);
        match name.as_deref().unwrap_or_default() {
            "content_block_start" => blocks.push((v["content_block"].clone(), String::new())),
            "content_block_delta" => {
                let Some((block, json)) = blocks.last_mut() else { continue };
                let d = &v["delta"];
                match d["type"].as_str().unwrap_or_default() {
                    "text_delta" => block["text"] = json!(format!("{}{}", s(&block["text"]), s(&d["text"]))),
                    "thinking_delta" => {
                        block["thinking"] = json!(format!("{}{}", s(&block["thinking"]), s(&d["thinking"])))
                    }
                    "input_json_delta" => json.push_str(d["partial_json"].as_str().unwrap_or_default()),
                    _ => {}
                }
            }
            "message_delta" => {
                seen.finish = v["delta"]["stop_reason"].as_str().map(str::to_string);
                seen.usage = Some(anthropic_usage(&v["usage"]));
            }
            "error" => seen.error = Some(s(&v["error"]["message"])),
            _ => {}
        }
    }
    let mut thinking = Vec::new();
    for (mut block, json) in blocks {
        if !json.is_empty() {
            block["input"] = serde_json::from_str(&json).unwrap_or(Value::String(json));
        }
        anthropic_block(seen, &block, &mut thinking);
    }
    seen.reasoning = thinking.join("\n\n");
}

fn anthropic_whole(seen: &mut Seen, v: &Value) {
    let mut thinking = Vec::new();
    for b in v["content"].as_array().into_iter().flatten() {
        anthropic_block(seen, b, &mut thinking);
    }
    seen.reasoning = thinking.join("\n\n");
    seen.finish = v["stop_reason"].as_str().map(str::to_string);
    seen.usage = Some(anthropic_usage(&v["usage"]));
}

fn gemini_chunk(seen: &mut Seen, v: &Value) {
    if let Some(e) = v.get("error") {
        seen.error = Some(s(&e["message"]));
        return;
    }
    let c = &v["candidates"][0];
    for p in c["content"]["parts"].as_array().into_iter().flatten() {
        if let Some(t) = p["text"].as_str() {
            if p["thought"] == true {
                seen.reasoning.push_str(t);
            } else {
                push_text(seen, t);
            }
        }
        if let Some(f) = p.get("functionCall") {
            seen.calls.push(Call {
                id: s(&f["id"]),
                name: s(&f["name"]),
                args: Args::Json(f["args"].clone()),
                custom: false,
            });
        }
        if let Some(d) = p.get("inlineData") {
            seen.images.push(s(&d["data"]));
        }
    }
    if let Some(f) = c["finishReason"].as_str() {
        seen.finish = Some(f.to_string());
    }
    if let Some(u) = v.get("usageMetadata") {
        let reasoning = n(&u["thoughtsTokenCount"]).unwrap_or(0);
        seen.usage = Some(Usage {
            input: n(&u["promptTokenCount"]),
            cached: Some(n(&u["cachedContentTokenCount"]).unwrap_or(0)),
            output: n(&u["candidatesTokenCount"]).map(|c| c + reasoning),
            reasoning: Some(reasoning),
            total: n(&u["totalTokenCount"]),
            ..Usage::default()
        });
    }
}

fn ollama_line(seen: &mut Seen, v: &Value) {
    if let Some(e) = v["error"].as_str() {
        seen.error = Some(e.to_string());
        return;
    }
    let m = &v["message"];
    if let Some(t) = m["content"].as_str().filter(|t| !t.is_empty()) {
        push_text(seen, t);
    }
    if let Some(t) = m["thinking"].as_str() {
        seen.reasoning.push_str(t);
    }
    for img in m["images"].as_array().into_iter().flatten() {
        seen.images.push(s(img));
    }
    for tc in m["tool_calls"].as_array().into_iter().flatten() {
        let f = &tc["function"];
        seen.calls.push(Call {
            id: s(&tc["id"]),
            name: s(&f["name"]),
            args: Args::Json(f["arguments"].clone()),
            custom: false,
        });
    }
    if v["done"] == true {
        seen.finish = v["done_reason"].as_str().map(str::to_string);
        seen.usage = Some(Usage { input: n(&v["prompt_eval_count"]), output: n(&v["eval_count"]), ..Usage::default() });
    }
}
