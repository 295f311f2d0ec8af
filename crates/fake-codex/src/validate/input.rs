//! Validation of the `input` array: item shapes per type, message roles and content parts,
//! image URLs, tool outputs, sealed reasoning, and the pairing of every tool call with its output
//! (both directions) within the same request. Part of `validate`.

use std::collections::HashSet;

use super::{Ctx, Reject, check_keys, check_tools, invalid_type, invalid_value, missing, rej_p, req_str};
use crate::tokens::{SealError, open_reasoning};
use serde_json::{Map, Value};

/// The input checked; the names of the tools its `additional_tools` items define (Responses Lite).
pub(super) fn check_input(input: Option<&Value>, model: &str, ctx: &Ctx<'_>) -> Result<HashSet<String>, Reject> {
    let items = match input {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid_type("input", "an array")),
        None => return Err(missing("input")),
    };
    let mut calls: Vec<(String, &'static str)> = Vec::new();
    let mut outputs: Vec<(String, &'static str)> = Vec::new();
    let mut tool_names = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        let obj = item.as_object().ok_or_else(|| invalid_type(&path, "an object"))?;
        if i < ctx.held {
            let kind = match obj.get("type").and_then(Value::as_str) {
                Some("function_call") => Some((true, "function")),
                Some("function_call_output") => Some((false, "function")),
                Some("custom_tool_call") => Some((true, "custom")),
                Some("custom_tool_call_output") => Some((false, "custom")),
                _ => None,
            };
            if let (Some((is_call, kind)), Some(id)) = (kind, obj.get("call_id").and_then(Value::as_str)) {
                let list = if is_call { &mut calls } else { &mut outputs };
                list.push((id.to_string(), kind));
            }
            continue;
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            None if obj.contains_key("role") => "message",
            Some(_) => return Err(invalid_type(&format!("{path}.type"), "a string")),
            None => return Err(missing(&format!("{path}.type"))),
        };
        match ty {
            "message" => check_message(obj, &path)?,
            "reasoning" => check_reasoning_item(obj, &path, ctx)?,
            "function_call" => {
                check_keys(
                    obj,
                    &["type", "id", "call_id", "name", "arguments", "status", "namespace", METADATA],
                    &path,
                )?;
                check_metadata_passthrough(obj, &path)?;
                calls.push((req_str(obj, "call_id", &path)?.to_string(), "function"));
                req_str(obj, "name", &path)?;
                req_str(obj, "arguments", &path)?;
            }
            "function_call_output" => {
                check_keys(obj, &["type", "id", "call_id", "output", "status", METADATA], &path)?;
                check_metadata_passthrough(obj, &path)?;
                outputs.push((req_str(obj, "call_id", &path)?.to_string(), "function"));
                check_tool_output(obj.get("output"), &format!("{path}.output"))?;
            }
            "custom_tool_call" => {
                check_keys(obj, &["type", "id", "call_id", "name", "input", "status"], &path)?;
                calls.push((req_str(obj, "call_id", &path)?.to_string(), "custom"));
                req_str(obj, "name", &path)?;
                req_str(obj, "input", &path)?;
            }
            "custom_tool_call_output" => {
                check_keys(obj, &["type", "id", "call_id", "output", "status"], &path)?;
                outputs.push((req_str(obj, "call_id", &path)?.to_string(), "custom"));
                check_tool_output(obj.get("output"), &format!("{path}.output"))?;
            }
            "item_reference" => {
                return Err(rej_p(
                    "item_reference is not supported with store=false: items are not persisted when `store` is set to false.",
                    path,
                ));
            }
            // Items the official client may carry in its history; accepted without a deep check.
            "web_search_call"
            | "image_generation_call"
            | "local_shell_call"
            | "local_shell_call_output"
            | "tool_search_call"
            | "tool_search_output"
            | "compaction_summary" => {}
            // issue 25: a compaction item must come back as `responses/compact` issued it, to the same owner.
            "compaction" => check_compaction_item(obj, &path, ctx)?,
            // Responses Lite: the official client moves its tools into a leading developer item of this type for a
            // model the catalog flags `use_responses_lite` (codex-rs `core/src/client.rs`), and only for such models.
            "additional_tools" if ctx.lite => {
                check_keys(obj, &["type", "id", "role", "tools"], &path)?;
                if req_str(obj, "role", &path)? != "developer" {
                    return Err(rej_p("additional_tools must have the developer role.", format!("{path}.role")));
                }
                check_tools(obj.get("tools"), &format!("{path}.tools"), &mut tool_names)?;
            }
            // Codex CLI 0.169+: a change of the reasoning effort from this point of the conversation on, for a model
            // the catalog flags `supports_reasoning_effort_updates` (and only for it), so that the request-level
            // effort, and with it the prompt's cached prefix, stays as it was.
            "configuration_update" => {
                check_configuration_update(obj, &path, model, ctx)?;
                // The official client never lays an update beside another (codex-rs
                // `core/src/session/reasoning_effort.rs`: it replaces the adjacent one instead).
                let before = i.checked_sub(1).and_then(|p| items.get(p)).and_then(|p| p.get("type"));
                if before.and_then(Value::as_str) == Some("configuration_update") {
                    return Err(rej_p("A configuration_update may not follow another configuration_update.", path));
                }
            }
            // Compaction v2: the official client (0.169) asks for a compaction with this marker as the last input
            // item of an ordinary `/responses` request (turn metadata `"implementation":"responses_compaction_v2"`).
            "compaction_trigger" => {
                check_keys(obj, &["type"], &path)?;
                if i + 1 != items.len() {
                    return Err(rej_p("compaction_trigger must be the last input item.", path));
                }
            }
            other => {
                return Err(invalid_value(
                    &format!("{path}.type"),
                    other,
                    &[
                        "message",
                        "reasoning",
                        "function_call",
                        "function_call_output",
                        "custom_tool_call",
                        "custom_tool_call_output",
                        "web_search_call",
                        "image_generation_call",
                        "local_shell_call",
                    ],
                ));
            }
        }
    }
    for (id, kind) in &outputs {
        if !calls.iter().any(|(c, k)| c == id && k == kind) {
            return Err(rej_p(format!("No tool call found for function call output with call_id {id}."), "input"));
        }
    }
    for (id, kind) in &calls {
        if !outputs.iter().any(|(c, k)| c == id && k == kind) {
            return Err(rej_p(format!("No tool output found for function call {id}."), "input"));
        }
    }
    Ok(tool_names)
}

