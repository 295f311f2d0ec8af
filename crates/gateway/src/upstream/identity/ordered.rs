//! A JSON object that keeps its members in the order they were written: `serde_json::Map` sorts its keys, and
//! the official client's turn metadata is a header whose member order is part of what it looks like. (The
//! request body's member order is `dialects::upstream_request::order`'s.)

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

    /// The members' names in order.
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// The members but `skip`, as JSON text without the braces (`"a":1,"b":2`).
    pub(super) fn members_but(&self, skip: &str) -> String {
        let members = self.0.iter().filter(|(k, _)| k != skip);
        members
            .map(|(k, v)| format!("{}:{}", serde_json::Value::from(k.as_str()), v.get()))
            .collect::<Vec<_>>()
            .join(",")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_order_and_one_can_be_left_out() {
        let parsed: Ordered =
            serde_json::from_str(r#"{"zeta":1,"alpha":{"b":2,"a":1},"installation_id":"old"}"#).unwrap_or_default();
        assert_eq!(parsed.members_but("installation_id"), r#""zeta":1,"alpha":{"b":2,"a":1}"#);
        let mut read: Ordered = serde_json::from_str(r#"{"b":"x\"y","a":3}"#).unwrap_or_default();
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"b":"x\"y","a":3}"#);
        read.remove("b");
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"a":3}"#);
        assert!(serde_json::from_str::<Ordered>("[1]").is_err());
    }
}
