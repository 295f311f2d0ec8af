//! Responses Lite: how the official client shapes a turn for a model its catalog entry flags
//! `use_responses_lite` (codex-rs `core/src/client.rs` `build_responses_request`, checked against the released
//! CLI 0.171 by the parity suite; docs/protocol.md "Responses Lite"). Its tools leave the top level for a leading
//! `additional_tools` developer item (client-executed tools grouped in namespaces, the plain ones in one named
//! `functions`; hosted tools are not sent: "Responses Lite accepts schemas for client-executed tools, not hosted
//! Responses tools", `core/src/tools/spec_plan.rs`), its base instructions become the developer message after
//! it, tool calls are not parallel, the reasoning context is `all_turns`, images go without their `detail`
//! (`core/src/client_common.rs`), and a header (over the WebSocket a `client_metadata` member instead; not on the
//! handshake) says so.
//!
//! Every caller's body is shaped so here, once per request, before it is serialized ([`super::shape`]; the catalog's
//! flag is the gateway's to read and is handed in); a body already in that shape (an official client that knows
//! the model is lite) is left as it came.

use serde_json::{Map, Value, json};

/// The header the official client adds to a Responses Lite turn over HTTP.
pub const HEADER: &str = "x-openai-internal-codex-responses-lite";
/// Its `client_metadata` member over the WebSocket, where `response.create` has no headers.
pub const WEBSOCKET_MEMBER: &str = "ws_request_header_x_openai_internal_codex_responses_lite";

/// The namespace the official client puts its plain function and custom tools in.
const PLAIN_NAMESPACE: &str = "functions";

/// Shape `body` (a Responses body about to go upstream) as the official client sends a Responses Lite turn.
/// `item_id` gives the `additional_tools` item its id (the official client's is `at_` and a UUIDv7: the caller
/// makes it, this module reads no clock).
pub fn shape(body: &mut Map<String, Value>, item_id: impl FnOnce() -> String) {
    let already = matches!(
        body.get("input").and_then(Value::as_array).and_then(|items| items.first()),
        Some(first) if first.get("type").and_then(Value::as_str) == Some("additional_tools")
    );
    if !already {
        let mut leading = Vec::with_capacity(2);
        if let Some(tools) = lite_tools(body.shift_remove("tools")) {
            leading.push(json!({"type": "additional_tools", "id": item_id(), "role": "developer", "tools": tools}));
        }
        if let Some(Value::String(text)) = body.shift_remove("instructions")
            && !text.is_empty()
        {
            leading.push(json!({
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": text}],
            }));
        }
        match body.get_mut("input") {
            Some(Value::Array(items)) => {
                items.splice(0..0, leading);
            }
            _ => {
                body.insert("input".into(), Value::Array(leading));
            }
        }
    }
    if let Some(Value::Array(items)) = body.get_mut("input") {
        items.iter_mut().for_each(strip_image_details);
    }
    body.insert("parallel_tool_calls".into(), Value::Bool(false));
    match body.get_mut("reasoning") {
        Some(Value::Object(r)) => {
            r.insert("context".into(), Value::String("all_turns".into()));
        }
        _ => {
            body.insert("reasoning".into(), json!({"context": "all_turns"}));
        }
    }
}

/// An input item's images without their `detail`: a message's `input_image` parts and those of a tool output's
/// content.
fn strip_image_details(item: &mut Value) {
    // An item without a type is a message (the Responses API's easy form).
    let parts = match item.get("type").and_then(Value::as_str).unwrap_or("message") {
        "function_call_output" | "custom_tool_call_output" => item.get_mut("output"),
        "message" => item.get_mut("content"),
        _ => None,
    };
    if let Some(Value::Array(parts)) = parts {
        for part in parts {
            if part.get("type").and_then(Value::as_str) == Some("input_image")
                && let Value::Object(part) = part
            {
                part.shift_remove("detail");
            }
        }
    }
}

