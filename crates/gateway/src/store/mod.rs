//! The gateway's store: accounts with their tokens, client keys and the usage ledger, on one of two backends
//! ([`Backend`]): the instance's own SQLite file in the data directory (`sqlite/`), or with `[store] url =
//! "postgres://..."` a PostgreSQL database that a team of instances shares (`postgres/`, docs/team.md). Every call
//! that differs between them matches on the backend here, in `store/`; the rest of the gateway asks a [`Store`]
//! and never learns which one answers. The SQLite file is opened either way.
//!
//! The types stored (`accounts.rs`, `keys.rs`, `usage.rs`, the audit trail's `audit.rs`, the users and
//! sessions of `users.rs`) are this module's; `serving.rs` keeps one `serve`
//! per data directory.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

mod accounts;
pub mod attribution;
pub mod audit;
pub mod identities;
mod keys;
pub mod migrations;
pub mod oauth;
pub mod postgres;
pub mod serving;
pub(crate) mod sql;
pub mod sqlite;
pub mod team;
pub mod usage;
pub mod users;

pub use accounts::{AccountKind, AccountStatus, StoredAccount, Tokens, UnknownKind, UnknownStatus, redact};
pub use keys::{Limits, MAX_RPM, NameClaim, StoredKey, Suspension};
use postgres::PgStore;
use sqlite::SqliteStore;

/// Migration 14 (`migrations.rs`), one text (plain types both read): each account's owner policy, as
/// `planner::Policy::as_text` writes it (`normal`, `burn_first`, `preserve:N`), and whether a client key is
/// opportunistic (served only from quota that would otherwise expire). Rows that exist keep the behaviour they
/// had: `normal`, not opportunistic.
pub(crate) const POLICIES: &str = "
ALTER TABLE accounts ADD COLUMN policy TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE client_keys ADD COLUMN opportunistic BOOLEAN NOT NULL DEFAULT FALSE;
";

/// The store: the SQLite file, and the backend that holds the accounts, tokens and client keys.
pub struct Store {
    /// The instance's own file, always open (its ledger when there is no team store).
    file: SqliteStore,
    backend: Backend,
}

/// Which database answers the store's calls.
enum Backend {
    /// One instance: the SQLite file.
    Sqlite,
    /// A team of instances sharing PostgreSQL.
    Postgres(Arc<PgStore>),
}

impl Store {
    /// Open and migrate the SQLite file at `path` (modes: [`SqliteStore::open`]).
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Ok(Store { file: SqliteStore::open(path)?, backend: Backend::Sqlite })
    }

    /// [`Store::open`], with the team store at `url` (which must name PostgreSQL) as the backend.
    pub fn open_with(path: &Path, url: Option<&str>) -> anyhow::Result<Store> {
        let mut store = Store::open(path)?;
        if let Some(url) = url {
            anyhow::ensure!(
                postgres::is_postgres_url(url),
                "the store URL must start with postgres:// or postgresql:// (got {})",
                postgres::redact_url(url)
            );
            store.backend = Backend::Postgres(PgStore::open(url)?);
        }
        Ok(store)
    }

    /// The database file (the usage ledger opens its own connections to it).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Run `f` on the SQLite file's connection (a direct read or write of the file).
    pub fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        Ok(f(&self.file.lock())?)
    }
}

/// Options that create a file private to the gateway's user (0600 on Unix, as everything in the data directory);
/// the caller adds how it opens it (create, truncate, append). Windows has no modes: the file takes its folder's
/// ACL, and the data directory is in the user's profile, whose ACL already admits only the user (and admins).
pub(crate) fn private_options() -> std::fs::OpenOptions {
    #[cfg_attr(windows, allow(unused_mut))]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Create `dir` (and missing parents, with default modes) unless it exists; only `dir` itself is made private.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // Windows: no mode, the folder takes its parent's ACL (private_options says why that suffices).
    #[cfg_attr(windows, allow(unused_mut))]
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
