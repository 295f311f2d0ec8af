//! The gateway's own store: SQLite in the data directory (WAL, file mode 0600), numbered migrations.
//!
//! Writes that rotate tokens use `synchronous=FULL` so a committed refresh survives a crash or power loss.
//!
//! Team scale (docs/team.md): with `[store] url = "postgres://..."` the accounts, tokens and client keys live in
//! PostgreSQL (`postgres/`), shared by every instance, and each account or key call below goes there; the usage
//! ledger and settings stay in the SQLite file. Without a URL nothing changes.

use std::path::Path;

use anyhow::Context;
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};

mod accounts;
mod keys;
pub mod postgres;
pub mod serving;
pub mod usage;

pub use accounts::{AccountKind, AccountStatus, StoredAccount, Tokens, UnknownKind, UnknownStatus, redact};
pub use keys::{Limits, NameClaim, StoredKey};

/// Each entry moves the schema one version forward; never edit an entry once released.
/// The schema version a current store has (`PRAGMA user_version` after every migration; `doctor` compares).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT,
    email TEXT,
    plan TEXT,
    chatgpt_account_id TEXT,
    id_token TEXT,
    access_token TEXT,
    refresh_token TEXT,
    api_key TEXT,
    base_url TEXT,
    last_refresh INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT,
    created_at INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE accounts ADD COLUMN proxy TEXT;
ALTER TABLE accounts ADD COLUMN models TEXT;
"#,
    // 3: the usage ledger (store/usage.rs).
    usage::SCHEMA,
    // 4: client keys (store/keys.rs).
    r#"
CREATE TABLE client_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    models TEXT,
    rpm INTEGER,
    concurrency INTEGER,
    daily_tokens BIGINT,
    monthly_tokens BIGINT,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
"#,
    // 5: covering indexes for the usage reports' range scans (store/usage.rs).
    usage::ROLLUP_COVER,
    // 6: each account's installation id, the official client's per-machine id the backend sees in every turn's
    // metadata (upstream/identity; one per account, made at its first use: Store::installation_id).
    "ALTER TABLE accounts ADD COLUMN installation_id TEXT;",
];

pub struct Store {
    conn: Mutex<Connection>,
    path: std::path::PathBuf,
    /// The team store, when `[store] url` names PostgreSQL: accounts, tokens and keys are read and written there.
    shared: Option<std::sync::Arc<postgres::PgStore>>,
}

