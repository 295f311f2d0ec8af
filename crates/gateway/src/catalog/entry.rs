//! One model of the upstream catalog (`GET /models?client_version=`), typed: parsed once when an account's
//! catalog is fetched (`accounts::upkeep`), then read by the gateway-wide catalog (`super`), plan routing
//! (`Account::serves`) and every dialect's model listing (`server/models.rs`, `gemini.rs`, `ollama.rs`).
//!
//! Field names follow the backend's JSON and the official client's `ModelInfo` (codex-rs
//! `protocol/src/openai_models.rs`). Unknown fields are ignored, missing or `null` optional ones take their
//! defaults. The entry's JSON is also kept as received, for the one place that must pass it on unchanged: the
//! Codex catalog under `models` in `GET /v1/models`, which the Codex CLI reads with its own, larger type
//! (base instructions, truncation policy, tool types... that this gateway has no use for).

use std::sync::Arc;

use dialects::models::EffortSet;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tracing::warn;

/// The context window assumed when an entry gives none (the Codex models' window mid-2026): a fallback for a
/// missing field, never used for a model whose entry gives its own.
pub const DEFAULT_CONTEXT_WINDOW: u64 = 272_000;

/// One model the upstream serves to an account's plan.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ModelEntry {
    /// The id requests name (`gpt-5.4`); never empty.
    pub slug: String,
    pub display_name: Option<String>,
    pub context_window: Option<u64>,
    /// The efforts the model takes, as the backend spells them (it has added efforts before, so not an enum).
    #[serde(default, deserialize_with = "null_as_default")]
    pub supported_reasoning_levels: Vec<ReasoningLevel>,
    pub default_reasoning_level: Option<String>,
    /// Service tiers beyond the default (`priority`: the Fast tier).
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_tiers: Vec<ServiceTier>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub visibility: Visibility,
    #[serde(default, deserialize_with = "null_as_default")]
    pub supported_in_api: bool,
    /// Lower is listed first.
    pub priority: Option<i64>,
    /// The model takes `reasoning.context` (the GPT-5.6 family). The field name is the one fake-codex and the
    /// parameter policy use; it is not yet confirmed against a real catalog answer, so a missing field reads
    /// as "no", and the parameter is then dropped rather than refused upstream.
    #[serde(default, deserialize_with = "null_as_default")]
    pub supports_reasoning_context: bool,
    /// The official client sends this model's turns as Responses Lite (its tools and base instructions as leading
    /// input items, a header saying so; docs/protocol.md "Responses Lite").
    #[serde(default, deserialize_with = "null_as_default")]
    pub use_responses_lite: bool,
    /// The model takes `text.verbosity` (`support_verbosity`); with it the official client sends
    /// `default_verbosity` when its user set none (codex-rs `ModelInfo`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub support_verbosity: bool,
    pub default_verbosity: Option<String>,
    /// The model takes a `configuration_update` input item that changes the reasoning effort from its place in
    /// the conversation on (Codex CLI 0.169+ sends one instead of changing the request's effort, which keeps the
    /// prompt's cached prefix; docs/protocol.md "Efforts").
    #[serde(default, deserialize_with = "null_as_default")]
    pub supports_reasoning_effort_updates: bool,
    /// The oldest Codex client the backend serves this model to (newer models require recent clients).
    pub minimal_client_version: Option<ClientVersion>,
    /// What the model reads (`text`, `image`); empty when the entry does not say.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_modalities: Vec<String>,
    /// The entry as received (see the module doc).
    #[serde(skip)]
    raw: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReasoningLevel {
    pub effort: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceTier {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// Whether a model shows in pickers (codex-rs `ModelVisibility`). The gateway lists every model it can serve
/// whatever this says; it is read for clients that want to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    #[default]
    List,
    Hide,
    None,
    /// A value this gateway does not know yet (not a reason to lose the entry).
    #[serde(other)]
    Other,
}

/// A Codex client version, `"0.144.0"` on the wire (older payloads: `[0, 144, 0]`); a pre-release or build
/// suffix (`0.144.0-alpha.1`) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "VersionWire")]
pub struct ClientVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ClientVersion {
    /// `0.169.0` (a `-suffix` or `+suffix` ignored); `None` when it is not three numbers.
    pub fn parse(text: &str) -> Option<ClientVersion> {
        ClientVersion::try_from(VersionWire::Text(text.to_string())).ok()
    }
}

impl std::fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VersionWire {
    Text(String),
    Triple(u32, u32, u32),
}

impl TryFrom<VersionWire> for ClientVersion {
    type Error = String;

    fn try_from(wire: VersionWire) -> Result<ClientVersion, String> {
        let text = match wire {
            VersionWire::Triple(major, minor, patch) => return Ok(ClientVersion { major, minor, patch }),
            VersionWire::Text(text) => text,
        };
        let core = text.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(ClientVersion { major, minor, patch }),
            _ => Err(format!("not a client version: {text:?}")),
        }
    }
}

