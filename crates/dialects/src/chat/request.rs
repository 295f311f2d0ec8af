//! OpenAI Chat Completions request types and their translation to a Responses body (spec/dialects.md §1).
//!
//! The parameter policy (docs/parameter-policy.md) is implemented here: each parameter the backend lacks is
//! dropped, emulated through [`OutputLimits`], or refused with a 400.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::json::decode_body;
use crate::models::{ModelRef, normalize_effort};
use crate::upstream_request::{OutputLimits, UpstreamRequest};

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub functions: Option<Vec<Value>>,
    #[serde(default)]
    pub function_call: Option<Value>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub verbosity: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub stop: Option<StopField>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub modalities: Option<Vec<String>>,
    #[serde(default)]
    pub audio: Option<Value>,
    #[serde(default)]
    pub service_tier: Option<String>,
    #[serde(default)]
    pub prompt_cache_key: Option<String>,
    #[serde(default)]
    pub web_search_options: Option<Value>,
    /// temperature, top_p, seed, penalties, logit_bias, metadata, user, store, ... : dropped (policy).
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub function_call: Option<FunctionCallMsg>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub function: Option<FunctionCallMsg>,
    #[serde(default)]
    pub custom: Option<CustomCallMsg>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallMsg {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct CustomCallMsg {
    pub name: String,
    #[serde(default)]
    pub input: String,
}

/// What the encoder needs to know about the request.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    pub include_usage: bool,
}

/// Decode a Chat Completions body into the neutral request.
pub fn decode(body: &[u8]) -> Result<(UpstreamRequest, ChatOptions), GatewayError> {
    let req: ChatRequest = decode_body(body)?;
    translate(req)
}

pub fn translate(req: ChatRequest) -> Result<(UpstreamRequest, ChatOptions), GatewayError> {
    if req.model.trim().is_empty() {
        return Err(GatewayError::invalid_param("model", "`model` must be a non-empty string"));
    }
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param("messages", "`messages` must contain at least one message"));
    }
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_param("n", "Only n=1 is supported: the Codex backend returns one choice"));
    }
    if req.logprobs == Some(true) {
        return Err(GatewayError::invalid_param("logprobs", "logprobs are not available from the Codex backend"));
    }
    if req.audio.is_some() || req.modalities.as_ref().is_some_and(|m| m.iter().any(|x| x == "audio")) {
        return Err(GatewayError::invalid_param("modalities", "Audio output is not supported by the Codex backend"));
    }

    let model = ModelRef::parse(&req.model);
    let mut body = Map::new();
    let (instructions, input) = translate_messages(&req.messages)?;
    body.insert("instructions".into(), Value::String(instructions));
    body.insert("input".into(), Value::Array(input));

    let mut tools = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        tools.push(translate_tool(tool, &format!("tools[{i}]"))?);
    }
    for (i, f) in req.functions.iter().flatten().enumerate() {
        tools.push(function_tool(f, &format!("functions[{i}]"))?);
    }
    if req.web_search_options.is_some() {
        tools.push(json!({"type": "web_search"}));
    }
    let has_tools = !tools.is_empty();
    body.insert("tools".into(), Value::Array(tools));
    let choice = match (&req.tool_choice, &req.function_call) {
        (Some(c), _) => translate_tool_choice(c)?,
        (None, Some(c)) => translate_tool_choice(c)?,
        (None, None) => json!("auto"),
    };
    body.insert("tool_choice".into(), if has_tools { choice } else { json!("auto") });
    body.insert("parallel_tool_calls".into(), Value::Bool(req.parallel_tool_calls.unwrap_or(true)));

    let effort = match req.reasoning_effort.as_deref() {
        Some(e) => Some(
            normalize_effort(e)
                .ok_or_else(|| {
                    GatewayError::invalid_param("reasoning_effort", format!("Unknown reasoning_effort `{e}`"))
                })?
                .to_string(),
        ),
        // A suffix effort (`gpt-5.4-high`) is the request's when it is finalized, once the catalog has said
        // whether the suffix is one (`UpstreamRequest::finalize`, `ModelRef::settle`).
        None => None,
    };
    let mut reasoning = Map::new();
    if let Some(e) = effort {
        reasoning.insert("effort".into(), Value::String(e));
    }
    reasoning.insert("summary".into(), json!("auto"));
    body.insert("reasoning".into(), Value::Object(reasoning));

    let mut text = Map::new();
    if let Some(v) = &req.verbosity {
        text.insert("verbosity".into(), Value::String(v.clone()));
    }
    if let Some(format) = translate_response_format(req.response_format.as_ref())? {
        text.insert("format".into(), format);
    }
    if !text.is_empty() {
        body.insert("text".into(), Value::Object(text));
    }
    let mut model = model;
    if req.service_tier.as_deref() == Some("priority") {
        model.fast = true;
    }

    let stop_sequences = match req.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) => v,
    };
    if stop_sequences.len() > 4 {
        return Err(GatewayError::invalid_param("stop", "At most 4 stop sequences are allowed"));
    }
    let limits = OutputLimits {
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop_sequences: stop_sequences.into_iter().filter(|s| !s.is_empty()).collect(),
    };
    let options =
        ChatOptions { include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false) };
    Ok((
        UpstreamRequest {
            body,
            model,
            stream: req.stream.unwrap_or(false),
            conversation_key: req.prompt_cache_key,
            limits,
        },
        options,
    ))
}

