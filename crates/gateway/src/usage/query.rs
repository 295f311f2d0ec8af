//! Reading the ledger: usage over time from the hourly rollups (series per bucket and group, and totals), and
//! the request rows, newest first, keyset-paginated. Both as typed values (JSON through serde) and as CSV.

use rusqlite::{Connection, params_from_iter};
use serde::Serialize;

use super::pricing::{Cost, Prices, Tokens};
use super::when::format_ms;
use crate::store::sql::Val;
pub use crate::store::usage::{Before, Bucket, RequestRow, RequestsQuery, StatusFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Account,
    Model,
    /// The client key.
    Key,
    /// The client API (chat, responses, anthropic, gemini, ollama).
    Dialect,
    /// The user the request was for (the owner of its key, or of its token).
    User,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        use GroupBy::*;
        [Account, Model, Key, Dialect, User].into_iter().find(|g| g.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Account => "account",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
            GroupBy::Dialect => "dialect",
            GroupBy::User => "user",
        }
    }
    fn column(self) -> &'static str {
        match self {
            GroupBy::Account => "account",
            GroupBy::Model => "model",
            GroupBy::Key => "client_key",
            GroupBy::Dialect => "api",
            GroupBy::User => "user_id",
        }
    }
}

/// `from` is rounded down to the start of its bucket (hour, or UTC day): the rollups' grain; buckets that start
/// before `to` count whole.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub from: i64,
    pub to: i64,
    pub bucket: Bucket,
    pub group_by: Option<GroupBy>,
    /// Only the requests made for this user (their id).
    pub user: Option<String>,
}

/// Sums over some requests. `cost_usd` only when a price is configured for one of their models;
/// `cost_incomplete` when tokens of a model without a price were left out of it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (part of `input_tokens`).
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    /// The backend's budget units (`codex_rollout_budget_units`), summed over the requests that reported them.
    pub budget_units: f64,
    /// Sum of the requests' durations.
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cost_incomplete: bool,
    #[serde(skip)]
    cost: Cost,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.merge(o);
        self.settle();
    }

    /// [`Totals::add`] without settling the cost (once per point, not per row).
    fn merge(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens += o.input_tokens;
        self.cached_tokens += o.cached_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.budget_units += o.budget_units;
        self.duration_ms += o.duration_ms;
        self.cost.merge(o.cost);
    }

    fn settle(&mut self) {
        self.cost_usd = self.cost.priced.then_some(self.cost.usd);
        self.cost_incomplete = self.cost.priced && self.cost.incomplete;
    }
}

