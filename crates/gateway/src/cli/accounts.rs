//! `codex-gateway accounts ...`: manage the store; through a running gateway's admin API when one answers, so two
//! processes never refresh the same single-use token (cli/destination/).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

use super::destination::{AccountName, AccountsTarget, Imported, Target};
use super::output::json_or;
use crate::accounts::manage::{self, ImportSource};
use crate::auth::now_unix;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Add accounts: a Codex auth.json (default: $CODEX_HOME/auth.json), an export file, a bare refresh token
    /// (`-` reads it from stdin), or with --api-key an OpenAI API key / relay.
    Import(ImportArgs),
    /// List accounts with plan, status, quota (5-hour and weekly), cooldowns and last use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an account from the store.
    Remove {
        /// The account's id (`acc-...`), or its label or email when no other account has it.
        id: String,
    },
    /// Use an account again.
    Enable {
        /// The account's id, label or email.
        id: String,
    },
    /// Stop using an account (kept in the store).
    Disable {
        /// The account's id, label or email.
        id: String,
    },
    /// Name an account (no name: clear it).
    Label {
        /// The account's id, label or email.
        id: String,
        label: Option<String>,
    },
    /// The owner's policy (docs/accounts.md, "Policies"): `normal`; `burn_first` (used before the others while it
    /// has quota); `preserve` or `preserve:PERCENT` (the pool stops when a window has PERCENT left, 30 by default).
    Policy {
        /// The account's id, label or email.
        id: String,
        /// normal | burn_first | preserve | preserve:PERCENT
        policy: String,
    },
    /// Send an account's upstream traffic through a proxy (http://, https://, socks5://); no URL: use the
    /// global setting again.
    Proxy {
        /// The account's id, label or email.
        id: String,
        url: Option<String>,
    },
    /// Refresh an account's tokens now.
    Refresh {
        /// The account's id, label or email.
        id: String,
    },
    /// Write all accounts as JSON. Secrets are redacted unless --include-secrets (then the file is mode 0600).
    Export {
        #[arg(long)]
        include_secrets: bool,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Reachability and latency of the upstream through each account (and its proxy).
    Check { id: Option<String> },
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    source: Option<String>,
    #[arg(long)]
    label: Option<String>,
    /// An OpenAI API key (or a relay's key with --base-url).
    #[arg(long)]
    api_key: Option<String>,
    /// A Responses-compatible relay base URL (ends before `/responses`).
    #[arg(long, requires = "api_key")]
    base_url: Option<String>,
    /// Models this API-key/relay account serves, comma-separated (default: any).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
}

pub async fn run(config: &Config, cmd: AccountsCommand) -> anyhow::Result<()> {
    match Target::find(config).await {
        Target::Live(live) => command(&live, config, cmd).await,
        Target::Local(local) => command(&local, config, cmd).await,
    }
}

async fn command(target: &impl AccountsTarget, config: &Config, cmd: AccountsCommand) -> anyhow::Result<()> {
    let id = async |given: &str| pick_account(given, &target.account_names().await?);
    match cmd {
        AccountsCommand::Import(args) => import(target, config, args).await?,
        AccountsCommand::List { json } => json_or(&target.summaries().await?, json, |rows| print_table(rows))?,
        AccountsCommand::Remove { id: given } => {
            let id = id(&given).await?;
            target.remove(&id).await?;
            say!("removed {id}");
        }
        AccountsCommand::Enable { id: given } => {
            let id = id(&given).await?;
            say!("{id}: {}", target.set_enabled(&id, true).await?);
        }
        AccountsCommand::Disable { id: given } => {
            let id = id(&given).await?;
            say!("{id}: {}", target.set_enabled(&id, false).await?);
        }
        AccountsCommand::Label { id: given, label } => {
            let id = id(&given).await?;
            let label = target.set_label(&id, label.as_deref()).await?;
            say!("{id}: label {}", label.as_deref().unwrap_or("(none)"));
        }
        AccountsCommand::Policy { id: given, policy } => {
            // Checked here first, so a typo is refused before any account is looked up.
            let policy = manage::parse_policy(&policy)?.as_text();
            let id = id(&given).await?;
            target.set_policy(&id, &policy).await?;
            say!("{id}: policy {policy}");
        }
        AccountsCommand::Proxy { id: given, url } => {
            let id = id(&given).await?;
            let kept = target.set_proxy(&id, url.as_deref()).await?;
            let shown = kept.as_deref().map(crate::accounts::redact_proxy);
            say!("{id}: proxy {}", shown.unwrap_or_else(|| "(global)".into()));
        }
        AccountsCommand::Refresh { id: given } => {
            let id = id(&given).await?;
            target.refresh(&id).await?;
            say!("{id}: tokens refreshed");
        }
        AccountsCommand::Export { include_secrets, output } => export(config, include_secrets, output)?,
        AccountsCommand::Check { id } => check(target, id).await?,
    }
    Ok(())
}

