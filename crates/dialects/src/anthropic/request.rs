//! Anthropic Messages request types and their translation to a Responses body (spec/dialects.md §2).
//!
//! Parameter policy (spec C5). Every top-level field is translated, emulated, or accepted and ignored:
//!
//! | field | handling |
//! |---|---|
//! | model | [`resolve_model`]: Claude ids -> Codex slugs by family; others parsed with suffixes |
//! | system | `instructions` (text blocks joined by a blank line; `x-anthropic-billing-header` lines dropped) |
//! | messages | `input` items (see `messages.rs`); `role:"system"` entries -> developer messages |
//! | max_tokens | emulated: [`OutputLimits::max_output_tokens`] (the backend rejects a token cap) |
//! | stop_sequences | emulated: [`OutputLimits::stop_sequences`] |
//! | stream | [`UpstreamRequest::stream`] (upstream always streams) |
//! | tools | function tools (`strict` only if the client set `strict:true`); `web_search_*` -> Codex `web_search`; `tool_search_tool_*` dropped (deferred tools are sent in full); other server tools -> 400 |
//! | tool_choice | auto/any/tool/none -> auto/required/function/none; `disable_parallel_tool_use` -> `parallel_tool_calls:false` |
//! | thinking | enabled (budget) / adaptive / disabled -> `reasoning` (see [`reasoning_for`]) |
//! | output_config.effort | `reasoning.effort`, held by the gateway to what the model's catalog lists |
//! | output_config.format, output_format | `text.format` json_schema (non-strict) |
//! | metadata.user_id | conversation key when no `X-Claude-Code-Session-Id` header (hashed); never forwarded |
//! | temperature, top_p, top_k | ignored: the backend rejects sampling parameters |
//! | context_management | ignored: context edits are server-side Anthropic features; the full history is sent |
//! | cache_control (anywhere) | ignored: upstream caching is keyed by `prompt_cache_key` |
//! | service_tier | ignored: Anthropic tiers do not map to Codex tiers (use the `-fast` model suffix) |
//! | container, mcp_servers | ignored: Anthropic-hosted execution and MCP connectors have no Codex equivalent |
//! | anything else | ignored (new Anthropic fields must not break clients) |

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AnthropicOptions;
use super::messages::{str_field, system_text, translate_messages};
use super::resolve_model;
use crate::error::GatewayError;
use crate::json::decode_body;
use crate::models::{Lineup, normalize_effort};
use crate::upstream_request::{OutputLimits, UpstreamRequest};

/// A `/v1/messages` (or `/v1/messages/count_tokens`) body. Only the fields that change the translation are
/// typed; everything else is ignored by serde (see the table above).
#[derive(Debug, Deserialize)]
pub struct AnthropicRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub system: Option<Content>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub thinking: Option<ThinkingConfig>,
    #[serde(default)]
    pub output_config: Option<OutputConfig>,
    /// The older structured-output beta field; same shape as `output_config.format`.
    #[serde(default)]
    pub output_format: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

/// A `content` (or `system`) field: a plain string or an array of content blocks. Blocks stay JSON until
/// translation so that an unknown block type gets an error naming it and its position.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None {},
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThinkingConfig {
    Enabled {
        #[serde(default)]
        budget_tokens: Option<u64>,
    },
    Adaptive {},
    Disabled {},
}

#[derive(Debug, Deserialize, Default)]
pub struct OutputConfig {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub format: Option<Value>,
}

/// Decode a Messages body without model aliases: Claude ids resolve to the slugs `lineup` (the catalog) gives
/// their families. `session_id` is the `X-Claude-Code-Session-Id` header.
pub fn decode(
    body: &[u8],
    session_id: Option<&str>,
    lineup: &dyn Lineup,
) -> Result<(UpstreamRequest, AnthropicOptions), GatewayError> {
    decode_with(body, session_id, &HashMap::new(), lineup)
}

/// [`decode`] with the user's model aliases (see [`resolve_model`]).
pub fn decode_with(
    body: &[u8],
    session_id: Option<&str>,
    aliases: &HashMap<String, String>,
    lineup: &dyn Lineup,
) -> Result<(UpstreamRequest, AnthropicOptions), GatewayError> {
    let req: AnthropicRequest = decode_body(body)?;
    translate(req, session_id, aliases, lineup)
}

/// No model is asked for in a count, so no family needs a slug.
const COUNT_LINEUP: [&str; 3] = ["", "", ""];

