//! Migration 20, one step: who a request was for, and each user's budget (docs/configuration.md, "User budgets"). The
//! ledger's request rows and both rollups gain `user_id` (old rows have none: `NULL` in a request row, `''` in a
//! rollup, as for a request without a client key), and the rollups' primary key takes it in, so requests of two users
//! that share every other dimension (a user's own token, which has no client key) are summed apart. The users gain the
//! same four limits a client key has.
//!
//! SQLite cannot change a table's primary key, so its rollups are made again and their rows copied across;
//! PostgreSQL swaps the constraint in place. The reports' covering indexes (store/usage.rs, migration 6 and the
//! cache writes' migration) are made again with the user, so a report grouped by user still reads the index
//! alone.

/// The users' limits (both backends: plain types).
macro_rules! user_limits {
    () => {
        "
ALTER TABLE users ADD COLUMN rpm BIGINT;
ALTER TABLE users ADD COLUMN concurrency BIGINT;
ALTER TABLE users ADD COLUMN daily_tokens BIGINT;
ALTER TABLE users ADD COLUMN monthly_tokens BIGINT;
"
    };
}

/// The request rows' user (both backends).
macro_rules! request_user {
    () => {
        "
ALTER TABLE usage_requests ADD COLUMN user_id TEXT;
CREATE INDEX usage_requests_user ON usage_requests (user_id, started_at, id);
"
    };
}

/// One rollup table made again with `user_id` in its primary key (SQLite), its rows copied across.
macro_rules! rebuilt_rollup {
    ($table:literal, $time:literal) => {
        concat!(
            "CREATE TABLE ",
            $table,
            "_next (\n    ",
            $time,
            " BIGINT NOT NULL,
    account TEXT NOT NULL,
    model TEXT NOT NULL,
    client_key TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    api TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    budget_units DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (",
            $time,
            ", account, model, client_key, user_id, api, status)
);
INSERT INTO ",
            $table,
            "_next (",
            $time,
            ", account, model, client_key, api, status, requests, errors,
    input_tokens, cached_tokens, output_tokens, reasoning_tokens, duration_ms, cache_write_tokens, budget_units)
SELECT ",
            $time,
            ", account, model, client_key, api, status, requests, errors, input_tokens, cached_tokens,
    output_tokens, reasoning_tokens, duration_ms, cache_write_tokens, budget_units FROM ",
            $table,
            ";
DROP TABLE ",
            $table,
            ";
ALTER TABLE ",
            $table,
            "_next RENAME TO ",
            $table,
            ";
CREATE INDEX ",
            $table,
            "_key ON ",
            $table,
            " (client_key, ",
            $time,
            ");
"
        )
    };
}

/// One rollup table's primary key with `user_id` (PostgreSQL changes it in place).
macro_rules! rekeyed_rollup {
    ($table:literal, $time:literal) => {
        concat!(
            "ALTER TABLE ",
            $table,
            " ADD COLUMN user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ",
            $table,
            " DROP CONSTRAINT ",
            $table,
            "_pkey;
ALTER TABLE ",
            $table,
            " ADD PRIMARY KEY (",
            $time,
            ", account, model, client_key, user_id, api, status);
"
        )
    };
}

/// The reports' covering indexes with the user, and the daily rollups by user (the budgets' team read).
macro_rules! cover {
    () => {
        "
DROP INDEX IF EXISTS usage_hourly_report;
DROP INDEX IF EXISTS usage_daily_report;
CREATE INDEX usage_hourly_report ON usage_hourly (hour, account, model, client_key, user_id, api, requests, errors,
    input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, budget_units, duration_ms);
CREATE INDEX usage_daily_report ON usage_daily (day, account, model, client_key, user_id, api, requests, errors,
    input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, budget_units, duration_ms);
CREATE INDEX usage_daily_user ON usage_daily (user_id, day);
"
    };
}

/// Migration 20 on the SQLite file.
pub const SQLITE: &str = concat!(
    user_limits!(),
    request_user!(),
    rebuilt_rollup!("usage_hourly", "hour"),
    rebuilt_rollup!("usage_daily", "day"),
    cover!()
);

/// Migration 20 on the team's PostgreSQL store.
pub const POSTGRES: &str = concat!(
    user_limits!(),
    request_user!(),
    rekeyed_rollup!("usage_hourly", "hour"),
    rekeyed_rollup!("usage_daily", "day"),
    cover!()
);

#[cfg(test)]
mod tests {
    use crate::store::Store;

    /// A file of the old runner's version 13 keeps its ledger through migration 20: its rollup rows are copied
    /// into the rebuilt tables under no user, and afterwards two users' rows that share every other dimension stay apart.
    #[test]
    fn the_rollups_keep_their_rows_and_take_the_user_into_their_key() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-v13-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("gateway.db");
        {
            let conn = crate::store::migrations::tests::old_sqlite_file(&path, 13)?;
            conn.execute_batch(
                "INSERT INTO usage_daily (day, account, model, client_key, api, status, requests, errors, input_tokens,
                    cached_tokens, output_tokens, reasoning_tokens, duration_ms, cache_write_tokens, budget_units)
                 VALUES (0, 'acc', 'gpt-5.4', 'key_1', 'chat', 200, 3, 0, 30, 0, 9, 0, 100, 0, 0.5)",
            )?;
        }
        let store = Store::open(&path)?;
        let rows = store.with_conn(|c| {
            c.query_row("SELECT user_id, requests, output_tokens, budget_units FROM usage_daily", [], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, f64>(3)?))
            })
        })?;
        assert_eq!(rows, (String::new(), 3, 9, 0.5));
        let insert = "INSERT INTO usage_daily (day, account, model, client_key, user_id, api, status, requests, errors,
                input_tokens, cached_tokens, output_tokens, reasoning_tokens, duration_ms)
             VALUES (0, 'acc', 'gpt-5.4', '', ?1, 'chat', 200, 1, 0, 1, 0, 1, 0, 1)";
        store.with_conn(|c| c.execute(insert, ["usr_a"]))?;
        store.with_conn(|c| c.execute(insert, ["usr_b"]))?;
        let n: i64 = store.with_conn(|c| c.query_row("SELECT count(*) FROM usage_daily", [], |r| r.get(0)))?;
        assert_eq!(n, 3);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