/// A `configuration_update` item: exactly `{"type": "configuration_update", "reasoning": {"effort": ...}}` (the
/// official client's `ResponseItem::ConfigurationUpdate` has no `id`), for a model that takes it, with an effort
/// the model takes (as `reasoning.effort`).
fn check_configuration_update(obj: &Map<String, Value>, path: &str, model: &str, ctx: &Ctx<'_>) -> Result<(), Reject> {
    if !ctx.effort_updates {
        return Err(rej_p(
            "The 'configuration_update' item type is not supported with this model.",
            format!("{path}.type"),
        ));
    }
    check_keys(obj, &["type", "reasoning"], path)?;
    let reasoning = match obj.get("reasoning") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err(invalid_type(&format!("{path}.reasoning"), "an object")),
        None => return Err(missing(&format!("{path}.reasoning"))),
    };
    check_keys(reasoning, &["effort"], &format!("{path}.reasoning"))?;
    match reasoning.get("effort") {
        Some(Value::String(e)) if crate::catalog::supports_effort(model, e) => Ok(()),
        Some(Value::String(e)) => {
            let listed: Vec<&str> = crate::catalog::info(model).efforts.iter().map(|(e, _)| *e).collect();
            Err(invalid_value(&format!("{path}.reasoning.effort"), e, &listed))
        }
        Some(_) => Err(invalid_type(&format!("{path}.reasoning.effort"), "a string")),
        None => Err(missing(&format!("{path}.reasoning.effort"))),
    }
}

