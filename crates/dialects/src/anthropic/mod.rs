//! Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`): request decoding, the SSE encoder and
//! the non-streaming message, as spec/dialects.md §2 describes them.
//!
//! - `request`: the request types, `decode` (Messages body -> [`crate::UpstreamRequest`]) and the text that
//!   `count_tokens` measures; `messages`: the conversation -> Responses `input` items.
//! - `encode`: [`AnthropicEncoder`], a pure state machine from upstream [`crate::Event`]s to Anthropic SSE frames.
//! - `render`: the non-streaming message built from [`crate::assemble::Collected`], stop reasons, usage and
//!   the error body / status table.
//! - `signature`: the opaque `thinking.signature` that carries an upstream reasoning item across turns.
//!
//! Model aliases ([`resolve_model`]) live here because both the gateway and `decode` use them.

mod encode;
mod messages;
mod render;
mod request;
mod signature;

use std::collections::HashMap;

use crate::models::{Lineup, ModelRef, Tier};

pub use encode::AnthropicEncoder;
pub use messages::{NO_RESULT, TOOL_ERROR_PREFIX};
pub use render::{error_body, error_response, error_status_and_type, render_message, stop_reason, usage_json};
pub use request::{
    AnthropicRequest, Content, Message, OutputConfig, ThinkingConfig, ToolChoice, countable_text, decode,
    decode_for_count, decode_with, translate,
};
pub use signature::{ReasoningRef, decode_signature, encode_signature};

/// What the encoders need to know about the request, besides the model and ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnthropicOptions {
    /// Whether reasoning is shown as `thinking` blocks. True when the client enabled extended thinking
    /// (`thinking.type` `enabled` or `adaptive`); a client that did not ask for thinking gets none.
    pub include_thinking: bool,
}

/// The tier each Claude family stands for when no alias names it (Claude Code uses opus and sonnet for main turns,
/// haiku for background work); the catalog names the slug ([`Lineup`]). Overridden by alias entries keyed
/// `opus`, `sonnet`, `haiku`.
pub const FAMILY_TIERS: [(&str, Tier); 3] = [("opus", Tier::Top), ("sonnet", Tier::Next), ("haiku", Tier::Small)];

/// Resolve a client model id to the upstream model.
///
/// 1. an exact entry in `aliases` (`"claude-opus-4-1" -> "gpt-5.5-high"`);
/// 2. a Claude id (dated or undated, any generation) by family keyword: the `aliases` entry for the family, else
///    the slug `lineup` (the catalog) gives the family's tier ([`FAMILY_TIERS`]);
/// 3. anything else is parsed as a Codex model id with its suffixes (`gpt-5.4-high-fast`).
///
/// Alias targets may carry suffixes too. `requested` always stays the client's id, which is echoed back. Whether
/// the slug exists is the gateway catalog's decision, not this function's.
pub fn resolve_model(requested: &str, aliases: &HashMap<String, String>, lineup: &dyn Lineup) -> ModelRef {
    let target = aliases.get(requested).cloned().or_else(|| {
        let lower = requested.to_ascii_lowercase();
        if !lower.contains("claude") {
            return None;
        }
        let (family, tier) = FAMILY_TIERS.iter().find(|(family, _)| lower.contains(family))?;
        Some(aliases.get(*family).cloned().unwrap_or_else(|| lineup.slug(*tier)))
    });
    match target {
        Some(slug) => {
            let mut model = ModelRef::parse(&slug);
            model.requested = requested.to_string();
            model
        }
        None => ModelRef::parse(requested),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lineup of the fake backend's Plus catalog.
    const LINEUP: [&str; 3] = ["gpt-5.5", "gpt-5.4", "gpt-5.4-mini"];

    fn r(id: &str, aliases: &[(&str, &str)]) -> (String, String, Option<String>) {
        let aliases: HashMap<String, String> = aliases.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let m = resolve_model(id, &aliases, &LINEUP);
        (m.requested, m.slug, m.effort)
    }

    #[test]
    fn claude_families_dated_and_undated() {
        for (id, slug) in [
            ("claude-opus-4-1-20250805", "gpt-5.5"),
            ("claude-opus-4-5", "gpt-5.5"),
            ("claude-3-opus-20240229", "gpt-5.5"),
            ("claude-sonnet-4-5", "gpt-5.4"),
            ("claude-sonnet-4-5-20250929", "gpt-5.4"),
            ("claude-3-7-sonnet-latest", "gpt-5.4"),
            ("claude-3-5-haiku-latest", "gpt-5.4-mini"),
            ("claude-haiku-4-5-20251001", "gpt-5.4-mini"),
            ("Claude-Haiku-4-5", "gpt-5.4-mini"),
        ] {
            assert_eq!(r(id, &[]), (id.to_string(), slug.to_string(), None), "{id}");
        }
    }

    #[test]
    fn aliases_override_and_codex_ids_pass_through() {
        assert_eq!(
            r("claude-opus-4-1", &[("claude-opus-4-1", "gpt-5.4-high")]),
            ("claude-opus-4-1".into(), "gpt-5.4".into(), Some("high".into()))
        );
        assert_eq!(r("claude-sonnet-4-5", &[("sonnet", "gpt-5.3-codex")]).1, "gpt-5.3-codex");
        assert_eq!(r("gpt-5.4-high", &[]), ("gpt-5.4-high".into(), "gpt-5.4".into(), Some("high".into())));
        assert_eq!(r("gpt-5.4", &[("sonnet", "x")]).1, "gpt-5.4");
        // A Claude id without a family is left for the catalog to refuse.
        assert_eq!(r("claude-2.1", &[]).1, "claude-2.1");
    }

    /// The families follow the catalog: a newer lineup moves them without a new gateway.
    #[test]
    fn families_follow_the_lineup() {
        let lineup = ["gpt-6.2-sol", "gpt-6.2-astra", "gpt-6.2-astra"];
        let none = HashMap::new();
        let slug = |id: &str| resolve_model(id, &none, &lineup).slug;
        assert_eq!(slug("claude-opus-4-5"), "gpt-6.2-sol");
        assert_eq!(slug("claude-sonnet-4-5"), "gpt-6.2-astra");
        assert_eq!(slug("claude-haiku-4-5"), "gpt-6.2-astra");
    }
}
