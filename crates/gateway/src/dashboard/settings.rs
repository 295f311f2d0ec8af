//! The Settings page's save: the changed values written into the configuration file with toml_edit (the
//! user's comments, order and layout stay), the file checked to load before it replaces the old one, then
//! reloaded through the one apply function of every reload (app/reload.rs): what applies live (the strategy,
//! keepalive, aliases, the price table) is in force at once, the other settings are reported as needing a
//! restart. The quota warning thresholds are the dashboard's own and change at once; the strategy chosen here is
//! put in force even when the environment names another (until the next reload). A refused value names its
//! field, which the page marks in place.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::prices::{self, PriceRow};
use super::session::ApiWrite;
use super::{Answer, St, json_body, json_error, json_response};
use crate::config::{QuotaThresholds, RawConfig, Strategy};
use crate::usage::pricing::Prices;

#[derive(Deserialize, Debug, Default)]
pub(crate) struct SettingsBody {
    strategy: Option<String>,
    plan_priority: Option<String>,
    affinity_capacity: Option<usize>,
    keepalive_secs: Option<f64>,
    ollama_enabled: Option<bool>,
    ollama_port: Option<u16>,
    anthropic_aliases: Option<String>,
    gemini_aliases: Option<String>,
    quota_warn_percent: Option<f64>,
    quota_critical_percent: Option<f64>,
    /// The whole price table (rows the page shows); absent: unchanged.
    prices: Option<Vec<PriceRow>>,
}

/// A refused value: the message, and the id of the page's field it is about.
#[derive(Debug, PartialEq)]
pub(crate) struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: String, message: impl Into<String>) -> Invalid {
        Invalid { field, message: message.into() }
    }
}

/// Settings that apply at once, as they are in force now (the file may say otherwise until a restart).
pub(crate) struct Live {
    pub strategy: Strategy,
    pub quota: QuotaThresholds,
    pub prices: std::sync::Arc<Prices>,
}

/// What a save changed: applied now, or read at the next start.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changes {
    pub applied: Vec<&'static str>,
    pub restart: Vec<&'static str>,
}

/// `alias = model` lines (blank lines and `#` comments skipped).
fn parse_aliases(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                out.insert(k.trim().trim_matches('"').to_string(), v.trim().trim_matches('"').to_string());
            }
            _ => return Err(format!("`{line}` is not `alias = model`")),
        }
    }
    Ok(out)
}

pub(crate) fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Item {
    let item = doc.entry(name).or_insert(Item::Table(Table::new()));
    if let Some(t) = item.as_table_mut() {
        // A table created here only for its keys, not an empty `[name]` header of its own when left empty.
        t.set_implicit(true);
    }
    item
}

/// Set `key` in the table `name` (a `[name]` table or an inline one, whichever the file has) for the page's field
/// `f`.
fn set(doc: &mut DocumentMut, name: Option<&str>, key: &str, v: Item, f: &str) -> Result<(), Invalid> {
    let t = match name {
        None => doc.as_table_mut() as &mut dyn toml_edit::TableLike,
        Some(n) => table(doc, n).as_table_like_mut().ok_or_else(|| not_table(f, n))?,
    };
    put(t, key, v);
    Ok(())
}

fn not_table(f: &str, name: &str) -> Invalid {
    Invalid::new(f.into(), format!("`{name}` in the file is not a table"))
}

/// Set `key` to `v` (`Item::None`: remove it); an existing key keeps its comments (`insert` would replace the key
/// with its decor).
pub(crate) fn put(t: &mut dyn toml_edit::TableLike, key: &str, v: Item) {
    if v.is_none() {
        t.remove(key);
        return;
    }
    match t.get_mut(key) {
        Some(old) => {
            let decor = old.as_value().map(|v| v.decor().clone());
            *old = v;
            if let (Some(d), Some(new)) = (decor, old.as_value_mut()) {
                *new.decor_mut() = d;
            }
        }
        None => {
            t.insert(key, v);
        }
    }
}

