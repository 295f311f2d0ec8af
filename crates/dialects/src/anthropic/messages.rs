//! Anthropic `messages` (and `system`) -> Responses `input` items: content blocks, tool call pairing, thinking
//! blocks carried back as reasoning items. Part of the `request` translation; see `request.rs` for the
//! top-level fields.

use serde_json::{Value, json};

use super::request::{Content, Message};
use super::signature::decode_signature;
use crate::error::GatewayError;

/// The billing header Claude Code puts in its first system block changes per request; it would break the
/// upstream prompt cache and the conversation key, and means nothing to the model.
pub(super) fn strip_billing_header(text: &str) -> String {
    if !text.contains("x-anthropic-billing-header") {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("x-anthropic-billing-header")).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

/// Text of a `system` field or system message: a string or text blocks (cache_control ignored).
pub(super) fn system_text(content: &Content, at: &str) -> Result<String, GatewayError> {
    let parts: Vec<String> = match content {
        Content::Text(s) => vec![strip_billing_header(s)],
        Content::Blocks(blocks) => {
            let mut parts = Vec::new();
            for (k, b) in blocks.iter().enumerate() {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        parts.push(strip_billing_header(b.get("text").and_then(Value::as_str).unwrap_or_default()))
                    }
                    other => {
                        return Err(GatewayError::invalid_param(
                            &format!("{at}[{k}].type"),
                            format!("System content must be text blocks, got {other:?}"),
                        ));
                    }
                }
            }
            parts
        }
    };
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join("\n\n"))
}

pub(super) fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

fn required_str<'a>(v: &'a Value, field: &str, at: &str) -> Result<&'a str, GatewayError> {
    str_field(v, field).ok_or_else(|| {
        GatewayError::invalid_param(&format!("{at}.{field}"), format!("`{at}.{field}` must be a string"))
    })
}

/// Builds the `input` array while keeping every tool call paired with exactly one output, placed right after
/// the calls (spec C8):
///
/// - Anthropic puts `tool_result` blocks at the start of the next user message; their outputs are emitted before
///   that message's other content.
/// - A `tool_use` whose result never arrives (a cancelled or interrupted tool run) gets a synthesized output
///   [`NO_RESULT`] when the next user message (or the end of the conversation) is reached.
/// - A `tool_result` that answers no pending `tool_use` of the previous assistant message (an orphan, or a
///   duplicate) is refused with a 400 naming its `tool_use_id`, as the Messages API and the backend both do;
///   every dialect treats an orphan result the same way (docs/parameter-policy.md, "Tool history").
/// - A system message arriving while calls wait for outputs is held back until the outputs are in place.
struct InputBuilder {
    items: Vec<Value>,
    pending: Vec<String>,
    deferred: Vec<Value>,
    reasoning_ids: Vec<String>,
}

/// The output sent for a tool call the client never answered.
pub const NO_RESULT: &str = "(no result)";

/// Prefix of a `function_call_output` whose `tool_result` had `is_error: true`. Responses has no error flag on
/// tool outputs, so the model learns of the failure from the text itself.
pub const TOOL_ERROR_PREFIX: &str = "[tool error] ";

impl InputBuilder {
    fn flush_pending(&mut self) {
        for call_id in self.pending.drain(..) {
            self.items.push(json!({"type":"function_call_output","call_id":call_id,"output":NO_RESULT}));
        }
        self.items.append(&mut self.deferred);
    }
}

/// `messages` -> Responses input items (see [`InputBuilder`] for how tool calls are paired).
pub(super) fn translate_messages(messages: Vec<Message>) -> Result<Vec<Value>, GatewayError> {
    let mut b =
        InputBuilder { items: Vec::new(), pending: Vec::new(), deferred: Vec::new(), reasoning_ids: Vec::new() };
    for (i, m) in messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role.as_str() {
            "user" => user_message(&mut b, m.content, &at)?,
            "assistant" => assistant_message(&mut b, m.content, &at)?,
            "system" => {
                let text = system_text(&m.content, &format!("{at}.content"))?;
                if !text.is_empty() {
                    let item = crate::upstream_request::developer_message(&text);
                    if b.pending.is_empty() {
                        b.items.push(item);
                    } else {
                        b.deferred.push(item);
                    }
                }
            }
            other => {
                return Err(GatewayError::invalid_param(
                    &format!("{at}.role"),
                    format!("Unknown role `{other}`; expected user, assistant or system"),
                ));
            }
        }
    }
    b.flush_pending();
    Ok(b.items)
}

