//! `[anthropic]` and `[gemini]`: a client family's model ids -> Codex models (docs/configuration.md); the file's
//! table, and both on the Settings page. A reload puts them in force.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::field::{Field, Group, Kind};

/// `[gemini]` and `[anthropic]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliases {
    pub model_aliases: Option<HashMap<String, String>>,
}

/// The table's aliases (none: the defaults from the catalogs).
pub(super) fn resolve(raw: Option<RawAliases>) -> HashMap<String, String> {
    raw.and_then(|r| r.model_aliases).unwrap_or_default()
}

/// The Settings page's Model aliases fieldset.
pub(crate) const SETTINGS: Group = Group {
    legend: "Model aliases",
    fields: &[
        Field::named(
            "anthropic_aliases",
            "anthropic.model_aliases",
            "Anthropic clients: one <code>alias = model</code> per line",
        )
        .live(Kind::Aliases { placeholder: "opus = gpt-5.5" }, |c| lines(&c.anthropic_model_aliases)),
        Field::named("gemini_aliases", "gemini.model_aliases", "Gemini clients")
            .live(Kind::Aliases { placeholder: "pro = gpt-5.5-high" }, |c| lines(&c.gemini_model_aliases)),
    ],
};

/// `alias = model` lines, sorted.
fn lines(aliases: &HashMap<String, String>) -> Json {
    let mut lines: Vec<String> = aliases.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    lines.sort();
    json!(lines.join("\n"))
}
