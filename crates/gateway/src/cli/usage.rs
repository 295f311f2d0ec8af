//! `codex-gateway usage [--since 7d] [--by model|account|key|dialect|user] [--user NAME]`: a table of the usage
//! ledger, through a running gateway's admin API when one answers, else from the store (cli/destination/).

use std::collections::HashMap;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::destination::{AccountName, AccountsTarget, KeysTarget, Target, UsageTarget};
use super::output::Align;
use crate::config::Config;
use crate::usage::query::GroupBy;
use crate::usage::when::{now_ms, parse_instant};

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// Start of the period: a duration ago (7d, 24h, 30m, 2w), a date (2026-11-01), an RFC 3339 time, or unix
    /// seconds.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// One line per model, account, client key, dialect or user.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Only the requests made for this user (their name or id): a key they own, their own token.
    #[arg(long)]
    pub user: Option<String>,
    /// Print the report as JSON (the `/admin/usage` answer).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, args: UsageArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let from = since(&args.since, now)?;
    let Some(by) = GroupBy::parse(&args.by) else {
        anyhow::bail!("--by {:?}: expected model, account, key, dialect or user", args.by);
    };
    anyhow::ensure!(from < now, "--since {:?} is not in the past", args.since);
    match Target::find(config).await {
        Target::Live(live) => report(&live, &args, from, now, by).await,
        Target::Local(local) => report(&local, &args, from, now, by).await,
    }
}

async fn report<T>(target: &T, args: &UsageArgs, from: i64, now: i64, by: GroupBy) -> anyhow::Result<()>
where
    T: UsageTarget + AccountsTarget + KeysTarget,
{
    let report = target.usage(from, now, by, args.user.as_deref()).await?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    // Keys, accounts and users are grouped by id; the names people know them by go beside it.
    let names = match by {
        GroupBy::Key => target.key_names().await.unwrap_or_default().into_iter().map(|k| (k.id, k.name)).collect(),
        GroupBy::Account => account_names(target).await.unwrap_or_default(),
        GroupBy::User => target.user_names().await.unwrap_or_default().into_iter().collect(),
        _ => HashMap::new(),
    };
    super::output::text(format_args!("{}", table(&report, by.as_str(), &names)));
    Ok(())
}

/// `--since`: an instant, as [`parse_instant`] reads it.
pub(super) fn since(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    let expected = "expected a duration ago (7d, 24h), a date (2026-11-01) or a time";
    parse_instant(s, now_ms).with_context(|| format!("--since {s:?}: {expected}"))
}

/// Each account's label, else its email, by id.
async fn account_names(target: &impl AccountsTarget) -> anyhow::Result<HashMap<String, String>> {
    let named = |[id, label, email]: AccountName| {
        let known = |s: Option<String>| s.filter(|s| !s.is_empty());
        Some((id?, known(label).or_else(|| known(email))?))
    };
    Ok(target.account_names().await?.into_iter().filter_map(named).collect())
}

/// The report's groups and totals as an aligned table, a group shown with its name when `names` has one; a cost
/// column only when some model has a price.
fn table(report: &Value, by: &str, names: &HashMap<String, String>) -> String {
    let series = report["series"].as_array().cloned().unwrap_or_default();
    let priced = report["totals"].get("cost_usd").is_some();
    let mut header = vec![by.to_uppercase()];
    header.extend("REQUESTS,ERRORS,INPUT,CACHED,OUTPUT,REASONING".split(',').map(String::from));
    header.extend(priced.then(|| "COST USD".to_string()));
    let line = |name: String, t: &Value| {
        let mut cells = vec![name];
        for k in ["requests", "errors", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"] {
            cells.push(t[k].as_u64().unwrap_or(0).to_string());
        }
        if priced {
            let cost = t["cost_usd"].as_f64().map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into());
            let partial = if t["cost_incomplete"] == true { "+" } else { "" };
            cells.push(format!("{cost}{partial}"));
        }
        cells
    };
    let mut rows = vec![header];
    for s in &series {
        let group = s["group"].as_str().unwrap_or("(none)");
        let label = names.get(group).map_or(group.to_string(), |name| format!("{group} ({name})"));
        rows.push(line(label, &s["totals"]));
    }
    rows.push(line("TOTAL".into(), &report["totals"]));
    let mut align = vec![Align::Right; rows[0].len()];
    align[0] = Align::Left;
    let mut out = super::output::table(&rows, &align);
    if priced {
        out += "cost: API-equivalent estimate from [usage.prices]; \"+\": some models have no price and are left out\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn table_aligns_groups_and_shows_cost_only_when_priced() {
        let t = |n: u64| {
            json!({"requests": n, "errors": 0, "input_tokens": n * 10, "cached_tokens": 0,
                                "output_tokens": n, "reasoning_tokens": 0})
        };
        let report = json!({"series": [{"group": "gpt-5.4", "totals": t(3)}, {"group": null, "totals": t(12)}],
                            "totals": t(15)});
        let out = super::table(&report, "model", &Default::default());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "MODEL    REQUESTS  ERRORS  INPUT  CACHED  OUTPUT  REASONING");
        assert_eq!(lines[1], "gpt-5.4         3       0     30       0       3          0");
        assert_eq!(lines[2], "(none)         12       0    120       0      12          0");
        assert!(lines[3].starts_with("TOTAL          15"));
        let mut priced = report.clone();
        priced["totals"]["cost_usd"] = json!(1.5);
        priced["totals"]["cost_incomplete"] = json!(true);
        priced["series"][0]["totals"]["cost_usd"] = json!(1.5);
        let out = super::table(&priced, "model", &Default::default());
        assert!(out.lines().next().is_some_and(|l| l.ends_with("COST USD")), "{out}");
        assert!(out.lines().nth(1).is_some_and(|l| l.ends_with("1.50")), "{out}");
        assert!(out.lines().nth(2).is_some_and(|l| l.ends_with(" -")), "{out}");
        assert!(out.lines().nth(3).is_some_and(|l| l.ends_with("1.50+")), "{out}");
    }

    #[test]
    fn keys_are_shown_with_their_names() {
        let t = json!({"requests": 2, "errors": 0, "input_tokens": 1, "cached_tokens": 0, "output_tokens": 1,
                       "reasoning_tokens": 0});
        let report = json!({"series": [{"group": "key_2d31c3507227", "totals": t}, {"group": "key_gone", "totals": t}],
                            "totals": t});
        let names = [("key_2d31c3507227".to_string(), "carol".to_string())].into_iter().collect();
        let out = super::table(&report, "key", &names);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("KEY                       REQUESTS"), "{out}");
        assert!(lines[1].starts_with("key_2d31c3507227 (carol)         2"), "{out}");
        assert!(lines[2].starts_with("key_gone                         2"), "{out}");
    }
}
