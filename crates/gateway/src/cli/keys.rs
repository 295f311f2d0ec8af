//! `codex-gateway keys ...`: client keys with limits, through a running gateway's admin API (a revoke or a new
//! limit applies to its next request), else on the store, which a gateway re-reads (`Keys::follow_store`).

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::destination::{KeyName, KeysTarget, Target};
use super::output::json_or;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a client key; its secret is printed once and never again.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Serve the key only from quota that would otherwise expire unused (docs/operations.md, "Client keys").
        #[arg(long)]
        opportunistic: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the keys (name, prefix, status, limits; use today and this month when the gateway runs).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One key.
    Show {
        /// The key's id (`key_...`) or its name, when no other key has it.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a key's name, models or limits; `none` removes one (`--rpm none`, `--models none`); lift a
    /// suspension (`--resume`) or suspend the key (`--suspend`).
    Update {
        /// The key's id (`key_...`) or its name, when no other key has it.
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// `true`: serve the key only from quota that would otherwise expire; `false`: as any key.
        #[arg(long, value_name = "true|false")]
        opportunistic: Option<bool>,
        /// Lift the key's suspension (after repeated policy refusals, `[routing] policy_refusals_per_key`).
        #[arg(long, conflicts_with = "suspend")]
        resume: bool,
        /// Suspend the key: refused until `--resume`.
        #[arg(long)]
        suspend: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: refused from its next request on (kept in the store for the usage history).
    Revoke {
        /// The key's id (`key_...`) or its name, when no other key has it.
        id: String,
    },
}

/// The limits a key may have. Values are text so `update` can say `none`.
#[derive(clap::Args, Debug, Default)]
pub struct LimitArgs {
    /// Models the key may use, comma-separated (default: any).
    #[arg(long)]
    models: Option<String>,
    #[command(flatten)]
    budget: Budget,
    /// Last day the key works (2027-01-31, UTC) or an RFC 3339 time.
    #[arg(long)]
    expires: Option<String>,
}

/// A budget's limits as flags (text, so `none` can remove one): a key's, or a user's across their keys
/// (cli/users.rs, which words the first two for a user).
#[derive(clap::Args, Debug, Default)]
pub struct Budget {
    /// Requests per minute.
    #[arg(long)]
    pub(super) rpm: Option<String>,
    /// Requests in flight at once.
    #[arg(long)]
    pub(super) concurrency: Option<String>,
    /// Tokens (input + output) per UTC day.
    #[arg(long)]
    pub(super) daily_tokens: Option<String>,
    /// Tokens (input + output) per UTC month.
    #[arg(long)]
    pub(super) monthly_tokens: Option<String>,
}

impl LimitArgs {
    /// The admin API's JSON for these flags (`none` -> `null`).
    fn to_json(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        let number = |flag: &str, v: &str| match v {
            "none" => Ok(Value::Null),
            v => v.parse::<u64>().map(Value::from).with_context(|| format!("--{flag} {v} is not a number or `none`")),
        };
        if let Some(m) = &self.models {
            let list: Vec<&str> = m.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            body.insert("models".into(), if m == "none" { Value::Null } else { json!(list) });
        }
        let b = &self.budget;
        for (flag, key, v) in [
            ("rpm", "rpm", &b.rpm),
            ("concurrency", "concurrency", &b.concurrency),
            ("daily-tokens", "daily_tokens", &b.daily_tokens),
            ("monthly-tokens", "monthly_tokens", &b.monthly_tokens),
        ] {
            if let Some(v) = v {
                body.insert(key.into(), number(flag, v)?);
            }
        }
        if let Some(e) = &self.expires {
            body.insert("expires".into(), if e == "none" { Value::Null } else { json!(e) });
        }
        Ok(())
    }
}

pub async fn run(config: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    match Target::find_or_refuse(config).await? {
        Target::Live(live) => command(&live, cmd).await,
        Target::Local(local) => command(&local, cmd).await,
    }
}

async fn command(target: &impl KeysTarget, cmd: KeysCommand) -> anyhow::Result<()> {
    let resolve = async |given: &str| pick(given, &target.key_names().await?);
    match cmd {
        KeysCommand::Create { name, limits, opportunistic, json } => {
            let mut body = Map::from_iter([("name".to_string(), json!(name))]);
            limits.to_json(&mut body)?;
            body.extend(opportunistic.then(|| ("opportunistic".to_string(), json!(true))));
            json_or(&target.create_key(body).await?, json, |key| {
                print_key(key);
                say!("secret:         {}", key["secret"].as_str().unwrap_or("-"));
                eprintln!("Store the secret now: it is shown only this once (the gateway keeps only its hash).");
            })
        }
        KeysCommand::List { json } => json_or(&target.keys().await?, json, |keys| print_table(keys)),
        KeysCommand::Show { id, json } => json_or(&target.key(&resolve(&id).await?).await?, json, print_key),
        KeysCommand::Update { id, name, limits, opportunistic, resume, suspend, json } => {
            let id = resolve(&id).await?;
            let suspended = if resume { Some(false) } else { suspend.then_some(true) };
            let fields = [("name", name.map(Value::from)), ("suspended", suspended.map(Value::from))];
            let mut body: Map<_, _> = fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
            limits.to_json(&mut body)?;
            body.extend(opportunistic.map(|o| ("opportunistic".to_string(), json!(o))));
            json_or(&target.update_key(&id, body).await?, json, print_key)
        }
        KeysCommand::Revoke { id } => {
            let id = resolve(&id).await?;
            target.revoke_key(&id).await?;
            say!("revoked {id}");
            Ok(())
        }
    }
}

fn print_table(keys: &[Value]) {
    if keys.is_empty() {
        return say!("no client keys (codex-gateway keys create --name NAME)");
    }
    let header = "id,name,prefix,status,rpm,conc,daily,monthly,opportunistic,refused 24h,models";
    let mut rows = vec![header.split(',').map(String::from).collect::<Vec<_>>()];
    let n = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for k in keys {
        rows.push(vec![
            s(&k["id"]),
            s(&k["name"]),
            s(&k["prefix"]),
            s(&k["status"]),
            n(&k["rpm"]),
            n(&k["concurrency"]),
            n(&k["daily_tokens"]),
            n(&k["monthly_tokens"]),
            if k["opportunistic"] == true { "yes" } else { "no" }.to_string(),
            // The policy refusals this gateway counted in the last 24 h (known only to a running gateway).
            n(&k["usage"]["policy_refusals_24h"]),
            models(k),
        ]);
    }
    use super::output::Align::{Left, Right};
    let align = [Left, Left, Left, Left, Right, Right, Right, Right, Left, Right, Left];
    super::output::text(format_args!("{}", super::output::table(&rows, &align)));
}

/// Whether the gateway refuses requests without a key (server/guard.rs): one is configured or created (a revoked
/// one counts, as it does there). A store that cannot be read holds none, as on a fresh install.
pub(super) fn requires_a_key(config: &Config) -> bool {
    if !config.api_keys.is_empty() || !config.configured_keys.is_empty() {
        return true;
    }
    // Opening a store creates it: where none exists yet (a fresh machine), there is no key to find either.
    config.store_at().exists() && config.open_store().and_then(|s| s.list_keys()).is_ok_and(|keys| !keys.is_empty())
}

/// The id of the key `given` names: an id as it is, else the one key with that name that is not revoked (keys
/// that are not revoked never share a name: `manage::create`), else the one revoked key with that name (several
/// are refused with their ids). Only an id found here goes into an admin path.
fn pick(given: &str, keys: &[KeyName]) -> anyhow::Result<String> {
    if keys.iter().any(|k| k.id == given) {
        return Ok(given.to_string());
    }
    let named: Vec<&KeyName> = keys.iter().filter(|k| k.name == given).collect();
    let live: Vec<&KeyName> = named.iter().copied().filter(|k| !k.revoked).collect();
    match (&live[..], &named[..]) {
        ([k], _) | ([], [k]) => Ok(k.id.clone()),
        (_, []) => bail!("no client key `{given}` (by id or name; codex-gateway keys list)"),
        (_, _) => {
            let ids: Vec<&str> = named.iter().map(|k| k.id.as_str()).collect();
            bail!("{} client keys are named `{given}`: give the id ({})", ids.len(), ids.join(", "))
        }
    }
}

fn models(k: &Value) -> String {
    match k["models"].as_array() {
        Some(m) => m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        None => "any".into(),
    }
}

fn print_key(k: &Value) {
    let s = |f: &str| match &k[f] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    say!("id:             {}", s("id"));
    say!("name:           {}", s("name"));
    say!("prefix:         {}", s("prefix"));
    say!("status:         {}", s("status"));
    say!("models:         {}", models(k));
    say!("rpm:            {}", s("rpm"));
    say!("concurrency:    {}", s("concurrency"));
    say!("daily tokens:   {}", s("daily_tokens"));
    say!("monthly tokens: {}", s("monthly_tokens"));
    let opportunistic = if k["opportunistic"] == true { "yes (only quota that would otherwise expire)" } else { "no" };
    say!("opportunistic:  {opportunistic}");
    say!("expires:        {}", s("expires_at"));
    if !k["suspended_at"].is_null() {
        say!("suspended:      {} ({})", s("suspended_at"), s("suspended_reason"));
        say!("                lift it with `codex-gateway keys update {} --resume`", s("name"));
    }
    if let Some(u) = k.get("usage") {
        say!(
            "used:           {} tokens today, {} this month, {} in flight",
            u["tokens_today"],
            u["tokens_this_month"],
            u["in_flight"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manage::KeyPatch;

    #[test]
    fn a_key_is_named_by_its_id_or_by_a_name_no_other_key_has() {
        let keys: Vec<KeyName> = [
            ("key_a", "ci", false),
            ("key_b", "alice", true),
            ("key_c", "alice", true),
            ("key_d", "key_a", false),
            ("key_e", "bob", true),
            ("key_f", "bob", false),
            ("key_g", "old", true),
        ]
        .iter()
        .map(|&(id, name, revoked)| KeyName { id: id.into(), name: name.into(), revoked })
        .collect();
        assert_eq!(pick("key_b", &keys).ok().as_deref(), Some("key_b"));
        assert_eq!(pick("ci", &keys).ok().as_deref(), Some("key_a"));
        // An id wins over a name that looks like it.
        assert_eq!(pick("key_a", &keys).ok().as_deref(), Some("key_a"));
        // The key that is not revoked, over the revoked ones of its name; a revoked key alone by its name.
        assert_eq!(pick("bob", &keys).ok().as_deref(), Some("key_f"));
        assert_eq!(pick("old", &keys).ok().as_deref(), Some("key_g"));
        // Several revoked keys of one name (or keys made before names were unique) are ambiguous.
        let two = pick("alice", &keys).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(two.contains("2 client keys are named `alice`") && two.contains("key_b, key_c"), "{two}");
        let none = pick("carol", &keys).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(none.contains("no client key `carol`"), "{none}");
    }

    #[test]
    fn flags_become_the_admin_apis_json_and_none_clears() -> anyhow::Result<()> {
        let args = LimitArgs {
            models: Some("gpt-5.4, gpt-5.2".into()),
            budget: Budget { rpm: Some("none".into()), daily_tokens: Some("1000".into()), ..Default::default() },
            expires: Some("2027-01-31".into()),
        };
        let mut body = Map::new();
        args.to_json(&mut body)?;
        assert_eq!(
            Value::Object(body.clone()),
            json!({"models":["gpt-5.4","gpt-5.2"],"rpm":null,"daily_tokens":1000,"expires":"2027-01-31"})
        );
        // The same JSON is what the store path deserializes: `null` removes, an absent field stays.
        let patch: KeyPatch = serde_json::from_value(Value::Object(body))?;
        assert_eq!((patch.rpm, patch.daily_tokens, patch.concurrency), (Some(None), Some(Some(1000)), None));
        let bad = LimitArgs {
            budget: Budget { concurrency: Some("two".into()), ..Default::default() },
            ..Default::default()
        };
        assert!(bad.to_json(&mut Map::new()).is_err());
        let none = LimitArgs { models: Some("none".into()), ..Default::default() };
        let mut body = Map::new();
        none.to_json(&mut body)?;
        assert_eq!(body["models"], Value::Null);
        Ok(())
    }
}
