//! The digests chaining compares ([`super::chain`]): of a request's settings (the members the official client
//! compares before it chains) and of an item's meaning, not its JSON (a message's role and texts, a call's id, name
//! and arguments, ...), so that a client resending its history in its own dialect is recognised.

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::members::MEMBERS;

/// A 16-byte digest of an item's meaning, or of a request's settings.
pub type Digest = [u8; 16];

/// The digest of a request's settings (the members the official client compares; an input item or a member it
/// does not compare, such as `client_metadata`, may differ).
pub fn settings_digest(body: &Map<String, Value>) -> Digest {
    let mut h = Sha256::new();
    for key in MEMBERS.iter().filter(|m| m.compared).map(|m| m.name) {
        h.update(key.as_bytes());
        h.update([0]);
        if let Some(v) = body.get(key) {
            sorted_json(&mut h, v);
        }
        h.update([0xff]);
    }
    finish(h)
}

/// The digest of an item's meaning, for an input item or an output item alike.
pub fn item_digest(item: &Value) -> Digest {
    let mut h = Sha256::new();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            h.update(b"message\0");
            h.update(item.get("role").and_then(Value::as_str).unwrap_or_default().as_bytes());
            match item.get("content") {
                Some(Value::String(text)) => part(&mut h, "text", text),
                Some(Value::Array(parts)) => {
                    for p in parts {
                        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                        match p.get("type").and_then(Value::as_str).unwrap_or_default() {
                            "input_text" | "output_text" | "text" => part(&mut h, "text", text("text")),
                            "refusal" => part(&mut h, "refusal", text("refusal")),
                            "input_image" => part(&mut h, "image", text("image_url")),
                            other => {
                                part(&mut h, other, "");
                                sorted_json(&mut h, &without_ids(p));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        "function_call" | "custom_tool_call" => {
            h.update(kind.as_bytes());
            for key in ["call_id", "name", "arguments", "input"] {
                h.update([0]);
                h.update(item.get(key).and_then(Value::as_str).unwrap_or_default().as_bytes());
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            h.update(kind.as_bytes());
            h.update([0]);
            h.update(item.get("call_id").and_then(Value::as_str).unwrap_or_default().as_bytes());
            h.update([0]);
            sorted_json(&mut h, item.get("output").unwrap_or(&Value::Null));
        }
        "reasoning" => {
            h.update(b"reasoning\0");
            match item.get("encrypted_content").and_then(Value::as_str) {
                Some(sealed) => h.update(sealed.as_bytes()),
                None => {
                    sorted_json(&mut h, item.get("summary").unwrap_or(&Value::Null));
                }
            }
        }
        other => {
            h.update(other.as_bytes());
            h.update([0]);
            sorted_json(&mut h, &without_ids(item));
        }
    }
    finish(h)
}

fn part(h: &mut Sha256, kind: &str, text: &str) {
    h.update([1]);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
}

/// An item without the members that differ between what the backend sent and what a client resends of it.
fn without_ids(item: &Value) -> Value {
    match item {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "status" | "internal_chat_message_metadata_passthrough"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn finish(h: Sha256) -> Digest {
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// A value written into the hash as compact JSON with every object's members sorted, whatever order they arrived
/// in (maps keep their members' order, so that bodies go upstream as written): the same value in another member
/// order is the same meaning. The bytes are those `serde_json` wrote with sorted maps.
fn sorted_json(h: &mut Sha256, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            h.update(b"{");
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                scalar(h, k);
                h.update(b":");
                sorted_json(h, v);
            }
            h.update(b"}");
        }
        Value::Array(items) => {
            h.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                sorted_json(h, item);
            }
            h.update(b"]");
        }
        other => scalar(h, other),
    }
}

fn scalar<T: serde::Serialize + ?Sized>(h: &mut Sha256, v: &T) {
    /// `serde_json` writes into the hash directly.
    struct HashWriter<'a>(&'a mut Sha256);
    impl std::io::Write for HashWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let _ = serde_json::to_writer(&mut HashWriter(h), v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn digests_are_of_meaning_not_of_json() {
        let a = json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]});
        let b =
            json!({"role": "user", "content": "x", "id": "msg_9", "internal_chat_message_metadata_passthrough": {}});
        assert_eq!(item_digest(&a), item_digest(&b));
        assert_ne!(item_digest(&a), item_digest(&json!({"role": "assistant", "content": "x"})));
        let call = json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"});
        let with_id = json!({"type": "function_call", "id": "fc_1", "status": "completed", "call_id": "c", "name": "f", "arguments": "{}"});
        assert_eq!(item_digest(&call), item_digest(&with_id));
        let s1 = settings_digest(&object(json!({"model": "m", "client_metadata": {"a": 1}})));
        let s2 = settings_digest(&object(json!({"model": "m", "client_metadata": {"a": 2}, "input": [1]})));
        assert_eq!(s1, s2, "members the official client does not compare do not count");
    }

    /// Maps keep their members in the order they arrived: the same value in another order digests the same, and
    /// as the sorted JSON it stands for.
    #[test]
    fn member_order_does_not_change_a_digest() {
        let a = json!({"type": "web_search_call", "action": {"type": "search", "query": "q"}, "status": "x"});
        let b = json!({"action": {"query": "q", "type": "search"}, "type": "web_search_call"});
        assert_eq!(item_digest(&a), item_digest(&b));
        let t1 = object(
            json!({"model": "m", "tools": [{"type": "function", "name": "f", "parameters": {"b": 1, "a": [2]}}]}),
        );
        let t2 = object(
            json!({"tools": [{"parameters": {"a": [2], "b": 1}, "name": "f", "type": "function"}], "model": "m"}),
        );
        assert_eq!(settings_digest(&t1), settings_digest(&t2));
        let mut h = Sha256::new();
        sorted_json(&mut h, &json!({"b": {"d": "\"", "c": null}, "a": [1.5, true]}));
        let mut plain = Sha256::new();
        plain.update(br#"{"a":[1.5,true],"b":{"c":null,"d":"\""}}"#);
        assert_eq!(finish(h), finish(plain));
    }
}
