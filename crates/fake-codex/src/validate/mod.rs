//! Strict validation of a `/responses` body, in the spirit of the real Codex backend: unknown
//! top-level parameters, `store:true`, `stream:false`, missing instructions, system messages,
//! orphan tool outputs, unknown tool keys, bad efforts and the like are refused with a 400. Pure:
//! `responses.rs` calls [`validate`] and renders the [`Reject`] in the mode's error shape.
//! Input items are checked in `input.rs`.

mod input;

use input::check_input;

use serde_json::{Map, Value};
use std::collections::HashSet;

/// A refused request: message plus the offending parameter, when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

pub(crate) fn rej(message: impl Into<String>) -> Reject {
    Reject { message: message.into(), param: None, code: None }
}

pub(crate) fn rej_p(message: impl Into<String>, param: impl Into<String>) -> Reject {
    Reject { message: message.into(), param: Some(param.into()), code: None }
}

pub(crate) fn unknown(path: &str) -> Reject {
    rej_p(format!("Unknown parameter: '{path}'."), path)
}

pub(crate) fn invalid_type(path: &str, expected: &str) -> Reject {
    rej_p(format!("Invalid type for '{path}': expected {expected}."), path)
}

pub(crate) fn missing(path: &str) -> Reject {
    rej_p(format!("Missing required parameter: '{path}'."), path)
}

pub(crate) fn invalid_value(path: &str, got: &str, allowed: &[&str]) -> Reject {
    let list = allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
    rej_p(format!("Invalid value: '{got}'. Supported values are: {list}."), path)
}

/// What validation needs to know about the caller.
pub struct Ctx<'a> {
    pub require_instructions: bool,
    pub models: &'a [String],
    /// ChatGPT mode (account catalog message) or API-key mode.
    pub chatgpt: bool,
    pub secret: &'a [u8],
    /// Owner of sealed reasoning (account id, or API-key identity).
    pub owner: &'a str,
    /// Model slug -> whether it offers the priority tier.
    pub priority_ok: &'a dyn Fn(&str) -> bool,
    /// How many leading input items the backend itself held (a WebSocket connection's chain: the input and
    /// output of its last response). They were checked when they were sent or are the backend's own output, so
    /// only the pairing of calls and outputs counts them.
    pub held: usize,
    /// The request's model is one the catalog flags `use_responses_lite`: only then does the backend take its
    /// tools as an `additional_tools` input item (the official client sends them so for such models alone).
    pub lite: bool,
    /// The request's model is one the catalog flags `supports_reasoning_effort_updates`: only then does the
    /// backend take a `configuration_update` input item.
    pub effort_updates: bool,
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "instructions",
    "input",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "include",
    "service_tier",
    "prompt_cache_key",
    "text",
    "client_metadata",
    "truncation",
    // Codex CLI 0.169+ (its request type's fields): the prompt cache's lifetime for GPT-6 models, access programs
    // the account is enrolled in, and the request's country.
    "prompt_cache_options",
    "access_programs",
    "request_country",
];

/// `prompt_cache_options.ttl` values (the official client 0.171's enum: `30m`, `12h`).
const CACHE_TTLS: &[&str] = &["30m", "12h"];

const REASONING_CONTEXTS: &[&str] = &["auto", "current_turn", "all_turns"];

/// issue 25: the model and input of a `responses/compact` body (`compact.rs` checks the field names).
pub(crate) fn check_compaction_input(obj: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<(), Reject> {
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(invalid_type("model", "a string")),
        None => return Err(missing("model")),
    };
    if !ctx.models.iter().any(|m| m == model) {
        return Err(rej_p(format!("The '{model}' model is not supported."), "model"));
    }
    input::check_input(obj.get("input"), model, ctx).map(drop)
}