/// `internal_chat_message_metadata_passthrough` (an object: `content_item_kinds`, `create_time`, `turn_id`): the
/// official client keeps it on the items of its history (codex-rs `protocol/src/models.rs`, `ResponseItem`) and
/// sends it to its built-in provider, the ChatGPT backend, while custom providers get it stripped; so the backend
/// takes it. The stored openai/codex sources predate the field, so where it goes is taken from the requests of
/// the released CLI 0.169 (`tests/clients/test_codex_cli.py`, the compaction test): messages, reasoning items,
/// function calls and their outputs, and only there it is accepted.
const METADATA: &str = "internal_chat_message_metadata_passthrough";

fn check_metadata_passthrough(obj: &Map<String, Value>, path: &str) -> Result<(), Reject> {
    match obj.get(METADATA) {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid_type(&format!("{path}.{METADATA}"), "an object")),
    }
}

fn check_message(obj: &Map<String, Value>, path: &str) -> Result<(), Reject> {
    check_keys(obj, &["type", "role", "content", "id", "status", "phase", "end_turn", METADATA], path)?;
    check_metadata_passthrough(obj, path)?;
    let role = req_str(obj, "role", path)?;
    match role {
        "user" | "developer" | "assistant" => {}
        "system" => return Err(rej_p("System messages are not allowed", format!("{path}.role"))),
        other => {
            return Err(invalid_value(&format!("{path}.role"), other, &["user", "developer", "assistant"]));
        }
    }
    let parts = match obj.get("content") {
        Some(Value::String(_)) => return Ok(()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid_type(&format!("{path}.content"), "a string or array")),
        None => return Err(missing(&format!("{path}.content"))),
    };
    for (j, part) in parts.iter().enumerate() {
        let ppath = format!("{path}.content[{j}]");
        let p = part.as_object().ok_or_else(|| invalid_type(&ppath, "an object"))?;
        let ty = req_str(p, "type", &ppath)?;
        let assistant = role == "assistant";
        match ty {
            "output_text" | "refusal" if assistant => {
                if ty == "output_text" {
                    check_keys(p, &["type", "text", "annotations", "logprobs"], &ppath)?;
                    req_str(p, "text", &ppath)?;
                } else {
                    check_keys(p, &["type", "refusal"], &ppath)?;
                    req_str(p, "refusal", &ppath)?;
                }
            }
            "input_text" | "input_image" | "input_file" if !assistant => {
                check_input_part(p, ty, &ppath)?;
            }
            "output_text" | "refusal" | "input_text" | "input_image" | "input_file" => {
                let allowed: &[&str] =
                    if assistant { &["output_text", "refusal"] } else { &["input_text", "input_image", "input_file"] };
                return Err(invalid_value(&format!("{ppath}.type"), ty, allowed));
            }
            other => {
                return Err(invalid_value(
                    &format!("{ppath}.type"),
                    other,
                    &["input_text", "input_image", "input_file", "output_text"],
                ));
            }
        }
    }
    Ok(())
}

fn check_input_part(p: &Map<String, Value>, ty: &str, path: &str) -> Result<(), Reject> {
    match ty {
        "input_text" => {
            check_keys(p, &["type", "text"], path)?;
            req_str(p, "text", path)?;
        }
        "input_image" => {
            check_keys(p, &["type", "image_url", "detail", "file_id"], path)?;
            match (p.get("image_url"), p.get("file_id")) {
                (Some(Value::String(url)), _) => check_image_url(url, path)?,
                (None, Some(Value::String(_))) => {}
                (Some(_), _) => return Err(invalid_type(&format!("{path}.image_url"), "a string")),
                (None, _) => return Err(missing(&format!("{path}.image_url"))),
            }
            if let Some(d) = p.get("detail") {
                match d.as_str() {
                    Some("auto" | "low" | "high" | "original") => {}
                    Some(other) => {
                        return Err(invalid_value(
                            &format!("{path}.detail"),
                            other,
                            &["auto", "low", "high", "original"],
                        ));
                    }
                    None if d.is_null() => {}
                    None => return Err(invalid_type(&format!("{path}.detail"), "a string")),
                }
            }
        }
        _ => {
            check_keys(p, &["type", "file_id", "file_data", "file_url", "filename"], path)?;
            if !["file_id", "file_data", "file_url"].iter().any(|k| p.get(*k).is_some_and(Value::is_string)) {
                return Err(missing(&format!("{path}.file_data")));
            }
        }
    }
    Ok(())
}

