//! One answer of several kinds of output through every translating dialect, streamed and whole (issue 59): two
//! messages (a commentary message, then the final answer) stay apart, a generated image reaches the client where
//! the dialect has a place for it, and a custom tool call ends the answer as a tool call wherever the dialect can
//! express one, in the stream and the whole answer alike.

use serde_json::{Value, json};

use crate::anthropic::{AnthropicEncoder, AnthropicOptions, render_message};
use crate::assemble::Collected;
use crate::chat::{ChatEncoder, render_completion};
use crate::gemini::{Framing, GeminiEncoder, render_response};
use crate::ollama::{Endpoint, OllamaEncoder, render_chat, render_generate};
use crate::responses::event::Event;

const MESSAGES: [&str; 6] = [
    r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-5.4"}}"#,
    r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"message","id":"m1"}}"#,
    r#"{"type":"response.output_text.delta","item_id":"m1","delta":"Searching with links."}"#,
    r#"{"type":"response.output_item.done","output_index":0,"item":{"type":"message","id":"m1","content":[{"type":"output_text","text":"Searching with links."}]}}"#,
    r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"message","id":"m2"}}"#,
    r#"{"type":"response.output_text.delta","item_id":"m2","delta":"Here are a few."}"#,
];
const SECOND_DONE: &str = r#"{"type":"response.output_item.done","output_index":1,"item":{"type":"message","id":"m2","content":[{"type":"output_text","text":"Here are a few."}]}}"#;
const IMAGE: [&str; 3] = [
    r#"{"type":"response.output_item.added","output_index":2,"item":{"type":"image_generation_call","id":"ig_1","status":"in_progress"}}"#,
    r#"{"type":"response.image_generation_call.partial_image","item_id":"ig_1","partial_image_b64":"cGFy","partial_image_index":0}"#,
    r#"{"type":"response.output_item.done","output_index":2,"item":{"type":"image_generation_call","id":"ig_1","status":"completed","output_format":"jpeg","result":"aW1n"}}"#,
];
const CUSTOM: &str = r#"{"type":"response.output_item.done","output_index":3,"item":{"type":"custom_tool_call","id":"ct_1","call_id":"call_c","name":"exec","input":"print(1)"}}"#;
const COMPLETED: &str =
    r#"{"type":"response.completed","response":{"output":[],"usage":{"input_tokens":9,"output_tokens":4}}}"#;

const TEXT: &str = "Searching with links.\n\nHere are a few.";

fn answer(with_custom: bool) -> Vec<Event<'static>> {
    let mut lines: Vec<&str> = MESSAGES.to_vec();
    lines.push(SECOND_DONE);
    lines.extend(IMAGE);
    if with_custom {
        lines.push(CUSTOM);
    }
    lines.push(COMPLETED);
    lines.into_iter().map(|l| Event::parse(l).map(Event::into_owned).unwrap_or(Event::Ignored)).collect()
}

fn collected(with_custom: bool) -> Collected {
    let mut c = Collected::new();
    for e in answer(with_custom) {
        c.on_event(e);
    }
    c
}

fn payloads(out: &[u8], prefix: &str) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[test]
fn chat_separates_messages_shows_images_and_ends_a_custom_call_with_tool_calls() {
    let mut enc = ChatEncoder::new("c".into(), 1, "gpt-5.4".into(), false);
    let mut out = Vec::new();
    for e in answer(true) {
        enc.on_event(&e, &mut out);
    }
    let chunks = payloads(&out, "data: ");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, TEXT);
    let image = chunks.iter().find_map(|c| c["choices"][0]["delta"]["images"][0].as_object().cloned());
    assert_eq!(image.map(|i| i["image_url"]["url"].clone()), Some(json!("data:image/jpeg;base64,aW1n")));
    let finish = chunks.iter().find_map(|c| c["choices"][0]["finish_reason"].as_str().map(str::to_string));
    assert_eq!(finish.as_deref(), Some("tool_calls"));

    let whole = render_completion(&collected(true), "c", 1, "gpt-5.4");
    let m = &whole["choices"][0]["message"];
    assert_eq!(m["content"], TEXT);
    assert_eq!(m["images"][0]["image_url"]["url"], "data:image/jpeg;base64,aW1n");
    assert_eq!(m["tool_calls"][0]["custom"], json!({"name": "exec", "input": "print(1)"}));
    assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls", "as the stream says");
}