/// Validate a parsed body.
pub fn validate(body: &Value, ctx: &Ctx<'_>) -> Result<(), Reject> {
    let obj = body.as_object().ok_or_else(|| rej("Request body must be a JSON object"))?;
    for key in obj.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(rej_p(format!("Unsupported parameter: {key}"), key.clone()));
        }
    }
    if obj.get("store") != Some(&Value::Bool(false)) {
        return Err(rej_p("Store must be set to false", "store"));
    }
    if obj.get("stream") != Some(&Value::Bool(true)) {
        return Err(rej_p("Stream must be set to true", "stream"));
    }
    // The official client (0.169) sends no `instructions` at all: its base instructions travel as the first
    // developer message. An explicit `null` is what older backends refused, and no official client sends one.
    match obj.get("instructions") {
        Some(Value::String(_)) => {}
        None if !ctx.require_instructions => {}
        Some(Value::Null) | None => return Err(rej_p("Instructions are required", "instructions")),
        Some(_) => return Err(invalid_type("instructions", "a string")),
    }
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(invalid_type("model", "a string")),
        None => return Err(missing("model")),
    };
    if !ctx.models.iter().any(|m| m == model) {
        let msg = if ctx.chatgpt {
            format!("The '{model}' model is not supported when using Codex with a ChatGPT account.")
        } else {
            format!("The model '{model}' does not exist or you do not have access to it.")
        };
        return Err(Reject { message: msg, param: Some("model".into()), code: Some("model_not_found") });
    }
    // Responses Lite (a model the catalog flags `use_responses_lite`): the tools arrive in an `additional_tools`
    // input item instead, and count for `tool_choice` as the top-level ones do.
    let mut tool_names = check_input(obj.get("input"), model, ctx)?;
    check_tools(obj.get("tools"), "tools", &mut tool_names)?;
    check_tool_choice(obj.get("tool_choice"), &tool_names)?;
    check_reasoning(obj.get("reasoning"), model, ctx.lite)?;
    check_misc(obj, model, ctx)?;
    check_text(obj.get("text"))
}

fn check_misc(obj: &Map<String, Value>, model: &str, ctx: &Ctx<'_>) -> Result<(), Reject> {
    if let Some(v) = obj.get("parallel_tool_calls")
        && !v.is_boolean()
    {
        return Err(invalid_type("parallel_tool_calls", "a boolean"));
    }
    if let Some(v) = obj.get("prompt_cache_key")
        && !(v.is_string() || v.is_null())
    {
        return Err(invalid_type("prompt_cache_key", "a string"));
    }
    if let Some(v) = obj.get("include") {
        let arr = v.as_array().ok_or_else(|| invalid_type("include", "an array"))?;
        for (i, s) in arr.iter().enumerate() {
            if !s.is_string() {
                return Err(invalid_type(&format!("include[{i}]"), "a string"));
            }
        }
    }
    if let Some(v) = obj.get("client_metadata")
        && !(v.is_object() || v.is_null())
    {
        return Err(invalid_type("client_metadata", "an object"));
    }
    if let Some(v) = obj.get("prompt_cache_options") {
        let o = v.as_object().ok_or_else(|| invalid_type("prompt_cache_options", "an object"))?;
        check_keys(o, &["ttl"], "prompt_cache_options")?;
        match o.get("ttl") {
            None => {}
            Some(Value::String(t)) if CACHE_TTLS.contains(&t.as_str()) => {}
            Some(Value::String(t)) => return Err(invalid_value("prompt_cache_options.ttl", t, CACHE_TTLS)),
            Some(_) => return Err(invalid_type("prompt_cache_options.ttl", "a string")),
        }
    }
    if let Some(v) = obj.get("access_programs") {
        let arr = v.as_array().ok_or_else(|| invalid_type("access_programs", "an array"))?;
        if let Some(i) = arr.iter().position(|p| !p.is_string()) {
            return Err(invalid_type(&format!("access_programs[{i}]"), "a string"));
        }
    }
    if let Some(v) = obj.get("request_country") {
        match v.as_str() {
            // An ISO 3166-1 alpha-2 code.
            Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
            Some(other) => {
                return Err(rej_p(
                    format!("Invalid request_country: '{other}'. Expected a two-letter country code."),
                    "request_country",
                ));
            }
            None => return Err(invalid_type("request_country", "a string")),
        }
    }
    if let Some(v) = obj.get("truncation") {
        match v.as_str() {
            Some("auto" | "disabled") => {}
            Some(other) => return Err(invalid_value("truncation", other, &["auto", "disabled"])),
            None => return Err(invalid_type("truncation", "a string")),
        }
    }
    match obj.get("service_tier") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) => match t.as_str() {
            "auto" | "default" | "flex" => Ok(()),
            "priority" if (ctx.priority_ok)(model) => Ok(()),
            "priority" => {
                Err(rej_p(format!("The service tier 'priority' is not available for model '{model}'."), "service_tier"))
            }
            other => Err(invalid_value("service_tier", other, &["auto", "default", "flex", "priority"])),
        },
        Some(_) => Err(invalid_type("service_tier", "a string")),
    }
}

