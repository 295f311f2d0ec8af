//! The usage ledger as both backends store it: its tables (migration 4, report indexes in 6, cache writes and budget
//! units in 15), its request row ([`RequestRow`]: what `usage/` makes of a request's record, and what a query reads
//! back), the rollups a batch adds to (summed in memory the same way for both), and the ranges and filters queries
//! read the rows by. The writes are `sqlite/usage.rs`' and `postgres/usage.rs`'; the queries `usage::query`'s.
//!
//! Daily rollups exist for queries over weeks and months: summing a month of hourly rollups means reading up to
//! 720 times the combinations of an hour (bench/results/ledger.md); a month of daily ones, 30 times.
//!
//! Plain types only (TEXT, BIGINT, INTEGER), so the schema moves to PostgreSQL as written: times are unix
//! milliseconds, booleans 0/1, and "none" in a rollup key is the empty string (a primary key column cannot be
//! NULL in PostgreSQL, and NULLs never conflict in an upsert).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::postgres::PgStore;
use super::sql::{Val, int, need, text};
use super::sqlite::usage as file;
use super::{Backend, Store};

/// One rollup table of migration 4: `$table`'s rows summed by `$time` (an hour or a day, unix ms).
macro_rules! rollup_table {
    ($table:literal, $time:literal) => {
        concat!(
            "CREATE TABLE ",
            $table,
            " (\n    ",
            $time,
            " BIGINT NOT NULL,
    account TEXT NOT NULL,
    model TEXT NOT NULL,
    client_key TEXT NOT NULL,
    api TEXT NOT NULL,
    status INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (",
            $time,
            ", account, model, client_key, api, status)
);
"
        )
    };
}

/// The ledger's tables (migration 4 of both backends): one row per request, hourly and daily rollups. One text;
/// the backends differ only in how a request row's id is made, which `$id` gives.
macro_rules! ledger_schema {
    ($id:literal) => {
        concat!(
            "\nCREATE TABLE usage_requests (\n    id ",
            $id,
            r#",
    request_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    api TEXT NOT NULL,
    route TEXT NOT NULL,
    client_key TEXT,
    model_requested TEXT,
    model TEXT,
    effort TEXT,
    stream INTEGER NOT NULL,
    account TEXT,
    accounts_tried TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failovers INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT,
    error_code TEXT,
    ttfb_ms BIGINT,
    duration_ms BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    client_disconnected INTEGER NOT NULL
);
CREATE INDEX usage_requests_started ON usage_requests (started_at, id);
CREATE INDEX usage_requests_key ON usage_requests (client_key, started_at, id);
CREATE INDEX usage_requests_account ON usage_requests (account, started_at, id);
CREATE INDEX usage_requests_model ON usage_requests (model, started_at, id);
CREATE INDEX usage_requests_status ON usage_requests (status, started_at, id);
"#,
            rollup_table!("usage_hourly", "hour"),
            "CREATE INDEX usage_hourly_key ON usage_hourly (client_key, hour);\n",
            rollup_table!("usage_daily", "day"),
        )
    };
}

/// The SQLite ledger: `INTEGER PRIMARY KEY` is the table's rowid.
pub const SCHEMA: &str = ledger_schema!("INTEGER PRIMARY KEY");
/// The PostgreSQL ledger (`postgres/usage.rs`): a generated id.
pub const POSTGRES_SCHEMA: &str = ledger_schema!("BIGSERIAL PRIMARY KEY");

/// Migration 6 (SQLite's): the usage reports read every rollup row of a range (`usage::query::usage`). Through the
/// primary key's index alone each row costs a lookup in the table, scattered over pages the reader's small cache
/// keeps losing: 111 ms for a week of hourly rows at 1,000,000 requests (bench/results/ledger.md). An index holding
/// every column the report reads is scanned in order instead, without the table. It costs the writer one more
/// index entry per rollup upsert (off the request path) and about the rollup tables' size again on disk.
pub const ROLLUP_COVER: &str = r#"
CREATE INDEX usage_hourly_report ON usage_hourly (hour, account, model, client_key, api, requests, errors,
    input_tokens, cached_tokens, output_tokens, reasoning_tokens, duration_ms);
CREATE INDEX usage_daily_report ON usage_daily (day, account, model, client_key, api, requests, errors,
    input_tokens, cached_tokens, output_tokens, reasoning_tokens, duration_ms);
"#;

