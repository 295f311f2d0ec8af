//! What the fake answers when no scenario is queued, so real CLIs can be driven by their prompt:
//! echo the last user text, report a tool result, obey a `<<fake {...}>>` directive, or produce
//! a JSON document valid against the requested `json_schema`. Pure functions of the request body.

use crate::types::Scenario;
use serde_json::{Map, Value, json};

const DIRECTIVE: &str = "<<fake";

/// The scenario to play for a request with nothing queued.
pub fn default_scenario(body: &Value) -> Scenario {
    let input = body.get("input").and_then(Value::as_array).cloned().unwrap_or_default();
    // Compaction v2 (issue 25): the official client asks for a compaction by ending its input with
    // `{"type":"compaction_trigger"}` and expects exactly one `compaction` item in the answer.
    if input.last().and_then(|i| i.get("type")).and_then(Value::as_str) == Some("compaction_trigger") {
        return Scenario::Custom {
            items: vec![crate::types::ReplyItem::Compaction],
            end: crate::types::End::Completed,
            completed_output: false,
        };
    }
    if let Some(last) = input.last()
        && last.get("type").and_then(Value::as_str) == Some("function_call_output")
    {
        let out = tool_output_text(last.get("output"));
        return Scenario::text(format!("Tool result: {}", first_chars(&out, 200)));
    }
    let (user_text, images) = last_user_message(&input);
    if let Some(start) = user_text.find(DIRECTIVE) {
        let rest = &user_text[start + DIRECTIVE.len()..];
        let inner = rest.rfind(">>").map(|end| &rest[..end]).unwrap_or(rest);
        return match serde_json::from_str::<Scenario>(inner.trim()) {
            Ok(s) => s,
            Err(e) => Scenario::text(format!("fake-codex: bad <<fake ...>> directive: {e}")),
        };
    }
    let format = body.pointer("/text/format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = format.and_then(|f| f.get("schema")).cloned().unwrap_or(Value::Null);
            Scenario::text(schema_instance(&schema).to_string())
        }
        Some("json_object") => Scenario::text(json!({"answer": "ok"}).to_string()),
        _ => {
            let mut text = format!("Hello from fake-codex. You said: {}", first_chars(&user_text, 200));
            if images > 0 {
                text.push_str(&format!(" [saw {images} image(s)]"));
            }
            Scenario::text(text)
        }
    }
}

fn first_chars(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn tool_output_text(output: Option<&Value>) -> String {
    match output {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// Text and image count of the last user message.
fn last_user_message(input: &[Value]) -> (String, usize) {
    let Some(msg) = input.iter().rev().find(|i| i.get("role").and_then(Value::as_str) == Some("user")) else {
        return (String::new(), 0);
    };
    match msg.get("content") {
        Some(Value::String(s)) => (s.clone(), 0),
        Some(Value::Array(parts)) => {
            let mut text = Vec::new();
            let mut images = 0;
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("input_text") => text.push(p.get("text").and_then(Value::as_str).unwrap_or_default()),
                    Some("input_image") => images += 1,
                    _ => {}
                }
            }
            (text.join("\n"), images)
        }
        _ => (String::new(), 0),
    }
}

/// A minimal JSON instance valid against `schema` (a practical subset of JSON Schema).
pub fn schema_instance(schema: &Value) -> Value {
    instance(schema, schema, 0)
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix('#')?;
    if path.is_empty() {
        return Some(root);
    }
    root.pointer(path)
}

fn instance(schema: &Value, root: &Value, depth: usize) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    let Some(s) = schema.as_object() else {
        return if schema == &Value::Bool(false) { Value::Null } else { json!({}) };
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return match resolve(root, r) {
            Some(target) => instance(target, root, depth + 1),
            None => Value::Null,
        };
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = s
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|b| b.get("type") != Some(&json!("null"))).or(a.first()))
        {
            return instance(first, root, depth + 1);
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in all {
            match instance(part, root, depth + 1) {
                Value::Object(o) => merged.extend(o),
                other if all.len() == 1 => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "object",
    };
    match ty {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), instance(v, root, depth + 1));
                }
            }
            if let Some(req) = s.get("required").and_then(Value::as_array) {
                for k in req.iter().filter_map(Value::as_str) {
                    out.entry(k.to_string()).or_insert_with(|| json!("example"));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let n = s.get("minItems").and_then(Value::as_u64).unwrap_or(1).max(1);
            let n = s.get("maxItems").and_then(Value::as_u64).map_or(n, |m| n.min(m));
            let item = s.get("items").map(|i| instance(i, root, depth + 1)).unwrap_or(json!("example"));
            Value::Array((0..n).map(|_| item.clone()).collect())
        }
        "string" => {
            let mut text = "example".to_string();
            if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                while (text.chars().count() as u64) < min {
                    text.push('x');
                }
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                text = text.chars().take(max as usize).collect();
            }
            Value::String(text)
        }
        "integer" => json!(number_in_range(s, true) as i64),
        "number" => json!(number_in_range(s, false)),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

fn number_in_range(s: &Map<String, Value>, integer: bool) -> f64 {
    let step = if integer { 1.0 } else { 0.5 };
    let mut v = 1.0f64;
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        v = v.max(if integer { min.ceil() } else { min });
    }
    if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_f64)
        && v <= min
    {
        v = if integer { min.floor() + 1.0 } else { min + step };
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        v = v.min(if integer { max.floor() } else { max });
    }
    if let Some(max) = s.get("exclusiveMaximum").and_then(Value::as_f64)
        && v >= max
    {
        v = if integer { max.ceil() - 1.0 } else { max - step };
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_schema_with_refs() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "n": {"type": "integer", "minimum": 5, "maximum": 9},
                "kind": {"enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMaximum": 0}]}
            },
            "required": ["name", "n", "kind", "tags", "maybe"],
            "$defs": {"tag": {"type": "object", "properties": {"v": {"type": "boolean"}}, "required": ["v"]}}
        });
        let v = schema_instance(&schema);
        assert_eq!(v, json!({"name": "example", "n": 5, "kind": "a", "tags": [{"v": true}], "maybe": -0.5}));
    }

    #[test]
    fn directive_is_parsed() {
        let body =
            json!({"input": [{"role": "user", "content": "do <<fake {\"kind\":\"text\",\"text\":\"yo\"}>> now"}]});
        assert_eq!(default_scenario(&body), Scenario::text("yo"));
    }
}
