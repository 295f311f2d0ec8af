//! `codex-gateway accounts ...`: manage the store. When a gateway is running (`service::reach`), live
//! data (quota, cooldowns, last use) and token refreshes go through its admin API, so two processes never
//! refresh the same single-use token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::accounts::Pool;
use crate::accounts::manage::{self, ImportSource};
use crate::auth::now_unix;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Add accounts: a Codex auth.json (default: $CODEX_HOME/auth.json), an export file, a bare refresh token
    /// (`-` reads it from stdin), or with --api-key an OpenAI API key / relay.
    Import {
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
    },
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

/// A running gateway's admin API, if one answers where this machine's gateway is (`service::reach`), with the
/// admin credential.
pub(crate) struct Live {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Live {
    pub(crate) async fn find(config: &Config) -> Option<Live> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().ok()?;
        let super::service::Reach { base, key } = super::service::reach(config);
        let mut req = http.get(format!("{base}/admin/status")).timeout(Duration::from_secs(2));
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let ok = req.send().await.ok()?.status().is_success();
        ok.then_some(Live { base, key, http })
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.context("the running gateway did not answer")?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}", v["error"]["message"].as_str().unwrap_or("the gateway refused"));
        }
        Ok(v)
    }
}

/// The id of the account `given` names: an id as it is, else the one account with that label, else the one with
/// that email (several are refused with their ids). Only an id found here goes into an admin path.
async fn resolve(live: &Option<Live>, config: &Config, given: &str) -> anyhow::Result<String> {
    let accounts: Vec<[Option<String>; 3]> = match live {
        Some(l) => {
            let list = l.call(reqwest::Method::GET, "/admin/accounts", None).await?;
            let field = |a: &Value, f: &str| a[f].as_str().map(str::to_string);
            list.as_array()
                .into_iter()
                .flatten()
                .map(|a| [field(a, "id"), field(a, "label"), field(a, "email")])
                .collect()
        }
        None => config.open_store()?.list_accounts()?.into_iter().map(|a| [Some(a.id), a.label, a.email]).collect(),
    };
    pick_account(given, &accounts)
}

/// [`resolve`] over (id, label, email).
fn pick_account(given: &str, accounts: &[[Option<String>; 3]]) -> anyhow::Result<String> {
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

/// The admin API's body for an import (`POST /admin/accounts`, server/admin.rs).
fn admin_body(source: ImportSource, label: Option<String>) -> Value {
    let mut body = match source {
        ImportSource::AuthJson(v) => json!({"auth_json": v}),
        ImportSource::Export(v) => json!({"export": v}),
        ImportSource::RefreshToken(rt) => json!({"refresh_token": rt}),
        ImportSource::ApiKey { key, base_url, models } => {
            json!({"api_key": key, "base_url": base_url, "models": models})
        }
    };
    body["label"] = json!(label);
    body
}

/// The accounts as this command's own pool, for a command no running gateway answered.
struct LocalPool {
    pool: Pool,
    /// Held while the command runs, so no gateway starts serving (and refreshing) this store beside it.
    _lock: Option<crate::store::serving::CommandLock>,
}

impl std::ops::Deref for LocalPool {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.pool
    }
}

/// Refused while a gateway serves this data directory: a refresh here would spend a single-use token behind its
/// back.
fn local_pool(config: &Config) -> anyhow::Result<LocalPool> {
    use crate::store::serving::{Refused, hold_for_command};
    let lock = match config.store.url {
        Some(_) => None,
        None => match hold_for_command(&config.data_dir)? {
            Ok(lock) => Some(lock),
            Err(Refused::Serving(pid)) => {
                let reach = super::service::reach(config);
                bail!(
                    "a codex-gateway{} serves this data directory but did not answer at {} with the admin \
                     credential: run this command with its address (CODEX_GATEWAY_PORT, CODEX_GATEWAY_HOST) and \
                     its admin key (CODEX_GATEWAY_ADMIN_KEY), so the change goes through it",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                    reach.base
                );
            }
        },
    };
    let store = Arc::new(config.open_store()?);
    let http = crate::upstream::build_http_client(config)?;
    Ok(LocalPool { pool: Pool::load(Arc::new(config.clone()), store, http)?, _lock: lock })
}

