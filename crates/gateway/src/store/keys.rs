//! The `client_keys` table: client keys the admin created (keys/mod.rs keeps them in memory for lookups). Only
//! the SHA-256 of a key's secret is stored, never the secret; plain column types so the schema fits PostgreSQL.

use super::Store;
use super::sql::{Cells, Map, Val, insert, int, need, opt, text};

/// One row of `client_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// `key_` + 12 hex characters: what records, the ledger and the admin API name the key by.
    pub id: String,
    pub name: String,
    /// The first characters of the secret, shown in lists so a user can tell which key they hold.
    pub prefix: String,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Models the key may use (`None`: any).
    pub models: Option<Vec<String>>,
    pub limits: Limits,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// Refused until an operator lifts it (`keys/`: repeated policy refusals, docs/accounts.md "Risk signals").
    /// Written only by [`Store::set_key_suspension`], never by an update of the rest, so an update that read the
    /// row before a suspension does not lift it.
    pub suspended: Option<Suspension>,
    /// Served only from quota that would otherwise expire (docs/operations.md, "Client keys").
    pub opportunistic: bool,
    /// The user the key belongs to (store/users.rs; `None`: the gateway's, as every key made before users). Set
    /// when the key is created, never changed by an update.
    pub owner: Option<String>,
}

/// Why a key is suspended, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// Unix seconds.
    pub at: i64,
    pub reason: String,
}

/// The `client_keys` table's columns as both backends first created them (SQLite's migration 5, PostgreSQL's 1),
/// written once; `$int` is the type of the request limits. A macro, as `accounts_columns` is.
macro_rules! client_keys_columns {
    ($int:literal) => {
        concat!(
            "
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    models TEXT,
    rpm ",
            $int,
            ",
    concurrency ",
            $int,
            ",
    daily_tokens BIGINT,
    monthly_tokens BIGINT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT"
        )
    };
}
pub(super) use client_keys_columns;

/// Migration 13: a key's suspension.
pub const SUSPENSION: &str = r#"
ALTER TABLE client_keys ADD COLUMN suspended_at BIGINT;
ALTER TABLE client_keys ADD COLUMN suspended_reason TEXT;
"#;

/// A key's configured limits (`None`: no limit of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
    /// Tokens (input + output) per UTC day.
    pub daily_tokens: Option<u64>,
    /// Tokens (input + output) per UTC calendar month.
    pub monthly_tokens: Option<u64>,
}

/// The largest `rpm` a key may have: bounds the window's memory at 8 MB.
pub const MAX_RPM: u32 = 1_000_000;

/// How a write that claims a key's name went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameClaim {
    Written,
    /// Another key that is not revoked has the name: its id. Nothing was written.
    Taken(String),
    /// No key has this id (an update).
    Missing,
    /// The key's owner already holds this many keys that are not revoked, their maximum. Nothing was written.
    OwnerFull(usize),
}

impl Limits {
    /// Why these limits cannot be set, if they cannot: a key's and a user's alike.
    pub fn check(&self) -> Result<(), String> {
        if self.rpm == Some(0) || self.concurrency == Some(0) {
            return Err(
                "rpm and concurrency must be at least 1 (leave a limit out, or set it to null, for none)".into()
            );
        }
        if self.rpm.is_some_and(|r| r > MAX_RPM) {
            return Err(format!("rpm may be at most {MAX_RPM}"));
        }
        Ok(())
    }

    /// The limits of a row whose `rpm, concurrency, daily_tokens, monthly_tokens` start at column `at`.
    pub(super) fn read(r: &dyn Cells, at: usize) -> anyhow::Result<Limits> {
        let small = |n: Option<i64>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        let tokens = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
        Ok(Limits {
            rpm: small(r.int(at)?),
            concurrency: small(r.int(at + 1)?),
            daily_tokens: tokens(r.int(at + 2)?),
            monthly_tokens: tokens(r.int(at + 3)?),
        })
    }