fn check_image_url(url: &str, path: &str) -> Result<(), Reject> {
    let ok = if let Some(rest) = url.strip_prefix("data:image/") {
        rest.split_once(";base64,").is_some_and(|(mime, data)| !mime.is_empty() && !data.is_empty())
    } else {
        url.starts_with("https://") || url.starts_with("http://")
    };
    if ok {
        Ok(())
    } else {
        Err(Reject {
            message: format!(
                "Invalid '{path}.image_url'. Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), or a URL."
            ),
            param: Some(format!("{path}.image_url")),
            code: Some("invalid_value"),
        })
    }
}

fn check_tool_output(output: Option<&Value>, path: &str) -> Result<(), Reject> {
    match output {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let ppath = format!("{path}[{j}]");
                let p = part.as_object().ok_or_else(|| invalid_type(&ppath, "an object"))?;
                let ty = req_str(p, "type", &ppath)?;
                match ty {
                    "input_text" | "input_image" | "input_file" => check_input_part(p, ty, &ppath)?,
                    other => {
                        return Err(invalid_value(
                            &format!("{ppath}.type"),
                            other,
                            &["input_text", "input_image", "input_file"],
                        ));
                    }
                }
            }
            Ok(())
        }
        Some(_) => Err(invalid_type(path, "a string or array")),
        None => Err(missing(path)),
    }
}

fn check_reasoning_item(obj: &Map<String, Value>, path: &str, ctx: &Ctx<'_>) -> Result<(), Reject> {
    check_keys(obj, &["type", "id", "summary", "content", "encrypted_content", "status", METADATA], path)?;
    check_metadata_passthrough(obj, path)?;
    // `id` is optional, as on the real backend: the official client never serialises it (codex-rs
    // `Reasoning.id` is `skip_serializing`), and the AI SDK's Responses provider (opencode) replays
    // `{type, encrypted_content, summary}` only. When present it must be a string.
    let id = match obj.get("id") {
        None => "(without id)",
        Some(_) => req_str(obj, "id", path)?,
    };
    let summary = match obj.get("summary") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid_type(&format!("{path}.summary"), "an array")),
        None => return Err(missing(&format!("{path}.summary"))),
    };
    for (j, s) in summary.iter().enumerate() {
        let spath = format!("{path}.summary[{j}]");
        let so = s.as_object().ok_or_else(|| invalid_type(&spath, "an object"))?;
        check_keys(so, &["type", "text"], &spath)?;
        if so.get("type").and_then(Value::as_str) != Some("summary_text") {
            return Err(invalid_value(&format!("{spath}.type"), "?", &["summary_text"]));
        }
        req_str(so, "text", &spath)?;
    }
    match obj.get("encrypted_content") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(sealed)) => match open_reasoning(ctx.secret, sealed, ctx.owner) {
            Ok(_) => Ok(()),
            Err(SealError::Tampered | SealError::WrongOwner) => Err(Reject {
                message: format!(
                    "The encrypted content for item {id} could not be verified. Reason: Encrypted content organization_id did not match the target organization."
                ),
                param: Some(format!("{path}.encrypted_content")),
                code: Some("invalid_encrypted_content"),
            }),
        },
        Some(_) => Err(invalid_type(&format!("{path}.encrypted_content"), "a string")),
    }
}

/// A `compaction` item from `responses/compact` (`compact.rs`): its sealed content, untouched, same owner.
fn check_compaction_item(obj: &Map<String, Value>, path: &str, ctx: &Ctx<'_>) -> Result<(), Reject> {
    check_keys(obj, &["type", "id", "encrypted_content"], path)?;
    let sealed = req_str(obj, "encrypted_content", path)?;
    match open_reasoning(ctx.secret, sealed, ctx.owner) {
        Ok(_) => Ok(()),
        Err(SealError::Tampered | SealError::WrongOwner) => Err(Reject {
            message: "The encrypted content for the compaction item could not be verified.".to_string(),
            param: Some(format!("{path}.encrypted_content")),
            code: Some("invalid_encrypted_content"),
        }),
    }
}