pub async fn run(config: &Config, cmd: AccountsCommand) -> anyhow::Result<()> {
    let live = Live::find(config).await;
    match cmd {
        AccountsCommand::Import { source, label, api_key, base_url, models } => {
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
            // A running gateway imports through its admin API, so its pool has the accounts at once (a write to
            // the store alone is seen only at its next re-read, up to 30 s later).
            let imported: Vec<(String, String, String)> = match &live {
                Some(l) => {
                    let added =
                        l.call(reqwest::Method::POST, "/admin/accounts", Some(admin_body(source, label))).await?;
                    let s = |a: &Value, k: &str| a[k].as_str().unwrap_or("-").to_string();
                    added
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            (
                                a["email"].as_str().or(a["label"].as_str()).unwrap_or("-").into(),
                                s(a, "kind"),
                                s(a, "id"),
                            )
                        })
                        .collect()
                }
                None => {
                    let http = crate::upstream::build_http_client(config)?;
                    let rows =
                        manage::resolve(source, label, &http, &config.auth_issuer, &config.client.user_agent).await?;
                    let store = config.open_store()?;
                    for row in &rows {
                        store.upsert_account(row)?;
                    }
                    let who = |r: &crate::store::StoredAccount| {
                        r.email.as_deref().or(r.label.as_deref()).unwrap_or("-").to_string()
                    };
                    rows.iter().map(|r| (who(r), r.kind.as_str().to_string(), r.id.clone())).collect()
                }
            };
            for (who, kind, id) in &imported {
                say!("imported {who} ({kind}) as {id}");
            }
            if from_codex_cli && imported.iter().any(|(_, kind, _)| kind == crate::store::AccountKind::Chatgpt.as_str())
            {
                eprintln!(
                    "warning: the gateway and the Codex CLI now hold the same single-use refresh token. Whichever \
                     refreshes first logs the other out. Keep using only one of them with this login, or use \
                     `codex-gateway login` to give the gateway its own session."
                );
            }
            Ok(())
        }
        AccountsCommand::List { json } => {
            let rows: Vec<Value> = match &live {
                Some(l) => {
                    l.call(reqwest::Method::GET, "/admin/accounts", None).await?.as_array().cloned().unwrap_or_default()
                }
                None => {
                    let pool = local_pool(config)?;
                    for a in
                        pool.accounts().iter().filter(|a| a.kind == crate::store::AccountKind::Chatgpt && a.is_active())
                    {
                        pool.poll_usage(a).await;
                    }
                    let now = now_unix();
                    pool.accounts().iter().map(|a| a.summary(now)).collect()
                }
            };
            if json {
                say!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
            Ok(())
        }
        AccountsCommand::Remove { id } => {
            let id = resolve(&live, config, &id).await?;
            if let Some(l) = &live {
                l.call(reqwest::Method::DELETE, &format!("/admin/accounts/{id}"), None).await?;
            } else if !config.open_store()?.remove_account(&id)? {
                bail!("no account `{id}` in the store");
            }
            say!("removed {id}");
            Ok(())
        }
        AccountsCommand::Enable { id } => set_enabled(config, &live, &resolve(&live, config, &id).await?, true).await,
        AccountsCommand::Disable { id } => set_enabled(config, &live, &resolve(&live, config, &id).await?, false).await,
        AccountsCommand::Label { id, label } => {
            let id = resolve(&live, config, &id).await?;
            if let Some(l) = &live {
                l.call(reqwest::Method::POST, &format!("/admin/accounts/{id}/label"), Some(json!({"label": label})))
                    .await?;
            } else if !config.open_store()?.set_label(&id, label.as_deref())? {
                bail!("no account `{id}` in the store");
            }
            say!("{id}: label {}", label.as_deref().unwrap_or("(none)"));
            Ok(())
        }
        AccountsCommand::Proxy { id, url } => {
            let id = resolve(&live, config, &id).await?;
            if let Some(u) = &url {
                reqwest::Proxy::all(u).with_context(|| format!("invalid proxy URL {u}"))?;
            }
            if let Some(l) = &live {
                l.call(reqwest::Method::POST, &format!("/admin/accounts/{id}/proxy"), Some(json!({"proxy": url})))
                    .await?;
            } else if !config.open_store()?.set_proxy(&id, url.as_deref())? {
                bail!("no account `{id}` in the store");
            }
            say!(
                "{id}: proxy {}",
                url.as_deref().map(crate::accounts::redact_proxy).unwrap_or_else(|| "(global)".into())
            );
            Ok(())
        }
        AccountsCommand::Refresh { id } => {
            let id = resolve(&live, config, &id).await?;
            if let Some(l) = &live {
                let summary = l.call(reqwest::Method::POST, &format!("/admin/accounts/{id}/refresh"), None).await?;
                if let Some(error) = summary["tokens_not_saved"]["error"].as_str() {
                    eprintln!(
                        "warning: {id}: the new tokens could not be saved yet ({error}); the gateway uses them and \
                         keeps retrying, but a restart before it succeeds loses this login"
                    );
                }
            } else {
                let pool = local_pool(config)?;
                let account = pool.get(&id).with_context(|| format!("no account `{id}`"))?;
                pool.force_refresh(&account).await.map_err(|e| anyhow::anyhow!(e.message))?;
                // Nothing keeps this process alive to retry: unsaved tokens die with it, and the old refresh
                // token is already spent.
                if let Some(unsaved) = account.unsaved_tokens() {
                    bail!(
                        "{id}: the tokens were refreshed but could not be saved ({}); the previous refresh token is \
                         spent, so this login is lost: make the store writable and log in again",
                        unsaved.error
                    );
                }
            }
            say!("{id}: tokens refreshed");
            Ok(())
        }
        AccountsCommand::Export { include_secrets, output } => {
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
        AccountsCommand::Check { id } => {
            let id = match id {
                Some(given) => Some(resolve(&live, config, &given).await?),
                None => None,
            };
            let results: Vec<Value> = match &live {
                Some(l) => {
                    let accounts = l.call(reqwest::Method::GET, "/admin/accounts", None).await?;
                    let mut out = Vec::new();
                    for a in accounts.as_array().into_iter().flatten() {
                        let aid = a["id"].as_str().unwrap_or_default();
                        if id.as_deref().is_none_or(|x| x == aid) {
                            out.push(
                                l.call(reqwest::Method::POST, &format!("/admin/accounts/{aid}/check"), None).await?,
                            );
                        }
                    }
                    out
                }
                None => {
                    let pool = local_pool(config)?;
                    let mut out = Vec::new();
                    for a in pool.accounts().iter().filter(|a| id.as_deref().is_none_or(|x| x == a.id)) {
                        out.push(pool.check(a).await);
                    }
                    out
                }
            };
            for r in &results {
                match r["ok"].as_bool() {
                    Some(true) => say!(
                        "{}: ok ({} ms{})",
                        r["id"].as_str().unwrap_or("-"),
                        r["latency_ms"],
                        r["via"].as_str().map(|v| format!(" via {v}")).unwrap_or_default()
                    ),
                    _ => say!(
                        "{}: FAILED {}",
                        r["id"].as_str().unwrap_or("-"),
                        r.get("error").or(r.get("status")).cloned().unwrap_or(Value::Null)
                    ),
                }
            }
            if results.iter().any(|r| r["ok"] != true) {
                bail!("some accounts cannot reach the upstream");
            }
            Ok(())
        }
    }
}

