//! Gemini `GenerateContentRequest` types and their translation to a Responses body (spec/dialects.md §3).
//!
//! Parameter policy (spec C5): `temperature`, `topP`, `topK`, `seed`, penalties, `safetySettings` and `labels`
//! are dropped; `maxOutputTokens` and `stopSequences` are emulated through [`OutputLimits`]; `candidateCount` > 1,
//! `responseLogprobs`, non-text `responseModalities`, `speechConfig`, `cachedContent`, audio/video input and
//! hosted tools other than Google Search are refused with a 400 naming the field.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pairing::Pairing;
use super::resolve_model;
use super::schema::openapi_to_json_schema;
use super::signature::decode_signature;
use crate::error::GatewayError;
use crate::json::decode_body;
use crate::models::Lineup;
use crate::upstream_request::{OutputLimits, UpstreamRequest};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerateRequest {
    #[serde(default)]
    pub contents: Vec<Content>,
    #[serde(default, alias = "system_instruction")]
    pub system_instruction: Option<Content>,
    #[serde(default)]
    pub tools: Vec<Tool>,
    #[serde(default, alias = "tool_config")]
    pub tool_config: Option<ToolConfig>,
    #[serde(default, alias = "generation_config")]
    pub generation_config: Option<GenerationConfig>,
    #[serde(default, alias = "cached_content")]
    pub cached_content: Option<String>,
    /// safetySettings, labels, model, ...: dropped (policy).
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Content {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, alias = "inline_data")]
    pub inline_data: Option<Blob>,
    #[serde(default, alias = "file_data")]
    pub file_data: Option<FileData>,
    #[serde(default, alias = "function_call")]
    pub function_call: Option<FunctionCall>,
    #[serde(default, alias = "function_response")]
    pub function_response: Option<FunctionResponse>,
    #[serde(default)]
    pub thought: Option<bool>,
    #[serde(default, alias = "thought_signature")]
    pub thought_signature: Option<String>,
    /// videoMetadata, executableCode, codeExecutionResult, ...
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    #[serde(alias = "mime_type")]
    pub mime_type: String,
    pub data: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    #[serde(default, alias = "mime_type")]
    pub mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    pub file_uri: String,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub response: Option<Value>,
    /// Multimodal function responses (images returned by a tool).
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    #[serde(default, alias = "function_declarations")]
    pub function_declarations: Vec<FunctionDeclaration>,
    /// googleSearch, googleSearchRetrieval, codeExecution, urlContext, ...
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default, alias = "parameters_json_schema")]
    pub parameters_json_schema: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    #[serde(default, alias = "function_calling_config")]
    pub function_calling_config: Option<FunctionCallingConfig>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCallingConfig {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, alias = "allowed_function_names")]
    pub allowed_function_names: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    #[serde(default, alias = "stop_sequences")]
    pub stop_sequences: Vec<String>,
    #[serde(default, alias = "response_mime_type")]
    pub response_mime_type: Option<String>,
    #[serde(default, alias = "response_schema")]
    pub response_schema: Option<Value>,
    #[serde(default, alias = "response_json_schema", alias = "_responseJsonSchema")]
    pub response_json_schema: Option<Value>,
    #[serde(default, alias = "candidate_count")]
    pub candidate_count: Option<u32>,
    #[serde(default, alias = "max_output_tokens")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, alias = "response_logprobs")]
    pub response_logprobs: Option<bool>,
    #[serde(default, alias = "response_modalities")]
    pub response_modalities: Option<Vec<String>>,
    #[serde(default, alias = "speech_config")]
    pub speech_config: Option<Value>,
    #[serde(default, alias = "thinking_config")]
    pub thinking_config: Option<ThinkingConfig>,
    /// temperature, topP, topK, seed, presencePenalty, frequencyPenalty, ...: dropped (policy).
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ThinkingConfig {
    #[serde(default, alias = "include_thoughts")]
    pub include_thoughts: Option<bool>,
    #[serde(default, alias = "thinking_budget")]
    pub thinking_budget: Option<i64>,
    #[serde(default, alias = "thinking_level")]
    pub thinking_level: Option<String>,
}