/// The id of the account `given` names among (id, label, email): an id as it is, else the one account with that
/// label, else the one with that email (several are refused with their ids). Only an id found here goes into an
/// admin path.
fn pick_account(given: &str, accounts: &[AccountName]) -> anyhow::Result<String> {
    let by = |field: usize| -> Vec<&str> {
        accounts.iter().filter(|a| a[field].as_deref() == Some(given)).filter_map(|a| a[0].as_deref()).collect()
    };
    let (ids, labels, emails) = (by(0), by(1), by(2));
    match (&ids[..], &labels[..], &emails[..]) {
        ([id, ..], _, _) | ([], [id], _) | ([], [], [id]) => Ok(id.to_string()),
        ([], [], []) => bail!("no account `{given}` (by id, label or email; codex-gateway accounts list)"),
        ([], [], several) | ([], several, _) => {
            bail!("{} accounts are `{given}`: give the id ({})", several.len(), several.join(", "))
        }
    }
}

/// `accounts import`: what the source names (a file, stdin, a token, an API key), added to the target.
async fn import(target: &impl AccountsTarget, config: &Config, args: ImportArgs) -> anyhow::Result<()> {
    let ImportArgs { source, label, api_key, base_url, models } = args;
    let source = match api_key {
        Some(key) => ImportSource::ApiKey { key, base_url, models },
        None => {
            let text = match source.as_deref() {
                Some("-") => std::io::read_to_string(std::io::stdin())?,
                Some(p) if std::path::Path::new(p).exists() => std::fs::read_to_string(p)?,
                Some(token) => token.to_string(),
                None => {
                    let p = config.codex_auth_file();
                    std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?
                }
            };
            ImportSource::detect(&text)?
        }
    };
    let from_codex_cli = matches!(source, ImportSource::AuthJson(_));
    let imported = target.import(source, label).await?;
    for Imported { who, kind, id } in &imported {
        say!("imported {who} ({kind}) as {id}");
    }
    if from_codex_cli && imported.iter().any(|a| a.kind == crate::store::AccountKind::Chatgpt.as_str()) {
        eprintln!(
            "warning: the gateway and the Codex CLI now hold the same single-use refresh token. Whichever \
             refreshes first logs the other out. Keep using only one of them with this login, or use \
             `codex-gateway login` to give the gateway its own session."
        );
    }
    Ok(())
}

/// `accounts export` reads the store itself, with or without a running gateway (secrets included only here).
fn export(config: &Config, include_secrets: bool, output: Option<PathBuf>) -> anyhow::Result<()> {
    let doc = manage::export(&config.open_store()?, include_secrets)?;
    let text = serde_json::to_string_pretty(&doc)?;
    match output {
        Some(path) if include_secrets => crate::auth::codex_file::write_private_atomic(&path, text.as_bytes())?,
        Some(path) => std::fs::write(&path, text)?,
        None => say!("{text}"),
    }
    if include_secrets {
        eprintln!("warning: this export contains live tokens; anyone with it can use these accounts.");
    }
    Ok(())
}