/// `null` reads as the default, like a missing field (the backend writes `null` for fields it leaves empty).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

impl ModelEntry {
    /// Parse one catalog entry, keeping its JSON. `None` (logged) for an entry without a slug: nothing could
    /// ask for it. An entry whose other fields do not parse keeps its slug, so the model stays routable as
    /// the upstream listed it, and takes the defaults for the rest (logged with the field that failed).
    pub fn from_json(raw: Value) -> Option<ModelEntry> {
        match serde_path_to_error::deserialize::<_, ModelEntry>(&raw) {
            Ok(entry) if entry.slug.is_empty() => {
                warn!("model catalog entry with an empty slug skipped");
                None
            }
            Ok(entry) => Some(ModelEntry { raw, ..entry }),
            Err(err) => match raw.get("slug").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                Some(slug) => {
                    warn!(slug, "model catalog entry not understood ({err}); the model is listed with default facts");
                    Some(ModelEntry::bare(slug.to_string(), raw))
                }
                None => {
                    warn!("model catalog entry skipped: {err}");
                    None
                }
            },
        }
    }

    /// A model configured for an API-key or relay account (`models = [...]`): the slug and nothing else known.
    pub fn configured(slug: &str) -> ModelEntry {
        let raw = json!({"slug": slug, "display_name": slug, "visibility": "list", "supported_in_api": true});
        ModelEntry {
            display_name: Some(slug.to_string()),
            supported_in_api: true,
            ..ModelEntry::bare(slug.to_string(), raw)
        }
    }

    fn bare(slug: String, raw: Value) -> ModelEntry {
        ModelEntry { slug, raw, ..ModelEntry::default() }
    }

    /// The efforts the entry lists that the gateway knows (empty: it lists none).
    pub fn efforts(&self) -> EffortSet {
        EffortSet::from_words(self.supported_reasoning_levels.iter().map(|l| l.effort.as_str()))
    }

    /// Whether the model reasons at all, as far as the entry says (an entry that lists no efforts says nothing,
    /// and the Codex models reason).
    pub fn thinks(&self) -> bool {
        self.supported_reasoning_levels.is_empty() || !self.efforts().is_empty()
    }

    /// Whether the model reads images, as far as the entry says (an entry without modalities says nothing, and
    /// the Codex models read images).
    pub fn sees_images(&self) -> bool {
        self.input_modalities.is_empty() || self.input_modalities.iter().any(|m| m == "image")
    }

    /// The entry as the upstream sent it (for the Codex catalog passthrough only).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    pub fn display_name_or_slug(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.slug)
    }

    pub fn context_window_or_default(&self) -> u64 {
        self.context_window.unwrap_or(DEFAULT_CONTEXT_WINDOW)
    }
}

/// The `/models` answer: `{"models": [...]}`. Entries are parsed one by one ([`ModelsAnswer::into_entries`]) so
/// that one odd entry does not cost the plan's other models; an answer without a `models` array is a failed
/// fetch.
#[derive(Debug, Deserialize)]
pub struct ModelsAnswer {
    pub models: Vec<Value>,
}

impl ModelsAnswer {
    /// The parsed entries, in the upstream's order; malformed ones reduced or skipped ([`ModelEntry::from_json`]).
    pub fn into_entries(self) -> Vec<Arc<ModelEntry>> {
        self.models.into_iter().filter_map(ModelEntry::from_json).map(Arc::new).collect()
    }
}

