//! `codex-gateway users ...`: people who sign in to the dashboard and the admin API (users/), managed on the
//! configured store itself, whether or not a gateway runs (it applies a change at its next re-read of the store,
//! `users::USERS_POLL`). Passwords are read from standard input, never from the command line (where `ps` and shell
//! histories would show them). Every change goes to the audit trail as this OS user's.

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;

use super::keys::Budget;
use super::output::{Align, table};
use crate::audit::Note;
use crate::auth::now_unix;
use crate::config::Config;
use crate::store::Store;
use crate::users::manage::{self, Ended, NewUser, UserPatch};

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Add a user (the first one turns sign-in on: until then the admin key and loopback open the dashboard).
    Add {
        /// The sign-in name: a login or an e-mail address.
        name: String,
        /// admin (everything), member (their own keys and usage, Setup), viewer (the read-only pages).
        #[arg(long, default_value = "member")]
        role: String,
        /// Read the password from standard input (one line); without it the user has none until `users passwd`.
        #[arg(long)]
        password_stdin: bool,
        /// Client keys the user may hold at once (default 10).
        #[arg(long)]
        max_keys: Option<u32>,
    },
    /// Every user: id, name, role, whether disabled, password and one-time codes set, key maximum.
    List,
    /// Change a user's role.
    SetRole { name: String, role: String },
    /// Set a user's budget, held across all their keys on every instance: the limits a key has; `none` removes
    /// one (`--daily-tokens none`).
    #[command(mut_arg("rpm", |a| a.help("Requests per minute, across the user's keys")))]
    #[command(mut_arg("concurrency", |a| a.help("Requests in flight at once, across the user's keys")))]
    SetBudget {
        name: String,
        #[command(flatten)]
        budget: Budget,
    },
    /// Disable a user: their sessions end and their keys are revoked, everywhere.
    Disable { name: String },
    /// Enable a disabled user again (their revoked keys stay revoked).
    Enable { name: String },
    /// Set a user's password, read from standard input (one line); their sessions end.
    Passwd { name: String },
    /// Enrol one-time codes (TOTP): prints the otpauth:// URI for the user's authenticator app, this once.
    Totp { name: String },
    /// Lift a user's lockout after failed sign-ins (and forget their count), on every instance.
    Unlock { name: String },
    /// Remove a user: their sessions end and their keys are revoked first.
    Remove { name: String },
}

impl Budget {
    /// The patch these flags make (`PATCH /admin/users/{id}`'s fields).
    fn patch(&self) -> anyhow::Result<UserPatch> {
        fn limit<T: std::str::FromStr>(flag: &str, v: &Option<String>) -> anyhow::Result<Option<Option<T>>> {
            let parse = |v: &str| v.parse().map_err(|_| anyhow::anyhow!("--{flag} {v} is not a number or `none`"));
            v.as_deref().map(|v| if v == "none" { Ok(None) } else { parse(v).map(Some) }).transpose()
        }
        let patch = UserPatch {
            rpm: limit("rpm", &self.rpm)?,
            concurrency: limit("concurrency", &self.concurrency)?,
            daily_tokens: limit("daily-tokens", &self.daily_tokens)?,
            monthly_tokens: limit("monthly-tokens", &self.monthly_tokens)?,
            ..UserPatch::default()
        };
        anyhow::ensure!(
            patch.sets_budget(),
            "set at least one of --rpm, --concurrency, --daily-tokens, --monthly-tokens"
        );
        Ok(patch)
    }
}

fn shown(v: &serde_json::Value) -> String {
    if v.is_null() { "-".into() } else { v.to_string() }
}

pub async fn run(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || run_blocking(&config, cmd)).await?
}

/// One line of standard input, without its line end.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The change in the audit trail, as this OS user's.
fn audited(store: &Store, action: &str, note: Note) {
    super::destination::audit(store, action, None, &anyhow::Ok(()), note);
}

fn ended(e: &Ended) -> String {
    format!("{} session(s) ended, {} key(s) revoked", e.sessions, e.keys.len())
}