/// Replace the aliases in `[name] model_aliases`, keeping its form (inline or a table of its own).
fn set_aliases(doc: &mut DocumentMut, name: &str, aliases: &BTreeMap<String, String>, f: &str) -> Result<(), Invalid> {
    let section = table(doc, name).as_table_like_mut().ok_or_else(|| not_table(f, name))?;
    let item = section.entry("model_aliases").or_insert(Item::Table(Table::new()));
    let t = item.as_table_like_mut().ok_or_else(|| not_table(f, &format!("{name}.model_aliases")))?;
    let old: Vec<String> = t.iter().map(|(k, _)| k.to_string()).collect();
    for k in old.iter().filter(|k| !aliases.contains_key(*k)) {
        t.remove(k);
    }
    for (k, v) in aliases {
        if t.get(k).and_then(|i| i.as_str()) != Some(v.as_str()) {
            put(t, k, value(v.as_str()));
        }
    }
    // An inline table's entries get uniform spacing (new entries would otherwise inherit the last one's).
    if let Some(inline) = item.as_inline_table_mut() {
        inline.fmt();
    }
    Ok(())
}

/// Apply the changed values of `b` to the document; `current` is what the gateway started with, `live` what
/// applies at once as it is now. Returns what changed, and the new price table when it did.
pub(crate) fn edit(
    doc: &mut DocumentMut,
    b: &SettingsBody,
    current: &crate::config::Config,
    live: &Live,
) -> Result<(Changes, Option<Prices>), Invalid> {
    let mut ch = edit_restart(doc, b, current, live.strategy)?;
    if b.quota_warn_percent.is_some() || b.quota_critical_percent.is_some() {
        let warn = b.quota_warn_percent.unwrap_or(live.quota.warn);
        let critical = b.quota_critical_percent.unwrap_or(live.quota.critical);
        let q = QuotaThresholds::new(warn, critical).map_err(|e| {
            let f = if e.starts_with("quota_critical") { "quota_critical_percent" } else { "quota_warn_percent" };
            Invalid::new(f.into(), format!("quota thresholds: {e}"))
        })?;
        if q != live.quota {
            set(doc, Some("dashboard"), "quota_warn_percent", value(q.warn), "quota_warn_percent")?;
            set(doc, Some("dashboard"), "quota_critical_percent", value(q.critical), "quota_critical_percent")?;
            ch.applied.push("quota thresholds");
        }
    }
    let mut new_prices = None;
    if let Some(rows) = &b.prices {
        let table = prices::parse(rows)?;
        let p = prices::to_prices(&table)?;
        if p != *live.prices {
            prices::write(doc, &table)?;
            ch.applied.push("price table");
            new_prices = Some(p);
        }
    }
    Ok((ch, new_prices))
}

