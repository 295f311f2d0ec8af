//! Google Gemini (`generateContent`, `streamGenerateContent`, `countTokens`), as spec/dialects.md §3 describes
//! it: request decoding, the stream encoder, the non-streaming response and the error body.
//!
//! - [`request`]: request types, `decode` (Gemini body + model from the path -> [`crate::UpstreamRequest`]) and
//!   the text `countTokens` measures.
//! - [`encode`]: [`GeminiEncoder`], a pure state machine from upstream [`crate::Event`]s to Gemini stream chunks,
//!   framed as SSE (`alt=sse`) or as one JSON array.
//! - [`render`]: the non-streaming response from [`crate::assemble::Collected`], finish reasons, usage metadata
//!   and the `{"error":{code,message,status,details}}` body.
//! - [`signature`]: the `thoughtSignature` that carries an upstream reasoning item across turns.
//! - [`pairing`]: matching tool calls to tool results when clients rewrite or omit ids (shared with Ollama).
//!
//! Model aliases ([`resolve_model`]) live here because both the gateway (model routes) and `decode` use them.

mod encode;
pub mod pairing;
mod render;
mod request;
mod schema;
mod signature;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::models::{Lineup, ModelRef, Tier};

pub use encode::{Framing, GeminiEncoder};
pub use render::{error_body, error_status, finish_reason, render_response, usage_metadata};
pub use request::{GeminiOptions, GenerateRequest, countable, decode, decode_count_tokens};
pub use schema::openapi_to_json_schema;
pub use signature::{decode_signature, encode_signature};

/// The tier each Gemini family stands for when no alias names it; the catalog names the slug ([`Lineup`]).
/// `flash-lite` is checked before `flash`. Overridden by alias entries keyed `pro`, `flash`, `flash-lite`; any
/// other Gemini id uses the entry keyed `gemini`, else [`OTHER_GEMINI_TIER`].
pub const FAMILY_TIERS: [(&str, Tier); 3] = [("flash-lite", Tier::Small), ("flash", Tier::Next), ("pro", Tier::Top)];

/// The tier of Gemini ids that name no known family.
pub const OTHER_GEMINI_TIER: Tier = Tier::Next;

/// Resolve a client model id (`gemini-2.5-pro`, `models/gemini-3.5-flash-lite`, `gpt-5.4-high`) to the
/// upstream model.
///
/// 1. an exact entry in `aliases` (with or without the `models/` prefix);
/// 2. an id containing `gemini` or `gemma`: the alias entry for its family, else the slug `lineup` (the catalog)
///    gives the family's tier ([`FAMILY_TIERS`]);
/// 3. anything else is parsed as a Codex model id with its suffixes.
///
/// `requested` stays the client's id (without `models/`), echoed back as `modelVersion`.
pub fn resolve_model(requested: &str, aliases: &HashMap<String, String>, lineup: &dyn Lineup) -> ModelRef {
    let id = requested.trim().strip_prefix("models/").unwrap_or(requested.trim());
    let target = aliases.get(id).cloned().or_else(|| {
        let lower = id.to_ascii_lowercase();
        if !lower.contains("gemini") && !lower.contains("gemma") {
            return None;
        }
        let family = FAMILY_TIERS.iter().find(|(family, _)| lower.contains(family));
        Some(match family {
            Some((family, tier)) => aliases.get(*family).cloned().unwrap_or_else(|| lineup.slug(*tier)),
            None => aliases.get("gemini").cloned().unwrap_or_else(|| lineup.slug(OTHER_GEMINI_TIER)),
        })
    });
    let mut model = ModelRef::parse(target.as_deref().unwrap_or(id));
    model.requested = id.to_string();
    model
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    /// The lineup of the fake backend's Plus catalog.
    const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];

    fn r(id: &str, aliases: &[(&str, &str)]) -> (String, String, Option<String>) {
        let aliases: HashMap<String, String> = aliases.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let m = resolve_model(id, &aliases, &LINEUP);
        (m.requested, m.slug, m.effort)
    }

    #[test]
    fn gemini_families() {
        for (id, slug) in [
            ("gemini-2.5-pro", "gpt-5.5"),
            ("gemini-3-pro-preview", "gpt-5.5"),
            ("gemini-2.5-flash", "gpt-5.4"),
            ("gemini-3.5-flash-lite", "gpt-5.4-mini"),
            ("gemini-2.5-flash-lite-preview-06-17", "gpt-5.4-mini"),
            ("gemini-exp-1206", "gpt-5.4"),
            ("Gemini-2.5-Flash", "gpt-5.4"),
        ] {
            assert_eq!(r(id, &[]), (id.to_string(), slug.to_string(), None), "{id}");
        }
        assert_eq!(r("models/gemini-2.5-pro", &[]).0, "gemini-2.5-pro");
    }

    #[test]
    fn aliases_override_and_codex_ids_pass_through() {
        assert_eq!(
            r("gemini-2.5-pro", &[("gemini-2.5-pro", "gpt-5.4-high")]),
            ("gemini-2.5-pro".into(), "gpt-5.4".into(), Some("high".into()))
        );
        assert_eq!(r("gemini-2.5-flash", &[("flash", "gpt-5.3-codex")]).1, "gpt-5.3-codex");
        assert_eq!(r("gemini-2.5-flash-lite", &[("flash", "gpt-5.3-codex")]).1, "gpt-5.4-mini");
        assert_eq!(r("gemini-ultra", &[("gemini", "gpt-5.2")]).1, "gpt-5.2");
        assert_eq!(r("gpt-5.4-high", &[]), ("gpt-5.4-high".into(), "gpt-5.4".into(), Some("high".into())));
        assert_eq!(r("models/gpt-5.4", &[]).1, "gpt-5.4");
    }
}