/// Migration 10: the account a conversation moved from, on a request served by another account than the one that
/// held the conversation (relay/moves.rs; docs/protocol.md "Long sessions"). NULL on every other request.
pub const MOVED_FROM: &str = "ALTER TABLE usage_requests ADD COLUMN moved_from TEXT;";

/// Migration 11: the account stewardship of a request (docs/accounts.md, "Risk signals"): the usage-policy refusal
/// the upstream gave it (`cyber`, `bio`, `invalid_prompt`, `misalignment`, `content_filter`), and why its
/// conversation is held when it was refused for that (`policy:cyber`, `deactivated`). NULL on every other request.
pub const RISK: &str = r#"
ALTER TABLE usage_requests ADD COLUMN refusal TEXT;
ALTER TABLE usage_requests ADD COLUMN held TEXT;
"#;

/// Migration 15 (issue 72): usage as the 0.171 backend reports it. The input tokens a request wrote to the prompt cache
/// (`input_tokens_details.cache_write_tokens`, part of the input like the cached ones), and what it cost in the
/// backend's budget units (`codex_rollout_budget_units`: opaque, fractional; NULL on a request the backend gave none
/// for), on each request row and summed in the rollups. The reports' covering indexes (migration 6) are made again with
/// the new columns, so the reports still read the rollups from their indexes alone. `DOUBLE PRECISION` is a REAL in
/// SQLite and a float8 in PostgreSQL.
pub const CACHE_WRITES_AND_BUDGET: &str = r#"
ALTER TABLE usage_requests ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_requests ADD COLUMN budget_units DOUBLE PRECISION;
ALTER TABLE usage_hourly ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN budget_units DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN budget_units DOUBLE PRECISION NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS usage_hourly_report;
DROP INDEX IF EXISTS usage_daily_report;
CREATE INDEX usage_hourly_report ON usage_hourly (hour, account, model, client_key, api, requests, errors,
    input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, budget_units, duration_ms);
CREATE INDEX usage_daily_report ON usage_daily (day, account, model, client_key, api, requests, errors,
    input_tokens, cached_tokens, cache_write_tokens, output_tokens, reasoning_tokens, budget_units, duration_ms);
"#;

/// Whose tokens a budget's read of the ledger sums: each client key's, or each user's (the rollups' column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spender {
    Key,
    User,
}

impl Spender {
    pub(crate) fn column(self) -> &'static str {
        match self {
            Spender::Key => "client_key",
            Spender::User => "user_id",
        }
    }
}

pub(crate) const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The grain of a usage report: which rollup table it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        [Bucket::Hour, Bucket::Day].into_iter().find(|b| b.as_str() == s)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
    pub(crate) fn ms(self) -> i64 {
        match self {
            Bucket::Hour => HOUR_MS,
            Bucket::Day => DAY_MS,
        }
    }
    /// The rollup table of this grain and its time column.
    pub(crate) fn table(self) -> (&'static str, &'static str) {
        match self {
            Bucket::Hour => ("usage_hourly", "hour"),
            Bucket::Day => ("usage_daily", "day"),
        }
    }
}

/// Which statuses `/admin/requests?status=` keeps: one code, or a class (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Code(u16),
    Class(u16),
}

impl StatusFilter {
    pub fn parse(s: &str) -> Option<StatusFilter> {
        let b = s.as_bytes();
        if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") && (b'1'..=b'5').contains(&b[0]) {
            return Some(StatusFilter::Class(u16::from(b[0] - b'0')));
        }
        s.parse().ok().filter(|c| (100..=599).contains(c)).map(StatusFilter::Code)
    }
}

/// Where a page starts: after a row (the previous page's `next`), or before an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    Cursor { started_at: i64, id: i64 },
    Instant(i64),
}

impl Before {
    /// A `next` cursor: `<started_at>_<id>`.
    pub fn parse_cursor(s: &str) -> Option<Before> {
        let (a, b) = s.split_once('_')?;
        Some(Before::Cursor { started_at: a.parse().ok()?, id: b.parse().ok()? })
    }
}

/// Which request rows a page holds: the newest `limit` that match, before `before`.
#[derive(Debug, Clone, Default)]
pub struct RequestsQuery {
    pub limit: usize,
    pub before: Option<Before>,
    pub key: Option<String>,
    /// The user a request was for.
    pub user: Option<String>,
    pub account: Option<String>,
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
}

