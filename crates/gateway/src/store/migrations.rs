//! The store's schema, one numbered list for both backends: each step's SQLite and PostgreSQL text, applied in
//! order by one loop per backend, a step per transaction under the backend's write lock (`BEGIN IMMEDIATE`; an
//! advisory lock, so instances that start together migrate once), each version a row of `schema_history`. A
//! new step is one entry at the end of [`MIGRATIONS`]. The numberings of before issue 90 (SQLite's
//! `user_version`, PostgreSQL's `schema_migrations`) are taken over once through [`SQLITE_BEFORE`] and
//! [`POSTGRES_BEFORE`], and left as they were: a build of before then still opens a store whose old record
//! reaches its own last step (as it opened a newer store), and refuses one taken over earlier (the next step it
//! runs finds its work done, and rolls back).

use std::time::SystemTime;

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};

use super::postgres::{affinity, responses};
use super::usage as ledger;
use super::{attribution, audit, identities, keys, oauth, users};

/// One step of the schema: its version, what it makes, and its text on each backend; `None` where that backend
/// has nothing to do (the version is recorded all the same, so both count alike).
pub struct Migration {
    pub version: usize,
    pub what: &'static str,
    pub sqlite: Option<&'static str>,
    pub postgres: Option<&'static str>,
}

const fn both(version: usize, what: &'static str, sql: &'static str) -> Migration {
    Migration { version, what, sqlite: Some(sql), postgres: Some(sql) }
}

const fn sqlite(version: usize, what: &'static str, sql: &'static str) -> Migration {
    Migration { version, what, sqlite: Some(sql), postgres: None }
}

const fn postgres(version: usize, what: &'static str, sql: &'static str) -> Migration {
    Migration { version, what, sqlite: None, postgres: Some(sql) }
}

const fn each(version: usize, what: &'static str, sqlite: &'static str, postgres: &'static str) -> Migration {
    Migration { version, what, sqlite: Some(sqlite), postgres: Some(postgres) }
}

/// Each entry moves the schema one version forward, numbered in order; never edit one once released.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "accounts; on PostgreSQL with the token version and refresh lease, client keys, the change counter",
        sqlite: Some(concat!("CREATE TABLE accounts (", super::accounts::accounts_columns!(), "\n);")),
        postgres: Some(concat!(
            "CREATE TABLE accounts (",
            super::accounts::accounts_columns!(),
            r#",
    proxy TEXT,
    models TEXT,
    -- Bumped by every token write: a rotation is a compare-and-swap on it (lease.rs).
    token_version BIGINT NOT NULL DEFAULT 0,
    -- One refresh per account cluster-wide: the holder and when its lease ends (unix ms, database clock).
    refresh_lease_owner TEXT,
    refresh_lease_until BIGINT
);
CREATE TABLE client_keys ("#,
            keys::client_keys_columns!("BIGINT"),
            r#"
);
-- One counter every write to accounts or client_keys bumps: instances poll it (watch.rs) and re-read the
-- tables when it moves, instead of reading them per request.
CREATE TABLE store_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    counter BIGINT NOT NULL
);
INSERT INTO store_changes (id, counter) VALUES (1, 0);
CREATE FUNCTION bump_store_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_changes SET counter = counter + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TRIGGER client_keys_changed AFTER INSERT OR UPDATE OR DELETE ON client_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
"#
        )),
    },
    sqlite(
        2,
        "an account's proxy and models",
        "\nALTER TABLE accounts ADD COLUMN proxy TEXT;\nALTER TABLE accounts ADD COLUMN models TEXT;\n",
    ),
    postgres(
        3,
        "cooldowns learned by one instance (postgres/shared.rs), named leases (leader.rs)",
        r#"
CREATE TABLE account_cooldowns (
    account_id TEXT NOT NULL,
    -- '' for the whole account.
    model TEXT NOT NULL DEFAULT '',
    until BIGINT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (account_id, model)
);
CREATE TRIGGER account_cooldowns_changed AFTER INSERT OR UPDATE OR DELETE ON account_cooldowns
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
"#,
    ),
    each(4, "the usage ledger (usage.rs)", ledger::SCHEMA, ledger::POSTGRES_SCHEMA),
    sqlite(5, "client keys", concat!("\nCREATE TABLE client_keys (", keys::client_keys_columns!("INTEGER"), "\n);\n")),
    sqlite(6, "the usage reports' covering indexes (PostgreSQL's came with 15)", ledger::ROLLUP_COVER),
    postgres(
        7,
        "live instances: each one's heartbeat, by which a key's limits are shared out (postgres/watch.rs)",
        r#"
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    -- Unix ms on the database's clock: the instance counts as live until then.
    until BIGINT NOT NULL
);
"#,
    ),
    postgres(8, "conversation affinity shared by the team (postgres/affinity.rs)", affinity::SCHEMA),
    both(9, "each account's installation id", "ALTER TABLE accounts ADD COLUMN installation_id TEXT;"),
    both(10, "the account a conversation moved from (relay/moves.rs)", ledger::MOVED_FROM),
    both(11, "a request's policy refusal and held conversation", ledger::RISK),
    postgres(12, "a held conversation and the account with its identifiers", affinity::HOLD_AND_ORIGIN),
    both(13, "a client key's suspension after repeated policy refusals", keys::SUSPENSION),
    both(14, "accounts' owner policies, opportunistic client keys", super::POLICIES),
    both(15, "the ledger's cache writes and budget units (issue 72)", ledger::CACHE_WRITES_AND_BUDGET),
    postgres(16, "kept Responses answers shared by the team", responses::SCHEMA),
    both(17, "the audit trail (audit.rs), one chain for a team", audit::SCHEMA),
    both(18, "users, their sessions, each client key's owner (users.rs)", users::SCHEMA),
    postgres(19, "users and sessions move the change counter", users::POSTGRES_TRIGGERS),
    each(20, "who a request was for, users' limits (attribution.rs)", attribution::SQLITE, attribution::POSTGRES),
    both(21, "single sign-on: linked provider identities, sign-ins started", identities::SCHEMA),
    both(22, "the Codex CLI's sign-in: codes, device codes, refresh tokens (oauth.rs)", oauth::SCHEMA),
    both(23, "each user's failed sign-ins and lockout (users/limits.rs)", users::SIGN_IN_FAILURES),
];

