//! The Settings page, drawn and saved from the fields each feature's config module declares (config/field.rs),
//! besides the page's own quota thresholds and price table (prices.rs). A save writes the changed values into the
//! configuration file with toml_edit (the user's comments, order and layout stay), the file checked to load before it replaces the old one, then
//! reloaded through the one apply function of every reload (app/reload.rs): what applies live (the strategy,
//! keepalive, aliases, the price table) is in force at once, the other settings are reported as needing a
//! restart. The quota warning thresholds are the dashboard's own and change at once; the strategy chosen here is
//! put in force even when the environment names another (until the next reload). A refused value names its
//! field, which the page marks in place.

use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::prices::{self, PriceRow};
use super::session::{ApiWrite, PageAccess};
use super::{Answer, St, json_body, json_error, json_response};
use crate::config::field::{Field, Group};
use crate::config::{self, Config, QuotaThresholds, RawConfig, Strategy};
use crate::usage::pricing::Prices;

/// The page's fieldsets in order: each feature's fields as its module declares them, and the page's own rows.
enum Part {
    Fields(&'static Group),
    Quota,
    Prices,
}

const PAGE: [Part; 6] = [
    Part::Fields(&config::routing::SETTINGS),
    Part::Quota,
    Part::Prices,
    Part::Fields(&config::timeouts::SETTINGS),
    Part::Fields(&config::ollama::SETTINGS),
    Part::Fields(&config::aliases::SETTINGS),
];

fn fields() -> impl Iterator<Item = &'static Field> {
    PAGE.iter().flat_map(|p| if let Part::Fields(g) = p { g.fields } else { &[] })
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct SettingsBody {
    quota_warn_percent: Option<f64>,
    quota_critical_percent: Option<f64>,
    /// The whole price table (rows the page shows); absent: unchanged.
    prices: Option<Vec<PriceRow>>,
    /// The [`Field`]s' values by id; absent or null: unchanged.
    #[serde(flatten)]
    fields: serde_json::Map<String, Json>,
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

/// What a save changed: applied now, or read at the next start; the new thresholds and prices, when they changed.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changes {
    pub applied: Vec<&'static str>,
    pub restart: Vec<&'static str>,
    pub quota: Option<QuotaThresholds>,
    pub prices: Option<Prices>,
}

/// The configuration with what the page changes at once as it is in force now (the file may say otherwise
/// until a restart): the pool's strategy, the page's quota thresholds, the ledger's prices.
fn in_force(dash: &St) -> Config {
    let mut now = Config::clone(&dash.app.live.config());
    now.routing.strategy = dash.app.pool.strategy();
    now.dashboard.quota = *dash.quota.read();
    now.usage.prices = (*dash.app.ledger.prices()).clone();
    now
}

fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Item {
    let item = doc.entry(name).or_insert(Item::Table(Table::new()));
    if let Some(t) = item.as_table_mut() {
        // A table created here only for its keys, not an empty `[name]` header of its own when left empty.
        t.set_implicit(true);
    }
    item
}

/// A new table of the file, without a header of its own while it has no keys (only sub-tables).
fn table_item() -> Item {
    let mut t = Table::new();
    t.set_implicit(true);
    Item::Table(t)
}

fn not_table(f: &str, name: &str) -> Invalid {
    Invalid::new(f.into(), format!("`{name}` in the file is not a table"))
}

/// Set `key` to `v` (`None`: remove it); an existing key keeps its comments (`insert` would replace the key with
/// its decor).
fn put(t: &mut dyn TableLike, key: &str, v: Option<Value>) {
    let Some(mut v) = v else { return drop(t.remove(key)) };
    match t.get_mut(key) {
        Some(old) => {
            if let Some(decor) = old.as_value().map(Value::decor) {
                *v.decor_mut() = decor.clone();
            }
            *old = Item::Value(v);
        }
        None => drop(t.insert(key, Item::Value(v))),
    }
}

/// Write the dotted `key` of the page's field `f` (`None`: remove it).
pub(super) fn write(doc: &mut DocumentMut, dotted: &str, v: Option<Value>, f: &str) -> Result<(), Invalid> {
    let (item, name, key) = match dotted.split_once('.') {
        None => (doc.as_item_mut(), "", dotted),
        Some((name, key)) => (table(doc, name), name, key),
    };
    let inline = item.is_inline_table();
    let t = item.as_table_like_mut().ok_or_else(|| not_table(f, name))?;
    match v {
        Some(Value::InlineTable(new)) => return merge(t, inline, key, &new).ok_or_else(|| not_table(f, dotted)),
        v => put(t, key, v),
    }
    Ok(())
}

/// Make `t.key` hold exactly `new` (empty: no key), keeping the file's form: entries it no longer has removed,
/// kept ones changed in place with their comments, a table entry merged in turn, a new one in its parent's form
/// (inline, or a table of its own). `None`: an entry the file has is not a table.
fn merge(t: &mut dyn TableLike, inline: bool, key: &str, new: &InlineTable) -> Option<()> {
    if new.is_empty() {
        t.remove(key);
        return Some(());
    }
    let item = t.entry(key).or_insert_with(|| match inline {
        true => Item::Value(InlineTable::new().into()),
        false => table_item(),
    });
    let inline = item.is_inline_table();
    let t = item.as_table_like_mut()?;
    let gone: Vec<String> = t.iter().map(|(k, _)| k.to_string()).filter(|k| !new.contains_key(k)).collect();
    gone.iter().for_each(|k| drop(t.remove(k)));
    for (k, v) in new.iter() {
        match v {
            Value::InlineTable(sub) => merge(t, inline, k, sub)?,
            // An equal string keeps its quoting.
            v if v.as_str().is_some() && t.get(k).and_then(Item::as_str) == v.as_str() => {}
            v => put(t, k, Some(v.clone())),
        }
    }
    // An inline table's entries get uniform spacing (new entries would otherwise inherit the last one's).
    if let Some(inline) = item.as_inline_table_mut() {
        inline.fmt();
    }
    Some(())
}

/// Apply the changed values of `b` to the document; `now` is the configuration in force ([`in_force`]). Returns
/// what changed.
pub(crate) fn edit(doc: &mut DocumentMut, b: &SettingsBody, now: &Config) -> Result<Changes, Invalid> {
    let mut ch = Changes::default();
    for f in fields() {
        let Some(sent) = b.fields.get(f.id).filter(|v| !v.is_null()) else { continue };
        let new = f.kind.parse(sent).map_err(|e| Invalid::new(f.id.into(), format!("{}: {e}", f.key)))?;
        let old = f.kind.parse(&(f.shown)(now)).ok().flatten();
        if new.as_ref().map(Value::to_string) != old.as_ref().map(Value::to_string) {
            write(doc, f.key, new, f.id)?;
            if f.live { ch.applied.push(f.id) } else { ch.restart.push(f.id) }
        }
    }
    if b.quota_warn_percent.is_some() || b.quota_critical_percent.is_some() {
        let live = now.dashboard.quota;
        let warn = b.quota_warn_percent.unwrap_or(live.warn);
        let critical = b.quota_critical_percent.unwrap_or(live.critical);
        let q = QuotaThresholds::new(warn, critical).map_err(|e| {
            let f = if e.starts_with("quota_critical") { "quota_critical_percent" } else { "quota_warn_percent" };
            Invalid::new(f.into(), format!("quota thresholds: {e}"))
        })?;
        if q != live {
            write(doc, "dashboard.quota_warn_percent", Some(q.warn.into()), "quota_warn_percent")?;
            write(doc, "dashboard.quota_critical_percent", Some(q.critical.into()), "quota_critical_percent")?;
            ch.applied.push("quota thresholds");
            ch.quota = Some(q);
        }
    }
    if let Some(rows) = &b.prices {
        let table = prices::parse(rows)?;
        let p = prices::to_prices(&table)?;
        if p != now.usage.prices {
            write(doc, "usage.prices", Some(prices::to_value(&table)), "prices")?;
            ch.applied.push("price table");
            ch.prices = Some(p);
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
    let now = in_force(&dash);
    let path = &now.config_file;
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
    let changes = edit(&mut doc, &b, &now).map_err(invalid)?;
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
    let Changes { applied, restart, quota, prices } = changes;
    apply(&dash, &b, quota, prices);
    let note = crate::audit::Note::default().with("applied", applied.clone()).with("restart", restart.clone());
    let v = json!({"ok": true, "applied": applied, "restart": restart, "file": path.display().to_string()});
    Ok(super::audit::noted(json_response(StatusCode::OK, v), note))
}

/// What applies at once, once the file holds it.
fn apply(dash: &St, b: &SettingsBody, quota: Option<QuotaThresholds>, prices: Option<Prices>) {
    // The strategy chosen here is put in force even when the environment names another (until the next reload).
    if let Some(s) = b.fields.get("strategy").and_then(Json::as_str).and_then(Strategy::parse) {
        dash.app.pool.set_strategy(s);
        tracing::info!("dashboard: rotation strategy is now {}", s.as_str());
    }
    if let Some(q) = quota {
        *dash.quota.write() = q;
    }
    if let Some(p) = prices {
        dash.app.ledger.set_prices(p);
        tracing::info!("dashboard: the price table was changed");
    }
}

/// `GET /dashboard/settings`: each part of [`PAGE`] with the values in force.
pub(crate) async fn page(State(dash): State<St>, PageAccess(a): PageAccess) -> Response {
    let now = in_force(&dash);
    let parts: Vec<Json> = PAGE
        .iter()
        .map(|p| match p {
            Part::Fields(g) => {
                let fields = g.fields.iter().map(|f| {
                    let mut v = f.kind.describe();
                    v["id"] = f.id.into();
                    v["label"] = f.label.into();
                    v["live"] = f.live.into();
                    v["value"] = (f.shown)(&now);
                    v
                });
                json!({"legend": g.legend, "fields": fields.collect::<Vec<_>>()})
            }
            Part::Quota => json!({"quota": now.dashboard.quota}),
            // The configured prices, then an empty row to add one.
            Part::Prices => json!({"prices": now.usage.prices.sorted().into_iter().map(|(model, p)| json!({
                "model": model, "input": p.input, "cached_input": p.cached_input, "output": p.output,
            })).chain([json!({"model": "", "input": null, "cached_input": null, "output": null})]).collect::<Vec<_>>()}),
        })
        .collect();
    let s = json!({"config_file": now.config_file.display().to_string(), "parts": parts});
    super::pages::page(&dash, a, "Settings", "settings", json!({"s": s}))
}

/// A refused value: 400 with the message and the field the page marks.
fn invalid(e: Invalid) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": e.message, "field": e.field}))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Overrides;

    /// The defaults, with the strategy in force `least_used`.
    fn config() -> Config {
        let env = HashMap::<String, String>::from([("HOME".into(), "/nonexistent".into())]);
        let mut c =
            Config::resolve(RawConfig::default(), &Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"));
        c.routing.strategy = Strategy::LeastUsed;
        c
    }

    fn body(v: Json) -> SettingsBody {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn comments_and_layout_survive_a_save() {
        let text = "# my gateway\nport = 9000 # the port\n\n[routing]\n# how to rotate\nstrategy = \"least_used\" # was\n\n[anthropic]\nmodel_aliases = { opus = \"gpt-5.5\" } # inline\n";
        let mut doc: DocumentMut = text.parse().unwrap_or_else(|e| panic!("{e}"));
        let b = body(json!({"strategy": "round_robin", "anthropic_aliases": "opus = gpt-5.5\nhaiku = gpt-5.4-mini"}));
        let ch = edit(&mut doc, &b, &config()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ch.applied, vec!["strategy", "anthropic_aliases"]);
        assert!(ch.restart.is_empty());
        let out = doc.to_string();
        assert!(out.starts_with("# my gateway\nport = 9000 # the port\n"), "{out}");
        assert!(out.contains("# how to rotate\nstrategy = \"round_robin\" # was\n"), "{out}");
        assert!(out.contains("model_aliases = { opus = \"gpt-5.5\", haiku = \"gpt-5.4-mini\" } # inline"), "{out}");
        assert!(toml::from_str::<RawConfig>(&out).is_ok());
    }

    #[test]
    fn every_field_is_written_where_the_file_reads_it() {
        let mut doc = DocumentMut::new();
        let b = body(json!({
            "plan_priority": "Pro, plus", "affinity_capacity": 20000, "keepalive_secs": 2.5, "ollama_enabled": true,
            "ollama_port": 11500, "gemini_aliases": "pro = gpt-5.5\n# a comment\n\nflash = gpt-5.4",
        }));
        let ch = edit(&mut doc, &b, &config()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ch.applied, ["keepalive_secs", "gemini_aliases"]);
        assert_eq!(ch.restart, ["plan_priority", "affinity_capacity", "ollama_enabled", "ollama_port"]);
        let out = doc.to_string();
        let raw: RawConfig = toml::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let env = HashMap::<String, String>::from([("HOME".into(), "/nonexistent".into())]);
        let c = Config::resolve(raw, &Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.routing.plan_priority, ["pro", "plus"]);
        assert_eq!((c.routing.affinity_capacity, c.keepalive.as_secs_f64()), (20000, 2.5));
        assert_eq!((c.ollama.enabled, c.ollama.listen.port()), (true, 11500));
        assert_eq!(c.gemini_model_aliases.get("flash").map(String::as_str), Some("gpt-5.4"));
        assert!(out.contains("[gemini.model_aliases]\nflash = \"gpt-5.4\"\npro = \"gpt-5.5\"\n"), "{out}");
        // The same values again change nothing; a removed alias goes.
        let again = edit(&mut doc, &b, &c).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(again, Changes::default());
        let fewer = body(json!({"gemini_aliases": "pro = gpt-5.5"}));
        assert_eq!(edit(&mut doc, &fewer, &c).map(|r| r.applied), Ok(vec!["gemini_aliases"]));
        assert!(doc.to_string().contains("[gemini.model_aliases]\npro = \"gpt-5.5\"\n"), "{doc}");
    }

    #[test]
    fn unchanged_values_are_not_written_and_refusals_name_their_field() {
        let mut doc = DocumentMut::new();
        let b = body(json!({"strategy": "least_used", "keepalive_secs": 15, "plan_priority": "", "ollama_port": null}));
        assert_eq!(edit(&mut doc, &b, &config()), Ok(Changes::default()));
        assert_eq!(doc.to_string(), "");
        for (sent, field) in [
            (json!({"strategy": "fastest"}), "strategy"),
            (json!({"plan_priority": "plus; pro"}), "plan_priority"),
            (json!({"affinity_capacity": 8}), "affinity_capacity"),
            (json!({"affinity_capacity": 100.5}), "affinity_capacity"),
            (json!({"keepalive_secs": "soon"}), "keepalive_secs"),
            (json!({"anthropic_aliases": "opus gpt"}), "anthropic_aliases"),
        ] {
            let refused = edit(&mut doc, &body(sent.clone()), &config()).err();
            assert_eq!(refused.map(|e| e.field), Some(field.to_string()), "{sent}");
        }
    }
}
