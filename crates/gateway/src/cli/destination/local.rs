//! The commands' operations on the store itself, for when no gateway answers: the same changes the admin API
//! makes, in the audit trail as the OS user's. Token refreshes and quota polls run in a pool of this command's own,
//! holding the command lock (store/serving.rs) so no gateway starts serving the data directory meanwhile.

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use super::{AccountName, AccountsTarget, Imported, KeyName, KeysTarget, UsageTarget};
use crate::accounts::Pool;
use crate::accounts::manage::{self, ImportSource};
use crate::audit::{Actor, Entry, Note, Outcome};
use crate::auth::now_unix;
use crate::config::Config;
use crate::keys::manage::{KeyPatch, KeySpec, ManageError};
use crate::keys::stored_with_usage;
use crate::store::serving::CommandLock;
use crate::store::usage::LedgerRows;
use crate::store::{AccountKind, Store, StoredAccount};
use crate::usage::query::{self, Bucket, GroupBy, UsageQuery};

/// The store this configuration names, opened for each operation (its migrations run on open).
pub(crate) struct Local<'a> {
    config: &'a Config,
}

impl<'a> Local<'a> {
    pub(crate) fn new(config: &'a Config) -> Local<'a> {
        Local { config }
    }

    fn store(&self) -> anyhow::Result<Store> {
        self.config.open_store()
    }

    /// The accounts as this command's own pool, with the lock that keeps a gateway from starting to serve (and
    /// refresh) this store beside it while the command runs. Refused while a gateway serves this data directory:
    /// a refresh here would spend a single-use token behind its back.
    fn pool(&self) -> anyhow::Result<(Pool, Option<CommandLock>)> {
        use crate::store::serving::{Refused, hold_for_command};
        let config = self.config;
        let lock = match config.store_at().single_server() {
            false => None,
            true => match hold_for_command(&config.data_dir)? {
                Ok(lock) => Some(lock),
                Err(Refused::Serving(pid)) => {
                    let reach = crate::cli::service::reach(config);
                    bail!(
                        "a codex-gateway{} serves this data directory but did not answer at {} with the admin \
                         credential: run this command with its address (CODEX_GATEWAY_PORT, CODEX_GATEWAY_HOST) \
                         and its admin key (CODEX_GATEWAY_ADMIN_KEY), so the change goes through it",
                        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                        reach.base
                    );
                }
            },
        };
        let store = Arc::new(self.store()?);
        let http = crate::upstream::build_http_client(config)?;
        Ok((Pool::load(Arc::new(config.clone()), store, http)?, lock))
    }
}

/// A change in the store's audit trail: this OS user on the command line, the action, its target and how it went.
pub(crate) fn audit<T>(store: &Store, action: &str, target: Option<&str>, result: &anyhow::Result<T>, note: Note) {
    let mut e = Entry::new(Actor::cli(), action);
    e.target = target.map(str::to_string);
    e.outcome = if result.is_ok() { Outcome::Ok } else { Outcome::Failed };
    note.apply(&mut e);
    crate::audit::record(store, e);
}

impl AccountsTarget for Local<'_> {
    async fn account_names(&self) -> anyhow::Result<Vec<AccountName>> {
        Ok(self.store()?.list_accounts()?.into_iter().map(|a| [Some(a.id), a.label, a.email]).collect())
    }

    /// The quota of every active ChatGPT account is polled first, as a running gateway keeps it.
    async fn summaries(&self) -> anyhow::Result<Vec<Value>> {
        let (pool, _lock) = self.pool()?;
        for a in pool.accounts().iter().filter(|a| a.kind == AccountKind::Chatgpt && a.is_active()) {
            pool.poll_usage(a).await;
        }
        let now = now_unix();
        Ok(pool.accounts().iter().map(|a| a.summary(now)).collect())
    }

