//! The Settings page's price table (`[usage.prices."MODEL"]`, USD per million tokens): the rows the page sends
//! read into a checked [`Prices`] and into the value settings.rs merges into the file (models kept keep their
//! comments and form, removed ones go, new ones are added in the file's style); settings.rs applies the result
//! to the ledger (`Ledger::set_prices`).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml_edit::Value;

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
            let why = match v {
                Some(v) if v.is_finite() && v >= 0.0 => return Ok(Some(v)),
                Some(v) => {
                    format!("price table: {model} {col} = {v} is not a price (USD per million tokens, 0 or more)")
                }
                None if required => format!("price table: {model} needs a price for {col} (USD per million tokens)"),
                None => return Ok(None),
            };
            Err(Invalid::new(field(col), why))
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

/// The checked table as the file writes it (settings.rs merges it into `[usage.prices]`).
pub(crate) fn to_value(table: &BTreeMap<String, Price>) -> Value {
    let row = |p: &Price| {
        let cached = p.cached_input.map(|c| ("cached_input", Value::from(c)));
        [("input", p.input.into())].into_iter().chain(cached).chain([("output", p.output.into())]).collect()
    };
    Value::InlineTable(table.iter().map(|(m, p)| (m, Value::InlineTable(row(p)))).collect())
}

#[cfg(test)]
mod tests {
    use toml_edit::DocumentMut;

    use super::*;

    fn write(doc: &mut DocumentMut, table: &BTreeMap<String, Price>) -> Result<(), Invalid> {
        super::super::settings::write(doc, "usage.prices", Some(to_value(table)), "prices")
    }

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
