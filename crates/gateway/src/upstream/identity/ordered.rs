//! A JSON object that keeps its members in the order they were written: `serde_json::Map` sorts its keys, and
//! the official client's turn metadata is a header whose member order is part of what it looks like.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// Members in order, values kept as their JSON text.
#[derive(Debug, Clone, Default)]
pub struct Ordered(Vec<(String, Box<RawValue>)>);

impl Ordered {
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// The object as JSON text, with `key: value` as its first member.
    pub fn with_first(&self, key: &str, value: &str) -> String {
        let mut out =
            String::with_capacity(64 + self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>());
        out.push('{');
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
        for (k, v) in self.0.iter().filter(|(k, _)| k != key) {
            out.push(',');
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
        out
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push((k, v));
                }
                Ok(Ordered(members))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The top-level members of a Responses body in the order the official client writes them (its request struct's
/// field order, codex-rs `codex-api/src/common.rs`); members it does not write follow, sorted.
const BODY_ORDER: &[&str] = &[
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
];

/// A Responses body serialized with its top-level members in the official client's order (the members inside
/// are written as `serde_json` keeps them: sorted).
pub fn official_order(body: &serde_json::Map<String, serde_json::Value>) -> serde_json::Result<Vec<u8>> {
    struct InOrder<'a>(&'a serde_json::Map<String, serde_json::Value>);
    impl Serialize for InOrder<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for key in BODY_ORDER {
                if let Some(v) = self.0.get(*key) {
                    map.serialize_entry(key, v)?;
                }
            }
            for (k, v) in self.0.iter().filter(|(k, _)| !BODY_ORDER.contains(&k.as_str())) {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
    serde_json::to_vec(&InOrder(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_written_in_the_official_clients_member_order() {
        let body = serde_json::json!({"zz": 1, "stream": true, "input": [], "model": "m", "text": {"b": 1, "a": 2}});
        let written = body.as_object().map(official_order).and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&written),
            r#"{"model":"m","input":[],"stream":true,"text":{"a":2,"b":1},"zz":1}"#
        );
    }

    #[test]
    fn members_keep_their_order_and_a_first_one_goes_in_front() {
        let parsed: Ordered =
            serde_json::from_str(r#"{"zeta":1,"alpha":{"b":2,"a":1},"installation_id":"old"}"#).unwrap_or_default();
        assert_eq!(
            parsed.with_first("installation_id", "new"),
            r#"{"installation_id":"new","zeta":1,"alpha":{"b":2,"a":1}}"#
        );
        let mut read: Ordered = serde_json::from_str(r#"{"b":"x\"y","a":3}"#).unwrap_or_default();
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"b":"x\"y","a":3}"#);
        read.remove("b");
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"a":3}"#);
        assert!(serde_json::from_str::<Ordered>("[1]").is_err());
    }
}