/// The settings read at start-up (and the strategy): the document edited, what changed listed.
fn edit_restart(
    doc: &mut DocumentMut,
    b: &SettingsBody,
    current: &crate::config::Config,
    strategy_now: Strategy,
) -> Result<Changes, Invalid> {
    let mut ch = Changes::default();
    if let Some(s) = &b.strategy {
        let parsed = Strategy::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
            Invalid::new("strategy".into(), format!("`{s}` is not one of {}", names.join(", ")))
        })?;
        if parsed != strategy_now {
            set(doc, Some("routing"), "strategy", value(parsed.as_str()), "strategy")?;
            ch.applied.push("strategy");
        }
    }
    if let Some(p) = &b.plan_priority {
        let plans: Vec<String> =
            p.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
        if plans.iter().any(|p| !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
            return Err(Invalid::new(
                "plan_priority".into(),
                "plan priority: plan names are letters, digits, `-` and `_`, separated by commas",
            ));
        }
        if plans != current.routing.plan_priority {
            let item = if plans.is_empty() { Item::None } else { value(plans.iter().collect::<Array>()) };
            set(doc, Some("routing"), "plan_priority", item, "plan_priority")?;
            ch.restart.push("plan_priority");
        }
    }
    if let Some(n) = b.affinity_capacity
        && n != current.routing.affinity_capacity
    {
        if !(16..=10_000_000).contains(&n) {
            return Err(Invalid::new(
                "affinity_capacity".into(),
                "affinity capacity: between 16 and 10000000 conversations",
            ));
        }
        set(doc, Some("routing"), "affinity_capacity", value(n as i64), "affinity_capacity")?;
        ch.restart.push("affinity_capacity");
    }
    if let Some(k) = b.keepalive_secs
        && (k - current.keepalive.as_secs_f64()).abs() > 1e-9
    {
        if !(k.is_finite() && (0.05..=3600.0).contains(&k)) {
            return Err(Invalid::new("keepalive_secs".into(), "keepalive: between 0.05 and 3600 seconds"));
        }
        set(doc, None, "keepalive_secs", value(k), "keepalive_secs")?;
        ch.restart.push("keepalive_secs");
    }
    if let Some(e) = b.ollama_enabled
        && e != current.ollama.enabled
    {
        set(doc, Some("ollama"), "enabled", value(e), "ollama_enabled")?;
        ch.restart.push("ollama.enabled");
    }
    if let Some(p) = b.ollama_port
        && p != current.ollama.listen.port()
    {
        set(doc, Some("ollama"), "port", value(i64::from(p)), "ollama_port")?;
        ch.restart.push("ollama.port");
    }
    let sorted =
        |m: &HashMap<String, String>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
    for (name, id, text, now) in [
        ("anthropic", "anthropic_aliases", &b.anthropic_aliases, &current.anthropic_model_aliases),
        ("gemini", "gemini_aliases", &b.gemini_aliases, &current.gemini_model_aliases),
    ] {
        let Some(text) = text else { continue };
        let aliases = parse_aliases(text).map_err(|e| Invalid::new(id.into(), format!("{name} aliases: {e}")))?;
        if aliases != sorted(now) {
            set_aliases(doc, name, &aliases, id)?;
            ch.restart.push(if name == "anthropic" { "anthropic.model_aliases" } else { "gemini.model_aliases" });
        }
    }
    Ok(ch)
}

/// Write `text` to `path` through a temporary file in the same folder (0600 when new: it may hold keys).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("toml.dashboard-tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    // Windows has no modes: the file takes its folder's ACL (the config folder is in the user's profile).
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
        opts.mode(mode);
    }
    {
        use std::io::Write;
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// `POST /dashboard/api/settings`.
pub(crate) async fn save(State(dash): State<St>, _: ApiWrite, body: axum::body::Bytes) -> Answer {
    let b: SettingsBody = json_body(&body, "Unreadable settings")?;
    let config = dash.app.live.config.load_full();
    let path = &config.config_file;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("Cannot read {}: {e}", path.display())));
        }
    };
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| json_error(StatusCode::CONFLICT, format!("{} is not valid TOML: {e}", path.display())))?;
    let live = Live { strategy: dash.app.pool.strategy(), quota: *dash.quota.read(), prices: dash.app.ledger.prices() };
    let (changes, new_prices) = edit(&mut doc, &b, &config, &live).map_err(invalid)?;
    if changes == Changes::default() {
        let nothing = json!({"ok": true, "applied": [], "restart": [], "message": "Nothing changed."});
        return Ok(json_response(StatusCode::OK, nothing));
    }
    let out = doc.to_string();
    // The file must still load: the gateway reads it at the next start.
    toml::from_str::<RawConfig>(&out)
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, format!("The result would not load: {e}")))?;
    write_atomically(path, &out)
        .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("Cannot write {}: {e}", path.display())))?;
    let report = crate::app::reload::reload_logged(dash.app.clone(), crate::app::reload::Trigger::Dashboard).await;
    if let Some(e) = report.error {
        return Err(json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("Saved, but the reload failed: {e}")));
    }
    // What this save changed, with the settings the reload put into force moved to `applied`.
    let (mut applied, mut restart) = (changes.applied, Vec::new());
    for name in changes.restart {
        if report.applied.contains(&name) { applied.push(name) } else { restart.push(name) }
    }
    apply(&dash, &b, new_prices);
    let note = crate::audit::Note::default().with("applied", applied.clone()).with("restart", restart.clone());
    let v = json!({"ok": true, "applied": applied, "restart": restart, "file": path.display().to_string()});
    Ok(super::audit::noted(json_response(StatusCode::OK, v), note))
}

