//! The `client_keys` table in the SQLite file. A name is checked and written in one write transaction that takes
//! the database's write lock first, so two gateways or commands on one file cannot both find it free.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::store::{Limits, NameClaim, StoredKey, Suspension};

const COLUMNS: &str = "id, name, prefix, secret_sha256, models, rpm, concurrency, daily_tokens, monthly_tokens, \
                       expires_at, created_at, revoked_at, suspended_at, suspended_reason, opportunistic, owner";

impl SqliteStore {
    pub fn list_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM client_keys ORDER BY created_at, id"))?;
        let rows = stmt.query_map([], row_to_key)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn get_key(&self, id: &str) -> anyhow::Result<Option<StoredKey>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM client_keys WHERE id = ?1"))?;
        Ok(stmt.query_row([id], row_to_key).optional()?)
    }

    pub fn insert_key(&self, k: &StoredKey) -> anyhow::Result<()> {
        insert_row(&self.conn.lock(), k)?;
        Ok(())
    }

    /// Write a key's name, models, limits, expiry and revocation (the secret and its hash never change).
    pub fn update_key(&self, k: &StoredKey) -> anyhow::Result<bool> {
        Ok(update_row(&self.conn.lock(), k)? == 1)
    }

    /// Suspend a key or lift its suspension (only those columns). Whether a key has this id.
    pub fn set_key_suspension(&self, id: &str, s: Option<&Suspension>) -> anyhow::Result<bool> {
        let changed = self.conn.lock().execute(
            "UPDATE client_keys SET suspended_at = ?2, suspended_reason = ?3 WHERE id = ?1",
            params![id, s.map(|s| s.at), s.map(|s| s.reason.as_str())],
        )?;
        Ok(changed == 1)
    }

    /// Insert `k` unless a key that is not revoked has its name. The check and the insert are one write
    /// transaction that takes the database's write lock first (`BEGIN IMMEDIATE`), so two gateways or commands
    /// on one store cannot both find a name free.
    pub fn insert_key_claiming_name(&self, k: &StoredKey, max_owned: Option<u32>) -> anyhow::Result<NameClaim> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(holder) = name_holder(&tx, k)? {
            return Ok(NameClaim::Taken(holder));
        }
        if let (Some(max), Some(owner)) = (max_owned, &k.owner) {
            let held: i64 = tx.query_row(
                "SELECT count(*) FROM client_keys WHERE owner = ?1 AND revoked_at IS NULL",
                [owner],
                |r| r.get(0),
            )?;
            let held = usize::try_from(held).unwrap_or(usize::MAX);
            if held >= max as usize {
                return Ok(NameClaim::OwnerFull(held));
            }
        }
        insert_row(&tx, k)?;
        tx.commit()?;
        Ok(NameClaim::Written)
    }

    /// Write `k` as [`SqliteStore::update_key`] does, unless it takes a new name that a key that is not revoked has (a
    /// name it already had stays, so two keys named alike before names were checked can still be changed).
    pub fn update_key_claiming_name(&self, k: &StoredKey) -> anyhow::Result<NameClaim> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let stored: Option<String> =
            tx.query_row("SELECT name FROM client_keys WHERE id = ?1", [&k.id], |r| r.get(0)).optional()?;
        let Some(stored) = stored else {
            return Ok(NameClaim::Missing);
        };
        if k.revoked_at.is_none()
            && stored != k.name
            && let Some(holder) = name_holder(&tx, k)?
        {
            return Ok(NameClaim::Taken(holder));
        }
        update_row(&tx, k)?;
        tx.commit()?;
        Ok(NameClaim::Written)
    }
}

/// The id of another key that is not revoked and has `k`'s name.
fn name_holder(conn: &Connection, k: &StoredKey) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM client_keys WHERE name = ?1 AND revoked_at IS NULL AND id <> ?2 ORDER BY created_at, id LIMIT 1",
        [&k.name, &k.id],
        |r| r.get(0),
    )
    .optional()
}