/// `countTokens` accepts the contents directly or a whole request under `generateContentRequest`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CountTokensRequest {
    #[serde(default, alias = "generate_content_request")]
    generate_content_request: Option<GenerateRequest>,
    #[serde(flatten)]
    direct: GenerateRequest,
}

/// What the encoders need to know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeminiOptions {
    /// `thinkingConfig.includeThoughts`: reasoning summaries are sent as `{text, thought:true}` parts.
    pub include_thoughts: bool,
}

/// Decode a `generateContent` / `streamGenerateContent` body. `model` comes from the path; `stream` from the
/// method name.
pub fn decode(
    body: &[u8],
    model: &str,
    stream: bool,
    aliases: &HashMap<String, String>,
    lineup: &dyn Lineup,
) -> Result<(UpstreamRequest, GeminiOptions), GatewayError> {
    let req: GenerateRequest = decode_body(body)?;
    translate(req, model, stream, aliases, lineup)
}

/// No model is asked for in a count, so no family needs a slug.
const COUNT_LINEUP: [&str; 3] = ["", "", ""];

/// Decode a `countTokens` body into the request whose input is counted.
pub fn decode_count_tokens(
    body: &[u8],
    model: &str,
    aliases: &HashMap<String, String>,
) -> Result<UpstreamRequest, GatewayError> {
    let req: CountTokensRequest = decode_body(body)?;
    let inner = req.generate_content_request.unwrap_or(req.direct);
    translate(inner, model, false, aliases, &COUNT_LINEUP).map(|(r, _)| r)
}

pub fn translate(
    req: GenerateRequest,
    model: &str,
    stream: bool,
    aliases: &HashMap<String, String>,
    lineup: &dyn Lineup,
) -> Result<(UpstreamRequest, GeminiOptions), GatewayError> {
    if model.trim().is_empty() {
        return Err(GatewayError::invalid_param("model", "The model name in the path must not be empty"));
    }
    if req.cached_content.is_some() {
        return Err(GatewayError::invalid_param(
            "cachedContent",
            "cachedContent is not supported: send the contents in the request (the upstream caches prompts itself)",
        ));
    }
    // Gemini answers a request without contents with a 400 (`contents is not specified`); sent on, the backend
    // would get an empty input.
    if req.contents.is_empty() {
        return Err(GatewayError::invalid_param("contents", "contents is not specified: send at least one content"));
    }
    let config = req.generation_config.unwrap_or_default();
    check_generation_config(&config)?;

    let model = resolve_model(model, aliases, lineup);
    let mut body = Map::new();
    let instructions = match &req.system_instruction {
        Some(c) => system_text(c)?,
        None => String::new(),
    };
    body.insert("instructions".into(), Value::String(instructions));
    body.insert("input".into(), Value::Array(translate_contents(&req.contents)?));

    let tools = translate_tools(&req.tools)?;
    let names: Vec<String> =
        tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string)).collect();
    let choice = tool_choice(req.tool_config.as_ref().and_then(|c| c.function_calling_config.as_ref()), &names)?;
    let has_tools = !tools.is_empty();
    body.insert("tools".into(), Value::Array(tools));
    body.insert("tool_choice".into(), if has_tools { choice } else { json!("auto") });
    body.insert("parallel_tool_calls".into(), Value::Bool(true));

    let thinking = config.thinking_config.as_ref();
    let include_thoughts = thinking.and_then(|t| t.include_thoughts).unwrap_or(false);
    let mut reasoning = Map::new();
    if let Some(effort) = thinking.map(effort_for).transpose()?.flatten() {
        reasoning.insert("effort".into(), json!(effort));
    }
    if include_thoughts {
        reasoning.insert("summary".into(), json!("auto"));
    }
    body.insert("reasoning".into(), Value::Object(reasoning));
    body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    if let Some(format) = text_format(&config) {
        body.insert("text".into(), json!({ "format": format }));
    }

    let limits = OutputLimits {
        max_output_tokens: config.max_output_tokens.filter(|n| *n > 0),
        stop_sequences: config.stop_sequences.into_iter().filter(|s| !s.is_empty()).collect(),
    };
    Ok((UpstreamRequest { body, model, stream, conversation_key: None, limits }, GeminiOptions { include_thoughts }))
}

