//! The usage ledger on PostgreSQL (docs/team.md): every instance's writer commits its batches to the same tables,
//! so `/admin/usage`, `/admin/requests`, the dashboard and the key budgets of any instance see the whole team.
//!
//! A batch is one statement, whatever its size: the request rows as an `INSERT ... SELECT FROM UNNEST` of column
//! arrays and one multi-row upsert per rollup table (rows summed in memory first, `store::usage::rollups`), as
//! data-modifying CTEs of one `INSERT`, so a batch is one round trip and its own transaction. Reads copy the rows
//! a query needs (the rollups of its range, or the newest `limit + 1` request rows that match) into an in-memory
//! SQLite database with the ledger's schema, where `usage::query` reads them exactly as it reads an instance's
//! own file: one query code, two backends.

use tokio_postgres::types::{ToSql, Type};

use super::PgStore;
use crate::store::sql::{Val, int};
use crate::store::usage::{
    Bucket, Cell, DAY_MS, LedgerEntry, REQUEST_COLUMNS, ROLLUP_COLUMNS, RequestsQuery, RollupRows, minutes,
    rollup_cells, rollup_upsert, rollups,
};

/// A batch's values of one ledger column, as the array its statement unnests (owned: the statement runs on the
/// store's runtime).
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Small(Vec<i32>),
    Real(Vec<Option<f64>>),
    Bool(Vec<bool>),
}

impl Column {
    fn of(cell: &Cell<'_>) -> Column {
        match cell {
            Cell::Text(_) => Column::Text(Vec::new()),
            Cell::Int(_) => Column::Int(Vec::new()),
            Cell::Small(_) => Column::Small(Vec::new()),
            Cell::Real(_) => Column::Real(Vec::new()),
            Cell::Bool(_) => Column::Bool(Vec::new()),
        }
    }

    fn push(&mut self, cell: Cell<'_>) -> anyhow::Result<()> {
        match (self, cell) {
            (Column::Text(v), Cell::Text(s)) => v.push(s.map(str::to_string)),
            (Column::Int(v), Cell::Int(n)) => v.push(n),
            (Column::Small(v), Cell::Small(n)) => v.push(n),
            (Column::Real(v), Cell::Real(f)) => v.push(f),
            (Column::Bool(v), Cell::Bool(b)) => v.push(b),
            _ => anyhow::bail!("a ledger column was given values of two types"),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(v) => v,
            Column::Int(v) => v,
            Column::Small(v) => v,
            Column::Real(v) => v,
            Column::Bool(v) => v,
        }
    }

    /// The array's type in the statement.
    fn cast(&self) -> &'static str {
        match self {
            Column::Text(_) => "text",
            Column::Int(_) => "bigint",
            Column::Small(_) => "int",
            Column::Real(_) => "float8",
            Column::Bool(_) => "boolean",
        }
    }
}

/// Rows of cells as column arrays (none for no rows).
fn columns<'a, const N: usize>(rows: impl IntoIterator<Item = [Cell<'a>; N]>) -> anyhow::Result<Vec<Column>> {
    let mut columns: Vec<Column> = Vec::new();
    for row in rows {
        if columns.is_empty() {
            columns = row.iter().map(Column::of).collect();
        }
        for (column, cell) in columns.iter_mut().zip(row) {
            column.push(cell)?;
        }
    }
    Ok(columns)
}

/// `UNNEST` of `columns`' arrays, their parameters numbered from `$first`.
fn unnest(columns: &[Column], first: usize) -> String {
    let arrays: Vec<String> = columns.iter().zip(first..).map(|(c, i)| format!("${i}::{}[]", c.cast())).collect();
    format!("SELECT * FROM UNNEST({})", arrays.join(", "))
}

/// One rollup table's rows of a batch: (table, time column, column arrays).
type RollupColumns = (&'static str, &'static str, Vec<Column>);

fn rollup_columns((table, column, rows): RollupRows<'_>) -> anyhow::Result<RollupColumns> {
    Ok((table, column, columns(rows.iter().map(|(key, s)| rollup_cells(key, s)))?))
}

/// A batch's one statement: the request rows and both rollup upserts as data-modifying CTEs of one `INSERT`
/// (one statement is its own transaction: all or nothing, as `BEGIN` ... `COMMIT` was, in one round trip
/// instead of five). Each table is written by one part only, and a batch's rollup rows are distinct (summed in
/// memory), so no row is touched twice.
fn batch_sql(requests: &[Column], [(hourly, hour, h), (daily, day, d)]: &[RollupColumns; 2]) -> String {
    format!(
        "WITH requests AS (INSERT INTO usage_requests ({REQUEST_COLUMNS}) {}),
             hourly AS ({}) {}",
        unnest(requests, 1),
        rollup_upsert(hourly, hour, &unnest(h, requests.len() + 1)),
        rollup_upsert(daily, day, &unnest(d, requests.len() + h.len() + 1))
    )
}