    /// The values [`Limits::read`] reads back (integers are signed; a budget beyond i64 is as good as none).
    pub(super) fn values(&self) -> [Val; 4] {
        let tokens = |n: Option<u64>| Val::Int(n.map(|n| i64::try_from(n).unwrap_or(i64::MAX)));
        [
            Val::Int(self.rpm.map(i64::from)),
            Val::Int(self.concurrency.map(i64::from)),
            tokens(self.daily_tokens),
            tokens(self.monthly_tokens),
        ]
    }
}

/// The columns in [`key_values`]' order: an update writes the first ten.
const COLUMNS: &str = "id, name, models, rpm, concurrency, daily_tokens, monthly_tokens, expires_at, revoked_at, \
                       opportunistic, prefix, secret_sha256, created_at, suspended_at, suspended_reason, owner";

const UPDATE: &str = "UPDATE client_keys SET name = ?2, models = ?3, rpm = ?4, concurrency = ?5, daily_tokens = ?6, \
                      monthly_tokens = ?7, expires_at = ?8, revoked_at = ?9, opportunistic = ?10 WHERE id = ?1";

/// The id of another key (not `?2`) that is not revoked and has the name `?1`.
const NAME_HOLDER: &str =
    "SELECT id FROM client_keys WHERE name = ?1 AND revoked_at IS NULL AND id <> ?2 ORDER BY created_at, id LIMIT 1";

/// Any fixed number: the advisory lock that serializes the writes that claim a key's name on PostgreSQL.
const KEY_NAMES_LOCK: i64 = 0x636f_6465_786b_6e6d;

fn key_values(k: &StoredKey) -> Vec<Val> {
    let mut values =
        vec![text(&k.id), text(&k.name), Val::Text(k.models.as_ref().and_then(|m| serde_json::to_string(m).ok()))];
    values.extend(k.limits.values());
    values.extend([
        Val::Int(k.expires_at),
        Val::Int(k.revoked_at),
        Val::Bool(k.opportunistic),
        text(&k.prefix),
        text(&k.secret_sha256),
        int(k.created_at),
        Val::Int(k.suspended.as_ref().map(|s| s.at)),
        Val::Text(k.suspended.as_ref().map(|s| s.reason.clone())),
        opt(k.owner.as_deref()),
    ]);
    values
}

/// What [`Store::update_key`] writes.
fn update_values(k: &StoredKey) -> Vec<Val> {
    key_values(k).into_iter().take(10).collect()
}

fn key_of(r: &dyn Cells) -> anyhow::Result<StoredKey> {
    let reason = r.text(14)?;
    Ok(StoredKey {
        id: need(r.text(0)?, "client_keys.id")?,
        name: need(r.text(1)?, "client_keys.name")?,
        models: r.text(2)?.and_then(|m| serde_json::from_str(&m).ok()),
        limits: Limits::read(r, 3)?,
        expires_at: r.int(7)?,
        revoked_at: r.int(8)?,
        opportunistic: r.bool(9)?,
        prefix: need(r.text(10)?, "client_keys.prefix")?,
        secret_sha256: need(r.text(11)?, "client_keys.secret_sha256")?,
        created_at: need(r.int(12)?, "client_keys.created_at")?,
        suspended: r.int(13)?.map(|at| Suspension { at, reason: reason.unwrap_or_default() }),
        owner: r.text(15)?,
    })
}

