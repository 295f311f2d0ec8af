//! The `accounts` table on PostgreSQL: the same calls as the SQLite store's, plus the token version that makes
//! a rotation a compare-and-swap (the version read under a refresh lease, `lease.rs`).

use tokio_postgres::Row;

use super::PgStore;
use crate::store::{AccountKind, AccountStatus, StoredAccount, Tokens};

pub(super) const COLUMNS: &str = "id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, \
     refresh_token, api_key, base_url, last_refresh, status, status_reason, created_at, proxy, models, policy";

impl PgStore {
    pub fn list_accounts(&self) -> anyhow::Result<Vec<StoredAccount>> {
        let pool = self.pool();
        self.block(async move {
            let client = pool.get().await?;
            let rows = client.query(&format!("SELECT {COLUMNS} FROM accounts ORDER BY created_at, id"), &[]).await?;
            rows.iter().map(row_to_account).collect()
        })
    }

    pub fn get_account(&self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        let (pool, id) = (self.pool(), id.to_string());
        self.block(async move {
            let client = pool.get().await?;
            let row = client.query_opt(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1"), &[&id]).await?;
            row.as_ref().map(row_to_account).transpose()
        })
    }

    pub fn upsert_account(&self, a: &StoredAccount) -> anyhow::Result<()> {
        // A row read with a kind this build does not know is never written back (it would lose the kind).
        anyhow::ensure!(a.kind != AccountKind::Unrecognized, "account {} has a kind this build cannot store", a.id);
        let (pool, a) = (self.pool(), a.clone());
        self.block(async move {
            let t = a.tokens.as_ref();
            let models = a.models.as_ref().and_then(|m| serde_json::to_string(m).ok());
            let client = pool.get().await?;
            // New tokens (a login, an import) are a new token version like any rotation.
            client
                .execute(
                    "INSERT INTO accounts (id, kind, label, email, plan, chatgpt_account_id, id_token, access_token,
                         refresh_token, api_key, base_url, last_refresh, status, status_reason, created_at, proxy, models,
                         policy)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                         COALESCE($18, 'normal'))
                     ON CONFLICT (id) DO UPDATE SET kind=excluded.kind, label=COALESCE(excluded.label, accounts.label),
                        email=excluded.email, plan=excluded.plan, chatgpt_account_id=excluded.chatgpt_account_id,
                        id_token=excluded.id_token, access_token=excluded.access_token,
                        refresh_token=excluded.refresh_token, api_key=excluded.api_key, base_url=excluded.base_url,
                        last_refresh=excluded.last_refresh, status=excluded.status,
                        status_reason=excluded.status_reason, proxy=excluded.proxy, models=excluded.models,
                        policy=COALESCE($18, accounts.policy), token_version = accounts.token_version + 1",
                    &[
                        &a.id,
                        &a.kind.as_str(),
                        &a.label,
                        &a.email,
                        &a.plan,
                        &t.map(|t| t.account_id.clone()),
                        &t.map(|t| t.id_token.clone()),
                        &t.map(|t| t.access_token.clone()),
                        &t.map(|t| t.refresh_token.clone()),
                        &a.api_key,
                        &a.base_url,
                        &t.map(|t| t.last_refresh).unwrap_or(0),
                        &a.status.as_str(),
                        &a.status_reason,
                        &a.created_at,
                        &a.proxy,
                        &models,
                        &a.policy,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    /// Commit rotated tokens. Under a refresh lease this is a compare-and-swap on the token version read when
    /// the lease was taken (and it ends the lease); a version that moved meanwhile (the lease expired and another
    /// instance rotated) fails the commit rather than overwrite newer tokens. Without a lease (a login, an
    /// import) the tokens are simply written, as a new version.
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        let expected = self.held_versions.lock().get(id).copied();
        let (pool, key, t, me) = (self.pool(), id.to_string(), t.clone(), self.instance.clone());
        let n = self.block(async move {
            let client = pool.get().await?;
            let n = client
                .execute(
                    "UPDATE accounts SET id_token=$2, access_token=$3, refresh_token=$4, chatgpt_account_id=$5,
                         last_refresh=$6, status='active', status_reason=NULL, token_version = token_version + 1,
                         refresh_lease_owner = NULL, refresh_lease_until = NULL
                     WHERE id=$1 AND ($7::bigint IS NULL OR token_version = $7)
                       AND (refresh_lease_owner IS NULL OR refresh_lease_owner = $8
                            OR refresh_lease_until < (extract(epoch from clock_timestamp()) * 1000)::bigint)",
                    &[
                        &key,
                        &t.id_token,
                        &t.access_token,
                        &t.refresh_token,
                        &t.account_id,
                        &t.last_refresh,
                        &expected,
                        &me,
                    ],
                )
                .await?;
            Ok(n)
        })?;
        if n == 1 {
            self.held_versions.lock().remove(id);
        }
        anyhow::ensure!(n == 1, "account {id} is not in the store, or another instance rotated its tokens first");
        Ok(())
    }

    pub fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<bool> {
        self.update_one("UPDATE accounts SET label=$2 WHERE id=$1", id, label.map(str::to_string))
    }

    pub fn set_proxy(&self, id: &str, proxy: Option<&str>) -> anyhow::Result<bool> {
        self.update_one("UPDATE accounts SET proxy=$2 WHERE id=$1", id, proxy.map(str::to_string))
    }

    pub fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<bool> {
        self.update_one("UPDATE accounts SET policy=$2 WHERE id=$1", id, Some(policy.to_string()))
    }

    pub fn remove_account(&self, id: &str) -> anyhow::Result<bool> {
        let (pool, id) = (self.pool(), id.to_string());
        self.block(async move { Ok(pool.get().await?.execute("DELETE FROM accounts WHERE id=$1", &[&id]).await? == 1) })
    }

    pub fn set_status(&self, id: &str, status: AccountStatus, reason: Option<&str>) -> anyhow::Result<()> {
        let (pool, id, reason) = (self.pool(), id.to_string(), reason.map(str::to_string));
        self.block(async move {
            let client = pool.get().await?;
            client
                .execute(
                    "UPDATE accounts SET status=$2, status_reason=$3 WHERE id=$1",
                    &[&id, &status.as_str(), &reason],
                )
                .await?;
            Ok(())
        })
    }

    /// [`crate::store::Store::installation_id`] on the team store: the first instance to write one wins.
    pub fn installation_id(&self, id: &str, fresh: &str) -> anyhow::Result<Option<String>> {
        let (pool, id, fresh) = (self.pool(), id.to_string(), fresh.to_string());
        self.block(async move {
            let client = pool.get().await?;
            client
                .execute(
                    "UPDATE accounts SET installation_id=$2 WHERE id=$1 AND installation_id IS NULL",
                    &[&id, &fresh],
                )
                .await?;
            let row = client.query_opt("SELECT installation_id FROM accounts WHERE id=$1", &[&id]).await?;
            Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
        })
    }

    fn update_one(&self, sql: &'static str, id: &str, value: Option<String>) -> anyhow::Result<bool> {
        let (pool, id) = (self.pool(), id.to_string());
        self.block(async move { Ok(pool.get().await?.execute(sql, &[&id, &value]).await? == 1) })
    }

    /// Forget a version read under a lease that ended without a commit.
    pub(super) fn forget_version(&self, id: &str) {
        self.held_versions.lock().remove(id);
    }

    pub(super) fn hold_version(&self, id: &str, version: i64) {
        self.held_versions.lock().insert(id.to_string(), version);
    }
}

/// One row as a [`StoredAccount`], read as the SQLite store reads it: an unknown kind or status makes the row
/// `unrecognized` (never served, never written back) rather than failing the whole read.
pub(super) fn row_to_account(r: &Row) -> anyhow::Result<StoredAccount> {
    let (kind, status, status_reason) =
        match (AccountKind::parse(r.try_get::<_, &str>(1)?), AccountStatus::parse(r.try_get::<_, &str>(12)?)) {
            (Err(e), _) => (AccountKind::Unrecognized, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Err(e)) => (kind, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Ok(status)) => (kind, status, r.try_get(13)?),
        };
    Ok(StoredAccount {
        id: r.try_get(0)?,
        kind,
        label: r.try_get(2)?,
        email: r.try_get(3)?,
        plan: r.try_get(4)?,
        tokens: tokens_at(r, kind, 5)?,
        api_key: r.try_get(9)?,
        base_url: r.try_get(10)?,
        status,
        status_reason,
        created_at: r.try_get(14)?,
        proxy: r.try_get(15)?,
        models: r.try_get::<_, Option<String>>(16)?.and_then(|m| serde_json::from_str(&m).ok()),
        policy: Some(r.try_get(17)?),
    })
}

/// The tokens of a row whose columns `chatgpt_account_id, id_token, access_token, refresh_token, _, _,
/// last_refresh` start at `at` (ChatGPT accounts only).
pub(super) fn tokens_at(r: &Row, kind: AccountKind, at: usize) -> anyhow::Result<Option<Tokens>> {
    let access: Option<String> = r.try_get(at + 2)?;
    let refresh: Option<String> = r.try_get(at + 3)?;
    Ok(match (kind, access, refresh) {
        (AccountKind::Chatgpt, Some(access_token), Some(refresh_token)) => Some(Tokens {
            id_token: r.try_get::<_, Option<String>>(at + 1)?.unwrap_or_default(),
            access_token,
            refresh_token,
            account_id: r.try_get::<_, Option<String>>(at)?.unwrap_or_default(),
            last_refresh: r.try_get(at + 6)?,
        }),
        _ => None,
    })
}
