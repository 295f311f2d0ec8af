//! Ollama `/api/chat` and `/api/generate` requests and their translation to a Responses body.
//!
//! Parameter policy (spec C5): `options.num_predict` and `options.stop` are emulated through [`OutputLimits`];
//! the sampling options (`temperature`, `top_p`, `top_k`, `seed`, `num_ctx`, penalties...), `keep_alive`,
//! `template`, `raw` and `context` are dropped; `suffix` (fill-in-the-middle) is refused with a 400.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::model_name;
use crate::error::GatewayError;
use crate::gemini::pairing::Pairing;
use crate::json::decode_body;
use crate::models::{ModelRef, normalize_effort};
use crate::upstream_request::{OutputLimits, UpstreamRequest};

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub think: Option<Value>,
    /// keep_alive, ...: dropped.
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// The assistant's earlier thinking text: display only, not sent back.
    #[serde(default)]
    pub thinking: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ToolCall {
    #[serde(default)]
    pub id: Option<String>,
    pub function: ToolCallFunction,
}

#[derive(Debug, Deserialize)]
pub struct ToolCallFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Options {
    #[serde(default)]
    pub num_predict: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    /// temperature, top_p, top_k, seed, num_ctx, ...: dropped (policy).
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Option<Options>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub think: Option<Value>,
    /// template, raw, context, keep_alive, ...: dropped.
    #[serde(flatten)]
    pub dropped: Map<String, Value>,
}

/// What the encoders need to know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OllamaOptions {
    /// `think` was true or an effort: reasoning summaries are sent as `thinking`.
    pub think: bool,
}

/// A decoded request, or Ollama's "load the model" no-op (empty messages / prompt).
#[derive(Debug)]
pub enum Decoded {
    Load { model: String },
    Request(Box<UpstreamRequest>, OllamaOptions),
}

pub fn decode_chat(body: &[u8]) -> Result<Decoded, GatewayError> {
    let req: ChatRequest = decode_body(body)?;
    let model = required_model(&req.model)?;
    if req.messages.is_empty() {
        return Ok(Decoded::Load { model: req.model });
    }
    let mut b = Map::new();
    let (instructions, input) = translate_messages(&req.messages)?;
    b.insert("instructions".into(), Value::String(instructions));
    b.insert("input".into(), Value::Array(input));
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().enumerate() {
        tools.push(function_tool(t, &format!("tools[{i}]"))?);
    }
    b.insert("tools".into(), Value::Array(tools));
    b.insert("tool_choice".into(), json!("auto"));
    b.insert("parallel_tool_calls".into(), Value::Bool(true));
    let opts = common(&mut b, req.think.as_ref(), req.format.as_ref())?;
    let req_out = UpstreamRequest {
        body: b,
        model,
        stream: req.stream.unwrap_or(true),
        conversation_key: None,
        limits: limits(req.options),
    };
    Ok(Decoded::Request(Box::new(req_out), opts))
}

pub fn decode_generate(body: &[u8]) -> Result<Decoded, GatewayError> {
    let req: GenerateRequest = decode_body(body)?;
    let model = required_model(&req.model)?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(GatewayError::invalid_param(
            "suffix",
            "suffix (fill-in-the-middle completion) is not supported by the Codex backend",
        ));
    }
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() && req.images.is_empty() {
        return Ok(Decoded::Load { model: req.model });
    }
    let mut b = Map::new();
    b.insert("instructions".into(), Value::String(req.system.unwrap_or_default()));
    let mut content = vec![json!({"type":"input_text","text":prompt})];
    for (i, img) in req.images.iter().enumerate() {
        content.push(image_part(img, &format!("images[{i}]"))?);
    }
    b.insert("input".into(), json!([{"type":"message","role":"user","content":content}]));
    b.insert("tools".into(), json!([]));
    b.insert("tool_choice".into(), json!("auto"));
    b.insert("parallel_tool_calls".into(), Value::Bool(true));
    let opts = common(&mut b, req.think.as_ref(), req.format.as_ref())?;
    let req_out = UpstreamRequest {
        body: b,
        model,
        stream: req.stream.unwrap_or(true),
        conversation_key: None,
        limits: limits(req.options),
    };
    Ok(Decoded::Request(Box::new(req_out), opts))
}

fn required_model(name: &str) -> Result<ModelRef, GatewayError> {
    if name.trim().is_empty() {
        return Err(GatewayError::invalid_param("model", "model is required"));
    }
    let mut m = ModelRef::parse(model_name(name));
    m.requested = name.to_string();
    Ok(m)
}

