//! The usage ledger in the SQLite file (tables: `store/usage.rs`): a batch of requests with the hourly and daily
//! rollups they add to, in one transaction, and the pruning of old rows. Queries live in `usage::query`.

use rusqlite::{Transaction, params};

use crate::store::usage::{DAY_MS, LedgerEntry, rollups, tokens};

/// Insert `entries` and add them to their hourly and daily rollups, in `tx` (the caller commits). The rollups of a batch
/// are summed in memory first, so a batch costs one upsert per distinct (hour, account, model, key, api, status).
pub fn insert_batch(tx: &Transaction<'_>, entries: &[LedgerEntry<'_>]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO usage_requests (request_id, started_at, api, route, client_key, model_requested, model, effort,
            stream, account, accounts_tried, attempts, failovers, status, error, error_code, ttfb_ms, duration_ms,
            input_tokens, cached_tokens, output_tokens, reasoning_tokens, client_disconnected)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22,
            ?23)",
    )?;
    for r in entries {
        insert.execute(params![
            r.request_id,
            r.started_at,
            r.api,
            r.route,
            r.client_key,
            r.model_requested,
            r.model,
            r.effort,
            r.stream,
            r.account,
            // JSON: an imported account's id may hold any character.
            serde_json::to_string(r.accounts_tried).unwrap_or_default(),
            r.attempts,
            r.failovers,
            r.status,
            r.error,
            r.error_code,
            r.ttfb_ms,
            r.duration_ms,
            tokens(r.input_tokens),
            tokens(r.cached_tokens),
            tokens(r.output_tokens),
            tokens(r.reasoning_tokens),
            r.client_disconnected,
        ])?;
    }
    for (table, column, rows) in rollups(entries) {
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO {table} ({column}, account, model, client_key, api, status, requests, errors, input_tokens,
                cached_tokens, output_tokens, reasoning_tokens, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT ({column}, account, model, client_key, api, status) DO UPDATE SET
                requests = {table}.requests + excluded.requests,
                errors = {table}.errors + excluded.errors,
                input_tokens = {table}.input_tokens + excluded.input_tokens,
                cached_tokens = {table}.cached_tokens + excluded.cached_tokens,
                output_tokens = {table}.output_tokens + excluded.output_tokens,
                reasoning_tokens = {table}.reasoning_tokens + excluded.reasoning_tokens,
                duration_ms = {table}.duration_ms + excluded.duration_ms"
        ))?;
        for ((t, account, model, key, api, status), s) in rows {
            upsert.execute(params![
                t,
                account,
                model,
                key,
                api,
                status,
                s.requests,
                s.errors,
                s.input,
                s.cached,
                s.output,
                s.reasoning,
                s.duration_ms
            ])?;
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
