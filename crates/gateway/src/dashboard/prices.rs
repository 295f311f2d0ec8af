//! The Settings page's price table (`[usage.prices."MODEL"]`, USD per million tokens): the rows the page sends
//! read into a checked [`Prices`], and the file's table brought to match it with toml_edit (models kept keep
//! their comments and form, removed ones go, new ones are added in the file's style). settings.rs calls this and
//! applies the result to the ledger (`Ledger::set_prices`).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml_edit::{DocumentMut, InlineTable, Item, Table, value};

use super::settings::Invalid;
use crate::usage::pricing::{Price, Prices};

/// One row of the page's table; a row with no model and no price is an empty line and ignored.
#[derive(Deserialize, Debug, Default, Clone)]
pub(crate) struct PriceRow {
    #[serde(default)]
    pub model: String,
    pub input: Option<f64>,
    pub cached_input: Option<f64>,
    pub output: Option<f64>,
}

/// The rows as a price table; an error names the field (`price-<row>-<column>`) the page marks.
pub(crate) fn parse(rows: &[PriceRow]) -> Result<BTreeMap<String, Price>, Invalid> {
    let mut out = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let model = r.model.trim();
        let field = |col: &str| format!("price-{i}-{col}");
        if model.is_empty() {
            if r.input.is_some() || r.cached_input.is_some() || r.output.is_some() {
                return Err(Invalid::new(field("model"), "price table: which model do these prices belong to?"));
            }
            continue;
        }
        if out.contains_key(model) {
            return Err(Invalid::new(field("model"), format!("price table: {model} is listed twice")));
        }
        let check = |col: &str, v: Option<f64>, required: bool| -> Result<Option<f64>, Invalid> {
            match v {
                Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                Some(v) => Err(Invalid::new(
                    field(col),
                    format!("price table: {model} {col} = {v} is not a price (USD per million tokens, 0 or more)"),
                )),
                None if required => Err(Invalid::new(
                    field(col),
                    format!("price table: {model} needs a price for {col} (USD per million tokens)"),
                )),
                None => Ok(None),
            }
        };
        let input = check("input", r.input, true)?.unwrap_or(0.0);
        let cached_input = check("cached_input", r.cached_input, false)?;
        let output = check("output", r.output, true)?.unwrap_or(0.0);
        out.insert(model.to_string(), Price { input, cached_input, output });
    }
    Ok(out)
}

/// The checked table as the ledger's [`Prices`].
pub(crate) fn to_prices(table: &BTreeMap<String, Price>) -> Result<Prices, Invalid> {
    let map: HashMap<String, Price> = table.iter().map(|(m, p)| (m.clone(), *p)).collect();
    Prices::new(map).map_err(|e| Invalid::new("prices".into(), format!("price table: {e}")))
}

/// Make `[usage.prices]` in the document hold exactly `table`.
pub(crate) fn write(doc: &mut DocumentMut, table: &BTreeMap<String, Price>) -> Result<(), Invalid> {
    let bad = |m: &str| Invalid::new("prices".into(), m.to_string());
    let usage = super::settings::table(doc, "usage")
        .as_table_like_mut()
        .ok_or_else(|| bad("`usage` in the file is not a table"))?;
    if table.is_empty() {
        usage.remove("prices");
        return Ok(());
    }
    let item = usage.entry("prices").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    let inline_parent = item.is_inline_table();
    let prices = item.as_table_like_mut().ok_or_else(|| bad("`usage.prices` in the file is not a table"))?;
    let old: Vec<String> = prices.iter().map(|(k, _)| k.to_string()).collect();
    for k in old.iter().filter(|k| !table.contains_key(*k)) {
        prices.remove(k);
    }
    for (model, p) in table {
        let entry = prices.entry(model).or_insert_with(|| match inline_parent {
            true => value(InlineTable::new()),
            false => Item::Table(Table::new()),
        });
        let t = entry.as_table_like_mut().ok_or_else(|| bad(&format!("`usage.prices.\"{model}\"` is not a table")))?;
        super::settings::put(t, "input", value(p.input));
        super::settings::put(t, "cached_input", p.cached_input.map(value).unwrap_or_default());
        super::settings::put(t, "output", value(p.output));
        if let Some(inline) = entry.as_inline_table_mut() {
            inline.fmt();
        }
    }
    if let Some(inline) = item.as_inline_table_mut() {
        inline.fmt();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, input: Option<f64>, cached: Option<f64>, output: Option<f64>) -> PriceRow {
        PriceRow { model: model.into(), input, cached_input: cached, output }
    }

    #[test]
    fn rows_are_checked_and_errors_name_their_field() {
        let ok = parse(&[row("gpt-5.4", Some(1.25), Some(0.125), Some(10.0)), row("", None, None, None)]);
        assert_eq!(ok.map(|t| t.len()), Ok(1));
        let e = parse(&[row("a", Some(1.0), None, Some(1.0)), row("b", Some(-1.0), None, Some(1.0))]);
        assert_eq!(e.map_err(|e| e.field), Err("price-1-input".to_string()));
        let e = parse(&[row("a", Some(1.0), None, None)]);
        assert_eq!(e.map_err(|e| e.field), Err("price-0-output".to_string()));
        let e = parse(&[row("", Some(1.0), None, None)]);
        assert_eq!(e.map_err(|e| e.field), Err("price-0-model".to_string()));
        let e = parse(&[row("a", Some(1.0), None, Some(1.0)), row("a", Some(2.0), None, Some(1.0))]);
        assert_eq!(e.map_err(|e| e.field), Err("price-1-model".to_string()));
    }

    #[test]
    fn the_file_keeps_its_comments_and_loses_only_removed_models() -> Result<(), String> {
        let text = "# prices from the vendor page\n[usage.prices.\"gpt-5.4\"] # flagship\ninput = 1.25 # in\noutput = 10.0\n\n[usage.prices.old]\ninput = 1.0\noutput = 1.0\n";
        let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
        let table = parse(&[
            row("gpt-5.4", Some(1.5), Some(0.15), Some(12.0)),
            row("gpt-5.4-mini", Some(0.25), None, Some(2.0)),
        ])
        .map_err(|e| e.message)?;
        write(&mut doc, &table).map_err(|e| e.message)?;
        let out = doc.to_string();
        assert!(
            out.starts_with("# prices from the vendor page\n[usage.prices.\"gpt-5.4\"] # flagship\ninput = 1.5 # in\n"),
            "{out}"
        );
        assert!(!out.contains("[usage.prices.old]"), "{out}");
        let raw: crate::config::RawConfig = toml::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let prices = raw.usage.and_then(|u| u.prices).unwrap_or_default();
        assert_eq!(prices.get("gpt-5.4").map(|p| (p.cached_input, p.output)), Some((Some(0.15), 12.0)));
        assert_eq!(prices.get("gpt-5.4-mini").map(|p| p.input), Some(0.25));
        write(&mut doc, &BTreeMap::new()).map_err(|e| e.message)?;
        assert!(!doc.to_string().contains("prices"), "{doc}");
        Ok(())
    }
}
