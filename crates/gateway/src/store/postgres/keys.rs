//! The `client_keys` table on PostgreSQL: the same calls as the SQLite store's. Only the SHA-256 of a key's
//! secret is stored. Every instance enforces the keys it read last (the change watcher re-reads them).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use crate::store::{Limits, NameClaim, StoredKey, Suspension};

const COLUMNS: &str = "id, name, prefix, secret_sha256, models, rpm, concurrency, daily_tokens, monthly_tokens, \
                       expires_at, created_at, revoked_at, suspended_at, suspended_reason, opportunistic, owner";

impl PgStore {
    pub fn list_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let pool = self.pool();
        self.block(async move {
            let client = pool.get().await?;
            let rows = client.query(&format!("SELECT {COLUMNS} FROM client_keys ORDER BY created_at, id"), &[]).await?;
            rows.iter().map(row_to_key).collect()
        })
    }

    pub fn get_key(&self, id: &str) -> anyhow::Result<Option<StoredKey>> {
        let (pool, id) = (self.pool(), id.to_string());
        self.block(async move {
            let client = pool.get().await?;
            let row = client.query_opt(&format!("SELECT {COLUMNS} FROM client_keys WHERE id = $1"), &[&id]).await?;
            row.as_ref().map(row_to_key).transpose()
        })
    }

    pub fn insert_key(&self, k: &StoredKey) -> anyhow::Result<()> {
        let (pool, k) = (self.pool(), k.clone());
        self.block(async move { insert_row(&pool.get().await?, &k).await })
    }

    pub fn update_key(&self, k: &StoredKey) -> anyhow::Result<bool> {
        let (pool, k) = (self.pool(), k.clone());
        self.block(async move { Ok(update_row(&pool.get().await?, &k).await? == 1) })
    }

    /// Suspend a key or lift its suspension (only those columns). Whether a key has this id.
    pub fn set_key_suspension(&self, id: &str, s: Option<&Suspension>) -> anyhow::Result<bool> {
        let (pool, id) = (self.pool(), id.to_string());
        let (at, reason) = (s.map(|s| s.at), s.map(|s| s.reason.clone()));
        self.block(async move {
            let client = pool.get().await?;
            let sql = "UPDATE client_keys SET suspended_at = $2, suspended_reason = $3 WHERE id = $1";
            Ok(client.execute(sql, &[&id, &at, &reason]).await? == 1)
        })
    }

    /// Insert `k` unless a key that is not revoked has its name, or its owner holds `max_owned` keys already:
    /// checked and inserted under a transaction-scoped advisory lock, so two instances creating one name (or a
    /// user's last key) at once cannot both find room.
    pub fn insert_key_claiming_name(&self, k: &StoredKey, max_owned: Option<u32>) -> anyhow::Result<NameClaim> {
        let (pool, k) = (self.pool(), k.clone());
        self.block(async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_NAMES_LOCK]).await?;
            if let Some(holder) = name_holder(&tx, &k).await? {
                return Ok(NameClaim::Taken(holder));
            }
            // The owner's count under the same lock: every insert of a key takes it, so none slips in between.
            if let (Some(max), Some(owner)) = (max_owned, &k.owner) {
                let row = tx
                    .query_one("SELECT count(*) FROM client_keys WHERE owner = $1 AND revoked_at IS NULL", &[owner])
                    .await?;
                let held = usize::try_from(row.try_get::<_, i64>(0)?).unwrap_or(usize::MAX);
                if held >= max as usize {
                    return Ok(NameClaim::OwnerFull(held));
                }
            }
            insert_row(&tx, &k).await?;
            tx.commit().await?;
            Ok(NameClaim::Written)
        })
    }

    /// Write `k` as [`PgStore::update_key`] does, unless it takes a new name a key that is not revoked has.
    pub fn update_key_claiming_name(&self, k: &StoredKey) -> anyhow::Result<NameClaim> {
        let (pool, k) = (self.pool(), k.clone());
        self.block(async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_NAMES_LOCK]).await?;
            let stored = tx.query_opt("SELECT name FROM client_keys WHERE id = $1", &[&k.id]).await?;
            let Some(stored) = stored else {
                return Ok(NameClaim::Missing);
            };
            if k.revoked_at.is_none()
                && stored.try_get::<_, String>(0)? != k.name
                && let Some(holder) = name_holder(&tx, &k).await?
            {
                return Ok(NameClaim::Taken(holder));
            }
            update_row(&tx, &k).await?;
            tx.commit().await?;
            Ok(NameClaim::Written)
        })
    }
}

