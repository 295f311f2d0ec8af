//! The model catalog per plan (`GET /backend-api/codex/models`, `GET /v1/models`) and the
//! shapes of the quota answer (`GET /backend-api/wham/usage`). Pure data builders; the handlers
//! that serve them are in `server.rs`.

use serde_json::{Value, json};

/// Static facts about one model the fake knows.
pub struct ModelInfo {
    pub slug: &'static str,
    pub display_name: &'static str,
    pub context_window: u64,
    pub priority_tier: bool,
    pub priority: i64,
    /// Accepts `reasoning.context` (catalog field `supports_reasoning_context`; the GPT-5.6 family).
    pub reasoning_context: bool,
    /// Served only to the pro plan (and API keys), like a model still rolling out.
    pub pro_only: bool,
    /// The efforts the model takes, in order (the backend refuses any other).
    pub efforts: &'static [(&'static str, &'static str)],
    pub default_effort: &'static str,
    /// The largest window a client may configure (`max_context_window`).
    pub max_context_window: u64,
    /// Its usage reports the input written to the prompt cache (`cache_write_tokens`); the GPT-5 recordings of
    /// the real backend report 0.
    pub cache_writes: bool,
}

/// The efforts of the GPT-5 models.
const EFFORTS: &[(&str, &str)] = &[
    ("low", "Fast responses with lighter reasoning"),
    ("medium", "Balances speed and reasoning depth for everyday tasks"),
    ("high", "Greater reasoning depth for complex problems"),
    ("xhigh", "Extra high reasoning depth for complex problems"),
];

/// The efforts of the GPT-6.2 models, as the official client's 0.171 catalog lists them (low to ultra).
const EFFORTS_6_2: &[(&str, &str)] = &[
    ("low", "Fast responses with lighter reasoning"),
    ("medium", "Balances speed and reasoning depth for everyday tasks"),
    ("high", "Greater reasoning depth for complex problems"),
    ("xhigh", "Extra high reasoning depth for complex problems"),
    ("max", "Maximum reasoning depth for the hardest problems"),
    ("ultra", "Longest reasoning for problems that need it"),
];

/// Every model the fake knows, best first.
pub const MODELS: &[ModelInfo] = &[
    // The GPT-6.2 models as the official client's 0.171 catalog lists them (spec/codex-upstream.md, 2026-11-27):
    // minimal client 0.166.0 (`versions.rs`), efforts low to ultra with default low, the Fast tier; rolling out to
    // Pro first here.
    ModelInfo {
        slug: "gpt-6.2-sol",
        display_name: "GPT-6.2 Sol",
        context_window: 500_000,
        priority_tier: true,
        priority: 0,
        reasoning_context: true,
        pro_only: true,
        efforts: EFFORTS_6_2,
        default_effort: "low",
        max_context_window: 872_000,
        cache_writes: true,
    },
    ModelInfo {
        slug: "gpt-6.2-astra",
        display_name: "GPT-6.2 Astra",
        context_window: 272_000,
        priority_tier: true,
        priority: 1,
        reasoning_context: true,
        pro_only: true,
        efforts: EFFORTS_6_2,
        default_effort: "low",
        max_context_window: 272_000,
        cache_writes: true,
    },
    ModelInfo {
        slug: "gpt-5.6-sol",
        display_name: "GPT-5.6 Sol",
        context_window: 272_000,
        priority_tier: true,
        priority: 2,
        reasoning_context: true,
        pro_only: true,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 272_000,
        cache_writes: false,
    },
    ModelInfo {
        slug: "gpt-5.5",
        display_name: "GPT-5.5",
        context_window: 272_000,
        priority_tier: true,
        priority: 3,
        reasoning_context: false,
        pro_only: false,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 272_000,
        cache_writes: false,
    },
    ModelInfo {
        slug: "gpt-5.4",
        display_name: "GPT-5.4",
        context_window: 272_000,
        priority_tier: true,
        priority: 4,
        reasoning_context: false,
        pro_only: false,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 272_000,
        cache_writes: false,
    },
    ModelInfo {
        slug: "gpt-5.4-mini",
        display_name: "GPT-5.4 mini",
        context_window: 128_000,
        priority_tier: false,
        priority: 5,
        reasoning_context: false,
        pro_only: false,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 128_000,
        cache_writes: false,
    },
    ModelInfo {
        slug: "gpt-5.3-codex",
        display_name: "GPT-5.3 Codex",
        context_window: 272_000,
        priority_tier: true,
        priority: 6,
        reasoning_context: false,
        pro_only: false,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 272_000,
        cache_writes: false,
    },
    ModelInfo {
        slug: "gpt-5.2",
        display_name: "GPT-5.2",
        context_window: 272_000,
        priority_tier: true,
        priority: 7,
        reasoning_context: false,
        pro_only: false,
        efforts: EFFORTS,
        default_effort: "medium",
        max_context_window: 272_000,
        cache_writes: false,
    },
];