impl Store {
    /// Open and migrate. A data directory the gateway creates gets mode 0700 and a database file it creates 0600
    /// (SQLite gives its `-wal` and `-shm` files the database's mode); what already exists keeps its mode, since
    /// the directory may be shared on purpose (a 1777 scratch directory, a group's directory).
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
        }
        if !path.exists() {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            opts.open(path).with_context(|| format!("cannot create {}", path.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open database {}", path.display()))?;
        // The first statement reads the file: a file that is not a database (or not readable) fails here.
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot open database {}", path.display()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn: Mutex::new(conn), path: path.to_path_buf(), shared: None };
        store.migrate().with_context(|| format!("cannot migrate database {}", path.display()))?;
        Ok(store)
    }

    /// [`Store::open`], plus the team store at `url` when it names PostgreSQL.
    pub fn open_with(path: &Path, url: Option<&str>) -> anyhow::Result<Store> {
        let mut store = Store::open(path)?;
        if let Some(url) = url {
            anyhow::ensure!(
                postgres::is_postgres_url(url),
                "the store URL must start with postgres:// or postgresql:// (got {})",
                postgres::redact_url(url)
            );
            store.shared = Some(postgres::PgStore::open(url)?);
        }
        Ok(store)
    }

    /// The PostgreSQL team store, if this gateway shares one.
    pub fn shared(&self) -> Option<&std::sync::Arc<postgres::PgStore>> {
        self.shared.as_ref()
    }

    /// The database file (the usage ledger opens its own connections to it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the store's connection (short reads, e.g. `usage::tokens_by_key_since`).
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        Ok(f(&self.conn.lock())?)
    }

    fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql).with_context(|| format!("migration {} failed", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn list_accounts(&self) -> anyhow::Result<Vec<StoredAccount>> {
        if let Some(pg) = &self.shared {
            return pg.list_accounts();
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token, api_key,
                    base_url, last_refresh, status, status_reason, created_at, proxy, models FROM accounts ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], row_to_account)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn get_account(&self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        if let Some(pg) = &self.shared {
            return pg.get_account(id);
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token, api_key,
                    base_url, last_refresh, status, status_reason, created_at, proxy, models FROM accounts WHERE id = ?1",
        )?;
        Ok(stmt.query_row([id], row_to_account).optional()?)
    }

    /// Insert or replace an account (import, login).
    pub fn upsert_account(&self, a: &StoredAccount) -> anyhow::Result<()> {
        if let Some(pg) = &self.shared {
            return pg.upsert_account(a);
        }
        // A row read with a kind this build does not know is never written back (it would lose the kind).
        anyhow::ensure!(a.kind != AccountKind::Unrecognized, "account {} has a kind this build cannot store", a.id);
        let conn = self.conn.lock();
        let t = a.tokens.as_ref();
        conn.execute(
            "INSERT INTO accounts (id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token,
                                   api_key, base_url, last_refresh, status, status_reason, created_at, proxy, models)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, label=COALESCE(excluded.label, accounts.label),
                email=excluded.email, plan=excluded.plan, chatgpt_account_id=excluded.chatgpt_account_id,
                id_token=excluded.id_token, access_token=excluded.access_token, refresh_token=excluded.refresh_token,
                api_key=excluded.api_key, base_url=excluded.base_url, last_refresh=excluded.last_refresh,
                status=excluded.status, status_reason=excluded.status_reason, proxy=excluded.proxy,
                models=excluded.models",
            params![
                a.id,
                a.kind.as_str(),
                a.label,
                a.email,
                a.plan,
                t.map(|t| t.account_id.clone()),
                t.map(|t| t.id_token.clone()),
                t.map(|t| t.access_token.clone()),
                t.map(|t| t.refresh_token.clone()),
                a.api_key,
                a.base_url,
                t.map(|t| t.last_refresh).unwrap_or(0),
                a.status.as_str(),
                a.status_reason,
                a.created_at,
                a.proxy,
                a.models.as_ref().and_then(|m| serde_json::to_string(m).ok()),
            ],
        )?;
        Ok(())
    }

    /// Commit rotated tokens. Called the moment the token endpoint answers, before anything uses them.
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        if let Some(pg) = &self.shared {
            return pg.save_tokens(id, t);
        }
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE accounts SET id_token=?2, access_token=?3, refresh_token=?4, chatgpt_account_id=?5, last_refresh=?6,
                    status='active', status_reason=NULL WHERE id=?1",
            params![id, t.id_token, t.access_token, t.refresh_token, t.account_id, t.last_refresh],
        )?;
        anyhow::ensure!(n == 1, "account {id} is not in the store");
        Ok(())
    }

    pub fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<bool> {
        if let Some(pg) = &self.shared {
            return pg.set_label(id, label);
        }
        let conn = self.conn.lock();
        Ok(conn.execute("UPDATE accounts SET label=?2 WHERE id=?1", params![id, label])? == 1)
    }

    pub fn set_proxy(&self, id: &str, proxy: Option<&str>) -> anyhow::Result<bool> {
        if let Some(pg) = &self.shared {
            return pg.set_proxy(id, proxy);
        }
        let conn = self.conn.lock();
        Ok(conn.execute("UPDATE accounts SET proxy=?2 WHERE id=?1", params![id, proxy])? == 1)
    }

    pub fn remove_account(&self, id: &str) -> anyhow::Result<bool> {
        if let Some(pg) = &self.shared {
            return pg.remove_account(id);
        }
        let conn = self.conn.lock();
        Ok(conn.execute("DELETE FROM accounts WHERE id=?1", params![id])? == 1)
    }

    /// The account's installation id: the one it has, or `fresh` written as its first (a random UUID made by the
    /// caller). Made once and kept: it never changes across restarts, and no two accounts share one.
    pub fn installation_id(&self, id: &str, fresh: &str) -> anyhow::Result<Option<String>> {
        if let Some(pg) = &self.shared {
            return pg.installation_id(id, fresh);
        }
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE accounts SET installation_id=?2 WHERE id=?1 AND installation_id IS NULL",
            params![id, fresh],
        )?;
        let found =
            conn.query_row("SELECT installation_id FROM accounts WHERE id=?1", params![id], |r| r.get(0)).optional()?;
        Ok(found.flatten())
    }

    pub fn set_status(&self, id: &str, status: AccountStatus, reason: Option<&str>) -> anyhow::Result<()> {
        if let Some(pg) = &self.shared {
            return pg.set_status(id, status, reason);
        }
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE accounts SET status=?2, status_reason=?3 WHERE id=?1",
            params![id, status.as_str(), reason],
        )?;
        Ok(())
    }
}