/// The translation `count_tokens` uses: the Responses body whose input would be sent for this request.
pub fn decode_for_count(body: &[u8]) -> Result<UpstreamRequest, GatewayError> {
    decode(body, None, &COUNT_LINEUP).map(|(req, _)| req)
}

pub fn translate(
    req: AnthropicRequest,
    session_id: Option<&str>,
    aliases: &HashMap<String, String>,
    lineup: &dyn Lineup,
) -> Result<(UpstreamRequest, AnthropicOptions), GatewayError> {
    if req.model.trim().is_empty() {
        return Err(GatewayError::invalid_param("model", "`model` must be a non-empty string"));
    }
    // The Messages API answers an empty conversation with a 400; sent on, the backend would get an empty input.
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param("messages", "messages: at least one message is required"));
    }
    let model = resolve_model(&req.model, aliases, lineup);
    let mut body = Map::new();

    let instructions = match &req.system {
        None => String::new(),
        Some(system) => system_text(system, "system")?,
    };
    body.insert("instructions".into(), Value::String(instructions));
    body.insert("input".into(), Value::Array(translate_messages(req.messages)?));

    let mut tools = Vec::new();
    let mut web_search_names = Vec::new();
    for (i, tool) in req.tools.unwrap_or_default().into_iter().enumerate() {
        match translate_tool(tool, &format!("tools[{i}]"))? {
            Tool::Function(t) => tools.push(t),
            Tool::WebSearch { name, tool } => {
                web_search_names.push(name);
                tools.push(tool);
            }
            Tool::Dropped => {}
        }
    }
    let (choice, parallel) = match &req.tool_choice {
        None => (json!("auto"), true),
        Some(ToolChoice::Auto { disable_parallel_tool_use }) => {
            (json!("auto"), disable_parallel_tool_use != &Some(true))
        }
        Some(ToolChoice::Any { disable_parallel_tool_use }) => {
            (json!("required"), disable_parallel_tool_use != &Some(true))
        }
        // A hosted tool cannot be named in tool_choice; "required" with it among the tools is the closest.
        Some(ToolChoice::Tool { name, disable_parallel_tool_use }) if web_search_names.contains(name) => {
            (json!("required"), disable_parallel_tool_use != &Some(true))
        }
        Some(ToolChoice::Tool { name, disable_parallel_tool_use }) => {
            if !tools.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(name.as_str())) {
                return Err(GatewayError::invalid_param(
                    "tool_choice.name",
                    format!("tool_choice names the tool `{name}`, which is not in `tools`"),
                ));
            }
            (json!({"type":"function","name":name}), disable_parallel_tool_use != &Some(true))
        }
        Some(ToolChoice::None {}) => (json!("none"), true),
    };
    let has_tools = !tools.is_empty();
    body.insert("tools".into(), Value::Array(tools));
    body.insert("tool_choice".into(), if has_tools { choice } else { json!("auto") });
    body.insert("parallel_tool_calls".into(), Value::Bool(parallel));

    let output_config = req.output_config.unwrap_or_default();
    let (reasoning, include_thinking) = reasoning_for(req.thinking.as_ref(), output_config.effort.as_deref())?;
    body.insert("reasoning".into(), Value::Object(reasoning));
    body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    if let Some(format) = output_config.format.as_ref().or(req.output_format.as_ref()) {
        body.insert("text".into(), json!({"format": translate_format(format)?}));
    }

    let conversation_key = conversation_key(session_id, req.metadata.as_ref());
    let limits = OutputLimits {
        max_output_tokens: req.max_tokens,
        stop_sequences: req.stop_sequences.unwrap_or_default().into_iter().filter(|s| !s.is_empty()).collect(),
    };
    Ok((
        UpstreamRequest { body, model, stream: req.stream.unwrap_or(false), conversation_key, limits },
        AnthropicOptions { include_thinking },
    ))
}