impl PgStore {
    /// Insert a batch of requests and add them to the rollups: one statement ([`batch_sql`]).
    pub fn insert_usage(&self, entries: &[LedgerEntry<'_>]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let tried: Vec<String> = entries.iter().map(LedgerEntry::tried).collect();
        let requests = columns(entries.iter().zip(&tried).map(|(r, tried)| r.cells(tried)))?;
        let [hourly, daily] = rollups(entries);
        let rollups = [rollup_columns(hourly)?, rollup_columns(daily)?];
        let sql = batch_sql(&requests, &rollups);
        self.block(move |client| async move {
            let statement = client.prepare_cached(&sql).await?;
            let [(_, _, hourly), (_, _, daily)] = &rollups;
            let params: Vec<_> = requests.iter().chain(hourly).chain(daily).map(Column::param).collect();
            client.execute(&statement, &params).await?;
            Ok(())
        })
    }

    /// Delete request rows older than `requests_before` and rollups older than `rollups_before` (unix ms). The
    /// leader's writer prunes (`usage/writer.rs`); the deletes are idempotent, so a new leader pruning again soon
    /// after the old one did only costs the statements. Returns the request rows deleted.
    pub fn prune_usage(&self, requests_before: i64, rollups_before: i64) -> anyhow::Result<u64> {
        self.block(move |client| async move {
            let n = client.execute("DELETE FROM usage_requests WHERE started_at < $1", &[&requests_before]).await?;
            client.execute("DELETE FROM usage_hourly WHERE hour < $1", &[&rollups_before]).await?;
            let day = rollups_before.div_euclid(DAY_MS) * DAY_MS;
            client.execute("DELETE FROM usage_daily WHERE day < $1", &[&day]).await?;
            Ok(n)
        })
    }

    /// Requests started in each minute of `[from, to)` (the Overview's chart), counted by the database.
    pub fn requests_per_minute(&self, from: i64, to: i64) -> anyhow::Result<Vec<u32>> {
        let (first, mut counts) = minutes(from, to);
        let rows = self.block(move |client| async move {
            Ok(client
                .query(
                    "SELECT (started_at - $1) / 60000 AS m, count(*) FROM usage_requests
                     WHERE started_at >= $1 AND started_at < $2 GROUP BY m",
                    &[&first, &to],
                )
                .await?)
        })?;
        for r in &rows {
            let (m, c) = (r.try_get::<_, i64>(0)?, r.try_get::<_, i64>(1)?);
            if let Some(slot) = usize::try_from(m).ok().and_then(|i| counts.get_mut(i)) {
                *slot = u32::try_from(c).unwrap_or(u32::MAX);
            }
        }
        Ok(counts)
    }

    /// The rollup rows of `bucket`'s grain from `from` (rounded down to it) to `to`, what `usage::query::usage`
    /// reads for a report of that range, in an in-memory ledger.
    pub fn rollups_snapshot(&self, bucket: Bucket, from: i64, to: i64) -> anyhow::Result<rusqlite::Connection> {
        let (table, column) = bucket.table();
        let from = from.div_euclid(bucket.ms()) * bucket.ms();
        let columns = format!("{column}, {ROLLUP_COLUMNS}");
        let sql = format!("SELECT {columns} FROM {table} WHERE {column} >= ?1 AND {column} < ?2");
        self.snapshot(table, &columns, sql, vec![int(from), int(to)])
    }

    /// The newest `limit + 1` request rows that match `q` (what `usage::query::requests` reads), with their ids,
    /// in an in-memory ledger.
    pub fn requests_snapshot(&self, q: &RequestsQuery) -> anyhow::Result<rusqlite::Connection> {
        let (sql, args) = q.select();
        self.snapshot("usage_requests", &format!("id, {REQUEST_COLUMNS}"), sql, args)
    }

    /// The rows of `sql` (which reads `columns`) copied into `table` of an in-memory ledger.
    fn snapshot(
        &self,
        table: &str,
        columns: &str,
        sql: String,
        args: Vec<Val>,
    ) -> anyhow::Result<rusqlite::Connection> {
        let rows = self.block(move |client| async move {
            let params: Vec<_> = args.iter().map(Val::postgres).collect();
            Ok(client.query(&sql.replace('?', "$"), &params).await?)
        })?;
        let conn = memory_ledger()?;
        {
            let n = columns.split(',').count();
            let mut insert = conn.prepare(&crate::store::sql::insert(table, columns))?;
            for r in &rows {
                let values = (0..n).map(|i| cell(r, i)).collect::<anyhow::Result<Vec<_>>>()?;
                insert.execute(rusqlite::params_from_iter(values.iter().map(Val::sqlite)))?;
            }
        }
        Ok(conn)
    }
}

/// A column of a row as the value it holds (the ledger's types: BIGINT, INTEGER, DOUBLE PRECISION, TEXT).
fn cell(r: &tokio_postgres::Row, i: usize) -> anyhow::Result<Val> {
    Ok(match r.columns().get(i).map(|c| c.type_()) {
        Some(t) if *t == Type::INT8 => Val::Int(r.try_get(i)?),
        Some(t) if *t == Type::INT4 => Val::Int(r.try_get::<_, Option<i32>>(i)?.map(i64::from)),
        Some(t) if *t == Type::FLOAT8 => Val::Real(r.try_get(i)?),
        _ => Val::Text(r.try_get(i)?),
    })
}

/// An empty ledger in memory, for a query's rows: a new SQLite file's schema, so it follows every migration.
fn memory_ledger() -> anyhow::Result<rusqlite::Connection> {
    let mut conn = rusqlite::Connection::open_in_memory()?;
    crate::store::migrations::on_sqlite(&mut conn)?;
    Ok(conn)
}