async fn set_enabled(config: &Config, live: &Option<Live>, id: &str, enabled: bool) -> anyhow::Result<()> {
    let verb = if enabled { "enable" } else { "disable" };
    let status = match live {
        Some(l) => {
            let v = l.call(reqwest::Method::POST, &format!("/admin/accounts/{id}/{verb}"), None).await?;
            v["status"].as_str().unwrap_or(verb).to_string()
        }
        None => manage::set_enabled(&config.open_store()?, id, enabled)?.as_str().to_string(),
    };
    say!("{id}: {status}");
    Ok(())
}

fn pct(v: &Value) -> String {
    v.as_f64().map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into())
}

/// A unix time as the distance from now: `in 6d 23h`, `2h 5m ago`.
fn when(v: &Value) -> String {
    match v.as_i64() {
        Some(t) => {
            let d = t - now_unix();
            let span = super::service::duration(d.unsigned_abs());
            if d > 0 { format!("in {span}") } else { format!("{span} ago") }
        }
        None => "-".into(),
    }
}

fn print_table(rows: &[Value]) {
    if rows.is_empty() {
        say!(
            "no accounts: run `codex-gateway login`, `codex login` (the gateway then uses ~/.codex/auth.json), \
             `codex-gateway accounts import [PATH]`, or set OPENAI_API_KEY"
        );
        return;
    }
    let header = ["id", "email/label", "plan", "status", "5h", "resets", "week", "resets", "last use", "cooldowns"];
    let mut table = vec![header.map(String::from).to_vec()];
    for r in rows {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let who =
            r.get("label").and_then(Value::as_str).or_else(|| r.get("email").and_then(Value::as_str)).unwrap_or("-");
        let q = &r["quota"];
        let cooldowns: Vec<String> = r["cooldowns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}{} {}",
                    c["model"].as_str().map(|m| format!("{m}: ")).unwrap_or_default(),
                    c["reason"].as_str().unwrap_or(""),
                    when(&c["until"])
                )
            })
            .collect();
        table.push(vec![
            s("id"),
            who.to_string(),
            s("plan"),
            s("status"),
            pct(&q["primary_used_percent"]),
            when(&q["primary_reset_at"]),
            pct(&q["secondary_used_percent"]),
            when(&q["secondary_reset_at"]),
            when(&r["last_used"]),
            cooldowns.join("; "),
        ]);
    }
    use super::output::Align::{Left, Right};
    let align = [Left, Left, Left, Left, Right, Left, Right, Left, Left, Left];
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
}

#[cfg(test)]
mod tests {
    use super::pick_account;

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