fn blocks_of(content: Content) -> Vec<Value> {
    match content {
        Content::Text(s) => vec![json!({"type":"text","text":s})],
        Content::Blocks(blocks) => blocks,
    }
}

fn user_message(b: &mut InputBuilder, content: Content, at: &str) -> Result<(), GatewayError> {
    let mut outputs = Vec::new();
    let mut parts = Vec::new();
    for (k, block) in blocks_of(content).into_iter().enumerate() {
        let bat = format!("{at}.content[{k}]");
        if str_field(&block, "type") == Some("tool_result") {
            let call_id = required_str(&block, "tool_use_id", &bat)?.to_string();
            let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let output = tool_output(block.get("content"), is_error, &format!("{bat}.content"))?;
            let Some(pos) = b.pending.iter().position(|p| *p == call_id) else {
                return Err(GatewayError::invalid_param(
                    &format!("{bat}.tool_use_id"),
                    format!(
                        "unexpected `tool_use_id` found in `tool_result` blocks: {call_id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ),
                ));
            };
            b.pending.remove(pos);
            outputs.push(json!({"type":"function_call_output","call_id":call_id,"output":output}));
        } else if let Some(part) = user_part(&block, &bat)? {
            parts.push(part);
        }
    }
    b.items.append(&mut outputs);
    b.flush_pending();
    if !parts.is_empty() {
        b.items.push(json!({"type":"message","role":"user","content":parts}));
    }
    Ok(())
}

/// One user content block (not a tool_result) -> a Responses input part; `None` for empty text.
fn user_part(block: &Value, at: &str) -> Result<Option<Value>, GatewayError> {
    match str_field(block, "type") {
        Some("text") => {
            let text = str_field(block, "text").unwrap_or_default();
            Ok((!text.is_empty()).then(|| json!({"type":"input_text","text":text})))
        }
        Some("image") => image_part(block, at).map(Some),
        Some("document") => document_part(block, at).map(Some),
        Some("search_result") => {
            let mut text = String::new();
            if let Some(title) = str_field(block, "title") {
                text.push_str(title);
                text.push('\n');
            }
            if let Some(source) = str_field(block, "source") {
                text.push_str(source);
                text.push('\n');
            }
            if let Some(Value::Array(content)) = block.get("content") {
                for c in content {
                    text.push_str(str_field(c, "text").unwrap_or_default());
                    text.push('\n');
                }
            }
            Ok(Some(json!({"type":"input_text","text":text.trim_end()})))
        }
        Some(kind @ ("thinking" | "redacted_thinking" | "tool_use" | "server_tool_use")) => {
            Err(GatewayError::invalid_param(
                &format!("{at}.type"),
                format!("A `{kind}` block may only appear in an assistant message"),
            ))
        }
        other => Err(GatewayError::invalid_param(
            &format!("{at}.type"),
            format!("Content block type {other:?} is not supported in user messages"),
        )),
    }
}

/// `image{source: base64 | url}` -> `input_image`.
fn image_part(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match str_field(source, "type") {
        Some("base64") => {
            let media_type = required_str(source, "media_type", &format!("{at}.source"))?;
            let data = required_str(source, "data", &format!("{at}.source"))?;
            if !media_type.starts_with("image/") {
                return Err(GatewayError::invalid_param(
                    &format!("{at}.source.media_type"),
                    format!("Image media_type must be image/*, got `{media_type}`"),
                ));
            }
            format!("data:{media_type};base64,{data}")
        }
        Some("url") => {
            let url = required_str(source, "url", &format!("{at}.source"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(GatewayError::invalid_param(&format!("{at}.source.url"), "Image URLs must be http(s)"));
            }
            url.to_string()
        }
        other => {
            return Err(GatewayError::invalid_param(
                &format!("{at}.source.type"),
                format!("Image source type {other:?} is not supported; send base64 data or a URL"),
            ));
        }
    };
    Ok(json!({"type":"input_image","image_url":url,"detail":"auto"}))
}

/// `document`: plain text and inline content -> `input_text` (titled); base64 PDF -> `input_file`; other kinds
/// (URL or Files API PDFs) -> 400, since the backend cannot fetch them for us.
fn document_part(block: &Value, at: &str) -> Result<Value, GatewayError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let title = str_field(block, "title").filter(|t| !t.is_empty());
    let titled = |text: &str| match title {
        Some(t) => format!("Document: {t}\n\n{text}"),
        None => text.to_string(),
    };
    match (str_field(source, "type"), str_field(source, "media_type")) {
        (Some("text"), _) => {
            let data = str_field(source, "data").unwrap_or_default();
            Ok(json!({"type":"input_text","text":titled(data)}))
        }
        (Some("content"), _) => {
            let text = match source.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(blocks)) => {
                    blocks.iter().filter_map(|b| str_field(b, "text")).collect::<Vec<_>>().join("\n")
                }
                _ => String::new(),
            };
            Ok(json!({"type":"input_text","text":titled(&text)}))
        }
        (Some("base64"), Some("application/pdf")) => {
            let data = required_str(source, "data", &format!("{at}.source"))?;
            let filename = title.map(|t| if t.ends_with(".pdf") { t.to_string() } else { format!("{t}.pdf") });
            Ok(json!({
                "type":"input_file",
                "filename": filename.unwrap_or_else(|| "document.pdf".into()),
                "file_data": format!("data:application/pdf;base64,{data}"),
            }))
        }
        (kind, media) => Err(GatewayError::invalid_param(
            &format!("{at}.source"),
            format!(
                "Document source {:?} ({}) is not supported: send text, inline content, or a base64 PDF",
                kind.unwrap_or("?"),
                media.unwrap_or("no media_type")
            ),
        )),
    }
}

