//! The `client_keys` table: client keys the admin created (keys/mod.rs keeps them in memory for lookups). Only
//! the SHA-256 of a key's secret is stored, never the secret; plain column types so the schema fits PostgreSQL.

use super::{Backend, Store};

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

/// Migration 9 (SQLite) and 10 (PostgreSQL): a key's suspension.
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

/// Client keys on the store's backend.
impl Store {
    pub fn list_keys(&self) -> anyhow::Result<Vec<StoredKey>> {
        match &self.backend {
            Backend::Sqlite => self.file.list_keys(),
            Backend::Postgres(pg) => pg.list_keys(),
        }
    }

    pub fn get_key(&self, id: &str) -> anyhow::Result<Option<StoredKey>> {
        match &self.backend {
            Backend::Sqlite => self.file.get_key(id),
            Backend::Postgres(pg) => pg.get_key(id),
        }
    }

    pub fn insert_key(&self, k: &StoredKey) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite => self.file.insert_key(k),
            Backend::Postgres(pg) => pg.insert_key(k),
        }
    }

    /// Write a key's name, models, limits, whether it is opportunistic, its expiry and revocation (the secret and
    /// its hash never change).
    pub fn update_key(&self, k: &StoredKey) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.update_key(k),
            Backend::Postgres(pg) => pg.update_key(k),
        }
    }

    /// Suspend a key (`Some`) or lift its suspension (`None`). Whether a key has this id.
    pub fn set_key_suspension(&self, id: &str, suspension: Option<&Suspension>) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.set_key_suspension(id, suspension),
            Backend::Postgres(pg) => pg.set_key_suspension(id, suspension),
        }
    }

    /// Insert `k` unless a key that is not revoked has its name, or (with `max_owned`) its owner already holds that
    /// many keys that are not revoked; the checks and the insert are one step for every gateway on the store
    /// (SQLite's write lock, a PostgreSQL advisory lock), so two creations at once cannot both pass them.
    pub fn insert_key_claiming_name(&self, k: &StoredKey, max_owned: Option<u32>) -> anyhow::Result<NameClaim> {
        match &self.backend {
            Backend::Sqlite => self.file.insert_key_claiming_name(k, max_owned),
            Backend::Postgres(pg) => pg.insert_key_claiming_name(k, max_owned),
        }
    }

    /// Write `k` as [`Store::update_key`] does, unless it takes a new name that a key that is not revoked has (a
    /// name it already had stays, so two keys named alike before names were checked can still be changed).
    pub fn update_key_claiming_name(&self, k: &StoredKey) -> anyhow::Result<NameClaim> {
        match &self.backend {
            Backend::Sqlite => self.file.update_key_claiming_name(k),
            Backend::Postgres(pg) => pg.update_key_claiming_name(k),
        }
    }
}