    async fn import(&self, source: ImportSource, label: Option<String>) -> anyhow::Result<Vec<Imported>> {
        let config = self.config;
        let http = crate::upstream::build_http_client(config)?;
        let from = crate::audit::import_kind(&source);
        let rows = manage::resolve(source, label, &http, &config.auth_issuer, &config.client).await?;
        let store = self.store()?;
        let written = rows.iter().try_for_each(|row| store.upsert_account(row));
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let note = Note::default().with("from", from).with("accounts", crate::audit::accounts_detail(&rows));
        audit(&store, "account.add", Some(&ids.join(",")), &written, note);
        written?;
        let who = |r: &StoredAccount| r.email.as_deref().or(r.label.as_deref()).unwrap_or("-").to_string();
        Ok(rows.iter().map(|r| Imported { who: who(r), kind: r.kind.as_str().to_string(), id: r.id.clone() }).collect())
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        let store = self.store()?;
        let missing = || format!("no account `{id}` in the store");
        let done = store.remove_account(id).and_then(|found| found.then_some(()).with_context(missing));
        audit(&store, "account.remove", Some(id), &done, Note::default());
        done
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> anyhow::Result<String> {
        let store = self.store()?;
        let done = manage::set_enabled(&store, id, enabled).map(|s| s.as_str().to_string());
        audit(&store, if enabled { "account.enable" } else { "account.disable" }, Some(id), &done, Note::default());
        done
    }

    async fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<Option<String>> {
        let store = self.store()?;
        let done = manage::set_label(&store, id, label).map_err(anyhow::Error::from);
        let note = Note::default().with("label", done.as_ref().ok().cloned().flatten());
        audit(&store, "account.label", Some(id), &done, note);
        done
    }

    async fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<()> {
        let store = self.store()?;
        let done = manage::set_policy(&store, id, policy).map(drop).map_err(anyhow::Error::from);
        audit(&store, "account.policy", Some(id), &done, Note::default().with("policy", policy));
        done
    }

    async fn set_proxy(&self, id: &str, url: Option<&str>) -> anyhow::Result<Option<String>> {
        let store = self.store()?;
        let done = manage::set_proxy(&store, id, url).map_err(anyhow::Error::from);
        let note =
            Note::default().with("proxy", done.as_ref().ok().and_then(Option::as_deref).map(crate::audit::redact_url));
        audit(&store, "account.proxy", Some(id), &done, note);
        done
    }

    /// Nothing keeps this process alive to retry: unsaved tokens die with it, and the old refresh token is
    /// already spent, so tokens that could not be saved are a failure here.
    async fn refresh(&self, id: &str) -> anyhow::Result<()> {
        let (pool, _lock) = self.pool()?;
        let done = refresh(&pool, id).await;
        audit(pool.store(), "account.refresh", Some(id), &done, Note::default());
        done
    }

    async fn check(&self, id: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let (pool, _lock) = self.pool()?;
        let mut out = Vec::new();
        for a in pool.accounts().iter().filter(|a| id.is_none_or(|x| x == a.id)) {
            out.push(pool.check(a).await);
        }
        Ok(out)
    }
}

async fn refresh(pool: &Pool, id: &str) -> anyhow::Result<()> {
    let account = pool.get(id).with_context(|| format!("no account `{id}`"))?;
    pool.force_refresh(&account).await.map_err(|e| anyhow::anyhow!(e.message))?;
    if let Some(unsaved) = account.unsaved_tokens() {
        bail!(
            "{id}: the tokens were refreshed but could not be saved ({}); the previous refresh token is spent, so \
             this login is lost: make the store writable and log in again",
            unsaved.error
        );
    }
    Ok(())
}

/// A key change the store refused, worded for the command line.
fn key_error(e: ManageError) -> anyhow::Error {
    match e {
        ManageError::Invalid(m) => anyhow::anyhow!(m),
        ManageError::NotFound(id) => anyhow::anyhow!("no client key `{id}`"),
        e @ (ManageError::NameTaken { .. } | ManageError::TooManyKeys { .. }) => anyhow::anyhow!(e.to_string()),
        ManageError::Store(e) => e,
    }
}

impl KeysTarget for Local<'_> {
    async fn keys(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self.store()?.list_keys()?.iter().map(|r| stored_with_usage(None, r)).collect())
    }

    async fn key_names(&self) -> anyhow::Result<Vec<KeyName>> {
        let keys = self.store()?.list_keys()?;
        Ok(keys.into_iter().map(|k| KeyName { revoked: k.revoked_at.is_some(), id: k.id, name: k.name }).collect())
    }

    async fn key(&self, id: &str) -> anyhow::Result<Value> {
        let row = self.store()?.get_key(id)?.ok_or_else(|| anyhow::anyhow!("no client key `{id}`"))?;
        Ok(stored_with_usage(None, &row))
    }

    /// Refused without an admin credential, as the admin API refuses it: a client could otherwise drop its key
    /// and manage keys itself (server/guard.rs).
    async fn create_key(&self, body: Map<String, Value>) -> anyhow::Result<Value> {
        if self.config.admin_keys().is_empty() {
            bail!(
                "creating client keys needs an admin credential: set CODEX_GATEWAY_ADMIN_KEY (or `[server] \
                 admin_key`, or CODEX_GATEWAY_API_KEY), or /admin would be open to every client"
            );
        }
        let spec: KeySpec = serde_json::from_value(Value::Object(body))?;
        let store = self.store()?;
        let name = spec.name.clone();
        let made = crate::keys::manage::create(&store, spec, None, now_unix()).map_err(key_error);
        let note = match &made {
            Ok((row, _)) => crate::audit::key_note(row),
            Err(_) => Note::default().with("name", name),
        };
        audit(&store, "key.create", None, &made, note);
        let (row, secret) = made?;
        let mut v = stored_with_usage(None, &row);
        v["secret"] = secret.into();
        Ok(v)
    }

    async fn update_key(&self, id: &str, body: Map<String, Value>) -> anyhow::Result<Value> {
        let patch: KeyPatch = serde_json::from_value(Value::Object(body))?;
        let store = self.store()?;
        let row = crate::keys::manage::update(&store, id, patch).map_err(key_error);
        audit(&store, "key.update", Some(id), &row, row.as_ref().map(crate::audit::key_note).unwrap_or_default());
        Ok(stored_with_usage(None, &row?))
    }

    async fn revoke_key(&self, id: &str) -> anyhow::Result<()> {
        let store = self.store()?;
        let row = crate::keys::manage::revoke(&store, id, now_unix()).map_err(key_error);
        audit(&store, "key.revoke", Some(id), &row, row.as_ref().map(crate::audit::key_note).unwrap_or_default());
        row.map(drop)
    }
}

impl UsageTarget for Local<'_> {
    async fn usage(&self, from: i64, to: i64, by: GroupBy, user: Option<&str>) -> anyhow::Result<Value> {
        let store = self.store()?;
        let user = match user {
            Some(u) => Some(crate::users::manage::find(&store, u).map_err(|e| anyhow::anyhow!("{e}"))?.id),
            None => None,
        };
        let q = UsageQuery { from, to, bucket: Bucket::Day, group_by: Some(by), user };
        let rows = LedgerRows::Rollups { bucket: q.bucket, from: q.from, to: q.to };
        let prices = &self.config.usage.prices;
        let report = store.ledger_reader().read(&rows, |c| Ok(query::usage(c, &q, prices)?))?;
        Ok(serde_json::to_value(report)?)
    }

    async fn user_names(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self.store()?.list_users()?.into_iter().map(|u| (u.id, u.name)).collect())
    }
}
