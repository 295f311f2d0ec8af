//! A JSON object that keeps its members in the order they were written: `serde_json::Map` sorts its keys, and
//! the official client's turn metadata is a header whose member order is part of what it looks like. (The
//! request body's member order is `dialects::upstream_request::order`'s.)

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::template::{Hole, ObjectWriter, Template};

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

    /// The object as JSON text with a hole for the installation id as its first member, `installation_id`.
    pub(super) fn with_first_installation(&self) -> Template {
        let mut out =
            ObjectWriter::with_capacity(64 + self.0.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>());
        out.hole_string("installation_id", Hole::Installation);
        for (k, v) in self.0.iter().filter(|(k, _)| k != "installation_id") {
            out.literal(k, v.get());
        }
        out.close()
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
    use crate::upstream::identity::template::Values;

    #[test]
    fn members_keep_their_order_and_a_first_one_goes_in_front() {
        let parsed: Ordered =
            serde_json::from_str(r#"{"zeta":1,"alpha":{"b":2,"a":1},"installation_id":"old"}"#).unwrap_or_default();
        let mut filled = Vec::new();
        parsed.with_first_installation().fill(&mut filled, &Values { installation: "new" }, None);
        assert_eq!(String::from_utf8_lossy(&filled), r#"{"installation_id":"new","zeta":1,"alpha":{"b":2,"a":1}}"#);
        let mut read: Ordered = serde_json::from_str(r#"{"b":"x\"y","a":3}"#).unwrap_or_default();
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"b":"x\"y","a":3}"#);
        read.remove("b");
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), r#"{"a":3}"#);
        assert!(serde_json::from_str::<Ordered>("[1]").is_err());
    }
}