/// The schema version a current store has, on either backend (`doctor` compares).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The old SQLite numbering: entry `v` is the version here of a file whose `PRAGMA user_version` was `v`.
pub const SQLITE_BEFORE: [usize; 18] = [0, 1, 2, 4, 5, 6, 9, 10, 11, 13, 14, 15, 17, 18, 20, 21, 22, 23];
/// The old PostgreSQL numbering: entry `v` is the version here of a store whose `schema_migrations` ended at `v`.
pub const POSTGRES_BEFORE: [usize; 21] = [0, 1, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];

/// The record, the same table on both backends.
const HISTORY: &str = "CREATE TABLE schema_history (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";
const LATEST: &str = "SELECT coalesce(max(version), 0) FROM schema_history";
const RECORD: &str = "INSERT INTO schema_history (version, applied_at) VALUES ($1, $2)";
const OLD_LATEST: &str = "SELECT coalesce(max(version), 0)::bigint FROM schema_migrations";

/// Any fixed number: the PostgreSQL advisory lock that serializes migrations across instances.
const LOCK: i64 = 0x636f_6465_7867_7731;

/// The version here of `old` in an old numbering (`before`).
fn taken_over(before: &[usize], old: i64) -> anyhow::Result<usize> {
    let known = usize::try_from(old).ok().and_then(|v| before.get(v).copied());
    known.with_context(|| format!("schema version {old} of the old numbering is not one this build knows"))
}

/// The version a SQLite file is at (read only: `doctor` asks too), and whether `schema_history` records it yet
/// (else it is the old `user_version`, taken over).
pub fn sqlite_state(conn: &Connection) -> anyhow::Result<(i64, bool)> {
    let sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_history'";
    if conn.query_row(sql, [], |r| r.get::<_, i64>(0))? > 0 {
        return Ok((conn.query_row(LATEST, [], |r| r.get(0))?, true));
    }
    let old: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((taken_over(&SQLITE_BEFORE, old)? as i64, false))
}

/// Bring the SQLite file to [`SCHEMA_VERSION`]: one step per transaction, the version read under the lock.
pub(crate) fn on_sqlite(conn: &mut Connection) -> anyhow::Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (done, recorded) = sqlite_state(&tx)?;
        if !recorded {
            tx.execute_batch(HISTORY)?;
            for version in 1..=done {
                tx.execute(RECORD, (version, ledger::unix_ms(SystemTime::now())))?;
            }
        }
        let Some(step) = usize::try_from(done).ok().and_then(|d| MIGRATIONS.get(d)) else {
            return Ok(tx.commit()?);
        };
        if let Some(sql) = step.sqlite {
            tx.execute_batch(sql).with_context(|| format!("migration {} ({}) failed", step.version, step.what))?;
        }
        tx.execute(RECORD, (step.version, ledger::unix_ms(SystemTime::now())))?;
        tx.commit()?;
    }
}