/// Leading system/developer messages become `instructions`; later ones become developer messages.
fn translate_messages(messages: &[ChatMessage]) -> Result<(String, Vec<Value>), GatewayError> {
    let mut instructions: Vec<String> = Vec::new();
    let mut input: Vec<Value> = Vec::new();
    let mut leading = true;
    let mut legacy_call_ids: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        match m.role.as_str() {
            "system" | "developer" => {
                let text = text_of(m.content.as_ref(), &at("content"))?;
                if leading {
                    instructions.push(text);
                } else {
                    input.push(crate::upstream_request::developer_message(&text));
                }
            }
            "user" => {
                leading = false;
                let parts = user_parts(m.content.as_ref(), &at("content"))?;
                input.push(json!({"type":"message","role":"user","content":parts}));
            }
            "assistant" => {
                leading = false;
                if let Some(content) = &m.content {
                    let text = assistant_text(content, &at("content"))?;
                    if !text.is_empty() {
                        input.push(
                            json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":text}]}),
                        );
                    }
                }
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    input.push(translate_tool_call(call, &at(&format!("tool_calls[{j}]")))?);
                }
                if let Some(fc) = &m.function_call {
                    let call_id = format!("call_legacy_{i}");
                    legacy_call_ids.push(call_id.clone());
                    input.push(json!({"type":"function_call","name":fc.name,"arguments":arguments_string(fc.arguments.as_ref()),"call_id":call_id}));
                }
            }
            "tool" => {
                leading = false;
                let call_id = m.tool_call_id.clone().ok_or_else(|| {
                    GatewayError::invalid_param(&at("tool_call_id"), "A tool message needs `tool_call_id`")
                })?;
                let output = tool_output(m.content.as_ref(), &at("content"))?;
                input.push(json!({"type":"function_call_output","call_id":call_id,"output":output}));
            }
            "function" => {
                leading = false;
                let call_id = legacy_call_ids.pop().ok_or_else(|| {
                    GatewayError::invalid_param(
                        &at("role"),
                        "A function message must follow an assistant function_call",
                    )
                })?;
                let output = text_of(m.content.as_ref(), &at("content"))?;
                input.push(json!({"type":"function_call_output","call_id":call_id,"output":output}));
            }
            other => {
                return Err(GatewayError::invalid_param(&at("role"), format!("Unknown message role `{other}`")));
            }
        }
    }
    pair_tool_calls(&mut input)?;
    Ok((instructions.join("\n\n"), input))
}