/// The top-level tools as `additional_tools` carries them: function and custom tools in the `functions`
/// namespace (in their order), namespaces as they are after it. Hosted tools (web search, image generation, tool
/// search, ...) are left out, as the official client leaves them out for such a model. `None` when none is left.
fn lite_tools(tools: Option<Value>) -> Option<Vec<Value>> {
    let Some(Value::Array(tools)) = tools else { return None };
    if tools.is_empty() {
        return None;
    }
    let mut plain = Vec::new();
    let mut rest = Vec::new();
    for tool in tools {
        match tool.get("type").and_then(Value::as_str).unwrap_or_default() {
            "function" | "custom" => plain.push(tool),
            "namespace" => rest.push(tool),
            _ => {}
        }
    }
    if plain.is_empty() && rest.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(rest.len() + 1);
    if !plain.is_empty() {
        out.push(json!({"type": "namespace", "name": PLAIN_NAMESPACE, "description": "", "tools": plain}));
    }
    out.append(&mut rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "at_0195f3c1-5a2b-7c3d-8e4f-0123456789ab";

    fn shape(body: &mut Map<String, Value>) {
        super::shape(body, || ID.to_string());
    }

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn tools_and_instructions_lead_the_input_as_the_official_client_sends_them() {
        let mut b = body(json!({
            "model": "m",
            "instructions": "be brief",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [
                {"type": "function", "name": "f", "parameters": {}},
                {"type": "web_search"},
                {"type": "custom", "name": "apply_patch"},
                {"type": "namespace", "name": "web", "description": "d", "tools": []}
            ],
            "parallel_tool_calls": true,
            "reasoning": {"effort": "high"}
        }));
        shape(&mut b);
        let v = Value::Object(b);
        assert!(v.get("tools").is_none() && v.get("instructions").is_none(), "{v}");
        let at = &v["input"][0];
        assert_eq!((at["type"].as_str(), at["role"].as_str()), (Some("additional_tools"), Some("developer")));
        let namespace = &at["tools"][0];
        assert_eq!((namespace["type"].as_str(), namespace["name"].as_str()), (Some("namespace"), Some("functions")));
        let names: Vec<_> = namespace["tools"].as_array().into_iter().flatten().map(|t| t["name"].clone()).collect();
        assert_eq!(names, [json!("f"), json!("apply_patch")]);
        assert_eq!(at["tools"][1]["name"], "web");
        assert_eq!(at["tools"].as_array().map(Vec::len), Some(2), "the hosted web search is left out: {at}");
        assert_eq!(at["id"], ID, "{at}");
        assert_eq!(v["input"][1]["role"], "developer");
        assert_eq!(v["input"][1]["content"][0]["text"], "be brief");
        assert_eq!(v["input"][2]["role"], "user");
        assert_eq!(v["parallel_tool_calls"], false);
        assert_eq!(v["reasoning"], json!({"effort": "high", "context": "all_turns"}));
    }

    #[test]
    fn images_go_without_their_detail() {
        let image = json!({"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "high"});
        let mut b = body(json!({"input": [
            {"type": "message", "role": "user", "content": [image.clone(), {"type": "input_text", "text": "t"}]},
            {"role": "user", "content": [image.clone()]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [image.clone()]},
            {"type": "custom_tool_call_output", "call_id": "d", "output": [image.clone()]},
            {"type": "function_call_output", "call_id": "e", "output": "text"}
        ]}));
        shape(&mut b);
        let v = Value::Object(b).to_string();
        assert!(!v.contains("detail") && v.matches("input_image").count() == 4, "{v}");
    }

    #[test]
    fn a_body_without_tools_or_instructions_gets_no_empty_items_and_a_lite_body_is_left_as_it_came() {
        let mut b = body(json!({"input": [{"role": "user", "content": "hi"}], "tools": [{"type": "web_search"}]}));
        shape(&mut b);
        let v = Value::Object(b.clone());
        assert_eq!(v["input"].as_array().map(Vec::len), Some(1));
        assert!(v.get("tools").is_none(), "{v}");
        assert_eq!(v["reasoning"], json!({"context": "all_turns"}));
        let lite = json!({"input": [{"type": "additional_tools", "role": "developer", "tools": []}, {"role": "user"}],
            "tools": [{"type": "web_search"}], "parallel_tool_calls": false, "reasoning": {"context": "all_turns"}});
        let mut again = body(lite.clone());
        shape(&mut again);
        assert_eq!(Value::Object(again), lite);
    }
}