/// The slugs a plan sees by default.
pub fn plan_models(plan: &str) -> Vec<String> {
    match plan {
        "free" => vec!["gpt-5.4-mini".to_string()],
        "pro" => MODELS.iter().map(|m| m.slug.to_string()).collect(),
        _ => MODELS.iter().filter(|m| !m.pro_only).map(|m| m.slug.to_string()).collect(),
    }
}

/// Catalog facts for a slug; unknown slugs (from an override) get generic facts.
pub fn info(slug: &str) -> ModelInfo {
    match MODELS.iter().find(|m| m.slug == slug) {
        Some(m) => ModelInfo { ..*m },
        None => ModelInfo {
            slug: "custom",
            display_name: "Custom model",
            context_window: 272_000,
            priority_tier: true,
            priority: 100,
            reasoning_context: false,
            pro_only: false,
            efforts: EFFORTS,
            default_effort: "medium",
            max_context_window: 272_000,
            cache_writes: false,
        },
    }
}

/// Whether `slug` accepts `reasoning.context`.
pub fn supports_reasoning_context(slug: &str) -> bool {
    info(slug).reasoning_context
}

/// Whether `slug` accepts `service_tier: "priority"`.
pub fn supports_priority(slug: &str) -> bool {
    info(slug).priority_tier
}

/// Whether `slug` takes `effort`. A model the fake does not know (an override's) takes every effort the backend
/// has: the test chose it, not the fake.
pub fn supports_effort(slug: &str, effort: &str) -> bool {
    match MODELS.iter().find(|m| m.slug == slug) {
        Some(m) => m.efforts.iter().any(|(e, _)| *e == effort),
        None => ALL_EFFORTS.contains(&effort),
    }
}

/// Every effort the backend has (0.171).
pub const ALL_EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"];

/// The base instructions every entry carries (the official client refuses an entry without them, "missing both
/// `base_instructions` and `model_messages.instructions_template`"). The fake's own words.
const BASE_INSTRUCTIONS: &str = "You are a coding agent answering through fake-codex, a test double of the \
Codex backend. Keep answers short, use the tools you are given when the task needs them, and say when you are done.";

/// One Codex catalog entry, with every field the official client requires to read the catalog (codex-rs
/// `protocol/src/openai_models.rs` `ModelInfo`: slug, display_name, supported_reasoning_levels, shell_type,
/// visibility, supported_in_api, priority, support_verbosity, truncation_policy, experimental_supported_tools, and
/// the instructions), the optional ones the real catalog sends (valued as in the official client's bundled
/// catalog), and the fields only the backend reads (`minimal_client_version`, `prefer_websockets`).
pub fn codex_entry(slug: &str) -> Value {
    let m = info(slug);
    let display = if m.slug == "custom" { slug.to_string() } else { m.display_name.to_string() };
    let tiers: Vec<Value> = if m.priority_tier {
        vec![json!({"id": "priority", "name": "Fast", "description": "Faster answers, more usage"})]
    } else {
        vec![]
    };
    let speed: Vec<&str> = if m.priority_tier { vec!["fast"] } else { vec![] };
    json!({
        "slug": slug,
        "display_name": display,
        "description": format!("{display} served by fake-codex"),
        "supported_reasoning_levels": m.efforts
            .iter()
            .map(|(e, d)| json!({"effort": e, "description": d}))
            .collect::<Vec<_>>(),
        "default_reasoning_level": m.default_effort,
        "default_reasoning_summary": "none",
        "supports_reasoning_summaries": true,
        "supports_reasoning_summary_parameter": true,
        "context_window": m.context_window,
        "max_context_window": m.max_context_window,
        "auto_compact_token_limit": null,
        "service_tiers": tiers,
        "additional_speed_tiers": speed,
        "default_service_tier": null,
        "visibility": "list",
        "supported_in_api": true,
        "priority": m.priority,
        "supports_parallel_tool_calls": true,
        "supports_reasoning_context": m.reasoning_context,
        "shell_type": "shell_command",
        "apply_patch_tool_type": "freeform",
        "web_search_tool_type": "text",
        "support_verbosity": true,
        "default_verbosity": "low",
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "experimental_supported_tools": [],
        "input_modalities": ["text", "image"],
        "supports_image_detail_original": false,
        "supports_search_tool": false,
        "use_responses_lite": false,
        // Whether the model takes a `configuration_update` input item that changes the effort from its place on
        // (`mark_effort_updates` sets it where a test chose the model).
        "supports_reasoning_effort_updates": false,
        "tool_mode": null,
        "base_instructions": BASE_INSTRUCTIONS,
        // The oldest client the backend serves the model to (`versions.rs` enforces it; tests may raise it).
        "minimal_client_version": crate::versions::builtin_text(slug),
        // Whether the official client uses the Responses WebSocket for the model (`ws.rs` sets it where a test
        // chose the model).
        "prefer_websockets": false,
    })
}