fn check_generation_config(c: &GenerationConfig) -> Result<(), GatewayError> {
    if c.candidate_count.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid_param(
            "generationConfig.candidateCount",
            "Only one candidate is supported: the Codex backend returns one answer",
        ));
    }
    if c.response_logprobs == Some(true) {
        return Err(GatewayError::invalid_param(
            "generationConfig.responseLogprobs",
            "logprobs are not available from the Codex backend",
        ));
    }
    if let Some(m) = c.response_modalities.iter().flatten().find(|m| !m.eq_ignore_ascii_case("text")) {
        return Err(GatewayError::invalid_param(
            "generationConfig.responseModalities",
            format!("Response modality {m} is not supported; only TEXT"),
        ));
    }
    if c.speech_config.is_some() {
        return Err(GatewayError::invalid_param("generationConfig.speechConfig", "Speech output is not supported"));
    }
    Ok(())
}

/// `thinkingLevel` wins over `thinkingBudget`. `-1` (dynamic) and no setting leave the effort to the model
/// suffix / gateway default. `0` and `MINIMAL` map to `low`: reasoning cannot be switched off on the catalog's
/// models. A budget past Gemini's own largest (32768) asks for more than `high`, in the steps of Anthropic's
/// budgets: up to 65536 `xhigh`, beyond it `max`; the gateway then holds the effort to what the model lists.
fn effort_for(t: &ThinkingConfig) -> Result<Option<&'static str>, GatewayError> {
    if let Some(level) = &t.thinking_level {
        return match level.to_ascii_uppercase().as_str() {
            "MINIMAL" | "LOW" => Ok(Some("low")),
            "MEDIUM" => Ok(Some("medium")),
            "HIGH" => Ok(Some("high")),
            "THINKING_LEVEL_UNSPECIFIED" => Ok(None),
            other => Err(GatewayError::invalid_param(
                "generationConfig.thinkingConfig.thinkingLevel",
                format!("Unknown thinkingLevel {other}; expected MINIMAL, LOW, MEDIUM or HIGH"),
            )),
        };
    }
    Ok(match t.thinking_budget {
        None | Some(i64::MIN..=-1) => None,
        Some(0..=4096) => Some("low"),
        Some(4097..=16384) => Some("medium"),
        Some(16385..=32768) => Some("high"),
        Some(32769..=65536) => Some("xhigh"),
        Some(_) => Some("max"),
    })
}

/// `responseMimeType: application/json` with `responseJsonSchema` (JSON Schema) or `responseSchema` (OpenAPI
/// subset), both normalised by [`openapi_to_json_schema`], -> a json_schema format; JSON without a schema -> json_object. A schema without the JSON mime type is
/// still honoured (some clients omit it).
fn text_format(c: &GenerationConfig) -> Option<Value> {
    let json_mime = c.response_mime_type.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    let schema = c.response_json_schema.as_ref().or(c.response_schema.as_ref()).map(openapi_to_json_schema);
    match schema {
        Some(schema) => Some(json!({"type":"json_schema","strict":false,"schema":schema,"name":"response"})),
        None if json_mime => Some(json!({"type":"json_object"})),
        None => None,
    }
}

fn system_text(c: &Content) -> Result<String, GatewayError> {
    let mut out = Vec::new();
    for (i, p) in c.parts.iter().enumerate() {
        match &p.text {
            Some(t) => out.push(t.as_str()),
            None => {
                return Err(GatewayError::invalid_param(
                    &format!("systemInstruction.parts[{i}]"),
                    "systemInstruction may only contain text parts",
                ));
            }
        }
    }
    Ok(out.join("\n"))
}

