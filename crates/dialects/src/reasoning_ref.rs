//! The reasoning item a dialect's opaque signature carries (spec C6): its `id` and `encrypted_content`, as the
//! JSON `{"id", "ec"}` that the Anthropic and Gemini signatures wrap in their own envelopes. JSON strings keep
//! both values byte for byte.

use serde::{Deserialize, Serialize};

/// The reasoning item a signature refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningRef {
    pub id: String,
    #[serde(rename = "ec")]
    pub encrypted_content: String,
}

/// Append the JSON of a reasoning reference to `out`.
pub fn write_json(out: &mut Vec<u8>, id: &str, encrypted_content: &str) -> bool {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        id: &'a str,
        ec: &'a str,
    }
    serde_json::to_writer(out, &Borrowed { id, ec: encrypted_content }).is_ok()
}

/// Read a reasoning reference back; `None` unless both fields are present and non-empty.
pub fn read_json(json: &[u8]) -> Option<ReasoningRef> {
    let r: ReasoningRef = serde_json::from_slice(json).ok()?;
    (!r.id.is_empty() && !r.encrypted_content.is_empty()).then_some(r)
}