/// The backend rejects orphans (spec C8). A call without an output (a cancelled tool run) gets a placeholder
/// output; an output without a call is the client's error.
fn pair_tool_calls(input: &mut Vec<Value>) -> Result<(), GatewayError> {
    let ids = |kind: &str, input: &[Value]| -> Vec<String> {
        input
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some(kind))
            .filter_map(|i| i.get("call_id").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let calls = ids("function_call", input);
    let outputs = ids("function_call_output", input);
    if let Some(orphan) = outputs.iter().find(|o| !calls.contains(o)) {
        return Err(GatewayError::invalid_param(
            "messages",
            format!("The tool message with tool_call_id `{orphan}` has no matching assistant tool_calls entry"),
        ));
    }
    let missing: Vec<String> = calls.into_iter().filter(|c| !outputs.contains(c)).collect();
    for call_id in missing {
        let pos = input
            .iter()
            .position(|i| i.get("call_id").and_then(Value::as_str) == Some(call_id.as_str()))
            .map(|p| p + 1)
            .unwrap_or(input.len());
        // Insert after the call and any directly following calls of the same turn.
        let mut at = pos;
        while input.get(at).and_then(|i| i.get("type")).and_then(Value::as_str) == Some("function_call") {
            at += 1;
        }
        input.insert(
            at,
            json!({"type":"function_call_output","call_id":call_id,"output":"(no result: the tool call was not completed)"}),
        );
    }
    Ok(())
}

fn translate_tool_call(call: &ToolCall, at: &str) -> Result<Value, GatewayError> {
    match (call.kind.as_deref(), &call.function, &call.custom) {
        (Some("custom"), _, Some(c)) => {
            Ok(json!({"type":"custom_tool_call","call_id":call.id,"name":c.name,"input":c.input}))
        }
        (_, Some(f), _) => Ok(json!({
            "type":"function_call","name":f.name,"arguments":arguments_string(f.arguments.as_ref()),"call_id":call.id
        })),
        _ => Err(GatewayError::invalid_param(at, "A tool call needs a `function` with a `name`")),
    }
}

fn arguments_string(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Plain text of a content field that may be a string or an array of text parts.
fn text_of(content: Option<&Value>, at: &str) -> Result<String, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") | Some("output_text") => {
                        out.push(p.get("text").and_then(Value::as_str).unwrap_or_default().to_string())
                    }
                    Some("refusal") => {}
                    other => {
                        return Err(GatewayError::invalid_param(
                            &format!("{at}[{k}]"),
                            format!("Content part type {other:?} is not allowed here; only text parts"),
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err(GatewayError::invalid_param(at, "`content` must be a string or an array of content parts")),
    }
}

fn assistant_text(content: &Value, at: &str) -> Result<String, GatewayError> {
    text_of(Some(content), at)
}

fn tool_output(content: Option<&Value>, at: &str) -> Result<Value, GatewayError> {
    match content {
        Some(Value::Array(parts))
            if parts.iter().any(|p| p.get("type").and_then(Value::as_str) == Some("image_url")) =>
        {
            Ok(Value::Array(user_parts(content, at)?))
        }
        _ => Ok(Value::String(text_of(content, at)?)),
    }
}

/// User content: text, images (data and https URLs) and files.
fn user_parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, GatewayError> {
    match content {
        None | Some(Value::Null) => Ok(vec![json!({"type":"input_text","text":""})]),
        Some(Value::String(s)) => Ok(vec![json!({"type":"input_text","text":s})]),
        Some(Value::Array(parts)) => {
            parts.iter().enumerate().map(|(k, p)| user_part(p, &format!("{at}[{k}]"))).collect::<Result<Vec<_>, _>>()
        }
        Some(_) => Err(GatewayError::invalid_param(at, "`content` must be a string or an array of content parts")),
    }
}

fn user_part(p: &Value, at: &str) -> Result<Value, GatewayError> {
    match p.get("type").and_then(Value::as_str) {
        Some("text") | Some("input_text") => {
            Ok(json!({"type":"input_text","text":p.get("text").and_then(Value::as_str).unwrap_or_default()}))
        }
        Some("image_url") => {
            let (url, detail) = match p.get("image_url") {
                Some(Value::String(u)) => (u.clone(), None),
                Some(Value::Object(o)) => (
                    o.get("url").and_then(Value::as_str).unwrap_or_default().to_string(),
                    o.get("detail").and_then(Value::as_str).map(str::to_string),
                ),
                _ => (String::new(), None),
            };
            check_image_url(&url, at)?;
            let mut part = json!({"type":"input_image","image_url":url});
            part["detail"] = Value::String(detail.unwrap_or_else(|| "auto".into()));
            Ok(part)
        }
        Some("file") => {
            let file = p.get("file").cloned().unwrap_or(Value::Null);
            if let Some(data) = file.get("file_data").and_then(Value::as_str) {
                let mut part = json!({"type":"input_file","file_data":data});
                if let Some(name) = file.get("filename").and_then(Value::as_str) {
                    part["filename"] = Value::String(name.to_string());
                }
                Ok(part)
            } else {
                Err(GatewayError::invalid_param(
                    at,
                    "Only inline files (`file.file_data`) are supported; file ids are not",
                ))
            }
        }
        Some("input_audio") => {
            Err(GatewayError::invalid_param(at, "Audio input is not supported by the Codex backend"))
        }
        other => Err(GatewayError::invalid_param(at, format!("Unknown content part type {other:?}"))),
    }
}

fn check_image_url(url: &str, at: &str) -> Result<(), GatewayError> {
    if url.starts_with("data:image/") || url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(GatewayError::invalid_param(at, "image_url.url must be a data:image/... URL or an http(s) URL"))
    }
}

fn translate_tool(tool: &Value, at: &str) -> Result<Value, GatewayError> {
    match tool.get("type").and_then(Value::as_str) {
        Some("function") | None => {
            let f = tool
                .get("function")
                .ok_or_else(|| GatewayError::invalid_param(at, "A function tool needs `function`"))?;
            function_tool(f, &format!("{at}.function"))
        }
        Some("custom") => {
            let c = tool.get("custom").unwrap_or(tool);
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| GatewayError::invalid_param(at, "A custom tool needs `name`"))?;
            let mut out = json!({"type":"custom","name":name});
            if let Some(d) = c.get("description") {
                out["description"] = d.clone();
            }
            if let Some(f) = c.get("format") {
                out["format"] = f.clone();
            }
            Ok(out)
        }
        Some(other) => Err(GatewayError::invalid_param(at, format!("Unsupported tool type `{other}`"))),
    }
}

