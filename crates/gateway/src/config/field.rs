//! The dashboard's Settings page as the configuration declares it: a feature's module (`routing.rs`,
//! `ollama.rs`, `aliases.rs`, `timeouts.rs`) lists the keys the page edits as [`Field`]s beside the table they
//! are read from, and dashboard/settings.rs renders, checks and writes every field from these alone
//! (docs/architecture.md, "Adding a setting").

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use toml_edit::{Array, InlineTable, Value};

use super::Config;

/// One key the Settings page edits.
pub struct Field {
    /// The page's input id, the save's JSON member and the name its answer reports.
    pub id: &'static str,
    /// The input's label (static markup of the binary's own).
    pub label: &'static str,
    /// The file's key, its tables dotted before it (`routing.strategy`; `keepalive_secs` at the top).
    pub key: &'static str,
    pub kind: Kind,
    /// Put in force by a reload (app/reload.rs), else at the next start.
    pub live: bool,
    /// The value in force as the page shows it and sends it back.
    pub shown: fn(&Config) -> Json,
}

impl Field {
    /// A field by its input id, file key and label; [`Named::live`] or [`Named::at_restart`] completes it.
    pub const fn named(id: &'static str, key: &'static str, label: &'static str) -> Named {
        Named { id, key, label }
    }
}

/// A [`Field`]'s names, before its input.
pub struct Named {
    id: &'static str,
    key: &'static str,
    label: &'static str,
}

impl Named {
    /// A field a reload puts in force.
    pub const fn live(self, kind: Kind, shown: fn(&Config) -> Json) -> Field {
        Field { id: self.id, label: self.label, key: self.key, kind, live: true, shown }
    }

    /// A field read at the next start.
    pub const fn at_restart(self, kind: Kind, shown: fn(&Config) -> Json) -> Field {
        Field { live: false, ..self.live(kind, shown) }
    }
}

/// One feature's fields: a fieldset of the page.
pub struct Group {
    pub legend: &'static str,
    pub fields: &'static [Field],
}

/// The input, and how what it sends becomes the file's value.
pub enum Kind {
    /// One of these names (a `<select>`).
    Choice(fn() -> Vec<&'static str>),
    /// Names separated by commas, lower-cased, of letters, digits, `-` and `_`; none removes the key.
    Names {
        placeholder: &'static str,
    },
    /// A number within bounds; `whole`: an integer.
    Number {
        min: f64,
        max: f64,
        whole: bool,
    },
    Switch,
    /// `alias = model` lines (blank lines and `#` comments skipped), a table of strings in the file.
    Aliases {
        placeholder: &'static str,
    },
}

/// Why a value the page sent is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Not the JSON type the input sends.
    #[error("not a value this field takes")]
    Type,
    #[error("`{0}` is not one of {names}", names = .1.join(", "))]
    NotOneOf(String, Vec<&'static str>),
    #[error("names are letters, digits, `-` and `_`, separated by commas")]
    BadName,
    #[error("between {min} and {max}")]
    OutOfRange { min: f64, max: f64 },
    #[error("`{0}` is not `alias = model`")]
    NotAlias(String),
}

impl Kind {
    /// The value `sent` as the file writes it (`None`: no key).
    pub fn parse(&self, sent: &Json) -> Result<Option<Value>, Refusal> {
        match (self, sent) {
            (Kind::Choice(names), Json::String(s)) => match names().contains(&s.as_str()) {
                true => Ok(Some(s.as_str().into())),
                false => Err(Refusal::NotOneOf(s.clone(), names())),
            },
            (Kind::Names { .. }, Json::String(s)) => {
                let names: Vec<String> =
                    s.split(',').map(|n| n.trim().to_ascii_lowercase()).filter(|n| !n.is_empty()).collect();
                if names.iter().any(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
                    return Err(Refusal::BadName);
                }
                Ok((!names.is_empty()).then(|| Value::Array(names.iter().collect::<Array>())))
            }
            (&Kind::Number { min, max, whole }, Json::Number(n)) => match n.as_f64() {
                Some(v) if (min..=max).contains(&v) && !(whole && v.fract() != 0.0) => {
                    Ok(Some(if whole { (v as i64).into() } else { v.into() }))
                }
                _ => Err(Refusal::OutOfRange { min, max }),
            },
            (Kind::Switch, Json::Bool(b)) => Ok(Some((*b).into())),
            (Kind::Aliases { .. }, Json::String(s)) => {
                let mut out = BTreeMap::new();
                for line in s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                    match line.split_once('=').map(|(k, v)| (k.trim().trim_matches('"'), v.trim().trim_matches('"'))) {
                        Some((k, v)) if !k.is_empty() && !v.is_empty() => out.insert(k, v),
                        _ => return Err(Refusal::NotAlias(line.into())),
                    };
                }
                Ok(Some(Value::InlineTable(out.into_iter().collect::<InlineTable>())))
            }
            _ => Err(Refusal::Type),
        }
    }

    /// What the page's template needs to draw the input.
    pub fn describe(&self) -> Json {
        match self {
            Kind::Choice(names) => json!({"kind": "choice", "options": names()}),
            Kind::Names { placeholder } => json!({"kind": "text", "placeholder": placeholder}),
            &Kind::Number { min, max, whole } => {
                let n = |v: f64| if whole { json!(v as i64) } else { json!(v) };
                json!({"kind": "number", "min": n(min), "max": n(max), "step": if whole { "1" } else { "any" }})
            }
            Kind::Switch => json!({"kind": "switch"}),
            Kind::Aliases { placeholder } => json!({"kind": "lines", "placeholder": placeholder}),
        }
    }
}