impl RequestsQuery {
    /// The statement that reads the newest `limit + 1` rows that match, before the cursor (`id`, then
    /// [`REQUEST_COLUMNS`]), and its values.
    pub(crate) fn select(&self) -> (String, Vec<Val>) {
        let mut sql = format!("SELECT id, {REQUEST_COLUMNS} FROM usage_requests WHERE 1 = 1");
        let mut args = Vec::new();
        // A value bound to the statement: its placeholder.
        let mut bind = |v: Val| {
            args.push(v);
            format!("?{}", args.len())
        };
        let filters =
            [("client_key", &self.key), ("user_id", &self.user), ("account", &self.account), ("model", &self.model)];
        for (column, value) in filters {
            if let Some(v) = value {
                sql += &format!(" AND {column} = {}", bind(text(v)));
            }
        }
        match self.status {
            Some(StatusFilter::Code(c)) => sql += &format!(" AND status = {}", bind(Val::Small(i32::from(c)))),
            Some(StatusFilter::Class(c)) => {
                let n = bind(Val::Small(i32::from(c) * 100));
                sql += &format!(" AND status >= {n} AND status < {n} + 100");
            }
            None => {}
        }
        match self.before {
            Some(Before::Cursor { started_at, id }) => {
                let (at, id) = (bind(int(started_at)), bind(int(id)));
                sql += &format!(" AND (started_at, id) < ({at}, {id})");
            }
            Some(Before::Instant(t)) => sql += &format!(" AND started_at < {}", bind(int(t))),
            None => {}
        }
        let limit = i64::try_from(self.limit).unwrap_or(i64::MAX).saturating_add(1);
        sql += &format!(" ORDER BY started_at DESC, id DESC LIMIT {}", bind(int(limit)));
        (sql, args)
    }
}

/// A request row's columns but its id, in the order every statement of the ledger names them.
pub(crate) const REQUEST_COLUMNS: &str = "request_id, started_at, api, route, client_key, model_requested, model, \
    effort, stream, account, accounts_tried, attempts, failovers, status, error, error_code, ttfb_ms, duration_ms, \
    input_tokens, cached_tokens, output_tokens, reasoning_tokens, client_disconnected, moved_from, refusal, held, \
    cache_write_tokens, budget_units, user_id";

/// A rollup row's columns after its time column.
pub(crate) const ROLLUP_COLUMNS: &str = "account, model, client_key, api, status, requests, errors, input_tokens, \
    cached_tokens, output_tokens, reasoning_tokens, duration_ms, cache_write_tokens, budget_units, user_id";

/// The upsert of `rows` (a `VALUES` list or a `SELECT`, in [`ROLLUP_COLUMNS`]' order after the time) into a
/// rollup table: a row whose key is there adds to it.
pub(crate) fn rollup_upsert(table: &str, column: &str, rows: &str) -> String {
    format!(
        "INSERT INTO {table} ({column}, {ROLLUP_COLUMNS})
         {rows}
         ON CONFLICT ({column}, account, model, client_key, user_id, api, status) DO UPDATE SET
            requests = {table}.requests + excluded.requests,
            errors = {table}.errors + excluded.errors,
            input_tokens = {table}.input_tokens + excluded.input_tokens,
            cached_tokens = {table}.cached_tokens + excluded.cached_tokens,
            output_tokens = {table}.output_tokens + excluded.output_tokens,
            reasoning_tokens = {table}.reasoning_tokens + excluded.reasoning_tokens,
            duration_ms = {table}.duration_ms + excluded.duration_ms,
            cache_write_tokens = {table}.cache_write_tokens + excluded.cache_write_tokens,
            budget_units = {table}.budget_units + excluded.budget_units"
    )
}

