//! The `thoughtSignature` the gateway hands to Gemini clients.
//!
//! Under `store:false` the backend continues a reasoning chain only if the next request sends the reasoning item
//! back with its `id` and `encrypted_content` unchanged (spec C6). Gemini clients echo `thoughtSignature` on the
//! part that carried it, so the signature carries both:
//!
//! ```text
//! base64( "cgw1." + JSON {"id": <reasoning item id>, "ec": <encrypted_content>} )
//! ```
//!
//! Unlike the Anthropic signature the whole value is base64: `thoughtSignature` is a `bytes` field, and
//! python-genai decodes it on receipt and re-encodes it (URL-safe alphabet) when sending it back, so anything
//! but valid base64 makes the SDK fail, and the alphabet may change on the way back. The decoder accepts both
//! alphabets, with or without padding. The `cgw1.` prefix inside names the format and its version, so Google's
//! own signatures, other gateways' and Gemini CLI's `skip_thought_signature_validator` are recognised and
//! dropped rather than forwarded.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

pub use crate::reasoning_ref::ReasoningRef;
use crate::reasoning_ref::{read_json, write_json};

const MAGIC: &[u8] = b"cgw1.";

/// Wrap a reasoning item id and its encrypted content into a `thoughtSignature`.
pub fn encode_signature(id: &str, encrypted_content: &str) -> String {
    let mut bytes = MAGIC.to_vec();
    if !write_json(&mut bytes, id, encrypted_content) {
        return String::new();
    }
    STANDARD.encode(bytes)
}

/// Unwrap a signature this gateway issued; `None` for anything else.
pub fn decode_signature(signature: &str) -> Option<ReasoningRef> {
    let normalized: String = signature
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let bytes = STANDARD_NO_PAD.decode(normalized).ok()?;
    read_json(bytes.strip_prefix(MAGIC)?)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE;

    use super::*;

    #[test]
    fn round_trips_byte_for_byte_in_either_alphabet() {
        let ec = "gAAAAABo+/==\u{0}\"quoted\"\\ é>>>???";
        let sig = encode_signature("rs_123", ec);
        let want = Some(ReasoningRef { id: "rs_123".into(), encrypted_content: ec.into() });
        assert_eq!(decode_signature(&sig), want);
        // What python-genai sends back after decoding and re-encoding the bytes.
        let bytes = STANDARD.decode(&sig).unwrap_or_default();
        assert_eq!(decode_signature(&URL_SAFE.encode(&bytes)), want);
        assert_eq!(decode_signature(sig.trim_end_matches('=')), want);
    }

    #[test]
    fn foreign_signatures_are_rejected() {
        for s in [
            String::new(),
            "skip_thought_signature_validator".to_string(),
            "CiQBjz1rX6nN3m8Vd2r8wZ==".to_string(),
            "cgw1.eyJpZCI6InJzIiwiZWMiOiJ4In0".to_string(),
            STANDARD.encode(br#"cgw1.{"id":"","ec":"x"}"#),
            STANDARD.encode(br#"cgw1.{"id":"rs"}"#),
            STANDARD.encode(br#"cgw2.{"id":"rs","ec":"x"}"#),
        ] {
            assert_eq!(decode_signature(&s), None, "{s}");
        }
    }
}
