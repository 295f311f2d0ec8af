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
    Bucket, DAY_MS, LedgerEntry, REQUEST_COLUMNS, ROLLUP_COLUMNS, RequestsQuery, minutes, rollup_upsert, rollups,
    tokens,
};

/// The request rows as column arrays, one per column of [`REQUEST_COLUMNS`].
const REQUEST_ARRAYS: &str = "$1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::int[], $10::text[], $11::text[], $12::int[], $13::int[], $14::int[], $15::text[], $16::text[],
    $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::int[],
    $24::text[], $25::text[], $26::text[], $27::bigint[], $28::float8[], $29::text[]";

/// Parameters of [`REQUEST_ARRAYS`].
const REQUEST_PARAMS: usize = 29;

fn small(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// A batch of request rows as column arrays (owned: the statement runs on the store's runtime).
#[derive(Default)]
struct RequestColumns {
    text: [Vec<String>; 4],
    opt_text: [Vec<Option<String>>; 11],
    int: [Vec<i32>; 5],
    big: [Vec<i64>; 7],
    ttfb: Vec<Option<i64>>,
    budget: Vec<Option<f64>>,
}

impl RequestColumns {
    fn new(entries: &[LedgerEntry<'_>]) -> RequestColumns {
        let mut c = RequestColumns::default();
        for r in entries {
            let [request_id, api, route, tried] = &mut c.text;
            request_id.push(r.request_id.to_string());
            api.push(r.api.to_string());
            route.push(r.route.to_string());
            // JSON, as in the SQLite ledger: an imported account's id may hold any character.
            tried.push(serde_json::to_string(r.accounts_tried).unwrap_or_default());
            let [key, requested, model, effort, account, error, code, moved_from, refusal, held, user] =
                &mut c.opt_text;
            let owned = |s: Option<&str>| s.map(str::to_string);
            user.push(owned(r.user_id));
            key.push(owned(r.client_key));
            requested.push(owned(r.model_requested));
            model.push(owned(r.model));
            effort.push(owned(r.effort));
            account.push(owned(r.account));
            error.push(owned(r.error));
            code.push(owned(r.error_code));
            moved_from.push(owned(r.moved_from));
            refusal.push(owned(r.refusal));
            held.push(owned(r.held));
            let [stream, attempts, failovers, status, disconnected] = &mut c.int;
            stream.push(i32::from(r.stream));
            attempts.push(small(r.attempts));
            failovers.push(small(r.failovers));
            status.push(i32::from(r.status));
            disconnected.push(i32::from(r.client_disconnected));
            let [started, duration, input, cached, output, reasoning, cache_write] = &mut c.big;
            started.push(r.started_at);
            duration.push(r.duration_ms);
            input.push(tokens(r.input_tokens));
            cached.push(tokens(r.cached_tokens));
            output.push(tokens(r.output_tokens));
            reasoning.push(tokens(r.reasoning_tokens));
            cache_write.push(tokens(r.cache_write_tokens));
            c.ttfb.push(r.ttfb_ms);
            c.budget.push(r.budget_units);
        }
        c
    }

    /// The statement's parameters, in [`REQUEST_ARRAYS`]' order.
    fn params(&self) -> [&(dyn ToSql + Sync); REQUEST_PARAMS] {
        let [request_id, api, route, tried] = &self.text;
        let [key, requested, model, effort, account, error, code, moved_from, refusal, held, user] = &self.opt_text;
        let [stream, attempts, failovers, status, disconnected] = &self.int;
        let [started, duration, input, cached, output, reasoning, cache_write] = &self.big;
        [
            request_id,
            started,
            api,
            route,
            key,
            requested,
            model,
            effort,
            stream,
            account,
            tried,
            attempts,
            failovers,
            status,
            error,
            code,
            &self.ttfb,
            duration,
            input,
            cached,
            output,
            reasoning,
            disconnected,
            moved_from,
            refusal,
            held,
            cache_write,
            &self.budget,
            user,
        ]
    }
}

/// One rollup table's rows of a batch as column arrays.
#[derive(Default)]
struct RollupColumns {
    table: &'static str,
    column: &'static str,
    text: [Vec<String>; 5],
    status: Vec<i32>,
    big: [Vec<i64>; 9],
    budget: Vec<f64>,
}

/// Parameters of one rollup table's upsert.
const ROLLUP_PARAMS: usize = 16;

impl RollupColumns {
    fn params(&self) -> [&(dyn ToSql + Sync); ROLLUP_PARAMS] {
        let [account, model, key, api, user] = &self.text;
        let [t, requests, errors, input, cached, output, reasoning, duration, cache_write] = &self.big;
        [
            t,
            account,
            model,
            key,
            api,
            &self.status,
            requests,
            errors,
            input,
            cached,
            output,
            reasoning,
            duration,
            cache_write,
            &self.budget,
            user,
        ]
    }

    /// The upsert of these rows, its parameters numbered from `$first`.
    fn upsert(&self, first: usize) -> String {
        const TYPES: [&str; ROLLUP_PARAMS] = [
            "bigint", "text", "text", "text", "text", "int", "bigint", "bigint", "bigint", "bigint", "bigint",
            "bigint", "bigint", "bigint", "float8", "text",
        ];
        let arrays: Vec<String> = TYPES.iter().enumerate().map(|(i, t)| format!("${}::{t}[]", first + i)).collect();
        rollup_upsert(self.table, self.column, &format!("SELECT * FROM UNNEST({})", arrays.join(", ")))
    }
}

/// A batch's one statement: the request rows and both rollup upserts as data-modifying CTEs of one `INSERT`
/// (one statement is its own transaction: all or nothing, as `BEGIN` ... `COMMIT` was, in one round trip
/// instead of five). Each table is written by one part only, and a batch's rollup rows are distinct (summed in
/// memory), so no row is touched twice.
fn batch_sql(rollups: &[RollupColumns; 2]) -> String {
    let [hourly, daily] = rollups;
    format!(
        "WITH requests AS (INSERT INTO usage_requests ({REQUEST_COLUMNS}) SELECT * FROM UNNEST({REQUEST_ARRAYS})),
             hourly AS ({}) {}",
        hourly.upsert(REQUEST_PARAMS + 1),
        daily.upsert(REQUEST_PARAMS + ROLLUP_PARAMS + 1)
    )
}

fn rollup_columns(entries: &[LedgerEntry<'_>]) -> [RollupColumns; 2] {
    rollups(entries).map(|(table, column, rows)| {
        let mut c = RollupColumns { table, column, ..RollupColumns::default() };
        for ((t, account, model, key, api, status, user), s) in rows {
            for (v, x) in c.text.iter_mut().zip([account, model, key, api, user]) {
                v.push(x.to_string());
            }
            c.status.push(i32::from(status));
            let values =
                [t, s.requests, s.errors, s.input, s.cached, s.output, s.reasoning, s.duration_ms, s.cache_write];
            for (v, x) in c.big.iter_mut().zip(values) {
                v.push(x);
            }
            c.budget.push(s.budget);
        }
        c
    })
}

impl PgStore {
    /// Insert a batch of requests and add them to the rollups: one statement ([`batch_sql`]).
    pub fn insert_usage(&self, entries: &[LedgerEntry<'_>]) -> anyhow::Result<()> {
        let rows = RequestColumns::new(entries);
        let rollups = rollup_columns(entries);
        let sql = batch_sql(&rollups);
        self.block(move |client| async move {
            let statement = client.prepare_cached(&sql).await?;
            let [hourly, daily] = &rollups;
            let params: Vec<&(dyn ToSql + Sync)> =
                rows.params().into_iter().chain(hourly.params()).chain(daily.params()).collect();
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

/// An empty ledger in memory, for a query's rows.
fn memory_ledger() -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch(crate::store::usage::SCHEMA)?;
    conn.execute_batch(crate::store::usage::MOVED_FROM)?;
    conn.execute_batch(crate::store::usage::RISK)?;
    conn.execute_batch(crate::store::usage::CACHE_WRITES_AND_BUDGET)?;
    conn.execute_batch(crate::store::attribution::SQLITE_LEDGER)?;
    Ok(conn)
}