/// One request row of the ledger, its fields named as `/admin/requests` shows them (JSON, and the CSV's columns):
/// written borrowed from the request's record ([`LedgerEntry`], `usage/writer.rs`), read back owned (the
/// default, `usage::query`) with the three fields only a read has: its id, its start as text and its cost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRow<S = String, L = Vec<String>> {
    /// The row's id (0 until the database makes it).
    pub id: i64,
    pub request_id: S,
    /// Unix milliseconds.
    pub started_at: i64,
    /// `started_at` as text, when read (empty when written).
    pub started_time: String,
    /// The client API (`chat`, `responses`, ...).
    pub api: S,
    /// The route's path pattern.
    pub route: S,
    #[serde(rename = "key")]
    pub client_key: Option<S>,
    /// The user the request was for (a key they own, their own token; `None`: nobody's).
    #[serde(rename = "user")]
    pub user_id: Option<S>,
    pub model_requested: Option<S>,
    pub model: Option<S>,
    pub effort: Option<S>,
    pub stream: bool,
    pub account: Option<S>,
    pub accounts_tried: L,
    pub attempts: u32,
    pub failovers: u32,
    pub status: u16,
    /// The name of the error the client saw, and its code.
    pub error: Option<S>,
    pub error_code: Option<S>,
    pub ttfb_ms: Option<i64>,
    pub duration_ms: i64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// The backend's budget units for the request (`codex_rollout_budget_units`), when it gave them.
    pub budget_units: Option<f64>,
    pub client_disconnected: bool,
    /// The account the conversation moved from, when this request moved it to `account`.
    pub moved_from: Option<S>,
    /// The usage-policy refusal the upstream gave the request (`cyber`, `content_filter`, ...).
    pub refusal: Option<S>,
    /// Why the request's conversation is held, when the request was refused for it (`policy:cyber`, `deactivated`).
    pub held: Option<S>,
    /// What the request cost at the configured prices, when read and its model has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// A request row as the writer stores it, borrowed from what the request path recorded.
pub type LedgerEntry<'a> = RequestRow<&'a str, &'a [String]>;

impl LedgerEntry<'_> {
    /// A request counts as an error when the client saw one: an error status, or an error inside a 200 stream.
    fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }

    /// The accounts tried as stored: JSON (an imported account's id may hold any character).
    pub(crate) fn tried(&self) -> String {
        serde_json::to_string(self.accounts_tried).unwrap_or_default()
    }

    /// The request row in [`REQUEST_COLUMNS`]' order, `tried` being [`LedgerEntry::tried`].
    pub(crate) fn cells<'b>(&'b self, tried: &'b str) -> [Cell<'b>; 29] {
        let small = |n: u32| Cell::Small(i32::try_from(n).unwrap_or(i32::MAX));
        let count = |n: u64| Cell::Int(Some(tokens(n)));
        [
            Cell::Text(Some(self.request_id)),
            Cell::Int(Some(self.started_at)),
            Cell::Text(Some(self.api)),
            Cell::Text(Some(self.route)),
            Cell::Text(self.client_key),
            Cell::Text(self.model_requested),
            Cell::Text(self.model),
            Cell::Text(self.effort),
            Cell::Small(i32::from(self.stream)),
            Cell::Text(self.account),
            Cell::Text(Some(tried)),
            small(self.attempts),
            small(self.failovers),
            Cell::Small(i32::from(self.status)),
            Cell::Text(self.error),
            Cell::Text(self.error_code),
            Cell::Int(self.ttfb_ms),
            Cell::Int(Some(self.duration_ms)),
            count(self.input_tokens),
            count(self.cached_tokens),
            count(self.output_tokens),
            count(self.reasoning_tokens),
            Cell::Small(i32::from(self.client_disconnected)),
            Cell::Text(self.moved_from),
            Cell::Text(self.refusal),
            Cell::Text(self.held),
            count(self.cache_write_tokens),
            Cell::Real(self.budget_units),
            Cell::Text(self.user_id),
        ]
    }
}

/// A value of a ledger row as both backends write it: the SQLite file binds a row's cells, PostgreSQL a batch's
/// as column arrays (`postgres/usage.rs`).
pub(crate) type Cell<'a> = Val<&'a str>;

/// A rollup row: its time, then [`ROLLUP_COLUMNS`]' order.
pub(crate) fn rollup_cells<'a>(key: &RollupKey<'a>, s: &Sums) -> [Cell<'a>; 16] {
    let &(t, account, model, client_key, api, status, user) = key;
    let n = |v: i64| Cell::Int(Some(v));
    [
        n(t),
        Cell::Text(Some(account)),
        Cell::Text(Some(model)),
        Cell::Text(Some(client_key)),
        Cell::Text(Some(api)),
        Cell::Small(i32::from(status)),
        n(s.requests),
        n(s.errors),
        n(s.input),
        n(s.cached),
        n(s.output),
        n(s.reasoning),
        n(s.duration_ms),
        n(s.cache_write),
        Cell::Real(Some(s.budget)),
        Cell::Text(Some(user)),
    ]
}

/// The start of `from`'s minute, and a zero count for each minute from there up to `to` (at most a month's).
pub(crate) fn minutes(from: i64, to: i64) -> (i64, Vec<u32>) {
    let first = from.div_euclid(MINUTE_MS) * MINUTE_MS;
    let n = usize::try_from((to - first + MINUTE_MS - 1).div_euclid(MINUTE_MS)).unwrap_or(0).min(60 * 24 * 31);
    (first, vec![0; n])
}