/// Set `use_responses_lite` on the entries of a Codex catalog answer for the models a test chose.
pub(crate) fn mark_lite(shared: &crate::state::Shared, catalog: &mut Value) {
    let lite = shared.lite_models.lock();
    if let Some(models) = catalog.get_mut("models").and_then(Value::as_array_mut) {
        for m in models {
            if m.get("slug").and_then(Value::as_str).is_some_and(|s| lite.iter().any(|l| l == s)) {
                m["use_responses_lite"] = Value::Bool(true);
            }
        }
    }
}

/// Set `supports_reasoning_effort_updates` on the entries of a Codex catalog answer for the models a test chose.
pub(crate) fn mark_effort_updates(shared: &crate::state::Shared, catalog: &mut Value) {
    let on = shared.effort_update_models.lock();
    if let Some(models) = catalog.get_mut("models").and_then(Value::as_array_mut) {
        for m in models {
            if m.get("slug").and_then(Value::as_str).is_some_and(|s| on.iter().any(|l| l == s)) {
                m["supports_reasoning_effort_updates"] = Value::Bool(true);
            }
        }
    }
}

/// Whether the catalog flags `model` `supports_reasoning_effort_updates`.
pub(crate) fn takes_effort_updates(shared: &crate::state::Shared, model: &str) -> bool {
    shared.effort_update_models.lock().iter().any(|l| l == model)
}

/// Whether the catalog flags `model` `use_responses_lite`.
pub(crate) fn is_lite(shared: &crate::state::Shared, model: &str) -> bool {
    shared.lite_models.lock().iter().any(|l| l == model)
}

/// `{"models": [...]}` for a list of slugs.
pub fn codex_catalog(slugs: &[String]) -> Value {
    json!({"models": slugs.iter().map(|s| codex_entry(s)).collect::<Vec<_>>()})
}

/// OpenAI list shape for `GET /v1/models`.
pub fn openai_list() -> Value {
    json!({
        "object": "list",
        "data": MODELS.iter().map(|m| json!({
            "id": m.slug,
            "object": "model",
            "created": 1_767_225_600,
            "owned_by": "openai",
        })).collect::<Vec<_>>(),
    })
}

/// Inputs of the usage answer.
pub struct Quota {
    pub plan: String,
    pub primary_used: f64,
    pub secondary_used: f64,
    pub primary_reset_at: i64,
    pub secondary_reset_at: i64,
}

/// The `GET /backend-api/wham/usage` body.
pub fn usage_body(q: &Quota, now: i64) -> Value {
    let reached = q.primary_used >= 100.0 || q.secondary_used >= 100.0;
    json!({
        "plan_type": q.plan,
        "rate_limit": {
            "allowed": !reached,
            "limit_reached": reached,
            "primary_window": {
                "used_percent": q.primary_used,
                "limit_window_seconds": 18000,
                "reset_after_seconds": (q.primary_reset_at - now).max(0),
                "reset_at": q.primary_reset_at,
            },
            "secondary_window": {
                "used_percent": q.secondary_used,
                "limit_window_seconds": 604800,
                "reset_after_seconds": (q.secondary_reset_at - now).max(0),
                "reset_at": q.secondary_reset_at,
            },
        },
        "credits": {"has_credits": false, "unlimited": false, "balance": "0"},
    })
}
