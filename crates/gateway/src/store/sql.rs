//! Statements written once for both backends: `?N` placeholders, which PostgreSQL reads as `$N`, values bound as
//! [`Val`]s, rows read by column index from either ([`Cells`]).

use deadpool_postgres::GenericClient;
use rusqlite::Connection;

use super::{Backend, Store};

/// A bound value: its text owned, or borrowed (`Val<&str>`: a ledger row's cells, `store/usage.rs`).
pub(crate) enum Val<S = String> {
    Text(Option<S>),
    Int(Option<i64>),
    /// A PostgreSQL `INTEGER` (four bytes; SQLite's integers are all one kind).
    Small(i32),
    Real(Option<f64>),
    Bool(bool),
}

impl<S: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync> Val<S> {
    pub(crate) fn sqlite(&self) -> &dyn rusqlite::ToSql {
        self.both().0
    }

    pub(crate) fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        self.both().1
    }

    fn both(&self) -> (&dyn rusqlite::ToSql, &(dyn tokio_postgres::types::ToSql + Sync)) {
        match self {
            Val::Text(s) => (s, s),
            Val::Int(i) => (i, i),
            Val::Small(i) => (i, i),
            Val::Real(f) => (f, f),
            Val::Bool(b) => (b, b),
        }
    }
}

pub(crate) fn text(s: &str) -> Val {
    Val::Text(Some(s.to_string()))
}

pub(crate) fn int(n: i64) -> Val {
    Val::Int(Some(n))
}

pub(super) fn opt(s: Option<&str>) -> Val {
    Val::Text(s.map(str::to_string))
}

/// `INSERT INTO table (columns) VALUES (?1, ...)`, a placeholder per column.
pub(super) fn insert(table: &str, columns: &str) -> String {
    let marks: Vec<String> = (1..=columns.split(',').count()).map(|i| format!("?{i}")).collect();
    format!("INSERT INTO {table} ({columns}) VALUES ({})", marks.join(", "))
}

/// A row read from either backend, by column index.
pub(super) trait Cells {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>>;
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>>;
    fn bool(&self, i: usize) -> anyhow::Result<bool>;
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.get(i)?)
    }
    fn bool(&self, i: usize) -> anyhow::Result<bool> {
        Ok(self.get(i)?)
    }
}

impl Cells for tokio_postgres::Row {
    fn bool(&self, i: usize) -> anyhow::Result<bool> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
}

/// How a statement's rows become values.
pub(super) type Map<T> = fn(&dyn Cells) -> anyhow::Result<T>;

pub(super) fn need<T>(v: Option<T>, what: &str) -> anyhow::Result<T> {
    v.ok_or_else(|| anyhow::anyhow!("{what} is NULL"))
}

/// A row's first column, a count.
pub(super) fn count(r: &dyn Cells) -> anyhow::Result<i64> {
    need(r.int(0)?, "count")
}

/// Rows changed by `sql` on a SQLite connection (or transaction).
fn sqlite_exec(c: &Connection, sql: &str, values: &[Val]) -> anyhow::Result<u64> {
    Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values.iter().map(Val::sqlite)))? as u64)
}

fn sqlite_query<T>(c: &Connection, sql: &str, values: &[Val], map: Map<T>) -> anyhow::Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values.iter().map(Val::sqlite)))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(map(r)?);
    }
    Ok(out)
}

/// Rows changed by `sql` on a PostgreSQL connection (or transaction).
async fn pg_exec(c: &impl GenericClient, sql: &str, values: &[Val]) -> anyhow::Result<u64> {
    let params: Vec<_> = values.iter().map(Val::postgres).collect();
    Ok(c.execute(&sql.replace('?', "$"), &params).await?)
}

async fn pg_query<T>(c: &impl GenericClient, sql: &str, values: &[Val], map: Map<T>) -> anyhow::Result<Vec<T>> {
    let params: Vec<_> = values.iter().map(Val::postgres).collect();
    let rows = c.query(&sql.replace('?', "$"), &params).await?;
    rows.iter().map(|r| map(r)).collect()
}

/// One statement on the store's backend.
impl Store {
    /// Rows changed by `sql`.
    pub(super) fn exec(&self, sql: &str, values: Vec<Val>) -> anyhow::Result<u64> {
        match &self.backend {
            Backend::Sqlite => sqlite_exec(&self.file.lock(), sql, &values),
            Backend::Postgres(pg) => {
                let sql = sql.to_string();
                pg.block(move |c| async move { pg_exec(&c, &sql, &values).await })
            }
        }
    }

    pub(super) fn query<T: Send + 'static>(&self, sql: &str, values: Vec<Val>, map: Map<T>) -> anyhow::Result<Vec<T>> {
        match &self.backend {
            Backend::Sqlite => sqlite_query(&self.file.lock(), sql, &values, map),
            Backend::Postgres(pg) => {
                let sql = sql.to_string();
                pg.block(move |c| async move { pg_query(&c, &sql, &values, map).await })
            }
        }
    }

    /// Read, then write what `then` makes of the rows read (a statement, or none) and answer, under one lock for
    /// every writer of the store (SQLite's write lock, the PostgreSQL advisory lock `lock`): no other write comes
    /// between the read and the write.
    pub(super) fn read_then_write<C: Send + 'static, T: Send + 'static>(
        &self,
        lock: i64,
        (read, args): (&str, Vec<Val>),
        map: Map<C>,
        then: impl FnOnce(Vec<C>) -> (Option<(String, Vec<Val>)>, T) + Send + 'static,
    ) -> anyhow::Result<T> {
        match &self.backend {
            Backend::Sqlite => self.file.immediate(|c| {
                let (write, out) = then(sqlite_query(c, read, &args, map)?);
                if let Some((sql, values)) = write {
                    sqlite_exec(c, &sql, &values)?;
                }
                Ok(out)
            }),
            Backend::Postgres(pg) => {
                let read = read.to_string();
                pg.block(move |mut client| async move {
                    let tx = client.transaction().await?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock]).await?;
                    let (write, out) = then(pg_query(&tx, &read, &args, map).await?);
                    if let Some((sql, values)) = write {
                        pg_exec(&tx, &sql, &values).await?;
                    }
                    tx.commit().await?;
                    Ok(out)
                })
            }
        }
    }

    /// The first row of `sql`, if any.
    pub(super) fn query_opt<T: Send + 'static>(
        &self,
        sql: &str,
        values: Vec<Val>,
        map: Map<T>,
    ) -> anyhow::Result<Option<T>> {
        Ok(self.query(sql, values, map)?.into_iter().next())
    }
}
