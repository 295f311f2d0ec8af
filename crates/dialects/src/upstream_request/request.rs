//! The dialect-neutral request every decoder produces: a Responses body plus routing and output hints, and its
//! finalisation (the members the backend insists on, the conversation key, the instructions where the official
//! client puts them).

use serde_json::{Map, Value};

use crate::models::ModelRef;

/// Output limits the backend cannot enforce itself; the gateway emulates them on the stream (spec C5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputLimits {
    /// Cut visible output after this many tokens and report a length stop.
    pub max_output_tokens: Option<u64>,
    /// Cut the text at the first of these sequences (the sequence itself is not emitted).
    pub stop_sequences: Vec<String>,
}

/// What a dialect decoder hands to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// The Responses body. The gateway sets `model`, `store`, `stream`, `prompt_cache_key` before sending.
    pub body: Map<String, Value>,
    pub model: ModelRef,
    /// Whether the client asked for a streamed answer.
    pub stream: bool,
    /// A conversation key the client supplied (prompt_cache_key, session header...). If None the gateway
    /// derives one from the stable prefix of the conversation.
    pub conversation_key: Option<String>,
    pub limits: OutputLimits,
}

impl UpstreamRequest {
    /// Force the fields the backend insists on and fill the model slug and cache key.
    pub fn finalize(&mut self, default_effort: Option<&str>) {
        self.body.insert("model".into(), Value::String(self.model.slug.clone()));
        self.body.insert("store".into(), Value::Bool(false));
        self.body.insert("stream".into(), Value::Bool(true));
        if self.model.fast {
            self.body.insert("service_tier".into(), Value::String("priority".into()));
        }
        if let Some(effort) = self.model.effort.as_deref() {
            let reasoning = self.body.entry("reasoning").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(r) = reasoning {
                r.entry("effort").or_insert_with(|| Value::String(effort.to_string()));
            }
        } else if let (Some(effort), Some(Value::Object(r))) = (default_effort, self.body.get_mut("reasoning")) {
            r.entry("effort").or_insert_with(|| Value::String(effort.to_string()));
        }
        let key = self.conversation_key.clone().unwrap_or_else(|| stable_prefix_key(&self.body));
        self.body.insert("prompt_cache_key".into(), Value::String(key));
        instructions_as_developer_message(&mut self.body);
    }
}

/// The official client (0.169) sends no `instructions`: its base instructions are the input's first item, a
/// developer message. A body's instructions are moved there, so every dialect's request has the official client's
/// shape (an empty one is dropped).
fn instructions_as_developer_message(body: &mut Map<String, Value>) {
    let text = match body.shift_remove("instructions") {
        Some(Value::String(text)) if !text.is_empty() => text,
        Some(_) | None => return,
    };
    let first = developer_message(&text);
    match body.get_mut("input") {
        Some(Value::Array(items)) => items.insert(0, first),
        Some(Value::String(user)) => {
            let user =
                serde_json::json!({"type":"message","role":"user","content":[{"type":"input_text","text":user}]});
            body.insert("input".into(), Value::Array(vec![first, user]));
        }
        Some(_) | None => {
            body.insert("input".into(), Value::Array(vec![first]));
        }
    }
}

/// A system or developer text that comes after the conversation started: a developer message (the backend
/// refuses `system` messages, and `instructions` holds only the leading ones).
pub fn developer_message(text: &str) -> Value {
    serde_json::json!({"type":"message","role":"developer","content":[{"type":"input_text","text":text}]})
}

/// A stable key for a conversation without a client-supplied id: a hash of what does not change between its
/// turns (instructions and the first user message). Two turns of the same chat get the same key.
pub fn stable_prefix_key(body: &Map<String, Value>) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut h = Sha256::new();
    if let Some(Value::String(s)) = body.get("instructions") {
        h.update(s.as_bytes());
    }
    h.update([0u8]);
    if let Some(Value::Array(items)) = body.get("input") {
        let first_user = items.iter().find(|i| i.get("role").and_then(Value::as_str) == Some("user"));
        // Serialised straight into the hash (the same bytes as `to_string`, without the copy).
        if let Some(content) = first_user.and_then(|item| item.get("content")) {
            let _ = serde_json::to_writer(&mut h, content);
        }
    }
    let digest = h.finalize();
    let mut key = String::with_capacity(3 + 32);
    key.push_str("gw-");
    for b in digest.iter().take(16) {
        let _ = write!(key, "{b:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: Value) -> UpstreamRequest {
        UpstreamRequest {
            body: body.as_object().cloned().unwrap_or_default(),
            model: ModelRef::parse("gpt-5.4-high-fast"),
            stream: true,
            conversation_key: None,
            limits: OutputLimits::default(),
        }
    }

    #[test]
    fn finalize_sets_required_fields() {
        let mut r = req(json!({"input": [{"role":"user","content":"hi"}]}));
        r.finalize(None);
        assert_eq!(r.body["model"], "gpt-5.4");
        assert_eq!(r.body["store"], false);
        assert_eq!(r.body["stream"], true);
        assert!(r.body.get("instructions").is_none(), "the official client sends none");
        assert_eq!(r.body["service_tier"], "priority");
        assert_eq!(r.body["reasoning"]["effort"], "high");
        assert!(r.body["prompt_cache_key"].as_str().is_some_and(|k| k.starts_with("gw-")));
    }

    #[test]
    fn instructions_become_the_first_developer_message_as_the_official_client_sends_them() {
        let mut r = req(json!({"instructions": "be brief", "input": [{"role":"user","content":"hi"}]}));
        r.finalize(None);
        assert!(r.body.get("instructions").is_none());
        assert_eq!(r.body["input"][0], developer_message("be brief"));
        assert_eq!(r.body["input"][1]["content"], "hi");
        let mut bare = req(json!({"instructions": "sys", "input": "hello"}));
        bare.finalize(None);
        assert_eq!(bare.body["input"][0], developer_message("sys"));
        assert_eq!(bare.body["input"][1]["content"][0]["text"], "hello");
        let mut empty = req(json!({"instructions": "", "input": [{"role":"user","content":"hi"}]}));
        let key_before = stable_prefix_key(&empty.body);
        empty.finalize(None);
        assert_eq!(empty.body["input"].as_array().map(Vec::len), Some(1));
        assert_eq!(empty.body["prompt_cache_key"], key_before.as_str(), "the key is taken before the move");
    }

    #[test]
    fn prefix_key_is_stable_across_turns() {
        let a = json!({"instructions":"sys","input":[{"role":"user","content":"q1"}]});
        let b = json!({"instructions":"sys","input":[{"role":"user","content":"q1"},{"role":"assistant","content":"a"},{"role":"user","content":"q2"}]});
        let c = json!({"instructions":"sys","input":[{"role":"user","content":"other"}]});
        let k = |v: &Value| stable_prefix_key(v.as_object().unwrap_or(&Map::new()));
        assert_eq!(k(&a), k(&b));
        assert_ne!(k(&a), k(&c));
        // The key is sent upstream as the prompt cache key, so it must not change between gateway versions:
        // sha256(instructions, 0, first user content as JSON), first 16 bytes in hex.
        let content = json!([{"type":"input_text","text":"q1 \"é\""}]);
        let d = json!({"instructions":"sys","input":[{"role":"user","content":content}]});
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"sys\0");
        h.update(content.to_string().as_bytes());
        let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
        assert_eq!(k(&d), format!("gw-{hex}"));
    }
}