/// Bring the team's PostgreSQL store to [`SCHEMA_VERSION`], as [`on_sqlite`] does the file.
pub(crate) async fn on_postgres(mut client: deadpool_postgres::Object) -> anyhow::Result<()> {
    loop {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK]).await?;
        let sql = "SELECT to_regclass('schema_history') IS NOT NULL, to_regclass('schema_migrations') IS NOT NULL";
        let found = tx.query_one(sql, &[]).await?;
        let done = if found.get(0) {
            i64::from(tx.query_one(LATEST, &[]).await?.get::<_, i32>(0))
        } else {
            let old = if found.get(1) { tx.query_one(OLD_LATEST, &[]).await?.get(0) } else { 0 };
            let done = taken_over(&POSTGRES_BEFORE, old)?;
            tx.batch_execute(HISTORY).await?;
            for version in 1..=done {
                tx.execute(RECORD, &[&i32::try_from(version)?, &ledger::unix_ms(SystemTime::now())]).await?;
            }
            done as i64
        };
        let Some(step) = usize::try_from(done).ok().and_then(|d| MIGRATIONS.get(d)) else {
            return Ok(tx.commit().await?);
        };
        if let Some(sql) = step.postgres {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("migration {} ({}) failed", step.version, step.what))?;
        }
        tx.execute(RECORD, &[&i32::try_from(step.version)?, &ledger::unix_ms(SystemTime::now())]).await?;
        tx.commit().await?;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    use super::{MIGRATIONS, Migration, POSTGRES_BEFORE, SCHEMA_VERSION, SQLITE_BEFORE, sqlite_state};
    use crate::store::Store;

    /// A file as the old SQLite runner left it at its version `old`: its first `old` statements applied (the
    /// SQLite texts of this list, in order, are that runner's list) and `user_version` set.
    pub(crate) fn old_sqlite_file(path: &Path, old: usize) -> anyhow::Result<Connection> {
        let conn = Connection::open(path)?;
        for sql in MIGRATIONS[..SQLITE_BEFORE[old]].iter().filter_map(|m| m.sqlite) {
            conn.execute_batch(sql)?;
        }
        conn.pragma_update(None, "user_version", old as i64)?;
        Ok(conn)
    }

    /// The steps are numbered 1, 2, ... in order. Each old version is the step here that made it, with exactly
    /// that many steps of its backend up to it (what takes a store over without applying anything twice or
    /// skipping anything), and both old lists end at this one's end.
    #[test]
    fn the_old_numberings_map_onto_this_one() {
        let versions: Vec<usize> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "numbered in order, each once");
        let check = |before: &[usize], text: fn(&Migration) -> Option<&'static str>| {
            for (old, &new) in before.iter().enumerate() {
                let applied = MIGRATIONS[..new].iter().filter(|m| text(m).is_some()).count();
                assert_eq!(applied, old, "old version {old} is {new} here");
                assert!(old == 0 || text(&MIGRATIONS[new - 1]).is_some(), "old version {old} is a step of its own");
            }
            assert_eq!(before.last().copied(), Some(SCHEMA_VERSION));
        };
        check(&SQLITE_BEFORE, |m| m.sqlite);
        check(&POSTGRES_BEFORE, |m| m.postgres);
    }

    /// The schema as SQLite keeps it: every table's and index's statement, by name.
    fn schema(conn: &Connection) -> anyhow::Result<Vec<(String, Option<String>)>> {
        let mut stmt = conn.prepare("SELECT name, sql FROM sqlite_master ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A file the old runner left at any of its versions opens here: the same schema as a new file's, every
    /// version recorded once in `schema_history`, the old record left as it was, its rows kept; opened again,
    /// nothing moves.
    #[test]
    fn a_file_of_the_old_numbering_is_taken_over() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-old-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let fresh = Store::open(&dir.join("fresh.db"))?;
        let want = fresh.with_conn(|c| Ok(schema(c)))??;
        for old in 0..SQLITE_BEFORE.len() {
            let path = dir.join(format!("v{old}.db"));
            let conn = old_sqlite_file(&path, old)?;
            if old >= 1 {
                conn.execute(
                    "INSERT INTO accounts (id, kind, api_key, created_at) VALUES ('k', 'api_key', 'sk', 1)",
                    [],
                )?;
            }
            if old >= 4 {
                let key = "INSERT INTO client_keys (id, name, prefix, secret_sha256, created_at) \
                           VALUES ('key_1', 'ci', 'cgw_', 'ab', 1)";
                conn.execute(key, [])?;
            }
            drop(conn);
            for _ in 0..2 {
                let store = Store::open(&path)?;
                let (history, marker, version) = store.with_conn(|c| {
                    let history =
                        c.query_row("SELECT count(DISTINCT version) FROM schema_history", [], |r| r.get(0))?;
                    let marker = c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
                    Ok((history, marker, sqlite_state(c)))
                })?;
                let want_state = (SCHEMA_VERSION as i64, old as i64, (SCHEMA_VERSION as i64, true));
                assert_eq!((history, marker, version?), want_state, "v{old}");
                assert_eq!(store.with_conn(|c| Ok(schema(c)))??, want, "v{old}");
                assert_eq!(store.get_account("k")?.map(|a| a.api_key), (old >= 1).then(|| Some("sk".into())), "v{old}");
                assert_eq!(store.get_key("key_1")?.map(|k| k.name), (old >= 4).then(|| "ci".into()), "v{old}");
            }
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A version the old numbering never had (a build of another line) is refused, not guessed.
    #[test]
    fn an_unknown_old_version_is_refused() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-unknown-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("gateway.db");
        old_sqlite_file(&path, SQLITE_BEFORE.len() - 1)?.pragma_update(None, "user_version", 99)?;
        let err = Store::open(&path).err().map(|e| format!("{e:#}"));
        assert!(err.as_deref().is_some_and(|e| e.contains("schema version 99")), "{err:?}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