pub(crate) fn check_keys(obj: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), Reject> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(unknown(&format!("{path}.{k}")));
        }
    }
    Ok(())
}

pub(crate) fn req_str<'a>(obj: &'a Map<String, Value>, key: &str, path: &str) -> Result<&'a str, Reject> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid_type(&format!("{path}.{key}"), "a string")),
        None => Err(missing(&format!("{path}.{key}"))),
    }
}

/// The tools at `at` (`tools`, or an `additional_tools` input item's), their names added to `names`.
pub(super) fn check_tools(tools: Option<&Value>, at: &str, names: &mut HashSet<String>) -> Result<(), Reject> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid_type(at, "an array")),
    };
    for (i, tool) in list.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let t = tool.as_object().ok_or_else(|| invalid_type(&path, "an object"))?;
        let ty = req_str(t, "type", &path)?;
        match ty {
            "function" => {
                check_keys(t, &["type", "name", "description", "parameters", "strict"], &path)?;
                let name = req_str(t, "name", &path)?;
                if name.is_empty()
                    || name.len() > 64
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(rej_p(
                        format!(
                            "Invalid '{path}.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                        ),
                        format!("{path}.name"),
                    ));
                }
                match t.get("parameters") {
                    Some(Value::Object(_)) => {}
                    Some(_) => return Err(invalid_type(&format!("{path}.parameters"), "an object")),
                    None => return Err(missing(&format!("{path}.parameters"))),
                }
                if let Some(s) = t.get("strict")
                    && !(s.is_boolean() || s.is_null())
                {
                    return Err(invalid_type(&format!("{path}.strict"), "a boolean"));
                }
                names.insert(name.to_string());
            }
            "custom" => {
                check_keys(t, &["type", "name", "description", "format"], &path)?;
                names.insert(req_str(t, "name", &path)?.to_string());
            }
            // A namespace's tools are checked as tools (the official client's Responses Lite puts its plain function
            // and custom tools in one); their names are the turn's tools.
            "namespace" => {
                check_keys(t, &["type", "name", "description", "tools"], &path)?;
                req_str(t, "name", &path)?;
                check_tools(t.get("tools"), &format!("{path}.tools"), names)?;
            }
            "web_search" | "web_search_preview" | "image_generation" | "local_shell" | "tool_search"
            | "file_search" | "code_interpreter" | "mcp" => {}
            other => {
                return Err(invalid_value(
                    &format!("{path}.type"),
                    other,
                    &["function", "custom", "web_search", "image_generation", "local_shell"],
                ));
            }
        }
    }
    Ok(())
}