fn run_blocking(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let now = now_unix();
    let update = |name: &str, patch: UserPatch, action: &str| {
        let (row, e) = manage::update(&store, name, patch, now)?;
        audited(&store, action, manage::note(&row, &e));
        anyhow::Ok((row, e))
    };
    match cmd {
        UsersCommand::Add { name, role, password_stdin, max_keys } => {
            let password = password_stdin.then(password_from_stdin).transpose()?;
            let row = manage::create(&store, NewUser { name, role, password, max_keys }, now)?;
            audited(&store, "user.create", manage::note(&row, &Ended::default()));
            say!("added {} ({}, {})", row.name, row.id, row.role);
        }
        UsersCommand::List => {
            let header = "id,name,role,status,password,totp,max keys,rpm,conc,daily,monthly";
            let mut rows = vec![header.split(',').map(String::from).collect::<Vec<_>>()];
            for u in store.list_users()? {
                let s = manage::summary(&u);
                rows.push(vec![
                    u.id.clone(),
                    u.name.clone(),
                    u.role.clone(),
                    if u.disabled_at.is_some() { "disabled" } else { "active" }.into(),
                    if u.password_hash.is_some() { "set" } else { "-" }.into(),
                    if u.totp_secret.is_some() { "on" } else { "-" }.into(),
                    s["max_keys"].to_string(),
                    shown(&s["rpm"]),
                    shown(&s["concurrency"]),
                    shown(&s["daily_tokens"]),
                    shown(&s["monthly_tokens"]),
                ]);
            }
            let mut align = vec![Align::Left; 6];
            align.extend([Align::Right; 5]);
            super::output::text(format_args!("{}", table(&rows, &align)));
        }
        UsersCommand::SetRole { name, role } => {
            let (row, _) = update(&name, UserPatch { role: Some(role), ..UserPatch::default() }, "user.update")?;
            say!("{} is now {}", row.name, row.role);
        }
        UsersCommand::SetBudget { name, budget } => {
            let (row, _) = update(&name, budget.patch()?, "user.budget")?;
            let l = row.limits;
            let s = |v: Option<u64>| v.map_or("none".to_string(), |n| n.to_string());
            say!(
                "budget of {}: rpm {}, concurrency {}, daily tokens {}, monthly tokens {}",
                row.name,
                s(l.rpm.map(u64::from)),
                s(l.concurrency.map(u64::from)),
                s(l.daily_tokens),
                s(l.monthly_tokens)
            );
        }
        UsersCommand::Disable { name } => {
            let (row, e) = update(&name, UserPatch { disabled: Some(true), ..UserPatch::default() }, "user.update")?;
            say!("{} is disabled: {}", row.name, ended(&e));
        }
        UsersCommand::Enable { name } => {
            let (row, _) = update(&name, UserPatch { disabled: Some(false), ..UserPatch::default() }, "user.update")?;
            say!("{} is enabled", row.name);
        }
        UsersCommand::Passwd { name } => {
            let password = password_from_stdin()?;
            let (row, e) = manage::set_password(&store, &name, &password)?;
            audited(&store, "user.password", manage::note(&row, &e));
            say!("password of {} set: {}", row.name, ended(&e));
        }
        UsersCommand::Totp { name } => {
            let (row, uri) = manage::enrol_totp(&store, &name)?;
            audited(&store, "user.totp_enrol", manage::note(&row, &Ended::default()));
            eprintln!("Add this to {}'s authenticator app now: it is not shown again.", row.name);
            say!("{uri}");
        }
        UsersCommand::Unlock { name } => {
            let (row, had) = manage::unlock(&store, &name)?;
            audited(
                &store,
                "user.unlock",
                Note::target(row.id.clone()).with("name", row.name.clone()).with("had_failures", had),
            );
            if had {
                say!("{} is unlocked: their failed sign-ins are forgotten", row.name);
            } else {
                say!("{} had no failed sign-ins", row.name);
            }
        }
        UsersCommand::Remove { name } => {
            let (row, e) = manage::remove(&store, &name, now)?;
            audited(&store, "user.remove", manage::note(&row, &e));
            say!("removed {}: {}", row.name, ended(&e));
        }
    }
    Ok(())
}
