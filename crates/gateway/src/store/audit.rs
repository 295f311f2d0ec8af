//! The `audit_log` table: the audit trail's rows (audit/ builds and checks them), append-only. Each append reads
//! the last row and inserts the next under one lock for every writer of the store (SQLite's write lock, a
//! PostgreSQL advisory lock), so gateways and commands sharing a store extend one chain. There is no update or
//! delete call: a row changed behind the store's back is what `audit::verify` finds. The note a change answers
//! ([`Note`]) is here too, under the accounts that answer one.

use serde_json::{Map, Value};

use super::Store;
use super::sql::{Cells, Val, insert, int, need, opt, text};

/// What a handler adds to its surface's record of the request (server/admin/audit.rs, dashboard/audit.rs), as a
/// response extension: the target when the path does not name it, non-secret details, a more precise action.
#[derive(Debug, Clone, Default)]
pub struct Note {
    pub action: Option<String>,
    pub target: Option<String>,
    pub details: Map<String, Value>,
}

impl Note {
    pub fn target(target: impl Into<String>) -> Note {
        Note { target: Some(target.into()), ..Note::default() }
    }

    pub fn action(mut self, action: impl Into<String>) -> Note {
        self.action = Some(action.into());
        self
    }

    /// A non-secret detail (a secret-looking name is dropped when the entry is recorded).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Note {
        self.details.insert(name.to_string(), value.into());
        self
    }
}

/// A URL without its user name, password, query and fragment (a proxy's or a relay's credentials may be there).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let had_user = !u.username().is_empty() || u.password().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let text = u.to_string();
            match (had_user, text.split_once("://")) {
                (true, Some((scheme, rest))) => format!("{scheme}://***@{rest}"),
                _ => text,
            }
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Migration 17, one text (plain types both read). Ids are given by the append (the last id + 1 under the lock), so a
/// missing row shows as a gap.
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
        // Under the lock from the read of the last row on, so another process (a command beside the gateway) cannot
        // append between the read and the insert.
        self.read_then_write(AUDIT_LOCK, (LAST, vec![]), last_of, move |mut last| {
            link(&mut row, last.pop(), seal);
            (Some((insert("audit_log", COLUMNS), values(&row))), row)
        })
    }

    /// The rows `f` lets through, oldest first (the newest `limit` of them).
    pub fn audit_rows(&self, f: &AuditFilter) -> anyhow::Result<Vec<AuditRow>> {
        let (sql, args) = select(f);
        let mut rows = self.query(&sql, args, row_of)?;
        rows.reverse();
        Ok(rows)
    }
}

const LAST: &str = "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1";

fn last_of(r: &dyn Cells) -> anyhow::Result<(i64, String)> {
    Ok((need(r.int(0)?, "audit_log.id")?, need(r.text(1)?, "audit_log.hash")?))
}

fn values(row: &AuditRow) -> Vec<Val> {
    vec![
        int(row.id),
        int(row.at_ms),
        text(&row.actor),
        opt(row.source.as_deref()),
        text(&row.action),
        opt(row.target.as_deref()),
        text(&row.details),
        text(&row.outcome),
        text(&row.prev_hash),
        text(&row.hash),
    ]
}

/// The row's place after `last` (id, hash), and its own hash.
fn link(row: &mut AuditRow, last: Option<(i64, String)>, seal: Seal) {
    let (id, prev) = last.map(|(id, h)| (id + 1, h)).unwrap_or((1, GENESIS.to_string()));
    row.id = id;
    row.prev_hash = prev;
    row.hash = seal(&row.prev_hash, row);
}

fn row_of(r: &dyn Cells) -> anyhow::Result<AuditRow> {
    Ok(AuditRow {
        id: need(r.int(0)?, "audit_log.id")?,
        at_ms: need(r.int(1)?, "audit_log.at_ms")?,
        actor: need(r.text(2)?, "audit_log.actor")?,
        source: r.text(3)?,
        action: need(r.text(4)?, "audit_log.action")?,
        target: r.text(5)?,
        details: need(r.text(6)?, "audit_log.details")?,
        outcome: need(r.text(7)?, "audit_log.outcome")?,
        prev_hash: need(r.text(8)?, "audit_log.prev_hash")?,
        hash: need(r.text(9)?, "audit_log.hash")?,
    })
}

/// The read's statement (newest first; the caller turns it round).
fn select(f: &AuditFilter) -> (String, Vec<Val>) {
    let (mut clauses, mut args) = (Vec::new(), Vec::new());
    let mut add = |clause: &str, arg: Val| {
        args.push(arg);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(a) = &f.actor {
        add("actor = ?", text(a));
    }
    if let Some(a) = &f.action {
        // A prefix: `substr` reads alike on both backends and needs no escaping of LIKE's wildcards.
        add(&format!("substr(action, 1, {}) = ?", a.chars().count()), text(a));
    }
    if let Some(s) = f.since_ms {
        add("at_ms >= ?", int(s));
    }
    if let Some(u) = f.until_ms {
        add("at_ms < ?", int(u));
    }
    let filter = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
    let limit = f.limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default();
    (format!("SELECT {COLUMNS} FROM audit_log{filter} ORDER BY id DESC{limit}"), args)
}
