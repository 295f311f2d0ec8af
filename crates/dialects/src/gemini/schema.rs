//! Gemini's OpenAPI-subset `Schema` (function `parameters`, `responseSchema`) -> JSON Schema for the backend.
//!
//! Gemini writes types in upper case (`OBJECT`, `STRING`), marks optional nulls with `nullable`, may send the
//! int64 bounds (`minItems`...) as strings (proto JSON), and adds `propertyOrdering`. JSON Schema wants lower-case
//! types, `["string","null"]`, numbers, and has no `propertyOrdering`. `parametersJsonSchema` and
//! `responseJsonSchema` are meant to be JSON Schema, but clients fill them from the same typed builders (Gemini
//! CLI's routing classifier sends `"type": "OBJECT"` there), so they go through the same normalisation, which
//! leaves valid JSON Schema unchanged.

use serde_json::{Map, Value};

/// Keys whose values are schemas.
const SCHEMA_KEYS: [&str; 2] = ["items", "not"];
/// Keys whose values are arrays of schemas.
const SCHEMA_LIST_KEYS: [&str; 3] = ["anyOf", "oneOf", "allOf"];
/// Keys whose values are maps of name -> schema.
const SCHEMA_MAP_KEYS: [&str; 3] = ["properties", "$defs", "definitions"];
/// Integer keywords that proto JSON may render as strings.
const INT_KEYS: [&str; 6] = ["minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"];
/// Gemini-only keywords with no JSON Schema meaning.
const DROPPED: [&str; 2] = ["propertyOrdering", "example"];

/// Convert one Gemini schema (recursively).
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    let Value::Object(s) = schema else { return schema.clone() };
    let mut out = Map::new();
    let nullable = s.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    for (key, value) in s {
        let converted = match key.as_str() {
            "nullable" => continue,
            k if DROPPED.contains(&k) => continue,
            "type" => match value.as_str().map(str::to_ascii_lowercase) {
                Some(t) if t == "type_unspecified" || t.is_empty() => continue,
                Some(t) => Value::String(t),
                None => value.clone(),
            },
            k if SCHEMA_KEYS.contains(&k) => openapi_to_json_schema(value),
            k if SCHEMA_LIST_KEYS.contains(&k) => match value {
                Value::Array(list) => Value::Array(list.iter().map(openapi_to_json_schema).collect()),
                other => other.clone(),
            },
            k if SCHEMA_MAP_KEYS.contains(&k) => match value {
                Value::Object(map) => {
                    Value::Object(map.iter().map(|(n, v)| (n.clone(), openapi_to_json_schema(v))).collect())
                }
                other => other.clone(),
            },
            "additionalProperties" if value.is_object() => openapi_to_json_schema(value),
            k if INT_KEYS.contains(&k) => match value {
                Value::String(n) => n.parse::<u64>().map(Value::from).unwrap_or_else(|_| value.clone()),
                other => other.clone(),
            },
            "minimum" | "maximum" => match value {
                Value::String(n) => n
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| value.clone(), Value::Number),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if nullable {
        match out.get("type").cloned() {
            Some(Value::String(t)) if t != "null" => {
                out.insert("type".into(), Value::Array(vec![Value::String(t), Value::String("null".into())]));
            }
            _ => {}
        }
        if let Some(Value::Array(options)) = out.get_mut("enum")
            && !options.contains(&Value::Null)
        {
            options.push(Value::Null);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn converts_upper_case_types_nullable_and_string_bounds() {
        let gemini = json!({
            "type": "OBJECT",
            "properties": {
                "path": {"type": "STRING", "description": "file"},
                "limit": {"type": "INTEGER", "nullable": true, "minimum": "1"},
                "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}, "minItems": "1"},
                "mode": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}
            },
            "required": ["path"],
            "propertyOrdering": ["path", "limit", "tags", "mode"]
        });
        assert_eq!(
            openapi_to_json_schema(&gemini),
            json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "file"},
                    "limit": {"type": ["integer", "null"], "minimum": 1.0},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 1},
                    "mode": {"anyOf": [{"type": "string"}, {"type": "number"}]}
                },
                "required": ["path"]
            })
        );
    }
}