/// `think` and `format`, shared by chat and generate. Returns the encoder options.
fn common(
    b: &mut Map<String, Value>,
    think: Option<&Value>,
    format: Option<&Value>,
) -> Result<OllamaOptions, GatewayError> {
    let (effort, show) = match think {
        None | Some(Value::Null) => (None, false),
        Some(Value::Bool(true)) => (None, true),
        // Reasoning cannot be switched off on the catalog's models: `false` means the lowest effort, hidden.
        Some(Value::Bool(false)) => (Some("low"), false),
        Some(Value::String(level)) => match normalize_effort(level) {
            Some(e) => (Some(e), true),
            None => {
                return Err(GatewayError::invalid_param(
                    "think",
                    format!(
                        "think must be true, false or an effort (low, medium, high, xhigh, max, ultra), not `{level}`"
                    ),
                ));
            }
        },
        Some(_) => return Err(GatewayError::invalid_param("think", "think must be a boolean or an effort level")),
    };
    let mut reasoning = Map::new();
    if let Some(e) = effort {
        reasoning.insert("effort".into(), json!(e));
    }
    if show {
        reasoning.insert("summary".into(), json!("auto"));
    }
    b.insert("reasoning".into(), Value::Object(reasoning));
    b.insert("include".into(), json!(["reasoning.encrypted_content"]));
    let text_format = match format {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(json!({"type":"json_object"})),
        Some(schema @ Value::Object(_)) => {
            Some(json!({"type":"json_schema","strict":false,"schema":schema,"name":"response"}))
        }
        Some(_) => {
            return Err(GatewayError::invalid_param("format", "format must be \"json\" or a JSON schema object"));
        }
    };
    if let Some(f) = text_format {
        b.insert("text".into(), json!({ "format": f }));
    }
    Ok(OllamaOptions { think: show })
}

fn limits(options: Option<Options>) -> OutputLimits {
    let o = options.unwrap_or_default();
    let stop = match o.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    OutputLimits {
        // -1 (infinite) and -2 (fill the context) mean no cap.
        max_output_tokens: o.num_predict.filter(|n| *n > 0).map(|n| n as u64),
        stop_sequences: stop.into_iter().filter(|s| !s.is_empty()).collect(),
    }
}

/// Leading system messages become `instructions`; later ones developer messages. Tool results pair with the
/// assistant's calls by `tool_call_id`, else by `tool_name` and order.
fn translate_messages(messages: &[Message]) -> Result<(String, Vec<Value>), GatewayError> {
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    let mut pairing = Pairing::new();
    let mut leading = true;
    for (i, m) in messages.iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let text = m.content.clone().unwrap_or_default();
        match m.role.as_str() {
            "system" | "developer" => {
                if leading {
                    instructions.push(text);
                } else {
                    input.push(crate::upstream_request::developer_message(&text));
                }
            }
            "user" => {
                leading = false;
                let mut content = vec![json!({"type":"input_text","text":text})];
                for (k, img) in m.images.iter().enumerate() {
                    content.push(image_part(img, &at(&format!("images[{k}]")))?);
                }
                input.push(json!({"type":"message","role":"user","content":content}));
            }
            "assistant" => {
                leading = false;
                if !text.is_empty() {
                    input.push(
                        json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":text}]}),
                    );
                }
                for call in &m.tool_calls {
                    let name = &call.function.name;
                    let call_id = pairing.call(call.id.as_deref(), name);
                    let arguments = match &call.function.arguments {
                        None | Some(Value::Null) => "{}".to_string(),
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                    };
                    input.push(json!({"type":"function_call","name":name,"arguments":arguments,"call_id":call_id}));
                }
            }
            "tool" => {
                leading = false;
                match pairing.result(m.tool_call_id.as_deref(), m.tool_name.as_deref()) {
                    Some(call_id) => {
                        input.push(json!({"type":"function_call_output","call_id":call_id,"output":text}));
                    }
                    None => {
                        // One behaviour for every dialect (docs/parameter-policy.md, "Tool history"): the backend
                        // refuses an output without its call, so an orphan result is the client's error.
                        let name = m.tool_name.as_deref().unwrap_or("tool");
                        return Err(GatewayError::invalid_param(
                            &format!("messages[{i}]"),
                            format!(
                                "The tool message for `{name}` answers no tool call of an earlier assistant message"
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(GatewayError::invalid_param(
                    &at("role"),
                    format!("Unknown role `{other}`; expected system, user, assistant or tool"),
                ));
            }
        }
    }
    pairing.close_open_calls(&mut input);
    Ok((instructions.join("\n\n"), input))
}

/// Ollama images are raw base64 (no `data:` prefix); the type is read from the leading bytes.
fn image_part(data: &str, at: &str) -> Result<Value, GatewayError> {
    let data = data.trim();
    if data.is_empty() {
        return Err(GatewayError::invalid_param(at, "An image must be base64 data"));
    }
    let url = if data.starts_with("data:image/") {
        data.to_string()
    } else {
        let mime = match data.as_bytes() {
            [b'/', b'9', b'j', ..] => "image/jpeg",
            [b'R', b'0', b'l', b'G', ..] => "image/gif",
            [b'U', b'k', b'l', b'G', ..] => "image/webp",
            _ => "image/png",
        };
        format!("data:{mime};base64,{data}")
    };
    Ok(json!({"type":"input_image","image_url":url,"detail":"auto"}))
}

/// An Ollama tool (`{type:"function", function:{name, description, parameters}}`) -> a Responses function tool.
fn function_tool(tool: &Value, at: &str) -> Result<Value, GatewayError> {
    let f = tool.get("function").unwrap_or(tool);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GatewayError::invalid_param(at, "A tool needs `function.name`"))?;
    let mut out = json!({"type":"function","name":name});
    if let Some(d) = f.get("description").filter(|d| d.is_string()) {
        out["description"] = d.clone();
    }
    out["strict"] = Value::Bool(false);
    out["parameters"] = match f.get("parameters") {
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!({"type":"object","properties":{}}),
    };
    Ok(out)
}