#[test]
fn gemini_joins_messages_with_a_blank_line_and_gives_images_as_inline_data() {
    let mut enc = GeminiEncoder::new(Framing::Sse, "r".into(), "gemini-2.5-pro".into(), true);
    let mut out = Vec::new();
    for e in answer(false) {
        enc.on_event(&e, &mut out);
    }
    let parts: Vec<Value> = payloads(&out, "data: ")
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
        .collect();
    let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(text, TEXT);
    let inline = json!({"mimeType": "image/jpeg", "data": "aW1n"});
    assert!(parts.iter().any(|p| p["inlineData"] == inline), "{parts:?}");

    let whole = render_response(&collected(false), "r", "gemini-2.5-pro", true);
    let parts = whole["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default();
    let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(text, TEXT, "one part per message, joined as clients join them");
    assert!(parts.iter().any(|p| p["inlineData"] == inline), "{parts:?}");
}

/// Ollama: a chat message cannot carry a generated image in a form both official clients read (ollama-python
/// refuses base64 strings in `message.images`, ollama-js cannot send objects back), so the text says where it was
/// left out; `/api/generate` gives it in `image`, Ollama's own field, streamed and whole.
#[test]
fn ollama_joins_messages_with_a_blank_line_and_notes_images_in_a_chat() {
    let note = crate::ollama::image_note("image/jpeg", 4);
    let with_note = format!("{TEXT}\n\n{note}");
    let mut enc = OllamaEncoder::new(Endpoint::Chat, "gpt-5.4".into(), "t".into(), false, Box::new(|| 5));
    let mut out = Vec::new();
    for e in answer(false) {
        enc.on_event(&e, &mut out);
    }
    let lines = payloads(&out, "");
    let text: String = lines.iter().filter_map(|l| l["message"]["content"].as_str()).collect();
    assert_eq!(text, with_note);
    assert!(lines.iter().all(|l| l["message"].get("images").is_none() && l.get("image").is_none()), "{lines:?}");

    let whole = render_chat(&collected(false), "gpt-5.4", "t", false, 9);
    assert_eq!(whole["message"]["content"], with_note.as_str());
    assert!(whole["message"].get("images").is_none(), "{whole}");

    let mut enc = OllamaEncoder::new(Endpoint::Generate, "gpt-5.4".into(), "t".into(), false, Box::new(|| 5));
    let mut out = Vec::new();
    for e in answer(false) {
        enc.on_event(&e, &mut out);
    }
    let lines = payloads(&out, "");
    let text: String = lines.iter().filter_map(|l| l["response"].as_str()).collect();
    assert_eq!(text, TEXT);
    let images: Vec<&Value> = lines.iter().filter_map(|l| l.get("image")).collect();
    assert_eq!(images, [&json!("aW1n")]);
    let whole = render_generate(&collected(false), "gpt-5.4", "t", false, 9);
    assert_eq!((whole["response"].as_str(), whole["image"].as_str()), (Some(TEXT), Some("aW1n")));
}

#[test]
fn anthropic_keeps_messages_as_blocks_and_images_as_image_blocks() {
    let opts = AnthropicOptions { include_thinking: false };
    let mut enc = AnthropicEncoder::new("msg_1".into(), "claude".into(), &opts, 3);
    let mut out = Vec::new();
    for e in answer(true) {
        enc.on_event(&e, &mut out);
    }
    let events = payloads(&out, "data: ");
    let starts: Vec<&Value> = events.iter().filter(|e| e["type"] == "content_block_start").collect();
    let kinds: Vec<&str> = starts.iter().filter_map(|e| e["content_block"]["type"].as_str()).collect();
    assert_eq!(kinds, ["text", "text", "image", "tool_use"]);
    let source = json!({"type": "base64", "media_type": "image/jpeg", "data": "aW1n"});
    assert_eq!(starts[2]["content_block"]["source"], source);
    let stop = events.iter().find_map(|e| e["delta"]["stop_reason"].as_str().map(str::to_string));
    assert_eq!(stop.as_deref(), Some("tool_use"));

    let whole = render_message(&collected(true), "msg_1", "claude", &opts);
    let kinds: Vec<&str> =
        whole["content"].as_array().into_iter().flatten().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(kinds, ["text", "text", "image", "tool_use"]);
    assert_eq!(whole["content"][2]["source"], source);
    assert_eq!(whole["stop_reason"], "tool_use");
}

/// Gemini streamed a reasoning item's summary parts back to back; every other dialect separates them.
#[test]
fn gemini_separates_the_parts_of_a_reasoning_summary() {
    let events = [
        r#"{"type":"response.reasoning_summary_part.added","item_id":"rs","summary_index":0}"#,
        r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs","summary_index":0,"delta":"**One**"}"#,
        r#"{"type":"response.reasoning_summary_part.added","item_id":"rs","summary_index":1}"#,
        r#"{"type":"response.reasoning_summary_text.delta","item_id":"rs","summary_index":1,"delta":"**Two**"}"#,
        COMPLETED,
    ];
    let mut enc = GeminiEncoder::new(Framing::Sse, "r".into(), "gemini-2.5-pro".into(), true);
    let mut out = Vec::new();
    for e in events {
        enc.on_event(&Event::parse(e).unwrap_or(Event::Ignored), &mut out);
    }
    let thoughts: String = payloads(&out, "data: ")
        .iter()
        .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["thought"] == true)
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(thoughts, "**One**\n\n**Two**");
}
