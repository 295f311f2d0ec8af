//! The usage ledger in the SQLite file (tables: `store/usage.rs`): the ledger's own connections, a batch of
//! requests with the hourly and daily rollups they add to, in one transaction, the pruning of old rows, and the
//! requests per minute, which the team's database counts in its own way. The reports' queries live in
//! `usage::query`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, Transaction, params, params_from_iter};

use crate::store::sql::Val;
use crate::store::usage::{
    DAY_MS, LedgerEntry, MINUTE_MS, REQUEST_COLUMNS, minutes, rollup_cells, rollup_upsert, rollups,
};

/// A connection for the ledger: WAL like the store; `synchronous=NORMAL`, since in WAL mode a commit survives a
/// crash of the process (SIGKILL) either way and only a power loss may lose the last commits, which for usage
/// rows is a fair price for not syncing every batch.
pub fn open_connection(db: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(db).with_context(|| format!("cannot open database {}", db.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The ledger's reading connection: it can only read.
pub(crate) fn open_reader(db: &Path) -> anyhow::Result<Connection> {
    let reader = open_connection(db)?;
    reader.pragma_update(None, "query_only", true)?;
    Ok(reader)
}

/// Insert `entries` and add them to their hourly and daily rollups, in `tx` (the caller commits). The rollups of a batch
/// are summed in memory first, so a batch costs one upsert per distinct (hour, account, model, key, api, status).
pub fn insert_batch(tx: &Transaction<'_>, entries: &[LedgerEntry<'_>]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(&crate::store::sql::insert("usage_requests", REQUEST_COLUMNS))?;
    for r in entries {
        insert.execute(params_from_iter(r.cells(&r.tried()).iter().map(Val::sqlite)))?;
    }
    for (table, column, rows) in rollups(entries) {
        let values = "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
        let mut upsert = tx.prepare_cached(&rollup_upsert(table, column, values))?;
        for (key, s) in &rows {
            upsert.execute(params_from_iter(rollup_cells(key, s).iter().map(Val::sqlite)))?;
        }
    }
    Ok(())
}

/// Rows deleted per statement while pruning, so the writer never holds the database for long.
const PRUNE_CHUNK: i64 = 5_000;

/// Delete request rows that started before `requests_before` and rollups of hours (days) that began before
/// `rollups_before` (its day), unix ms; request rows a chunk per transaction. Returns the number of request rows deleted.
pub fn prune(conn: &mut rusqlite::Connection, requests_before: i64, rollups_before: i64) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    loop {
        let n = conn.execute(
            "DELETE FROM usage_requests WHERE id IN
                (SELECT id FROM usage_requests WHERE started_at < ?1 ORDER BY started_at LIMIT ?2)",
            params![requests_before, PRUNE_CHUNK],
        )?;
        deleted += n;
        if n < PRUNE_CHUNK as usize {
            break;
        }
    }
    conn.execute("DELETE FROM usage_hourly WHERE hour < ?1", params![rollups_before])?;
    conn.execute("DELETE FROM usage_daily WHERE day < ?1", params![rollups_before.div_euclid(DAY_MS) * DAY_MS])?;
    Ok(deleted)
}

/// Requests per minute from `from` (rounded down to its minute) up to `to`, one count per minute, oldest first
/// (the dashboard's Overview chart). Reads only the `started_at` index, one entry per request of the range, and
/// counts in place: no sort, no grouping in SQL.
pub fn requests_per_minute(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<u32>> {
    let (first, mut counts) = minutes(from, to);
    let mut stmt =
        conn.prepare_cached("SELECT started_at FROM usage_requests WHERE started_at >= ?1 AND started_at < ?2")?;
    let mut rows = stmt.query([first, to])?;
    while let Some(r) = rows.next()? {
        let at: i64 = r.get(0)?;
        if let Some(c) = usize::try_from((at - first) / MINUTE_MS).ok().and_then(|i| counts.get_mut(i)) {
            *c = c.saturating_add(1);
        }
    }
    Ok(counts)
}
