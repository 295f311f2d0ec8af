//! The optional price table (`[usage.prices."MODEL"]`, USD per million tokens), checked when the file loads; the
//! cost it gives is the ledger's (usage/pricing.rs).

use std::collections::HashMap;

use anyhow::bail;
use serde::Deserialize;

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Cached input tokens; the input price when absent (no discount is assumed).
    pub cached_input: Option<f64>,
    /// Output tokens, reasoning included.
    pub output: f64,
}

/// The configured prices by model (the resolved Codex model name, as the ledger stores it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(HashMap<String, Price>);

impl Prices {
    /// Refuses negative or non-finite prices (a typo would otherwise print nonsense costs).
    pub fn new(table: HashMap<String, Price>) -> anyhow::Result<Prices> {
        for (model, p) in &table {
            for (name, v) in [("input", Some(p.input)), ("cached_input", p.cached_input), ("output", Some(p.output))] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    bail!("[usage.prices.\"{model}\"] {name} = {v} is not a price (USD per million tokens, >= 0)");
                }
            }
        }
        Ok(Prices(table))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, model: &str) -> Option<&Price> {
        self.0.get(model)
    }

    /// Every model's price, by model name (the dashboard's Settings list them).
    pub fn sorted(&self) -> Vec<(&str, Price)> {
        let mut v: Vec<(&str, Price)> = self.0.iter().map(|(m, p)| (m.as_str(), *p)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}
