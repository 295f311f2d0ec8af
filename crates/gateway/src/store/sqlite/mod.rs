//! The store in one SQLite file in the data directory (WAL, file mode 0600, migrated by `migrations.rs`): a single
//! instance's accounts, tokens and client keys (their statements, shared with PostgreSQL, are `store/`'s) and its
//! usage ledger (`usage.rs`). Used unless the instance shares a team store (docs/team.md); the file is opened and
//! migrated either way.
//!
//! Writes that rotate tokens use `synchronous=FULL` so a committed refresh survives a crash or power loss.

use std::path::{Path, PathBuf};

use anyhow::Context;
use parking_lot::Mutex;
use rusqlite::Connection;

pub mod usage;

/// One SQLite file and the connection the store's calls share.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Open and migrate. A data directory the gateway creates gets mode 0700 and a database file it creates 0600
    /// (SQLite gives its `-wal` and `-shm` files the database's mode); what already exists keeps its mode, since
    /// the directory may be shared on purpose (a 1777 scratch directory, a group's directory).
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::create_private_dir(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
        }
        if !path.exists() {
            let mut options = super::private_options();
            options.write(true).create(true).truncate(false);
            options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open database {}", path.display()))?;
        // The first statement reads the file: a file that is not a database (or not readable) fails here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot open database {}", path.display()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = SqliteStore { conn: Mutex::new(conn), path: path.to_path_buf() };
        super::migrations::on_sqlite(&mut store.conn.lock())
            .with_context(|| format!("cannot migrate database {}", path.display()))?;
        Ok(store)
    }

    /// The database file (the usage ledger opens its own connections to it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn lock(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// Run `f` in a transaction that takes the database's write lock first (`BEGIN IMMEDIATE`), so no other
    /// gateway or command on the file writes between its reads and its writes; committed when `f` succeeds.
    pub(super) fn immediate<T>(&self, f: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::store::{AccountKind, AccountStatus, Store, StoredAccount, Tokens};

    #[test]
    fn round_trip_and_private_file() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("gateway.db");
        let store = Store::open(&path)?;
        let tokens = Tokens {
            id_token: "i".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            account_id: "acc".into(),
            last_refresh: 5,
        };
        let acct = StoredAccount {
            id: "x".into(),
            kind: AccountKind::Chatgpt,
            label: None,
            email: Some("e@x".into()),
            plan: Some("plus".into()),
            tokens: Some(tokens.clone()),
            api_key: None,
            base_url: None,
            proxy: None,
            models: None,
            status: AccountStatus::Active,
            status_reason: None,
            created_at: 1,
            policy: None,
        };
        store.upsert_account(&acct)?;
        let t2 = Tokens { refresh_token: "r2".into(), ..tokens };
        store.save_tokens("x", &t2)?;
        store.set_status("x", AccountStatus::NeedsLogin, Some("refresh_token_reused"))?;
        drop(store);
        let store = Store::open(&path)?;
        let back = store.get_account("x")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!(back.tokens.map(|t| t.refresh_token), Some("r2".into()));
        assert_eq!(back.status, AccountStatus::NeedsLogin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A store the old runner left at its version 9 (the risk signals' key suspension, before policies) opens
    /// migrated: its account reads as `normal`, its key as not opportunistic (a suspended one still suspended), and
    /// both can be set and read back.
    #[test]
    fn a_store_of_the_previous_schema_gains_policies_and_opportunistic_keys() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-v9-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("gateway.db");
        {
            let conn = crate::store::migrations::tests::old_sqlite_file(&path, 9)?;
            conn.execute(
                "INSERT INTO accounts (id, kind, api_key, status, created_at) VALUES ('k', 'api_key', 'sk-1', 'active', 1)",
                [],
            )?;
            conn.execute(
                "INSERT INTO client_keys (id, name, prefix, secret_sha256, created_at, suspended_at, suspended_reason) \
                 VALUES ('key_1', 'ci', 'cgw_', 'ab', 1, 2, 'policy refusals')",
                [],
            )?;
        }
        let store = Store::open(&path)?;
        let (version, _) = store.with_conn(|c| Ok(crate::store::migrations::sqlite_state(c)))??;
        assert_eq!(version, crate::store::migrations::SCHEMA_VERSION as i64);
        assert_eq!(store.get_account("k")?.and_then(|a| a.policy).as_deref(), Some("normal"));
        let suspension = crate::store::Suspension { at: 2, reason: "policy refusals".into() };
        assert_eq!(store.get_key("key_1")?.map(|k| (k.opportunistic, k.suspended)), Some((false, Some(suspension))));
        assert!(store.set_policy("k", "preserve:40")?);
        assert!(!store.set_policy("nobody", "burn_first")?, "no such account: nothing written");
        let mut key = store.get_key("key_1")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        key.opportunistic = true;
        assert!(store.update_key(&key)?);
        drop(store);
        let store = Store::open(&path)?;
        assert_eq!(store.get_account("k")?.and_then(|a| a.policy).as_deref(), Some("preserve:40"));
        assert_eq!(store.get_key("key_1")?.map(|k| k.opportunistic), Some(true));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A login again (a row without a policy) keeps the stored policy; a row that names one (an import of an
    /// export) sets it; a new row without one is `normal`.
    #[test]
    fn an_upsert_keeps_the_policy_unless_it_names_one() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-policy-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let mut acct = StoredAccount {
            id: "p".into(),
            kind: AccountKind::ApiKey,
            label: None,
            email: None,
            plan: None,
            tokens: None,
            api_key: Some("sk-1".into()),
            base_url: None,
            proxy: None,
            models: None,
            status: AccountStatus::Active,
            status_reason: None,
            created_at: 1,
            policy: None,
        };
        store.upsert_account(&acct)?;
        assert_eq!(store.get_account("p")?.and_then(|a| a.policy).as_deref(), Some("normal"));
        assert!(store.set_policy("p", "burn_first")?);
        store.upsert_account(&acct)?;
        assert_eq!(store.get_account("p")?.and_then(|a| a.policy).as_deref(), Some("burn_first"));
        acct.policy = Some("preserve:25".into());
        store.upsert_account(&acct)?;
        assert_eq!(store.list_accounts()?.first().and_then(|a| a.policy.clone()).as_deref(), Some("preserve:25"));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A data directory that already exists keeps its mode (it was chmodded to 0700, breaking a shared 1777
    /// directory); one the gateway creates is private, and so is the database file it creates there.
    #[cfg(unix)]
    #[test]
    fn only_what_it_creates_gets_private_modes() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o7777);
        let root = std::env::temp_dir().join(format!("cg-store-modes-{}", uuid::Uuid::new_v4()));
        let shared = root.join("shared");
        std::fs::create_dir_all(&shared)?;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))?;
        drop(Store::open(&shared.join("gateway.db"))?);
        assert_eq!(mode(&shared)?, 0o1777, "a pre-existing directory keeps its mode");
        assert_eq!(mode(&shared.join("gateway.db"))?, 0o600);

        let created = root.join("new/parent/data");
        drop(Store::open(&created.join("gateway.db"))?);
        assert_eq!(mode(&created)?, 0o700, "a directory the gateway creates is private");
        assert_eq!(mode(&created.join("gateway.db"))?, 0o600);
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