fn insert_row(conn: &Connection, k: &StoredKey) -> rusqlite::Result<usize> {
    conn.execute(
        &format!(
            "INSERT INTO client_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16)"
        ),
        params![
            k.id,
            k.name,
            k.prefix,
            k.secret_sha256,
            models_json(&k.models),
            k.limits.rpm,
            k.limits.concurrency,
            k.limits.daily_tokens.map(clamp),
            k.limits.monthly_tokens.map(clamp),
            k.expires_at,
            k.created_at,
            k.revoked_at,
            k.suspended.as_ref().map(|s| s.at),
            k.suspended.as_ref().map(|s| s.reason.as_str()),
            k.opportunistic,
            k.owner,
        ],
    )
}

/// Rows changed (0: no key has this id).
fn update_row(conn: &Connection, k: &StoredKey) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE client_keys SET name=?2, models=?3, rpm=?4, concurrency=?5, daily_tokens=?6, monthly_tokens=?7,
                                expires_at=?8, revoked_at=?9, opportunistic=?10 WHERE id=?1",
        params![
            k.id,
            k.name,
            models_json(&k.models),
            k.limits.rpm,
            k.limits.concurrency,
            k.limits.daily_tokens.map(clamp),
            k.limits.monthly_tokens.map(clamp),
            k.expires_at,
            k.revoked_at,
            k.opportunistic,
        ],
    )
}

fn models_json(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().and_then(|m| serde_json::to_string(m).ok())
}

/// SQLite integers are signed; a budget beyond i64 is as good as none.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn row_to_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredKey> {
    let tokens = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    Ok(StoredKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        secret_sha256: r.get(3)?,
        models: r.get::<_, Option<String>>(4)?.and_then(|m| serde_json::from_str(&m).ok()),
        limits: Limits { rpm: r.get(5)?, concurrency: r.get(6)?, daily_tokens: tokens(7)?, monthly_tokens: tokens(8)? },
        expires_at: r.get(9)?,
        created_at: r.get(10)?,
        revoked_at: r.get(11)?,
        suspended: match (r.get::<_, Option<i64>>(12)?, r.get::<_, Option<String>>(13)?) {
            (Some(at), reason) => Some(Suspension { at, reason: reason.unwrap_or_default() }),
            (None, _) => None,
        },
        opportunistic: r.get(14)?,
        owner: r.get(15)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::store::{Limits, Store, StoredKey};

    #[test]
    fn keys_round_trip() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-keys-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let mut k = StoredKey {
            id: "key_1".into(),
            name: "ci".into(),
            prefix: "cgw_abcd".into(),
            secret_sha256: "00".repeat(32),
            models: Some(vec!["gpt-5".into()]),
            limits: Limits { rpm: Some(60), concurrency: None, daily_tokens: Some(1_000), monthly_tokens: None },
            expires_at: Some(1_800_000_000),
            created_at: 1_700_000_000,
            revoked_at: None,
            suspended: None,
            opportunistic: true,
            owner: Some("usr_1".into()),
        };
        store.insert_key(&k)?;
        assert_eq!(store.get_key("key_1")?.as_ref(), Some(&k));
        k.revoked_at = Some(1_700_000_100);
        k.opportunistic = false;
        k.models = None;
        k.limits.daily_tokens = None;
        assert!(store.update_key(&k)?);
        assert_eq!(store.list_keys()?, vec![k.clone()]);
        // A suspension is its own write, which an update of the rest leaves alone.
        let suspension = crate::store::Suspension { at: 1_700_000_200, reason: "policy".into() };
        assert!(store.set_key_suspension("key_1", Some(&suspension))?);
        assert!(store.update_key(&k)?);
        assert_eq!(store.get_key("key_1")?.and_then(|k| k.suspended), Some(suspension));
        assert!(store.set_key_suspension("key_1", None)?);
        assert_eq!(store.list_keys()?, vec![k]);
        assert!(!store.set_key_suspension("nope", None)?);
        assert!(store.get_key("nope")?.is_none());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
