//! The `audit_log` table: the audit trail's rows (audit/ builds and checks them), append-only. Each append reads
//! the last row and inserts the next under one lock for every writer of the store (SQLite's write lock, a
//! PostgreSQL advisory lock), so gateways and commands sharing a store extend one chain. There is no update or
//! delete call: a row changed behind the store's back is what `audit::verify` finds.

use super::postgres::PgStore;
use super::{Backend, Store};

/// Migration 12 (SQLite) and 14 (PostgreSQL), one text (plain types both read). Ids are given by the append
/// (the last id + 1 under the lock), so a missing row shows as a gap.
pub(crate) const SCHEMA: &str = "
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    source TEXT,
    action TEXT NOT NULL,
    target TEXT,
    details TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
";

/// One row of the trail, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRow {
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub actor: String,
    /// The client's address, when the change came over the network.
    pub source: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// A JSON object of non-secret fields, as text (the chain covers these bytes).
    pub details: String,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

/// What the rows of a read must match (`None`: any); rows come oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// A prefix of the action (`account.` matches every account action).
    pub action: Option<String>,
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
    /// The newest this many (of those matching).
    pub limit: Option<u32>,
}

/// The hash of a row given the hash before it (audit/chain.rs), called under the append's lock.
pub type Seal = fn(prev_hash: &str, row: &AuditRow) -> String;

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const COLUMNS: &str = "id, at_ms, actor, source, action, target, details, outcome, prev_hash, hash";

/// Any fixed number: the advisory lock that serializes appends to the team's chain.
const AUDIT_LOCK: i64 = 0x636f_6465_7861_7564;

impl Store {
    /// Append `row` (its id, `prev_hash` and `hash` are set here) and return it as written.
    pub fn append_audit(&self, mut row: AuditRow, seal: Seal) -> anyhow::Result<AuditRow> {
        match &self.backend {
            Backend::Sqlite => self.with_conn(|c| {
                // IMMEDIATE: the write lock from the read of the last row on, so another process (a command beside
                // the gateway) cannot append between the read and the insert.
                c.execute_batch("BEGIN IMMEDIATE")?;
                let written = sqlite_append(c, &mut row, seal).and_then(|()| c.execute_batch("COMMIT"));
                if written.is_err() {
                    // The connection is shared: it must not stay inside a transaction that failed.
                    let _ = c.execute_batch("ROLLBACK");
                }
                written.map(|()| row)
            }),
            Backend::Postgres(pg) => pg_append(pg, row, seal),
        }
    }

    /// The rows `f` lets through, oldest first (the newest `limit` of them).
    pub fn audit_rows(&self, f: &AuditFilter) -> anyhow::Result<Vec<AuditRow>> {
        let (sql, args) = select(f, |i| format!("?{i}"));
        match &self.backend {
            Backend::Sqlite => self.with_conn(|c| {
                let mut stmt = c.prepare(&sql)?;
                let params = rusqlite::params_from_iter(args.iter().map(Arg::sqlite));
                let rows = stmt.query_map(params, |r| {
                    Ok(AuditRow {
                        id: r.get(0)?,
                        at_ms: r.get(1)?,
                        actor: r.get(2)?,
                        source: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        details: r.get(6)?,
                        outcome: r.get(7)?,
                        prev_hash: r.get(8)?,
                        hash: r.get(9)?,
                    })
                })?;
                let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            }),
            Backend::Postgres(pg) => {
                let (pool, f) = (pg.pool(), f.clone());
                pg.block(async move {
                    let (sql, args) = select(&f, |i| format!("${i}"));
                    let client = pool.get().await?;
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        args.iter().map(Arg::postgres).collect();
                    let rows = client.query(&sql, &params).await?;
                    let mut out = rows.iter().map(pg_row).collect::<anyhow::Result<Vec<_>>>()?;
                    out.reverse();
                    Ok(out)
                })
            }
        }
    }
}

fn sqlite_append(c: &rusqlite::Connection, row: &mut AuditRow, seal: Seal) -> rusqlite::Result<()> {
    let last: Option<(i64, String)> = c
        .query_row("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(Some)
        .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })?;
    link(row, last, seal);
    c.execute(
        &format!("INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        rusqlite::params![
            row.id,
            row.at_ms,
            row.actor,
            row.source,
            row.action,
            row.target,
            row.details,
            row.outcome,
            row.prev_hash,
            row.hash
        ],
    )?;
    Ok(())
}

/// The row's place after `last` (id, hash), and its own hash.
fn link(row: &mut AuditRow, last: Option<(i64, String)>, seal: Seal) {
    let (id, prev) = last.map(|(id, h)| (id + 1, h)).unwrap_or((1, GENESIS.to_string()));
    row.id = id;
    row.prev_hash = prev;
    row.hash = seal(&row.prev_hash, row);
}

fn pg_append(pg: &PgStore, mut row: AuditRow, seal: Seal) -> anyhow::Result<AuditRow> {
    let pool = pg.pool();
    pg.block(async move {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).await?;
        let last = tx.query_opt("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1", &[]).await?;
        let last = last.map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?))).transpose()?;
        link(&mut row, last, seal);
        tx.execute(
            &format!("INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            &[
                &row.id,
                &row.at_ms,
                &row.actor,
                &row.source,
                &row.action,
                &row.target,
                &row.details,
                &row.outcome,
                &row.prev_hash,
                &row.hash,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    })
}

fn pg_row(r: &tokio_postgres::Row) -> anyhow::Result<AuditRow> {
    Ok(AuditRow {
        id: r.try_get(0)?,
        at_ms: r.try_get(1)?,
        actor: r.try_get(2)?,
        source: r.try_get(3)?,
        action: r.try_get(4)?,
        target: r.try_get(5)?,
        details: r.try_get(6)?,
        outcome: r.try_get(7)?,
        prev_hash: r.try_get(8)?,
        hash: r.try_get(9)?,
    })
}

/// A bound value of a read.
enum Arg {
    Text(String),
    Int(i64),
}

impl Arg {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }

    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Arg::Text(s) => s,
            Arg::Int(i) => i,
        }
    }
}

/// The read's statement (newest first; the caller turns it round) with placeholders as `mark` writes them.
fn select(f: &AuditFilter, mark: impl Fn(usize) -> String) -> (String, Vec<Arg>) {
    let (mut clauses, mut args) = (Vec::new(), Vec::new());
    let mut add = |clause: &str, arg: Arg| {
        args.push(arg);
        clauses.push(clause.replace('?', &mark(args.len())));
    };
    if let Some(a) = &f.actor {
        add("actor = ?", Arg::Text(a.clone()));
    }
    if let Some(a) = &f.action {
        // A prefix: `substr` reads alike on both backends and needs no escaping of LIKE's wildcards.
        add(&format!("substr(action, 1, {}) = ?", a.chars().count()), Arg::Text(a.clone()));
    }
    if let Some(s) = f.since_ms {
        add("at_ms >= ?", Arg::Int(s));
    }
    if let Some(u) = f.until_ms {
        add("at_ms < ?", Arg::Int(u));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    let limit = f.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    (format!("SELECT {COLUMNS} FROM audit_log{filter} ORDER BY id DESC{limit}"), args)
}
