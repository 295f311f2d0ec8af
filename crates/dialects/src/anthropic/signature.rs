//! The opaque `thinking.signature` (and `redacted_thinking.data`) the gateway hands to Anthropic clients.
//!
//! Under `store:false` the backend only continues a reasoning chain if the next request sends the reasoning item
//! back with its `id` and `encrypted_content` unchanged (spec C6). Anthropic clients echo a thinking block's
//! `signature` verbatim, so the signature carries both:
//!
//! ```text
//! "cgw1." + base64url_nopad(JSON {"id": <reasoning item id>, "ec": <encrypted_content>})
//! ```
//!
//! The `cgw1.` prefix names the format and its version, so a signature from Anthropic itself, from another
//! gateway, or garbage is recognised and dropped rather than forwarded. JSON strings keep both values byte for
//! byte; base64url keeps the whole signature free of characters clients might escape.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use crate::reasoning_ref::ReasoningRef;
use crate::reasoning_ref::{read_json, write_json};

const PREFIX: &str = "cgw1.";

/// Wrap a reasoning item id and its encrypted content into a signature.
pub fn encode_signature(id: &str, encrypted_content: &str) -> String {
    let mut json = Vec::new();
    if !write_json(&mut json, id, encrypted_content) {
        return String::new();
    }
    let mut out = String::with_capacity(PREFIX.len() + json.len() * 4 / 3 + 4);
    out.push_str(PREFIX);
    URL_SAFE_NO_PAD.encode_string(json, &mut out);
    out
}

/// Unwrap a signature this gateway issued; `None` for anything else.
pub fn decode_signature(signature: &str) -> Option<ReasoningRef> {
    let payload = signature.strip_prefix(PREFIX)?;
    read_json(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_byte_for_byte() {
        let ec = "gAAAAABo+/==\u{0}\"quoted\"\\ é";
        let sig = encode_signature("rs_123", ec);
        assert!(sig.starts_with("cgw1."));
        assert!(sig[5..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let back = decode_signature(&sig);
        assert_eq!(back, Some(ReasoningRef { id: "rs_123".into(), encrypted_content: ec.into() }));
    }

    #[test]
    fn foreign_signatures_are_rejected() {
        for s in [
            "",
            "EqQBCkgIARABGAIiQL...",
            "cgw1.",
            "cgw1.!!!",
            "cgw2.eyJpZCI6InJzIiwiZWMiOiJ4In0",
            &format!("cgw1.{}", URL_SAFE_NO_PAD.encode(br#"{"id":"","ec":"x"}"#)),
            &format!("cgw1.{}", URL_SAFE_NO_PAD.encode(br#"{"id":"rs"}"#)),
            "skip_thought_signature_validator",
        ] {
            assert_eq!(decode_signature(s), None, "{s}");
        }
    }
}