/// What applies at once, once the file holds it.
fn apply(dash: &St, b: &SettingsBody, prices: Option<Prices>) {
    if let Some(s) = b.strategy.as_deref().and_then(Strategy::parse) {
        dash.app.pool.set_strategy(s);
        tracing::info!("dashboard: rotation strategy is now {}", s.as_str());
    }
    let mut quota = dash.quota.write();
    let (warn, critical) =
        (b.quota_warn_percent.unwrap_or(quota.warn), b.quota_critical_percent.unwrap_or(quota.critical));
    // Checked by `edit` already.
    if let Ok(q) = QuotaThresholds::new(warn, critical) {
        *quota = q;
    }
    drop(quota);
    if let Some(p) = prices {
        dash.app.ledger.set_prices(p);
        tracing::info!("dashboard: the price table was changed");
    }
}

/// A refused value: 400 with the message and the field the page marks.
fn invalid(e: Invalid) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": e.message, "field": e.field}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn config() -> Config {
        let env = HashMap::<String, String>::from([("HOME".into(), "/nonexistent".into())]);
        Config::resolve(RawConfig::default(), &Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn comments_and_layout_survive_a_save() {
        let text = "# my gateway\nport = 9000 # the port\n\n[routing]\n# how to rotate\nstrategy = \"least_used\" # was\n\n[anthropic]\nmodel_aliases = { opus = \"gpt-5.5\" } # inline\n";
        let mut doc: DocumentMut = text.parse().unwrap_or_else(|e| panic!("{e}"));
        let b = SettingsBody {
            strategy: Some("round_robin".into()),
            anthropic_aliases: Some("opus = gpt-5.5\nhaiku = gpt-5.4-mini".into()),
            ..SettingsBody::default()
        };
        let ch = edit_restart(&mut doc, &b, &config(), Strategy::LeastUsed).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ch.applied, vec!["strategy"]);
        assert_eq!(ch.restart, vec!["anthropic.model_aliases"]);
        let out = doc.to_string();
        assert!(out.starts_with("# my gateway\nport = 9000 # the port\n"), "{out}");
        assert!(out.contains("# how to rotate\nstrategy = \"round_robin\" # was\n"), "{out}");
        assert!(out.contains("model_aliases = { opus = \"gpt-5.5\", haiku = \"gpt-5.4-mini\" } # inline"), "{out}");
        assert!(toml::from_str::<RawConfig>(&out).is_ok());
    }

    #[test]
    fn unchanged_values_are_not_written() {
        let mut doc = DocumentMut::new();
        let b = SettingsBody {
            strategy: Some("least_used".into()),
            keepalive_secs: Some(15.0),
            plan_priority: Some(String::new()),
            ..SettingsBody::default()
        };
        assert_eq!(edit_restart(&mut doc, &b, &config(), Strategy::LeastUsed), Ok(Changes::default()));
        assert_eq!(doc.to_string(), "");
        let bad = SettingsBody { strategy: Some("fastest".into()), ..SettingsBody::default() };
        assert!(edit_restart(&mut doc, &bad, &config(), Strategy::LeastUsed).is_err());
        assert!(parse_aliases("opus gpt").is_err());
    }
}