/// Unix milliseconds of a record's start.
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One rollup row's sums.
#[derive(Default)]
pub(crate) struct Sums {
    pub(crate) requests: i64,
    pub(crate) errors: i64,
    pub(crate) input: i64,
    pub(crate) cached: i64,
    pub(crate) cache_write: i64,
    pub(crate) output: i64,
    pub(crate) reasoning: i64,
    pub(crate) budget: f64,
    pub(crate) duration_ms: i64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input += o.input;
        self.cached += o.cached;
        self.cache_write += o.cache_write;
        self.output += o.output;
        self.reasoning += o.reasoning;
        self.budget += o.budget;
        self.duration_ms += o.duration_ms;
    }
}

/// (hour or day, account, model, client key, api, status, user).
pub(crate) type RollupKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str, u16, &'a str);

/// A batch's rows for one rollup table: (table, time column, rows).
pub(crate) type RollupRows<'a> = (&'static str, &'static str, HashMap<RollupKey<'a>, Sums>);

/// The rollup rows a batch adds to, summed in memory (shared with the PostgreSQL ledger, `store/postgres/usage.rs`).
pub(crate) fn rollups<'a>(entries: &[LedgerEntry<'a>]) -> [RollupRows<'a>; 2] {
    let mut hourly: HashMap<RollupKey<'a>, Sums> = HashMap::new();
    for r in entries {
        let key = (
            r.started_at.div_euclid(HOUR_MS) * HOUR_MS,
            r.account.unwrap_or(""),
            r.model.or(r.model_requested).unwrap_or(""),
            r.client_key.unwrap_or(""),
            r.api,
            r.status,
            r.user_id.unwrap_or(""),
        );
        let s = hourly.entry(key).or_default();
        s.requests += 1;
        s.errors += i64::from(r.is_error());
        s.input += tokens(r.input_tokens);
        s.cached += tokens(r.cached_tokens);
        s.cache_write += tokens(r.cache_write_tokens);
        s.output += tokens(r.output_tokens);
        s.budget += r.budget_units.unwrap_or(0.0);
        s.reasoning += tokens(r.reasoning_tokens);
        s.duration_ms += r.duration_ms;
    }
    [Bucket::Hour, Bucket::Day].map(|bucket| {
        let ((table, column), grain) = (bucket.table(), bucket.ms());
        // Hours fold into days here: a batch's daily rows are the sums of its hourly ones.
        let mut rows: HashMap<RollupKey<'a>, Sums> = HashMap::new();
        for (&(t, account, model, key, api, status, user), s) in &hourly {
            rows.entry((t.div_euclid(grain) * grain, account, model, key, api, status, user)).or_default().add(s);
        }
        (table, column, rows)
    })
}

/// Which ledger rows a query reads: on the team's database only these are copied for it.
#[derive(Debug, Clone)]
pub enum LedgerRows {
    /// The rollups of `bucket`'s grain from `from` (rounded down to the grain) to `to`: a usage report's.
    Rollups { bucket: Bucket, from: i64, to: i64 },
    /// The newest request rows that match, one past the page: a page of requests.
    Requests(RequestsQuery),
}

/// The ledger's writer on the store's backend (`usage/writer.rs` runs it on a thread of its own).
pub struct LedgerWriter(Writer);

enum Writer {
    /// A connection of its own to the SQLite file.
    Sqlite(Connection),
    Postgres(Arc<PgStore>),
}