/// `thinking` and `output_config.effort` -> the `reasoning` object, and whether thinking blocks are shown.
///
/// Effort, first that applies: `output_config.effort`; `thinking.enabled.budget_tokens` (<=2048 low, <=16384
/// medium, <=32768 high, <=65536 xhigh, else max); `thinking.disabled` -> `low`. Otherwise (adaptive, or no
/// `thinking`) no effort is written, so the model's suffix effort, then the gateway default, then the model's own
/// default apply when the request is finalized. The gateway then holds the effort to what the model's catalog
/// entry lists (`max` on a model that stops at `xhigh` is sent as `xhigh`): the words here are the client's wish.
///
/// Disabled thinking maps to `low`, not `none`: the catalog's models list low..xhigh, and `none` is not
/// accepted by every one of them. Reasoning cannot be switched off on these models; disabled just hides it.
/// Summaries are requested only when thinking blocks are shown. `reasoning.encrypted_content` is always
/// included so signatures can be issued and reasoning continues across turns.
fn reasoning_for(
    thinking: Option<&ThinkingConfig>,
    output_effort: Option<&str>,
) -> Result<(Map<String, Value>, bool), GatewayError> {
    let explicit = match output_effort {
        Some(e) => Some(normalize_effort(e).ok_or_else(|| {
            GatewayError::invalid_param(
                "output_config.effort",
                format!("Unknown effort `{e}`; expected low, medium, high, xhigh, max or ultra"),
            )
        })?),
        None => None,
    };
    let (from_thinking, include_thinking) = match thinking {
        Some(ThinkingConfig::Enabled { budget_tokens }) => {
            let effort = match budget_tokens.unwrap_or(16384) {
                0..=2048 => "low",
                2049..=16384 => "medium",
                16385..=32768 => "high",
                32769..=65536 => "xhigh",
                _ => "max",
            };
            (Some(effort), true)
        }
        Some(ThinkingConfig::Adaptive {}) => (None, true),
        Some(ThinkingConfig::Disabled {}) => (Some("low"), false),
        None => (None, false),
    };
    let mut reasoning = Map::new();
    if let Some(effort) = explicit.or(from_thinking) {
        reasoning.insert("effort".into(), json!(effort));
    }
    if include_thinking {
        reasoning.insert("summary".into(), json!("auto"));
    }
    Ok((reasoning, include_thinking))
}

/// `{type:"json_schema", schema}` -> Responses `text.format`.
fn translate_format(format: &Value) -> Result<Value, GatewayError> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = format.get("schema").cloned().unwrap_or_else(|| json!({"type":"object"}));
            Ok(json!({"type":"json_schema","strict":false,"schema":schema,"name":"output"}))
        }
        other => Err(GatewayError::invalid_param(
            "output_config.format.type",
            format!("Unsupported output format type {other:?}; only json_schema is supported"),
        )),
    }
}

/// A stable per-conversation key: the Claude Code session header, else the session inside `metadata.user_id`
/// (Claude Code sends a JSON string with a `session_id`, older versions `user_<h>_account_<id>_session_<uuid>`),
/// else the whole user id. Hashed, so no client identifier reaches the upstream.
fn conversation_key(session_id: Option<&str>, metadata: Option<&Value>) -> Option<String> {
    let source = match session_id.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => s.to_string(),
        None => {
            let user_id = metadata?.get("user_id")?.as_str()?.trim();
            if user_id.is_empty() {
                return None;
            }
            let from_json = serde_json::from_str::<Value>(user_id)
                .ok()
                .and_then(|v| v.get("session_id").and_then(Value::as_str).map(str::to_string))
                .filter(|s| !s.is_empty());
            let from_legacy = user_id.rsplit_once("_session_").map(|(_, s)| s.to_string()).filter(|s| !s.is_empty());
            from_json.or(from_legacy).unwrap_or_else(|| user_id.to_string())
        }
    };
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Some(format!("cc-{hex}"))
}

enum Tool {
    Function(Value),
    WebSearch { name: String, tool: Value },
    Dropped,
}