#[derive(Debug, Serialize)]
pub struct Point {
    /// Unix ms of the bucket's start.
    pub start: i64,
    pub start_time: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Series {
    /// The group's value (`null`: none, e.g. requests without a client key, or refused before an account).
    pub group: Option<String>,
    pub totals: Totals,
    pub points: Vec<Point>,
}

#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub from: i64,
    pub to: i64,
    pub bucket: &'static str,
    pub group_by: Option<&'static str>,
    pub series: Vec<Series>,
    pub totals: Totals,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A text column of a row as `&str`, without a copy.
fn text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// The value of `key` in `list`, made by `make` when it has none: a short scan of borrowed names, no hashing, and
/// no copy of a name already there.
fn entry<'l, T>(list: &'l mut Vec<(String, T)>, key: &str, make: impl FnOnce() -> T) -> &'l mut T {
    let i = match list.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            list.push((key.to_string(), make()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

/// The rollup rows of the range are read in key order and summed here rather than by a SQL `GROUP BY`: the range
/// scan streams from the covering index (migration 5), while grouping by a column that is not its prefix made
/// SQLite sort every row first (bench/results/ledger.md). Rows arrive in bucket order, so each group's points are
/// appended as the bucket changes; groups and models are few, found by a short scan of borrowed names (no hashing,
/// no copy per row), and a model's price is looked up once.
pub fn usage(conn: &Connection, q: &UsageQuery, prices: &Prices) -> rusqlite::Result<UsageReport> {
    let group = q.group_by.map_or("''", GroupBy::column);
    let (table, time) = q.bucket.table();
    let sql = format!(
        "SELECT {time}, {group}, model, requests, errors, input_tokens, cached_tokens, output_tokens, reasoning_tokens,
                duration_ms, cache_write_tokens, budget_units
         FROM {table} WHERE {time} >= ?1 AND {time} < ?2 AND (?3 IS NULL OR user_id = ?3)"
    );
    let from = q.from.div_euclid(q.bucket.ms()) * q.bucket.ms();
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![from, q.to, q.user])?;
    // (group, its points by bucket, in the order read)
    let mut groups: Vec<(String, Vec<(i64, Totals)>)> = Vec::new();
    let mut models: Vec<(String, Option<super::pricing::Price>)> = Vec::new();
    while let Some(r) = rows.next()? {
        let mut t = Totals {
            requests: count(r.get(3)?),
            errors: count(r.get(4)?),
            input_tokens: count(r.get(5)?),
            cached_tokens: count(r.get(6)?),
            output_tokens: count(r.get(7)?),
            reasoning_tokens: count(r.get(8)?),
            duration_ms: count(r.get(9)?),
            cache_write_tokens: count(r.get(10)?),
            budget_units: r.get(11)?,
            ..Totals::default()
        };
        let tokens = Tokens { input: t.input_tokens, cached: t.cached_tokens, output: t.output_tokens };
        let model = text(r, 2)?;
        t.cost.add(entry(&mut models, model, || prices.get(model).copied()).as_ref(), tokens);
        let start: i64 = r.get(0)?;
        let points = entry(&mut groups, text(r, 1)?, Vec::new);
        match points.last_mut() {
            Some((s, sum)) if *s == start => sum.merge(&t),
            // Not in bucket order (never from the index, kept correct anyway): found and merged, else added.
            Some((s, _)) if *s > start => match points.iter_mut().find(|(s, _)| *s == start) {
                Some((_, sum)) => sum.merge(&t),
                None => points.push((start, t)),
            },
            _ => points.push((start, t)),
        }
    }
    // Stable order: groups by name, buckets by time.
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut totals = Totals::default();
    let series = groups
        .into_iter()
        .map(|(group, mut buckets)| {
            buckets.sort_by_key(|(start, _)| *start);
            let mut sum = Totals::default();
            let points = buckets
                .into_iter()
                .map(|(start, mut t)| {
                    t.settle();
                    sum.add(&t);
                    Point { start, start_time: format_ms(start), totals: t }
                })
                .collect();
            totals.add(&sum);
            Series { group: (!group.is_empty()).then_some(group), totals: sum, points }
        })
        .collect();
    Ok(UsageReport {
        from,
        to: q.to,
        bucket: q.bucket.as_str(),
        group_by: q.group_by.map(GroupBy::as_str),
        series,
        totals,
    })
}

/// The usage report as CSV: one line per group and bucket.
pub fn usage_csv(report: &UsageReport) -> Result<String, csv::Error> {
    const TOTALS: &str = "requests,errors,input_tokens,cached_tokens,output_tokens,reasoning_tokens,duration_ms,\
                          cost_usd,cache_write_tokens,budget_units";
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["bucket_start", "group"].into_iter().chain(TOTALS.split(',')))?;
    for s in &report.series {
        for p in &s.points {
            let t = json(&p.totals)?;
            let group = s.group.clone().unwrap_or_default();
            w.write_record([p.start_time.clone(), group].into_iter().chain(TOTALS.split(',').map(|c| cell(c, &t[c]))))?;
        }
    }
    into_string(w)
}