async fn check(target: &impl AccountsTarget, given: Option<String>) -> anyhow::Result<()> {
    let id = if let Some(given) = given { Some(pick_account(&given, &target.account_names().await?)?) } else { None };
    let results = target.check(id.as_deref()).await?;
    for r in &results {
        let id = r["id"].as_str().unwrap_or("-");
        match r["ok"].as_bool() {
            Some(true) => {
                let via = r["via"].as_str().map(|v| format!(" via {v}")).unwrap_or_default();
                say!("{id}: ok ({} ms{via})", r["latency_ms"]);
            }
            _ => say!("{id}: FAILED {}", r.get("error").or(r.get("status")).unwrap_or(&Value::Null)),
        }
    }
    if results.iter().any(|r| r["ok"] != true) {
        bail!("some accounts cannot reach the upstream");
    }
    Ok(())
}

fn pct(v: &Value) -> String {
    v.as_f64().map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into())
}

/// A unix time as the distance from now: `in 6d 23h`, `2h 5m ago`.
fn when(v: &Value) -> String {
    let Some(t) = v.as_i64() else { return "-".into() };
    let d = t - now_unix();
    let span = super::service::duration(d.unsigned_abs());
    if d > 0 { format!("in {span}") } else { format!("{span} ago") }
}

/// Requests in flight over the account's limit now, with its policy when it is not the normal one
/// (`3/4`, `0/1 overloaded x2`, `1/4 preserve:30`).
fn pace(s: &Value, in_flight: &Value) -> String {
    let Some(limit) = s["limit"].as_u64() else { return "-".into() };
    let mut out = format!("{}/{limit}", in_flight.as_u64().unwrap_or(0));
    if let Some(streak) = s["overload_streak"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!(" overloaded x{streak}"));
    }
    if let Some(policy) = s["policy"].as_str().filter(|p| *p != "normal") {
        out.push_str(&format!(" {policy}"));
    }
    out
}

/// When the account runs dry at its present rate, or when it is back if it is dry now.
fn dry(f: &Value) -> String {
    match (f["dry_in_secs"].as_u64(), f["back_at"].as_i64()) {
        (Some(0), Some(_)) => format!("dry, back {}", when(&f["back_at"])),
        (Some(secs), _) => super::service::duration(secs),
        (None, _) => "-".into(),
    }
}

fn print_table(rows: &[Value]) {
    if rows.is_empty() {
        return say!(
            "no accounts: run `codex-gateway login`, `codex login` (the gateway then uses ~/.codex/auth.json), \
             `codex-gateway accounts import [PATH]`, or set OPENAI_API_KEY"
        );
    }
    let header = "id,email/label,plan,status,policy,5h,resets,week,resets,pace,dry in,last use,cooldowns";
    let mut table = vec![header.split(',').map(String::from).collect::<Vec<_>>()];
    for r in rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let who = r["label"].as_str().or(r["email"].as_str()).unwrap_or("-");
        let q = &r["quota"];
        let cooldown = |c: &Value| {
            let model = c["model"].as_str().map(|m| format!("{m}: ")).unwrap_or_default();
            format!("{model}{} {}", c["reason"].as_str().unwrap_or(""), when(&c["until"]))
        };
        let cooldowns: Vec<String> = r["cooldowns"].as_array().into_iter().flatten().map(cooldown).collect();
        table.push(vec![
            s("id"),
            who.to_string(),
            s("plan"),
            s("status"),
            r["stewardship"]["policy"].as_str().unwrap_or("-").to_string(),
            pct(&q["primary_used_percent"]),
            when(&q["primary_reset_at"]),
            pct(&q["secondary_used_percent"]),
            when(&q["secondary_reset_at"]),
            pace(&r["stewardship"], &r["in_flight"]),
            dry(&r["stewardship"]["forecast"]),
            when(&r["last_used"]),
            cooldowns.join("; "),
        ]);
    }
    use super::output::Align::{Left, Right};
    let align = [Left, Left, Left, Left, Left, Right, Left, Right, Left, Right, Left, Left, Left];
    super::output::text(format_args!("{}", super::output::table(&table, &align)));
    // Rare and serious, so under the table in full rather than squeezed into a column.
    for r in rows {
        if r["status"] == "unrecognized" {
            eprintln!(
                "warning: {}: not used: {} (the row is kept as it is)",
                r["id"].as_str().unwrap_or("-"),
                r["status_reason"].as_str().unwrap_or("the store holds a value this build does not know")
            );
        }
        if let Some(error) = r["tokens_not_saved"]["error"].as_str() {
            eprintln!(
                "warning: {}: TOKENS NOT SAVED since {} ({error}); the gateway uses them from memory and retries \
                 saving, but a restart before it succeeds loses this login",
                r["id"].as_str().unwrap_or("-"),
                when(&r["tokens_not_saved"]["since"])
            );
        }
    }
    // Risk signals (docs/accounts.md): one line per account that has any, so a clean pool prints nothing more.
    for line in rows.iter().filter_map(risk_line) {
        say!("{line}");
    }
}