/// Strip the `${name}__` prefix some clients (Gemini CLI) put in front of the id the gateway issued.
fn client_id<'a>(id: Option<&'a str>, name: &str) -> Option<&'a str> {
    let id = id?;
    let prefix = format!("{name}__");
    Some(id.strip_prefix(prefix.as_str()).filter(|rest| !rest.is_empty()).unwrap_or(id))
}

fn translate_contents(contents: &[Content]) -> Result<Vec<Value>, GatewayError> {
    let mut input = Vec::new();
    let mut pairing = Pairing::new();
    let mut reasoning_ids: HashSet<String> = HashSet::new();
    for (i, content) in contents.iter().enumerate() {
        let at = format!("contents[{i}]");
        match content.role.as_deref().unwrap_or("user") {
            "model" | "assistant" => model_turn(content, &at, &mut input, &mut pairing, &mut reasoning_ids)?,
            "user" | "function" | "tool" => user_turn(content, &at, &mut input, &mut pairing)?,
            other => {
                return Err(GatewayError::invalid_param(
                    &format!("{at}.role"),
                    format!("Unknown role `{other}`; expected user or model"),
                ));
            }
        }
    }
    pairing.close_open_calls(&mut input);
    Ok(input)
}

fn model_turn(
    content: &Content,
    at: &str,
    input: &mut Vec<Value>,
    pairing: &mut Pairing,
    reasoning_ids: &mut HashSet<String>,
) -> Result<(), GatewayError> {
    // Reasoning items go first, as they came in the original output; text and calls keep their order.
    let mut reasoning = Vec::new();
    let mut items = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, items: &mut Vec<Value>| {
        if !text.is_empty() {
            let t = std::mem::take(text);
            items.push(json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":t}]}));
        }
    };
    for (j, part) in content.parts.iter().enumerate() {
        if let Some(r) = part.thought_signature.as_deref().and_then(decode_signature)
            && reasoning_ids.insert(r.id.clone())
        {
            reasoning.push(json!({"type":"reasoning","id":r.id,"summary":[],"encrypted_content":r.encrypted_content}));
        }
        if part.thought == Some(true) {
            continue; // summaries are display text; the encrypted item carries the reasoning
        }
        if let Some(call) = &part.function_call {
            flush(&mut text, &mut items);
            let call_id = pairing.call(client_id(call.id.as_deref(), &call.name), &call.name);
            let arguments = match &call.args {
                None | Some(Value::Null) => "{}".to_string(),
                Some(args) => args.to_string(),
            };
            items.push(json!({"type":"function_call","name":call.name,"arguments":arguments,"call_id":call_id}));
        } else if let Some(t) = &part.text {
            text.push_str(t);
        } else if part.function_response.is_some() {
            return Err(GatewayError::invalid_param(
                &format!("{at}.parts[{j}]"),
                "functionResponse parts belong in a user turn",
            ));
        }
        // Images or other media the model produced cannot be replayed as assistant output: dropped.
    }
    flush(&mut text, &mut items);
    input.extend(reasoning);
    input.extend(items);
    Ok(())
}

fn user_turn(content: &Content, at: &str, input: &mut Vec<Value>, pairing: &mut Pairing) -> Result<(), GatewayError> {
    let mut parts: Vec<Value> = Vec::new();
    let flush = |parts: &mut Vec<Value>, input: &mut Vec<Value>| {
        if !parts.is_empty() {
            input.push(json!({"type":"message","role":"user","content":std::mem::take(parts)}));
        }
    };
    for (j, part) in content.parts.iter().enumerate() {
        let pat = format!("{at}.parts[{j}]");
        if let Some(resp) = &part.function_response {
            let name = resp.name.as_deref().unwrap_or_default();
            let output = function_output(resp, &pat)?;
            match pairing.result(client_id(resp.id.as_deref(), name), resp.name.as_deref()) {
                Some(call_id) => {
                    flush(&mut parts, input);
                    input.push(json!({"type":"function_call_output","call_id":call_id,"output":output}));
                }
                None => {
                    // No call to answer (by id, name or order): Gemini and the backend both refuse an orphan
                    // result, and so does every dialect here (docs/parameter-policy.md, "Tool history").
                    return Err(GatewayError::invalid_param(
                        &format!("{pat}.functionResponse"),
                        format!(
                            "The functionResponse for `{name}` answers no functionCall: a function response turn must come right after the model turn with its function call."
                        ),
                    ));
                }
            }
        } else if part.function_call.is_some() {
            return Err(GatewayError::invalid_param(&pat, "functionCall parts belong in a model turn"));
        } else if let Some(p) = user_part(part, &pat)? {
            parts.push(p);
        }
    }
    flush(&mut parts, input);
    Ok(())
}

/// The output of a function call: `{"output": "<text>"}` / `{"result": "<text>"}` (what Gemini CLI and most
/// tools send) become that text; any other response is sent as compact JSON. Images in `parts` make it a list.
fn function_output(resp: &FunctionResponse, at: &str) -> Result<Value, GatewayError> {
    let text = match &resp.response {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(o)) if o.len() == 1 => match o.iter().next() {
            Some((k, Value::String(s))) if k == "output" || k == "result" => s.clone(),
            _ => Value::Object(o.clone()).to_string(),
        },
        Some(other) => other.to_string(),
    };
    if resp.parts.is_empty() {
        return Ok(Value::String(text));
    }
    let mut out = vec![json!({"type":"input_text","text":text})];
    for (k, p) in resp.parts.iter().enumerate() {
        if let Some(v) = user_part(p, &format!("{at}.functionResponse.parts[{k}]"))? {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}

/// One user part -> a Responses input part. `None` for parts with nothing to send.
fn user_part(part: &Part, at: &str) -> Result<Option<Value>, GatewayError> {
    if let Some(t) = &part.text {
        if part.thought == Some(true) {
            return Ok(None);
        }
        return Ok(Some(json!({"type":"input_text","text":t})));
    }
    if let Some(blob) = &part.inline_data {
        return inline_part(blob, at).map(Some);
    }
    if let Some(file) = &part.file_data {
        return file_part(file, at).map(Some);
    }
    if part.thought_signature.is_some() || part.other.contains_key("videoMetadata") {
        return Ok(None);
    }
    if let Some(key) = part.other.keys().next() {
        return Err(GatewayError::invalid_param(at, format!("Part type `{key}` is not supported by this gateway")));
    }
    Ok(None)
}

fn inline_part(blob: &Blob, at: &str) -> Result<Value, GatewayError> {
    let mime = blob.mime_type.to_ascii_lowercase();
    if mime.starts_with("image/") {
        return Ok(
            json!({"type":"input_image","image_url":format!("data:{mime};base64,{}", blob.data),"detail":"auto"}),
        );
    }
    if mime == "application/pdf" {
        return Ok(json!({
            "type":"input_file","filename":"document.pdf","file_data":format!("data:{mime};base64,{}", blob.data)
        }));
    }
    if mime.starts_with("text/") || mime == "application/json" {
        let bytes = STANDARD.decode(blob.data.trim()).map_err(|_| {
            GatewayError::invalid_param(&format!("{at}.inlineData.data"), "inlineData.data is not valid base64")
        })?;
        return Ok(json!({"type":"input_text","text":String::from_utf8_lossy(&bytes)}));
    }
    Err(GatewayError::invalid_param(
        &format!("{at}.inlineData.mimeType"),
        format!("inlineData of type {mime} is not supported; images, PDF and text are"),
    ))
}

fn file_part(file: &FileData, at: &str) -> Result<Value, GatewayError> {
    let uri = &file.file_uri;
    let field = format!("{at}.fileData.fileUri");
    if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains("generativelanguage.googleapis.com")
    {
        return Err(GatewayError::invalid_param(
            &field,
            "Only public http(s) file URIs are supported; Gemini Files API and gs:// URIs are not. Send the \
             file as inlineData instead.",
        ));
    }
    let mime = file.mime_type.as_deref().unwrap_or_default().to_ascii_lowercase();
    if mime == "application/pdf" {
        Ok(json!({"type":"input_file","file_url":uri}))
    } else if mime.is_empty() || mime.starts_with("image/") {
        Ok(json!({"type":"input_image","image_url":uri,"detail":"auto"}))
    } else {
        Err(GatewayError::invalid_param(
            &field,
            format!("fileData of type {mime} is not supported; images and PDF are"),
        ))
    }
}

fn translate_tools(tools: &[Tool]) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        for (j, f) in tool.function_declarations.iter().enumerate() {
            if f.name.is_empty() {
                return Err(GatewayError::invalid_param(
                    &format!("tools[{i}].functionDeclarations[{j}].name"),
                    "A function declaration needs a non-empty name",
                ));
            }
            let parameters = match (&f.parameters_json_schema, &f.parameters) {
                (Some(s @ Value::Object(_)), _) | (_, Some(s @ Value::Object(_))) => openapi_to_json_schema(s),
                _ => json!({"type":"object","properties":{}}),
            };
            let mut t = json!({"type":"function","name":f.name});
            if let Some(d) = &f.description {
                t["description"] = Value::String(d.clone());
            }
            t["strict"] = Value::Bool(false);
            t["parameters"] = parameters;
            out.push(t);
        }
        for key in tool.other.keys() {
            match key.as_str() {
                "googleSearch" | "google_search" | "googleSearchRetrieval" | "google_search_retrieval" => {
                    if !out.iter().any(|t| t.get("type").and_then(Value::as_str) == Some("web_search")) {
                        out.push(json!({"type":"web_search"}));
                    }
                }
                other => {
                    return Err(GatewayError::invalid_param(
                        &format!("tools[{i}].{other}"),
                        format!("The tool `{other}` is not supported; function declarations and googleSearch are"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn tool_choice(config: Option<&FunctionCallingConfig>, names: &[String]) -> Result<Value, GatewayError> {
    let Some(c) = config else { return Ok(json!("auto")) };
    match c.mode.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("AUTO") | Some("MODE_UNSPECIFIED") | Some("VALIDATED") => Ok(json!("auto")),
        Some("NONE") => Ok(json!("none")),
        Some("ANY") => match c.allowed_function_names.as_slice() {
            [one] if names.contains(one) => Ok(json!({"type":"function","name":one})),
            [one] => Err(GatewayError::invalid_param(
                "toolConfig.functionCallingConfig.allowedFunctionNames",
                format!("allowedFunctionNames names `{one}`, which is not a declared function"),
            )),
            _ => Ok(json!("required")),
        },
        Some(other) => Err(GatewayError::invalid_param(
            "toolConfig.functionCallingConfig.mode",
            format!("Unknown mode {other}; expected AUTO, ANY or NONE"),
        )),
    }
}

/// The text `countTokens` measures and the number of images (counted separately by the caller).
pub fn countable(req: &UpstreamRequest) -> (String, u64) {
    let mut text = String::new();
    let mut images = 0;
    let mut push = |s: &str| {
        if !s.is_empty() {
            text.push_str(s);
            text.push('\n');
        }
    };
    if let Some(Value::String(s)) = req.body.get("instructions") {
        push(s);
    }
    let parts = |v: &Value, push: &mut dyn FnMut(&str), images: &mut u64| match v {
        Value::String(s) => push(s),
        Value::Array(list) => {
            for p in list {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_image") | Some("input_file") => *images += 1,
                    _ => push(p.get("text").and_then(Value::as_str).unwrap_or_default()),
                }
            }
        }
        _ => {}
    };
    for item in req.body.get("input").and_then(Value::as_array).into_iter().flatten() {
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "message" => parts(item.get("content").unwrap_or(&Value::Null), &mut push, &mut images),
            "function_call" => {
                push(s("name"));
                push(s("arguments"));
            }
            "function_call_output" => parts(item.get("output").unwrap_or(&Value::Null), &mut push, &mut images),
            _ => {}
        }
    }
    for tool in req.body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        push(&tool.to_string());
    }
    (text, images)
}