/// Create `dir` (and missing parents, with default modes) unless it exists; only `dir` itself is made private.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        // Created meanwhile by another process (a CLI command next to the gateway): theirs to decide.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// One row as a [`StoredAccount`]. A row whose kind or status cannot be read is still returned, as
/// [`AccountStatus::Unrecognized`] with the parse error as its reason: failing the whole read would take every
/// account out of service for one bad row, and skipping the row would hide it. The pool never serves it and logs
/// it (`Pool::reload`).
fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAccount> {
    // An unknown kind wins over the status: whatever the status says, the account cannot be used.
    let (kind, status, status_reason) =
        match (AccountKind::parse(&r.get::<_, String>(1)?), AccountStatus::parse(&r.get::<_, String>(12)?)) {
            (Err(e), _) => (AccountKind::Unrecognized, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Err(e)) => (kind, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Ok(status)) => (kind, status, r.get(13)?),
        };
    let refresh: Option<String> = r.get(8)?;
    let access: Option<String> = r.get(7)?;
    let tokens = match (kind, access, refresh) {
        (AccountKind::Chatgpt, Some(access_token), Some(refresh_token)) => Some(Tokens {
            id_token: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            access_token,
            refresh_token,
            account_id: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            last_refresh: r.get(11)?,
        }),
        _ => None,
    };
    Ok(StoredAccount {
        id: r.get(0)?,
        kind,
        label: r.get(2)?,
        email: r.get(3)?,
        plan: r.get(4)?,
        tokens,
        api_key: r.get(9)?,
        base_url: r.get(10)?,
        status,
        status_reason,
        created_at: r.get(14)?,
        proxy: r.get(15)?,
        models: r.get::<_, Option<String>>(16)?.and_then(|m| serde_json::from_str(&m).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn statuses_parse_exactly() {
        for status in [AccountStatus::Active, AccountStatus::NeedsLogin, AccountStatus::Disabled] {
            assert_eq!(AccountStatus::parse(status.as_str()), Ok(status));
        }
        for unknown in ["", "paused", "Active", "unrecognized"] {
            assert_eq!(AccountStatus::parse(unknown), Err(UnknownStatus(unknown.into())));
        }
    }

    /// A status this build does not know (a newer version's, a hand edit) used to read as `active` and put the
    /// account back into service. Now the row is read as `unrecognized`, with the stored value in its reason,
    /// in every listing; writing a known status repairs it.
    #[test]
    fn unknown_stored_status_is_unrecognized_not_active() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-status-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let acct = StoredAccount {
            id: "k".into(),
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
        };
        store.upsert_account(&acct)?;
        store.conn.lock().execute("UPDATE accounts SET status='paused', status_reason='by v9' WHERE id='k'", [])?;
        let back = store.get_account("k")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!(back.status, AccountStatus::Unrecognized);
        assert_eq!(back.status_reason.as_deref(), Some(r#"unknown account status "paused" in the store"#));
        let listed = store.list_accounts()?;
        assert_eq!(listed.len(), 1, "the row is listed, not dropped");
        assert_eq!(listed[0].status, AccountStatus::Unrecognized);
        store.set_status("k", AccountStatus::Active, None)?;
        assert_eq!(store.get_account("k")?.map(|a| a.status), Some(AccountStatus::Active));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn kinds_parse_exactly() {
        for kind in [AccountKind::Chatgpt, AccountKind::ApiKey, AccountKind::Relay] {
            assert_eq!(AccountKind::parse(kind.as_str()), Ok(kind));
        }
        for unknown in ["", "passkey", "ChatGPT", "unrecognized"] {
            assert_eq!(AccountKind::parse(unknown), Err(UnknownKind(unknown.into())));
        }
    }

    /// A kind this build does not know used to read as `chatgpt`: its credentials went to the Codex backend. Now
    /// the row reads as kind and status `unrecognized`, the stored kind in its reason, whatever its stored status;
    /// it is listed, and never written back.
    #[test]
    fn unknown_stored_kind_is_unrecognized_not_chatgpt() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-kind-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let tokens = Tokens {
            id_token: "i".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            account_id: "acc".into(),
            last_refresh: 5,
        };
        let acct = StoredAccount {
            id: "p".into(),
            kind: AccountKind::Chatgpt,
            label: Some("from v9".into()),
            email: None,
            plan: None,
            tokens: Some(tokens),
            api_key: None,
            base_url: None,
            proxy: None,
            models: None,
            status: AccountStatus::Active,
            status_reason: None,
            created_at: 1,
        };
        store.upsert_account(&acct)?;
        store.conn.lock().execute("UPDATE accounts SET kind='passkey' WHERE id='p'", [])?;
        let back = store.get_account("p")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!((back.kind, back.status), (AccountKind::Unrecognized, AccountStatus::Unrecognized));
        assert_eq!(back.status_reason.as_deref(), Some(r#"unknown account kind "passkey" in the store"#));
        assert!(back.tokens.is_none(), "no credentials are handed out for it");
        let listed = store.list_accounts()?;
        assert_eq!(listed.len(), 1, "the row is listed, not dropped");
        assert_eq!(listed[0].kind, AccountKind::Unrecognized);
        assert!(store.upsert_account(&back).is_err(), "a row read as unrecognized is never written back");
        let raw: (String, String, Option<String>, Option<String>) = store.conn.lock().query_row(
            "SELECT kind, status, refresh_token, label FROM accounts WHERE id='p'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        assert_eq!(
            raw,
            ("passkey".into(), "active".into(), Some("r".into()), Some("from v9".into())),
            "the row is intact"
        );
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