/// `acc-1: 2 policy refusals (cyber 2), last 2026-11-27 10:00; 1 conversation held` for an account the upstream
/// refused requests of, or that holds conversations; `None` for the others.
fn risk_line(r: &Value) -> Option<String> {
    let risk = &r["risk"];
    let refusals = risk["policy_refusals"].as_u64().unwrap_or(0);
    let held = risk["held_conversations"].as_u64().unwrap_or(0);
    let mut parts = Vec::new();
    if refusals > 0 {
        let kinds: Vec<String> = risk["policy_refusals_by_kind"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(kind, n)| n.as_u64().filter(|n| *n > 0).map(|n| format!("{kind} {n}")))
            .collect();
        let plural = if refusals == 1 { "" } else { "s" };
        parts.push(format!(
            "{refusals} policy refusal{plural} ({}), last {}",
            kinds.join(", "),
            when(&risk["last_policy_refusal_at"])
        ));
    }
    if held > 0 {
        let plural = if held == 1 { "" } else { "s" };
        parts.push(format!("{held} conversation{plural} held (GET /admin/conversations/held)"));
    }
    (!parts.is_empty()).then(|| format!("{}: {}", r["id"].as_str().unwrap_or("-"), parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::pick_account;

    #[test]
    fn an_accounts_risk_is_one_line_under_the_table_and_none_for_a_clean_account() {
        let clean = serde_json::json!({"id": "acc-1", "risk": {"policy_refusals": 0, "held_conversations": 0}});
        assert_eq!(super::risk_line(&clean), None);
        let flagged = serde_json::json!({"id": "acc-2", "risk": {
            "policy_refusals": 2, "policy_refusals_by_kind": {"cyber": 2, "bio": 0},
            "last_policy_refusal_at": null, "held_conversations": 1}});
        let line = super::risk_line(&flagged).unwrap_or_default();
        assert!(line.starts_with("acc-2: 2 policy refusals (cyber 2)"), "{line}");
        assert!(line.contains("1 conversation held"), "{line}");
    }

    #[test]
    fn an_account_is_named_by_its_id_label_or_email_when_no_other_has_it() {
        let row = |id: &str, label: Option<&str>, email: Option<&str>| {
            [Some(id.to_string()), label.map(str::to_string), email.map(str::to_string)]
        };
        let accounts = [
            row("acc-1", Some("work"), Some("a@x.test")),
            row("acc-2", Some("home"), Some("b@x.test")),
            row("acc-3", Some("team"), Some("c@x.test")),
            row("acc-4", Some("team"), Some("d@x.test")),
            row("acc-5", Some("c@x.test"), None),
            row("acc-6", None, Some("d@x.test")),
        ];
        let ok = |given: &str| pick_account(given, &accounts).ok();
        assert_eq!(ok("acc-2").as_deref(), Some("acc-2"));
        assert_eq!(ok("work").as_deref(), Some("acc-1"));
        assert_eq!(ok("b@x.test").as_deref(), Some("acc-2"));
        // A label wins over an email that reads the same.
        assert_eq!(ok("c@x.test").as_deref(), Some("acc-5"));
        let err = |given: &str| pick_account(given, &accounts).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("team").contains("2 accounts are `team`: give the id (acc-3, acc-4)"), "{}", err("team"));
        assert!(
            err("d@x.test").contains("2 accounts are `d@x.test`: give the id (acc-4, acc-6)"),
            "{}",
            err("d@x.test")
        );
        assert!(err("nobody").contains("no account `nobody`"), "{}", err("nobody"));
    }
}