/// One Anthropic tool -> a Responses tool. Extra client fields (cache_control, defer_loading,
/// eager_input_streaming, input_examples, ...) are dropped: the backend rejects unknown tool keys.
fn translate_tool(tool: Value, at: &str) -> Result<Tool, GatewayError> {
    let name = str_field(&tool, "name").unwrap_or_default().to_string();
    match str_field(&tool, "type") {
        None | Some("custom") => {
            if name.is_empty() {
                return Err(GatewayError::invalid_param(&format!("{at}.name"), "A tool needs a non-empty `name`"));
            }
            let mut out = json!({"type":"function","name":name});
            if let Some(d) = tool.get("description").filter(|d| d.is_string()) {
                out["description"] = d.clone();
            }
            out["strict"] = Value::Bool(tool.get("strict").and_then(Value::as_bool) == Some(true));
            out["parameters"] = match tool.get("input_schema") {
                Some(p @ Value::Object(_)) => p.clone(),
                _ => json!({"type":"object","properties":{}}),
            };
            Ok(Tool::Function(out))
        }
        Some(kind) if kind.starts_with("web_search_") => {
            // max_uses and blocked_domains have no Codex equivalent and are ignored.
            let mut out = json!({"type":"web_search"});
            if let Some(domains @ Value::Array(_)) = tool.get("allowed_domains") {
                out["filters"] = json!({"allowed_domains": domains});
            }
            if let Some(location @ Value::Object(_)) = tool.get("user_location") {
                out["user_location"] = location.clone();
            }
            Ok(Tool::WebSearch { name: if name.is_empty() { "web_search".into() } else { name }, tool: out })
        }
        Some(kind) if kind.starts_with("tool_search_tool_") => Ok(Tool::Dropped),
        Some(kind) => Err(GatewayError::invalid_param(
            &format!("{at}.type"),
            format!(
                "The Anthropic server tool `{kind}` (name `{name}`) is not supported by this gateway; \
                 only custom tools and web_search are. Define it as a custom tool with an input_schema instead."
            ),
        )),
    }
}

/// Text whose token count approximates the request's input: instructions, message texts, tool calls and
/// outputs, reasoning summaries and tool definitions. Images, files and encrypted reasoning are not text and
/// are left out, so the count is a lower bound for requests that carry them.
pub fn countable_text(req: &UpstreamRequest) -> String {
    let mut out = String::new();
    let mut push = |s: &str| {
        if !s.is_empty() {
            out.push_str(s);
            out.push('\n');
        }
    };
    if let Some(Value::String(s)) = req.body.get("instructions") {
        push(s);
    }
    let text_parts = |parts: &Value, push: &mut dyn FnMut(&str)| {
        if let Value::Array(parts) = parts {
            for p in parts {
                push(str_field(p, "text").unwrap_or_default());
            }
        } else if let Value::String(s) = parts {
            push(s);
        }
    };
    for item in req.body.get("input").and_then(Value::as_array).into_iter().flatten() {
        match str_field(item, "type") {
            Some("message") => text_parts(item.get("content").unwrap_or(&Value::Null), &mut push),
            Some("function_call") => {
                push(str_field(item, "name").unwrap_or_default());
                push(str_field(item, "arguments").unwrap_or_default());
            }
            Some("function_call_output") => text_parts(item.get("output").unwrap_or(&Value::Null), &mut push),
            Some("reasoning") => text_parts(item.get("summary").unwrap_or(&Value::Null), &mut push),
            _ => {}
        }
    }
    for tool in req.body.get("tools").and_then(Value::as_array).into_iter().flatten() {
        push(str_field(tool, "name").unwrap_or_default());
        push(str_field(tool, "description").unwrap_or_default());
        if let Some(p) = tool.get("parameters") {
            push(&p.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys() {
        let a = conversation_key(Some("8c0c0d3e-1"), None);
        assert!(a.as_deref().is_some_and(|k| k.starts_with("cc-") && k.len() == 35));
        // The session inside metadata.user_id gives the same key as the header with that session.
        let meta = json!({"user_id": r#"{"device_id":"d","account_uuid":"","session_id":"8c0c0d3e-1"}"#});
        assert_eq!(conversation_key(None, Some(&meta)), a);
        let legacy = json!({"user_id": "user_abc_account__session_8c0c0d3e-1"});
        assert_eq!(conversation_key(None, Some(&legacy)), a);
        let plain = json!({"user_id": "someone"});
        assert!(conversation_key(None, Some(&plain)).is_some_and(|k| Some(&k) != a.as_ref()));
        assert_eq!(conversation_key(None, Some(&json!({}))), None);
        assert_eq!(conversation_key(Some(" "), None), None);
    }

    #[test]
    fn budgets_map_to_efforts() {
        let effort = |budget: u64| {
            let (r, shown) =
                reasoning_for(Some(&ThinkingConfig::Enabled { budget_tokens: Some(budget) }), None).ok()?;
            assert!(shown);
            r.get("effort").and_then(Value::as_str).map(str::to_string)
        };
        assert_eq!(effort(1024).as_deref(), Some("low"));
        assert_eq!(effort(2048).as_deref(), Some("low"));
        assert_eq!(effort(10000).as_deref(), Some("medium"));
        assert_eq!(effort(16384).as_deref(), Some("medium"));
        assert_eq!(effort(32000).as_deref(), Some("high"));
        assert_eq!(effort(64000).as_deref(), Some("xhigh"));
    }
}