/// A tool_result's content -> the `output` of a `function_call_output`: a string, or an array of input parts
/// when the result carries images or files. `is_error` results start with [`TOOL_ERROR_PREFIX`].
fn tool_output(content: Option<&Value>, is_error: bool, at: &str) -> Result<Value, GatewayError> {
    let prefix = if is_error { TOOL_ERROR_PREFIX } else { "" };
    let blocks = match content {
        None | Some(Value::Null) => return Ok(Value::String(prefix.trim_end().to_string())),
        Some(Value::String(s)) => return Ok(Value::String(format!("{prefix}{s}"))),
        Some(Value::Array(blocks)) => blocks,
        Some(_) => {
            return Err(GatewayError::invalid_param(at, "tool_result content must be a string or an array of blocks"));
        }
    };
    let mut parts = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        let bat = format!("{at}[{k}]");
        let part = match str_field(block, "type") {
            // Claude Code's tool search answers with references to tools; all tools are already sent in full.
            Some("tool_reference") => {
                let name = str_field(block, "tool_name").unwrap_or_default();
                Some(json!({"type":"input_text","text":format!("(tool `{name}` is available)")}))
            }
            _ => user_part(block, &bat)?,
        };
        parts.extend(part);
    }
    if parts.iter().all(|p| str_field(p, "type") == Some("input_text")) {
        let text: Vec<&str> = parts.iter().filter_map(|p| str_field(p, "text")).collect();
        return Ok(Value::String(format!("{prefix}{}", text.join("\n"))));
    }
    if is_error {
        parts.insert(0, json!({"type":"input_text","text":prefix.trim_end()}));
    }
    Ok(Value::Array(parts))
}