fn check_tool_choice(choice: Option<&Value>, names: &HashSet<String>) -> Result<(), Reject> {
    match choice {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => match s.as_str() {
            "auto" | "none" | "required" => Ok(()),
            other => Err(invalid_value("tool_choice", other, &["auto", "none", "required"])),
        },
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some("function" | "custom") => {
                let name = req_str(o, "name", "tool_choice")?;
                if names.contains(name) {
                    Ok(())
                } else {
                    Err(rej_p(format!("Tool choice '{name}' not found in 'tools' parameter."), "tool_choice"))
                }
            }
            Some(_) => Ok(()),
            None => Err(missing("tool_choice.type")),
        },
        Some(_) => Err(invalid_type("tool_choice", "a string or object")),
    }
}

fn check_reasoning(reasoning: Option<&Value>, model: &str, lite: bool) -> Result<(), Reject> {
    let r = match reasoning {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid_type("reasoning", "an object")),
    };
    // `reasoning.context` exists only for models whose catalog entry says `supports_reasoning_context`; the
    // others refuse it as an unknown parameter (pydantic-ai sends it by default and every request failed). A
    // Responses Lite model takes it too: the official client sends `all_turns` to every such model.
    if crate::catalog::supports_reasoning_context(model) || lite {
        check_keys(r, &["effort", "summary", "generate_summary", "context"], "reasoning")?;
        match r.get("context") {
            None | Some(Value::Null) => {}
            Some(Value::String(c)) if REASONING_CONTEXTS.contains(&c.as_str()) => {}
            Some(Value::String(c)) => return Err(invalid_value("reasoning.context", c, REASONING_CONTEXTS)),
            Some(_) => return Err(invalid_type("reasoning.context", "a string")),
        }
    } else {
        check_keys(r, &["effort", "summary", "generate_summary"], "reasoning")?;
    }
    // Each model takes the efforts its catalog entry lists, and no other (the GPT-5 models stop at `xhigh`, the
    // GPT-6.2 ones go on to `max` and `ultra`).
    match r.get("effort") {
        None | Some(Value::Null) => {}
        Some(Value::String(e)) if crate::catalog::supports_effort(model, e) => {}
        Some(Value::String(e)) => {
            let listed: Vec<&str> = crate::catalog::info(model).efforts.iter().map(|(e, _)| *e).collect();
            return Err(invalid_value("reasoning.effort", e, &listed));
        }
        Some(_) => return Err(invalid_type("reasoning.effort", "a string")),
    }
    match r.get("summary") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if ["auto", "concise", "detailed", "none"].contains(&s.as_str()) => Ok(()),
        Some(Value::String(s)) => Err(invalid_value("reasoning.summary", s, &["auto", "concise", "detailed"])),
        Some(_) => Err(invalid_type("reasoning.summary", "a string")),
    }
}

fn check_text(text: Option<&Value>) -> Result<(), Reject> {
    let t = match text {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid_type("text", "an object")),
    };
    check_keys(t, &["verbosity", "format"], "text")?;
    match t.get("verbosity") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if ["low", "medium", "high"].contains(&v.as_str()) => {}
        Some(Value::String(v)) => {
            return Err(invalid_value("text.verbosity", v, &["low", "medium", "high"]));
        }
        Some(_) => return Err(invalid_type("text.verbosity", "a string")),
    }
    let f = match t.get("format") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(f)) => f,
        Some(_) => return Err(invalid_type("text.format", "an object")),
    };
    match req_str(f, "type", "text.format")? {
        "text" | "json_object" => check_keys(f, &["type"], "text.format"),
        "json_schema" => {
            check_keys(f, &["type", "name", "schema", "strict", "description"], "text.format")?;
            req_str(f, "name", "text.format")?;
            match f.get("schema") {
                Some(Value::Object(_)) => Ok(()),
                Some(_) => Err(invalid_type("text.format.schema", "an object")),
                None => Err(missing("text.format.schema")),
            }
        }
        other => Err(invalid_value("text.format.type", other, &["text", "json_object", "json_schema"])),
    }
}