/// `{name, description, parameters, strict}` -> a flat Responses function tool. Unknown keys are dropped.
fn function_tool(f: &Value, at: &str) -> Result<Value, GatewayError> {
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GatewayError::invalid_param(at, "A function needs a non-empty `name`"))?;
    let mut out = json!({"type":"function","name":name});
    if let Some(d) = f.get("description").filter(|d| d.is_string()) {
        out["description"] = d.clone();
    }
    out["strict"] = Value::Bool(f.get("strict").and_then(Value::as_bool).unwrap_or(false));
    out["parameters"] = match f.get("parameters") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!({"type":"object","properties":{}}),
    };
    Ok(out)
}

fn translate_tool_choice(choice: &Value) -> Result<Value, GatewayError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "none" | "auto" | "required") => Ok(choice.clone()),
        Value::Object(o) => {
            let name = o.get("function").and_then(|f| f.get("name")).or_else(|| o.get("name")).and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (Some("allowed_tools"), _) => Ok(json!("auto")),
                (_, Some(n)) => Ok(json!({"type":"function","name":n})),
                _ => Err(GatewayError::invalid_param("tool_choice", "tool_choice must name a function")),
            }
        }
        _ => Err(GatewayError::invalid_param("tool_choice", "tool_choice must be none, auto, required or a function")),
    }
}

fn translate_response_format(format: Option<&Value>) -> Result<Option<Value>, GatewayError> {
    let Some(f) = format else { return Ok(None) };
    match f.get("type").and_then(Value::as_str) {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(json!({"type":"json_object"}))),
        Some("json_schema") => {
            let js = f.get("json_schema").ok_or_else(|| {
                GatewayError::invalid_param(
                    "response_format.json_schema",
                    "json_schema response_format needs `json_schema`",
                )
            })?;
            let schema = js.get("schema").cloned().unwrap_or_else(|| json!({"type":"object"}));
            let name = js.get("name").and_then(Value::as_str).unwrap_or("response");
            let strict = js.get("strict").and_then(Value::as_bool).unwrap_or(false);
            let mut out = json!({"type":"json_schema","strict":strict,"schema":schema,"name":name});
            if let Some(d) = js.get("description") {
                out["description"] = d.clone();
            }
            Ok(Some(out))
        }
        Some(other) => Err(GatewayError::invalid_param(
            "response_format.type",
            format!("Unsupported response_format type `{other}`"),
        )),
    }
}