/// Any fixed number: the advisory lock that serializes the writes that claim a key's name.
const KEY_NAMES_LOCK: i64 = 0x636f_6465_786b_6e6d;

/// The id of another key that is not revoked and has `k`'s name.
async fn name_holder(c: &impl GenericClient, k: &StoredKey) -> anyhow::Result<Option<String>> {
    let row = c
        .query_opt(
            "SELECT id FROM client_keys WHERE name = $1 AND revoked_at IS NULL AND id <> $2 ORDER BY created_at, id \
             LIMIT 1",
            &[&k.name, &k.id],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

async fn insert_row(c: &impl GenericClient, k: &StoredKey) -> anyhow::Result<()> {
    c.execute(
        &format!(
            "INSERT INTO client_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                 $15, $16)"
        ),
        &[
            &k.id,
            &k.name,
            &k.prefix,
            &k.secret_sha256,
            &models_json(&k.models),
            &k.limits.rpm.map(i64::from),
            &k.limits.concurrency.map(i64::from),
            &k.limits.daily_tokens.map(clamp),
            &k.limits.monthly_tokens.map(clamp),
            &k.expires_at,
            &k.created_at,
            &k.revoked_at,
            &k.suspended.as_ref().map(|s| s.at),
            &k.suspended.as_ref().map(|s| s.reason.clone()),
            &k.opportunistic,
            &k.owner,
        ],
    )
    .await?;
    Ok(())
}

/// Rows changed (0: no key has this id).
async fn update_row(c: &impl GenericClient, k: &StoredKey) -> anyhow::Result<u64> {
    Ok(c.execute(
        "UPDATE client_keys SET name=$2, models=$3, rpm=$4, concurrency=$5, daily_tokens=$6, monthly_tokens=$7,
             expires_at=$8, revoked_at=$9, opportunistic=$10 WHERE id=$1",
        &[
            &k.id,
            &k.name,
            &models_json(&k.models),
            &k.limits.rpm.map(i64::from),
            &k.limits.concurrency.map(i64::from),
            &k.limits.daily_tokens.map(clamp),
            &k.limits.monthly_tokens.map(clamp),
            &k.expires_at,
            &k.revoked_at,
            &k.opportunistic,
        ],
    )
    .await?)
}

fn models_json(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().and_then(|m| serde_json::to_string(m).ok())
}

/// BIGINT is signed; a budget beyond i64 is as good as none.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_to_key(r: &Row) -> anyhow::Result<StoredKey> {
    let small = |i: usize| -> anyhow::Result<Option<u32>> {
        Ok(r.try_get::<_, Option<i64>>(i)?.map(|v| u32::try_from(v).unwrap_or(u32::MAX)))
    };
    let tokens = |i: usize| -> anyhow::Result<Option<u64>> {
        Ok(r.try_get::<_, Option<i64>>(i)?.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    Ok(StoredKey {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        prefix: r.try_get(2)?,
        secret_sha256: r.try_get(3)?,
        models: r.try_get::<_, Option<String>>(4)?.and_then(|m| serde_json::from_str(&m).ok()),
        limits: Limits { rpm: small(5)?, concurrency: small(6)?, daily_tokens: tokens(7)?, monthly_tokens: tokens(8)? },
        expires_at: r.try_get(9)?,
        created_at: r.try_get(10)?,
        revoked_at: r.try_get(11)?,
        suspended: match (r.try_get::<_, Option<i64>>(12)?, r.try_get::<_, Option<String>>(13)?) {
            (Some(at), reason) => Some(Suspension { at, reason: reason.unwrap_or_default() }),
            (None, _) => None,
        },
        opportunistic: r.try_get(14)?,
        owner: r.try_get(15)?,
    })
}