impl LedgerWriter {
    /// Store a batch and add it to the rollups, all or nothing.
    pub fn commit(&mut self, entries: &[LedgerEntry<'_>]) -> anyhow::Result<()> {
        match &mut self.0 {
            Writer::Sqlite(conn) => {
                let tx = conn.transaction()?;
                file::insert_batch(&tx, entries)?;
                Ok(tx.commit()?)
            }
            Writer::Postgres(pg) => pg.insert_usage(entries),
        }
    }

    /// Whether this instance prunes old rows: always its own file; the team's shared tables only on the instance
    /// that holds the leader lease (one instance at a time prunes them; another takes over when it stops).
    pub fn prunes(&self) -> bool {
        match &self.0 {
            Writer::Sqlite(_) => true,
            Writer::Postgres(pg) => pg.leads(),
        }
    }

    /// Whether a batch that keeps failing is given up at last: the file's is; the team's never while the gateway
    /// runs (an outage must not lose the queued rows; the bounded channel caps what waits).
    pub fn gives_up(&self) -> bool {
        matches!(self.0, Writer::Sqlite(_))
    }

    /// Delete request rows older than `requests_before` and rollups older than `rollups_before` (unix ms); the
    /// request rows deleted.
    pub fn prune(&mut self, requests_before: i64, rollups_before: i64) -> anyhow::Result<u64> {
        match &mut self.0 {
            Writer::Sqlite(conn) => Ok(file::prune(conn, requests_before, rollups_before)? as u64),
            Writer::Postgres(pg) => pg.prune_usage(requests_before, rollups_before),
        }
    }
}

/// The ledger's reader on the store's backend. Its calls block (run them off the async workers).
pub struct LedgerReader(Reader);

enum Reader {
    /// The SQLite file, and the reading connection opened on the first query: most gateways are never asked for
    /// their usage between restarts, and an open SQLite connection holds its caches (idle RSS).
    Sqlite { db: PathBuf, conn: Mutex<Option<Connection>> },
    /// The team's database: a query reads the rows it needs, copied into an in-memory ledger
    /// (`postgres/usage.rs`), so `usage::query` serves both backends.
    Postgres(Arc<PgStore>),
}

impl LedgerReader {
    /// Run `f` on a ledger that holds `rows`.
    pub fn read<T>(&self, rows: &LedgerRows, f: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        match &self.0 {
            Reader::Sqlite { db, conn } => on_file(db, conn, f),
            Reader::Postgres(pg) => f(&match rows {
                LedgerRows::Rollups { bucket, from, to } => pg.rollups_snapshot(*bucket, *from, *to)?,
                LedgerRows::Requests(q) => pg.requests_snapshot(q)?,
            }),
        }
    }

    /// Requests started in each minute of `[from, to)`, oldest first (the Overview's chart).
    pub fn requests_per_minute(&self, from: i64, to: i64) -> anyhow::Result<Vec<u32>> {
        match &self.0 {
            Reader::Sqlite { db, conn } => on_file(db, conn, |c| Ok(file::requests_per_minute(c, from, to)?)),
            Reader::Postgres(pg) => pg.requests_per_minute(from, to),
        }
    }
}

/// Run `f` on the file's reading connection, opening it at the first query.
fn on_file<T>(
    db: &Path,
    conn: &Mutex<Option<Connection>>,
    f: impl FnOnce(&Connection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut conn = conn.lock();
    let conn = match &mut *conn {
        Some(conn) => conn,
        slot @ None => slot.insert(file::open_reader(db)?),
    };
    f(conn)
}

/// The usage ledger on the store's backend: the SQLite file's, or with a team store the team's (docs/team.md).
impl Store {
    /// The ledger's writer (on the SQLite file, a connection of its own).
    pub fn ledger_writer(&self) -> anyhow::Result<LedgerWriter> {
        Ok(LedgerWriter(match &self.backend {
            Backend::Sqlite => Writer::Sqlite(file::open_connection(self.path())?),
            Backend::Postgres(pg) => Writer::Postgres(pg.clone()),
        }))
    }

    /// The ledger's reader (on the SQLite file, a connection of its own opened at the first query).
    pub fn ledger_reader(&self) -> LedgerReader {
        LedgerReader(match &self.backend {
            Backend::Sqlite => Reader::Sqlite { db: self.path().to_path_buf(), conn: Mutex::new(None) },
            Backend::Postgres(pg) => Reader::Postgres(pg.clone()),
        })
    }

    /// Input plus output tokens per client key (or user) from `from` (an hour) on: hourly rollups up to
    /// `midnight`, daily ones after it (`usage::tokens_since`).
    pub fn tokens_by(&self, by: Spender, from: i64, midnight: i64) -> anyhow::Result<HashMap<String, u64>> {
        let c = by.column();
        let sql = format!(
            "SELECT {c}, CAST(SUM(n) AS BIGINT) FROM (
                SELECT {c}, input_tokens + output_tokens AS n FROM usage_hourly
                    WHERE hour >= ?1 AND hour < ?2 AND {c} <> ''
                UNION ALL
                SELECT {c}, input_tokens + output_tokens FROM usage_daily WHERE day >= ?2 AND {c} <> ''
             ) t GROUP BY {c}"
        );
        let rows = self
            .query(&sql, vec![int(from), int(midnight)], |r| Ok((need(r.text(0)?, "id")?, need(r.int(1)?, "sum")?)))?;
        Ok(rows.into_iter().map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))).collect())
    }
}
