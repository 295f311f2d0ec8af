//! The upstream body's bytes: a Responses body written with its top-level members in the official client's order
//! (as Codex CLI 0.171 writes them, which the parity suite compares: `tests/clients/test_parity.py`), once per
//! request, with where each input item lies in it (what chaining a turn on the upstream WebSocket cuts the body
//! by: [`super::chain`]) and how long the members written after `client_metadata` are (the gateway puts
//! `client_metadata` before them at send time).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::members::{self, Place};

/// The length of what [`official_order`] writes after the last member `client_metadata` goes behind: each
/// tail member the body has, as `,"name":value` (0 when it has none).
pub fn tail_len(body: &Map<String, Value>) -> usize {
    members::at(Place::Tail)
        .filter_map(|key| body.get(key).map(|v| (key, v)))
        .map(|(key, v)| key.len() + 4 + serde_json::to_vec(v).map_or(0, |b| b.len()))
        .sum()
}

/// [`official_order`], and the byte range of each `input` item in it.
pub fn official_order_with_items(
    body: &Map<String, Value>,
) -> serde_json::Result<(Vec<u8>, Vec<std::ops::Range<usize>>)> {
    let mut out = Vec::with_capacity(1024);
    let mut spans = Vec::new();
    out.push(b'{');
    let mut member = |out: &mut Vec<u8>, key: &str, value: &Value| -> serde_json::Result<()> {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)?;
        out.push(b':');
        match value {
            Value::Array(items) if key == "input" => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let start = out.len();
                    serde_json::to_writer(&mut *out, item)?;
                    spans.push(start..out.len());
                }
                out.push(b']');
                Ok(())
            }
            other => serde_json::to_writer(&mut *out, other),
        }
    };
    for key in members::at(Place::Front) {
        if let Some(v) = body.get(key) {
            member(&mut out, key, v)?;
        }
    }
    for (k, v) in body.iter().filter(|(k, _)| members::place(k) == Place::Body) {
        member(&mut out, k, v)?;
    }
    for key in members::at(Place::Tail) {
        if let Some(v) = body.get(key) {
            member(&mut out, key, v)?;
        }
    }
    out.push(b'}');
    Ok((out, spans))
}

/// A Responses body serialized with its top-level members in the official client's order (the members inside
/// are written in the order they have: the client's own for what it sent, the official client's for what the
/// gateway writes).
pub fn official_order(body: &Map<String, Value>) -> serde_json::Result<Vec<u8>> {
    struct InOrder<'a>(&'a Map<String, Value>);
    impl Serialize for InOrder<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(Some(self.0.len()))?;
            for key in members::at(Place::Front) {
                if let Some(v) = self.0.get(key) {
                    map.serialize_entry(key, v)?;
                }
            }
            for (k, v) in self.0.iter().filter(|(k, _)| members::place(k) == Place::Body) {
                map.serialize_entry(k, v)?;
            }
            for key in members::at(Place::Tail) {
                if let Some(v) = self.0.get(key) {
                    map.serialize_entry(key, v)?;
                }
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
    fn the_items_spans_cut_the_same_bytes_as_the_plain_writing() {
        let body = serde_json::json!({"model": "m", "input": [{"role": "user", "content": "a\"b"}, {"type": "x"}], "stream": true});
        let map = body.as_object().cloned().unwrap_or_default();
        let (written, spans) = official_order_with_items(&map).unwrap_or_default();
        assert_eq!(written, official_order(&map).unwrap_or_default());
        let items: Vec<Value> =
            spans.iter().map(|r| serde_json::from_slice(&written[r.clone()]).unwrap_or_default()).collect();
        assert_eq!(Value::Array(items), body["input"]);
    }

    #[test]
    fn a_body_is_written_in_the_official_clients_member_order() {
        let body = serde_json::json!({"zz": 1, "stream": true, "input": [], "model": "m", "text": {"b": 1, "a": 2}});
        let written = body.as_object().map(official_order).and_then(Result::ok).unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&written),
            r#"{"model":"m","stream":true,"input":[],"text":{"b":1,"a":2},"zz":1}"#
        );
    }

    /// Codex CLI 0.171 writes `access_programs` and `request_country` after `client_metadata`: they are written
    /// last, and [`tail_len`] measures them exactly, so that `client_metadata` can be put before them.
    #[test]
    fn members_after_client_metadata_are_written_last_and_measured() {
        let body = serde_json::json!({"request_country": "DE", "model": "m", "access_programs": ["p\"1"], "zz": 1});
        let map = body.as_object().cloned().unwrap_or_default();
        let written = String::from_utf8(official_order(&map).unwrap_or_default()).unwrap_or_default();
        assert_eq!(written, r#"{"model":"m","zz":1,"access_programs":["p\"1"],"request_country":"DE"}"#);
        let tail = tail_len(&map);
        assert_eq!(
            &written[written.len() - 1 - tail..written.len() - 1],
            r#","access_programs":["p\"1"],"request_country":"DE""#
        );
        let (with_items, _) = official_order_with_items(&map).unwrap_or_default();
        assert_eq!(String::from_utf8(with_items).unwrap_or_default(), written);
        assert_eq!(tail_len(&Map::new()), 0);
    }
}