pub fn find<'a>(entries: &'a [Arc<ModelEntry>], slug: &str) -> Option<&'a Arc<ModelEntry>> {
    entries.iter().find(|e| e.slug == slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry shaped like the real backend's (2026): many fields this gateway does not read, some `null`, an
    /// effort the gateway does not know, a minimum client version.
    fn backend_shaped() -> Value {
        json!({
            "slug": "gpt-5.6-luna",
            "display_name": "GPT-5.6 Luna",
            "description": "Frontier reasoning",
            "default_reasoning_level": "medium",
            "supported_reasoning_levels": [
                {"effort": "low", "description": "Fast"},
                {"effort": "medium", "description": "Balanced"},
                {"effort": "max", "description": "Deepest"}
            ],
            "shell_type": "shell_command",
            "visibility": "list",
            "minimal_client_version": "0.144.0",
            "supported_in_api": true,
            "availability_nux": null,
            "upgrade": null,
            "priority": 2,
            "base_instructions": "You are Codex.",
            "model_messages": {"instructions_template": null},
            "supports_reasoning_summaries": true,
            "truncation_policy": {"mode": "tokens", "limit": 10000},
            "supports_parallel_tool_calls": true,
            "context_window": 400000,
            "effective_context_window_percent": 95,
            "experimental_supported_tools": [],
            "input_modalities": ["text", "image"],
            "additional_speed_tiers": [],
            "service_tiers": [{"id": "priority", "name": "Fast", "description": "1.5x speed"}],
            "default_service_tier": null,
            "supports_reasoning_context": true,
            "prefer_websockets": true
        })
    }

    #[test]
    fn a_backend_shaped_entry_is_read_and_kept_as_received() {
        let raw = backend_shaped();
        let e = ModelEntry::from_json(raw.clone()).unwrap_or_else(|| panic!("parsed"));
        assert_eq!(e.slug, "gpt-5.6-luna");
        assert_eq!(e.display_name_or_slug(), "GPT-5.6 Luna");
        assert_eq!(e.context_window_or_default(), 400_000);
        let efforts: Vec<&str> = e.supported_reasoning_levels.iter().map(|l| l.effort.as_str()).collect();
        assert_eq!(efforts, ["low", "medium", "max"]);
        assert_eq!(e.default_reasoning_level.as_deref(), Some("medium"));
        assert_eq!(e.service_tiers, [ServiceTier { id: "priority".into(), name: "Fast".into() }]);
        assert_eq!(e.visibility, Visibility::List);
        assert!(e.supported_in_api);
        assert_eq!(e.priority, Some(2));
        assert!(e.supports_reasoning_context);
        assert_eq!(e.minimal_client_version, Some(ClientVersion { major: 0, minor: 144, patch: 0 }));
        assert_eq!(e.raw(), &raw, "passed on unchanged, unknown fields included");
    }

    #[test]
    fn missing_and_null_optional_fields_take_their_defaults() {
        let e = ModelEntry::from_json(json!({
            "slug": "gpt-5.2",
            "service_tiers": null,
            "supported_reasoning_levels": null,
            "visibility": null,
            "supports_reasoning_context": null,
            "minimal_client_version": null
        }))
        .unwrap_or_else(|| panic!("parsed"));
        assert_eq!(e.display_name_or_slug(), "gpt-5.2");
        assert_eq!(e.context_window_or_default(), DEFAULT_CONTEXT_WINDOW);
        assert!(e.supported_reasoning_levels.is_empty() && e.service_tiers.is_empty());
        assert_eq!((e.visibility, e.supported_in_api, e.supports_reasoning_context), (Visibility::List, false, false));
        assert_eq!((e.priority, e.minimal_client_version, e.default_reasoning_level), (None, None, None));
    }

    #[test]
    fn unknown_visibility_and_version_forms() {
        let e = |extra: Value| {
            let mut v = json!({"slug": "m"});
            if let (Some(o), Value::Object(x)) = (v.as_object_mut(), extra) {
                o.extend(x);
            }
            ModelEntry::from_json(v).unwrap_or_else(|| panic!("parsed"))
        };
        assert_eq!(e(json!({"visibility": "hide"})).visibility, Visibility::Hide);
        assert_eq!(e(json!({"visibility": "none"})).visibility, Visibility::None);
        assert_eq!(e(json!({"visibility": "beta_only"})).visibility, Visibility::Other);
        let v = |x: Value| e(json!({"minimal_client_version": x})).minimal_client_version;
        assert_eq!(v(json!([0, 62, 1])), Some(ClientVersion { major: 0, minor: 62, patch: 1 }));
        assert_eq!(v(json!("0.153.0-alpha.2")), Some(ClientVersion { major: 0, minor: 153, patch: 0 }));
        assert!(ClientVersion { major: 0, minor: 153, patch: 0 } > ClientVersion { major: 0, minor: 144, patch: 9 });
    }

    /// A wrong type in a field the gateway reads does not make the model unknown: the upstream listed it, so it
    /// stays routable (as before entries were typed), with default facts.
    #[test]
    fn an_entry_with_a_malformed_field_keeps_its_slug() {
        for bad in [
            json!({"slug": "gpt-5.4", "display_name": "GPT-5.4", "context_window": "big"}),
            json!({"slug": "gpt-5.4", "display_name": "GPT-5.4", "minimal_client_version": "soon"}),
            json!({"slug": "gpt-5.4", "display_name": "GPT-5.4", "service_tiers": [{"name": "no id"}]}),
        ] {
            let e = ModelEntry::from_json(bad.clone()).unwrap_or_else(|| panic!("kept: {bad}"));
            assert_eq!(e.slug, "gpt-5.4");
            assert_eq!(e.context_window_or_default(), DEFAULT_CONTEXT_WINDOW);
            assert_eq!(e.raw(), &bad);
        }
    }

    #[test]
    fn entries_without_a_slug_are_skipped_not_the_catalog() {
        let answer: ModelsAnswer = serde_json::from_value(json!({"models": [
            {"display_name": "no slug"},
            {"slug": ""},
            {"slug": 5},
            "not an object",
            {"slug": "gpt-5.4", "context_window": 272000},
            backend_shaped()
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let slugs: Vec<String> = answer.into_entries().iter().map(|e| e.slug.clone()).collect();
        assert_eq!(slugs, ["gpt-5.4", "gpt-5.6-luna"]);
    }

    #[test]
    fn an_answer_without_models_is_a_failed_fetch() {
        for body in ["{}", r#"{"models": null}"#, r#"{"models": {}}"#, "[]", "<html>"] {
            assert!(serde_json::from_str::<ModelsAnswer>(body).is_err(), "{body}");
        }
    }

    /// What the tests' upstream serves parses to the facts it was built from.
    #[test]
    fn fake_codex_catalog() {
        let slugs = fake_codex::catalog::plan_models("pro");
        let answer: ModelsAnswer =
            serde_json::from_value(fake_codex::catalog::codex_catalog(&slugs)).unwrap_or_else(|e| panic!("{e}"));
        let entries = answer.into_entries();
        assert_eq!(entries.iter().map(|e| e.slug.clone()).collect::<Vec<_>>(), slugs);
        for e in &entries {
            let facts = fake_codex::catalog::info(&e.slug);
            assert_eq!(e.display_name.as_deref(), Some(facts.display_name));
            assert_eq!(e.context_window, Some(facts.context_window));
            assert_eq!(e.priority, Some(facts.priority));
            assert_eq!(e.supports_reasoning_context, facts.reasoning_context);
            assert_eq!(e.service_tiers.iter().any(|t| t.id == "priority"), facts.priority_tier);
            assert_eq!(e.default_reasoning_level.as_deref(), Some(facts.default_effort));
            let efforts: Vec<&str> = e.efforts().iter().map(dialects::models::Effort::as_str).collect();
            assert_eq!(efforts, facts.efforts.iter().map(|(e, _)| *e).collect::<Vec<_>>());
            assert_eq!(e.raw(), &fake_codex::catalog::codex_entry(&e.slug));
        }
        // The 0.171 catalog's GPT-6.2 models: efforts low to ultra, default low, Fast, their own windows.
        let sol = find(&entries, "gpt-6.2-sol").unwrap_or_else(|| panic!("listed"));
        assert_eq!(sol.efforts().top(), Some(dialects::models::Effort::Ultra));
        assert_eq!(sol.default_reasoning_level.as_deref(), Some("low"));
        assert_eq!(sol.context_window_or_default(), 500_000);
        assert_eq!(sol.minimal_client_version, ClientVersion::parse("0.166.0"));
        assert!(sol.service_tiers.iter().any(|t| t.id == "priority"));
        let astra = find(&entries, "gpt-6.2-astra").unwrap_or_else(|| panic!("listed"));
        assert_eq!(astra.context_window_or_default(), 272_000);
        let mini = find(&entries, "gpt-5.4-mini").unwrap_or_else(|| panic!("listed"));
        assert_eq!(mini.context_window_or_default(), 128_000);
        assert!(find(&entries, "gpt-5.6-sol").is_some_and(|e| e.supports_reasoning_context));
        assert!(find(&entries, "gpt-4").is_none());
    }

    #[test]
    fn configured_entry() {
        let e = ModelEntry::configured("my-model");
        assert_eq!((e.slug.as_str(), e.display_name_or_slug(), e.supported_in_api), ("my-model", "my-model", true));
        assert_eq!(
            e.raw(),
            &json!({"slug": "my-model", "display_name": "my-model", "visibility": "list", "supported_in_api": true})
        );
        assert_eq!(ModelEntry::from_json(e.raw().clone()), Some(e));
    }
}