fn assistant_message(b: &mut InputBuilder, content: Content, at: &str) -> Result<(), GatewayError> {
    let mut items: Vec<Value> = Vec::new();
    let mut text_run: Vec<Value> = Vec::new();
    let flush_text = |items: &mut Vec<Value>, run: &mut Vec<Value>| {
        if !run.is_empty() {
            items.push(json!({"type":"message","role":"assistant","content":std::mem::take(run)}));
        }
    };
    for (k, block) in blocks_of(content).into_iter().enumerate() {
        let bat = format!("{at}.content[{k}]");
        match str_field(&block, "type") {
            Some("text") => {
                let text = str_field(&block, "text").unwrap_or_default();
                if !text.is_empty() {
                    text_run.push(json!({"type":"output_text","text":text}));
                }
            }
            Some("thinking") | Some("redacted_thinking") => {
                let (signature, thinking) = if str_field(&block, "type") == Some("thinking") {
                    (str_field(&block, "signature"), str_field(&block, "thinking").unwrap_or_default())
                } else {
                    (str_field(&block, "data"), "")
                };
                // Only our own signatures become reasoning items; anything else is dropped, never forwarded.
                let Some(r) = signature.and_then(decode_signature) else { continue };
                if b.reasoning_ids.contains(&r.id) {
                    continue; // the backend rejects duplicate item ids
                }
                flush_text(&mut items, &mut text_run);
                let summary =
                    if thinking.is_empty() { json!([]) } else { json!([{"type":"summary_text","text":thinking}]) };
                b.reasoning_ids.push(r.id.clone());
                items.push(
                    json!({"type":"reasoning","id":r.id,"summary":summary,"encrypted_content":r.encrypted_content}),
                );
            }
            Some("tool_use") => {
                flush_text(&mut items, &mut text_run);
                let id = required_str(&block, "id", &bat)?.to_string();
                let name = required_str(&block, "name", &bat)?;
                let arguments = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_string(),
                    Some(input) => input.to_string(),
                };
                items.push(json!({"type":"function_call","name":name,"arguments":arguments,"call_id":id}));
                b.pending.push(id);
            }
            // Web searches the gateway ran earlier come back as server tool blocks. The backend's own
            // `web_search_call` items cannot be replayed reliably under store:false, so they go back as text.
            Some("server_tool_use") => {
                let query = block.get("input").and_then(|i| str_field(i, "query")).unwrap_or_default();
                text_run.push(json!({"type":"output_text","text":format!("(searched the web for: {query})")}));
            }
            Some("web_search_tool_result") => {
                text_run.push(json!({"type":"output_text","text":web_results_text(block.get("content"))}));
            }
            other => {
                return Err(GatewayError::invalid_param(
                    &format!("{bat}.type"),
                    format!("Content block type {other:?} is not supported in assistant messages"),
                ));
            }
        }
    }
    flush_text(&mut items, &mut text_run);
    // A reasoning item must be followed by the output it led to; a trailing one (a turn cut off while thinking)
    // would be rejected.
    while items.last().and_then(|i| str_field(i, "type")) == Some("reasoning") {
        items.pop();
    }
    b.items.append(&mut items);
    Ok(())
}

fn web_results_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::Array(results)) => {
            let mut text = String::from("(web search results)");
            for r in results {
                let title = str_field(r, "title").unwrap_or_default();
                let url = str_field(r, "url").unwrap_or_default();
                text.push_str(&format!("\n- {title} {url}"));
            }
            text
        }
        Some(err) => {
            format!("(web search failed: {})", str_field(err, "error_code").unwrap_or("unknown error"))
        }
        None => "(web search results)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_header_lines_are_dropped() {
        assert_eq!(
            strip_billing_header("x-anthropic-billing-header: cc_version=1; x=2\nYou are Claude."),
            "You are Claude."
        );
        assert_eq!(strip_billing_header("a\nb"), "a\nb");
        assert_eq!(strip_billing_header("x-anthropic-billing-header: a"), "");
    }
}
