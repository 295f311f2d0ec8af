//! The API-equivalent cost the price table (config/prices.rs, `[usage.prices."MODEL"]`) gives. A model without a
//! price has no cost: the ledger never guesses one.

pub use crate::config::prices::{Price, Prices};

/// Token counts in the ledger's convention: `input` includes `cached`, `output` includes reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
}

/// What `t` costs at `price`.
pub fn cost(price: &Price, t: Tokens) -> f64 {
    let cached = t.cached.min(t.input);
    let per = 1_000_000.0;
    ((t.input - cached) as f64 * price.input
        + cached as f64 * price.cached_input.unwrap_or(price.input)
        + t.output as f64 * price.output)
        / per
}

/// A cost summed over several models: what the priced ones cost, and whether tokens of an unpriced model were
/// left out (then the sum is a lower bound, and says so).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub usd: f64,
    pub priced: bool,
    pub incomplete: bool,
}

impl Cost {
    /// Add the cost of `t` at a model's `price` (`None`: the model has none).
    pub fn add(&mut self, price: Option<&Price>, t: Tokens) {
        match price {
            Some(p) => {
                self.usd += cost(p, t);
                self.priced = true;
            }
            None => self.incomplete |= t != Tokens::default(),
        }
    }

    pub fn merge(&mut self, other: Cost) {
        self.usd += other.usd;
        self.priced |= other.priced;
        self.incomplete |= other.incomplete;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn cost_splits_cached_input_and_never_prices_an_unknown_model() -> anyhow::Result<()> {
        let table: HashMap<String, Price> =
            toml::from_str("[\"gpt-5.4\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0")?;
        let prices = Prices::new(table)?;
        let t = Tokens { input: 1_000_000, cached: 400_000, output: 100_000 };
        let mut c = Cost::default();
        c.add(prices.get("gpt-5.4"), t);
        // 600k uncached * 1.25 + 400k cached * 0.125 + 100k * 10, per million.
        assert!((c.usd - (0.75 + 0.05 + 1.0)).abs() < 1e-9, "{}", c.usd);
        assert!(c.priced && !c.incomplete);
        let mut other = Cost::default();
        other.add(prices.get("gpt-5.5"), t);
        assert!(!other.priced && other.incomplete && other.usd == 0.0);
        c.merge(other);
        assert!(c.priced && c.incomplete);
        let no_cache: HashMap<String, Price> = toml::from_str("[m]\ninput = 2.0\noutput = 0.0")?;
        let c = Prices::new(no_cache)?.get("m").map(|p| cost(p, Tokens { input: 10, cached: 5, output: 0 }));
        assert_eq!(c, Some(20.0 / 1e6));
        let bad: HashMap<String, Price> = toml::from_str("[m]\ninput = -1.0\noutput = 1.0")?;
        assert!(Prices::new(bad).is_err());
        Ok(())
    }
}
