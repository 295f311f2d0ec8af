//! Pairing tool calls with tool results in clients whose ids are optional or rewritten (spec C8).
//!
//! The backend rejects a `function_call_output` without its `function_call` (same `call_id`, same input) and
//! vice versa. Gemini clients may omit `functionCall.id` / `functionResponse.id` (then results pair by name and
//! order) or rewrite them (Gemini CLI); Ollama messages carry only `tool_name`. A [`Pairing`] is fed the calls
//! and results of a conversation in order and hands out the `call_id` for each, so the translated input always
//! pairs up: results that match no call are reported as orphans (the caller refuses them with a 400), and
//! [`Pairing::close_open_calls`] adds a placeholder output for calls that never got a result.

use serde_json::{Value, json};

/// Output sent for a call the client never answered (a cancelled tool run).
pub const MISSING_OUTPUT: &str = "(no result: the tool call was not completed)";

#[derive(Debug)]
struct OpenCall {
    call_id: String,
    name: String,
}

/// Hands out call ids for one conversation. Pure; one per request.
#[derive(Debug, Default)]
pub struct Pairing {
    open: Vec<OpenCall>,
    used: Vec<String>,
    synthetic: u32,
}

impl Pairing {
    pub fn new() -> Self {
        Self::default()
    }

    /// A call the client sent; returns the `call_id` to send upstream. A missing, empty or already used id gets
    /// a synthetic one.
    pub fn call(&mut self, id: Option<&str>, name: &str) -> String {
        let call_id = match id.filter(|i| !i.is_empty() && !self.used.iter().any(|u| u == i)) {
            Some(i) => i.to_string(),
            None => self.fresh(),
        };
        self.used.push(call_id.clone());
        self.open.push(OpenCall { call_id: call_id.clone(), name: name.to_string() });
        call_id
    }

    /// A result the client sent: the `call_id` of the open call it answers, or `None` for an orphan. Matches the
    /// id first, then the earliest open call of the same name, then (no name given) the earliest open call.
    pub fn result(&mut self, id: Option<&str>, name: Option<&str>) -> Option<String> {
        let by_id = id.filter(|i| !i.is_empty()).and_then(|i| self.open.iter().position(|c| c.call_id == i));
        let pos = by_id
            .or_else(|| {
                let name = name.filter(|n| !n.is_empty())?;
                self.open.iter().position(|c| c.name == name)
            })
            .or_else(|| match name.filter(|n| !n.is_empty()) {
                Some(_) => None,
                None => (!self.open.is_empty()).then_some(0),
            })?;
        Some(self.open.remove(pos).call_id)
    }

    /// Insert a placeholder output after each call that got no result, after the run of calls it belongs to.
    pub fn close_open_calls(&mut self, input: &mut Vec<Value>) {
        for open in std::mem::take(&mut self.open) {
            let pos = input
                .iter()
                .position(|i| {
                    i.get("type").and_then(Value::as_str) == Some("function_call")
                        && i.get("call_id").and_then(Value::as_str) == Some(open.call_id.as_str())
                })
                .map(|p| p + 1)
                .unwrap_or(input.len());
            let mut at = pos;
            while let Some(kind) = input.get(at).and_then(|i| i.get("type")).and_then(Value::as_str) {
                if kind != "function_call" && kind != "function_call_output" {
                    break;
                }
                at += 1;
            }
            input.insert(at, json!({"type":"function_call_output","call_id":open.call_id,"output":MISSING_OUTPUT}));
        }
    }

    fn fresh(&mut self) -> String {
        loop {
            self.synthetic += 1;
            let id = format!("call_gw{}", self.synthetic);
            if !self.used.contains(&id) {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_by_id_then_name_then_order() {
        let mut p = Pairing::new();
        assert_eq!(p.call(Some("a"), "f"), "a");
        assert_eq!(p.call(None, "g"), "call_gw1");
        assert_eq!(p.call(None, "f"), "call_gw2");
        assert_eq!(p.result(None, Some("f")), Some("a".into()));
        assert_eq!(p.result(Some("unknown"), Some("f")), Some("call_gw2".into()));
        assert_eq!(p.result(None, Some("f")), None, "no open call named f left");
        assert_eq!(p.result(None, None), Some("call_gw1".into()));
        assert_eq!(p.result(None, None), None);
    }

    #[test]
    fn duplicate_ids_are_made_unique() {
        let mut p = Pairing::new();
        assert_eq!(p.call(Some("x"), "f"), "x");
        p.result(Some("x"), None);
        assert_eq!(p.call(Some("x"), "f"), "call_gw1");
        assert_eq!(p.result(Some("x"), Some("f")), Some("call_gw1".into()));
    }

    #[test]
    fn open_calls_get_placeholders_after_their_group() {
        let mut p = Pairing::new();
        let mut input = vec![
            json!({"type":"function_call","call_id":p.call(Some("a"), "f")}),
            json!({"type":"function_call","call_id":p.call(Some("b"), "f")}),
            json!({"type":"function_call_output","call_id":p.result(Some("b"), None)}),
            json!({"type":"message","role":"user"}),
        ];
        p.close_open_calls(&mut input);
        let kinds: Vec<(&str, &str)> = input
            .iter()
            .map(|i| {
                (i["type"].as_str().unwrap_or_default(), i.get("call_id").and_then(Value::as_str).unwrap_or_default())
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("function_call", "a"),
                ("function_call", "b"),
                ("function_call_output", "b"),
                ("function_call_output", "a"),
                ("message", "")
            ]
        );
    }
}