/// Client keys on the store's backend.
impl Store {
    pub fn list_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        self.query(&format!("SELECT {COLUMNS} FROM client_keys ORDER BY created_at, id"), vec![], key_of)
    }

    pub fn get_key(&self, id: &str) -> anyhow::Result<Option<StoredKey>> {
        self.query_opt(&format!("SELECT {COLUMNS} FROM client_keys WHERE id = ?1"), vec![text(id)], key_of)
    }

    pub fn insert_key(&self, k: &StoredKey) -> anyhow::Result<()> {
        self.exec(&insert("client_keys", COLUMNS), key_values(k))?;
        Ok(())
    }

    /// Write a key's name, models, limits, whether it is opportunistic, its expiry and revocation (the secret and
    /// its hash never change).
    pub fn update_key(&self, k: &StoredKey) -> anyhow::Result<bool> {
        Ok(self.exec(UPDATE, update_values(k))? == 1)
    }

    /// Suspend a key (`Some`) or lift its suspension (`None`), only those columns. Whether a key has this id.
    pub fn set_key_suspension(&self, id: &str, suspension: Option<&Suspension>) -> anyhow::Result<bool> {
        let sql = "UPDATE client_keys SET suspended_at = ?2, suspended_reason = ?3 WHERE id = ?1";
        let values =
            vec![text(id), Val::Int(suspension.map(|s| s.at)), Val::Text(suspension.map(|s| s.reason.clone()))];
        Ok(self.exec(sql, values)? == 1)
    }

    /// Insert `k` unless a key that is not revoked has its name, or (with `max_owned`) its owner already holds that
    /// many keys that are not revoked (counted under the same lock: every insert of a key takes it, so none slips
    /// in between).
    pub fn insert_key_claiming_name(&self, k: &StoredKey, max_owned: Option<u32>) -> anyhow::Result<NameClaim> {
        let check = format!(
            "SELECT ({NAME_HOLDER}), (SELECT count(*) FROM client_keys WHERE owner = ?3 AND revoked_at IS NULL)"
        );
        let max = max_owned.filter(|_| k.owner.is_some());
        let verdict = move |rows: Vec<(Option<String>, i64)>| {
            let (holder, held) = rows.into_iter().next()?;
            let held = usize::try_from(held).unwrap_or(usize::MAX);
            match (holder, max) {
                (Some(holder), _) => Some(NameClaim::Taken(holder)),
                (None, Some(max)) if held >= max as usize => Some(NameClaim::OwnerFull(held)),
                (None, _) => None,
            }
        };
        let check = (check.as_str(), vec![text(&k.name), text(&k.id), opt(k.owner.as_deref())]);
        self.claim(
            check,
            |r| Ok((r.text(0)?, need(r.int(1)?, "count")?)),
            verdict,
            (&insert("client_keys", COLUMNS), key_values(k)),
        )
    }

    /// Write `k` as [`Store::update_key`] does, unless it takes a new name that a key that is not revoked has (a
    /// name it already had stays, so two keys named alike before names were checked can still be changed).
    pub fn update_key_claiming_name(&self, k: &StoredKey) -> anyhow::Result<NameClaim> {
        let check = format!("SELECT name, ({NAME_HOLDER}) FROM client_keys WHERE id = ?2");
        let (name, revoked) = (k.name.clone(), k.revoked_at.is_some());
        let verdict = move |rows: Vec<(Option<String>, Option<String>)>| match rows.into_iter().next() {
            None => Some(NameClaim::Missing),
            Some((stored, holder)) => holder.filter(|_| !revoked && stored != Some(name)).map(NameClaim::Taken),
        };
        let check = (check.as_str(), vec![text(&k.name), text(&k.id)]);
        self.claim(check, |r| Ok((r.text(0)?, r.text(1)?)), verdict, (UPDATE, update_values(k)))
    }

    /// Run the `check` statement and, unless `verdict` of its rows refuses, `write`: one step for every gateway on
    /// the store ([`Store::read_then_write`]), so two writes at once cannot both pass it.
    fn claim<C: Send + 'static>(
        &self,
        check: (&str, Vec<Val>),
        map: Map<C>,
        verdict: impl FnOnce(Vec<C>) -> Option<NameClaim> + Send + 'static,
        (write, values): (&str, Vec<Val>),
    ) -> anyhow::Result<NameClaim> {
        let write = (write.to_string(), values);
        self.read_then_write(KEY_NAMES_LOCK, check, map, move |rows| match verdict(rows) {
            Some(refused) => (None, refused),
            None => (Some(write), NameClaim::Written),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