fn into_string(w: csv::Writer<Vec<u8>>) -> Result<String, csv::Error> {
    let bytes = w.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `value` as JSON, to read its fields by name.
fn json(value: &impl Serialize) -> Result<serde_json::Value, csv::Error> {
    serde_json::to_value(value).map_err(|e| csv::Error::from(std::io::Error::from(e)))
}

/// A field of a row as a CSV cell: text as it is, a number as Rust prints it (a cost with six decimals), a list
/// joined with spaces, `null` empty.
fn cell(column: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(|i| cell(column, i)).collect::<Vec<_>>().join(" "),
        Value::Number(n) if column == "cost_usd" => format!("{:.6}", n.as_f64().unwrap_or_default()),
        Value::Number(n) if n.is_f64() => n.as_f64().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

#[derive(Debug, Serialize)]
pub struct RequestsPage {
    pub requests: Vec<RequestRow>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next: Option<String>,
}

pub fn requests(conn: &Connection, q: &RequestsQuery, prices: &Prices) -> rusqlite::Result<RequestsPage> {
    let mut requests = match q.status {
        // A class is read code by code, each the newest `limit + 1` rows straight from the status index, then
        // merged: one range over the class would make SQLite sort every matching row by time first (a common
        // class holds tens of thousands), while a code that never occurred costs one index probe.
        Some(StatusFilter::Class(c)) => {
            let mut all = Vec::new();
            for code in c * 100..c * 100 + 100 {
                all.extend(rows(conn, &RequestsQuery { status: Some(StatusFilter::Code(code)), ..q.clone() })?);
            }
            all.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
            all.truncate(q.limit + 1);
            all
        }
        Some(StatusFilter::Code(_)) | None => rows(conn, q)?,
    };
    let next = if requests.len() > q.limit {
        requests.truncate(q.limit);
        requests.last().map(|r| format!("{}_{}", r.started_at, r.id))
    } else {
        None
    };
    for r in &mut requests {
        let model = r.model.as_deref().or(r.model_requested.as_deref()).unwrap_or("");
        let tokens = Tokens { input: r.input_tokens, cached: r.cached_tokens, output: r.output_tokens };
        r.cost_usd = prices.get(model).map(|p| super::pricing::cost(p, tokens));
    }
    Ok(RequestsPage { requests, next })
}

/// The newest `limit + 1` rows that match `q`, before its cursor.
fn rows(conn: &Connection, q: &RequestsQuery) -> rusqlite::Result<Vec<RequestRow>> {
    let (sql, args) = q.select();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter().map(Val::sqlite)), |r| {
        let tried: String = r.get(11)?;
        let started_at: i64 = r.get(2)?;
        Ok(RequestRow {
            id: r.get(0)?,
            request_id: r.get(1)?,
            started_at,
            started_time: format_ms(started_at),
            api: r.get(3)?,
            route: r.get(4)?,
            client_key: r.get(5)?,
            model_requested: r.get(6)?,
            model: r.get(7)?,
            effort: r.get(8)?,
            stream: r.get(9)?,
            account: r.get(10)?,
            accounts_tried: serde_json::from_str(&tried).unwrap_or_default(),
            attempts: r.get(12)?,
            failovers: r.get(13)?,
            status: r.get(14)?,
            error: r.get(15)?,
            error_code: r.get(16)?,
            ttfb_ms: r.get(17)?,
            duration_ms: r.get(18)?,
            input_tokens: count(r.get(19)?),
            cached_tokens: count(r.get(20)?),
            output_tokens: count(r.get(21)?),
            reasoning_tokens: count(r.get(22)?),
            client_disconnected: r.get(23)?,
            moved_from: r.get(24)?,
            refusal: r.get(25)?,
            held: r.get(26)?,
            cache_write_tokens: count(r.get(27)?),
            budget_units: r.get(28)?,
            user_id: r.get(29)?,
            cost_usd: None,
        })
    })?;
    rows.collect()
}

/// The request rows as CSV (the columns of [`RequestRow`]; `accounts_tried` joined with spaces).
pub fn requests_csv(page: &RequestsPage) -> Result<String, csv::Error> {
    const COLUMNS: &str = "id,request_id,started_time,api,route,key,model_requested,model,effort,stream,account,\
                           accounts_tried,attempts,failovers,status,error,error_code,ttfb_ms,duration_ms,input_tokens,\
                           cached_tokens,output_tokens,reasoning_tokens,client_disconnected,moved_from,refusal,held,\
                           cost_usd,cache_write_tokens,budget_units,user";
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS.split(','))?;
    for r in &page.requests {
        let row = json(r)?;
        w.write_record(COLUMNS.split(',').map(|c| cell(c, &row[c])))?;
    }
    into_string(w)
}
