//! Kept Responses answers shared by the team (docs/team.md; docs/protocol.md, "Chained responses"): a request
//! that names a response another instance served finds it here.
//!
//! Written off the request path: a kept response goes into a bounded queue ([`PgStore::share_response`], a
//! `try_send`; a full queue drops it) and a writer task upserts what waits as one statement. Read
//! only on a miss: an instance that does not keep the named response asks the table
//! ([`PgStore::ask_response`], one primary-key lookup within a short deadline) before it answers
//! `previous_response_not_found`. Each instance's own memory stays the first place looked (`stored_responses.rs`).
//!
//! Bounded like the memory it stands beside: rows older than [`TTL_MS`] go, and beyond the configured count and
//! bytes (`[server] stored_responses`, `stored_responses_mb`, for the whole team) the oldest go first, both by
//! the leader each upkeep round ([`PgStore::prune_responses`]).

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use super::{DB_NOW_MS, PgStore};

/// Migration 16: one row per kept response: who may name it, its conversation as JSON text, its size, and when it
/// was written (database clock).
pub const SCHEMA: &str = r#"
CREATE TABLE stored_responses (
    id TEXT PRIMARY KEY,
    -- The created client key that made it (NULL: none); another caller naming it finds nothing.
    owner TEXT,
    -- The request's input items then the response's output items, one JSON array.
    items TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX stored_responses_at ON stored_responses (at);
"#;

/// A response kept by the team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedResponse {
    pub id: String,
    pub owner: Option<String>,
    pub items: String,
}

/// Responses waiting for the writer; beyond this a new one is dropped (it stays on this instance).
const QUEUE: usize = 1024;
/// At most this many in one statement.
const BATCH: usize = 64;
/// A kept response written this long ago is forgotten by the team.
pub const TTL_MS: i64 = 3_600_000;

/// The writer's end of the queue.
pub(crate) struct ResponseQueue {
    tx: mpsc::Sender<SharedResponse>,
}

impl ResponseQueue {
    /// The queue, and its writer task spawned on `rt` (it ends when the queue is dropped with the store).
    pub(super) fn start(rt: &tokio::runtime::Handle, pool: Pool) -> ResponseQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        rt.spawn(write_batches(rx, pool));
        ResponseQueue { tx }
    }
}

/// Upsert the first response that arrives with whatever waits behind it (up to [`BATCH`]), one statement at a
/// time, as the affinity writer does.
async fn write_batches(mut rx: mpsc::Receiver<SharedResponse>, pool: Pool) {
    while let Some(first) = rx.recv().await {
        let mut batch: HashMap<String, SharedResponse> = HashMap::from([(first.id.clone(), first)]);
        while batch.len() < BATCH {
            let Ok(next) = rx.try_recv() else { break };
            batch.insert(next.id.clone(), next);
        }
        let n = batch.len();
        if let Err(e) = upsert(&pool, batch.into_values().collect()).await {
            tracing::debug!("could not share {n} kept responses: {e:#}");
        }
    }
}

async fn upsert(pool: &Pool, rows: Vec<SharedResponse>) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let sql = format!(
        "INSERT INTO stored_responses (id, owner, items, bytes, at)
         SELECT i, o, t, octet_length(t), {DB_NOW_MS} FROM UNNEST($1::text[], $2::text[], $3::text[]) AS r(i, o, t)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, items = excluded.items, bytes = excluded.bytes,
             at = excluded.at"
    );
    let (ids, (owners, items)): (Vec<_>, (Vec<_>, Vec<_>)) =
        rows.into_iter().map(|r| (r.id, (r.owner, r.items))).unzip();
    let stmt = client.prepare_cached(&sql).await?;
    client.execute(&stmt, &[&ids, &owners, &items]).await?;
    Ok(())
}

impl PgStore {
    /// Share a kept response with the team, in the background (never waits).
    pub fn share_response(&self, response: SharedResponse) {
        let _ = self.responses.tx.try_send(response);
    }

    /// The response `id` as the team keeps it, asked within `within` (one lookup by the primary key); `None`
    /// when no instance shared it (or it expired). An error: the database did not answer in time, or is known
    /// to be unreachable.
    pub async fn ask_response(&self, id: &str, within: Duration) -> anyhow::Result<Option<SharedResponse>> {
        let id = id.to_string();
        self.ask(within, move |client| async move {
            let sql = format!("SELECT owner, items FROM stored_responses WHERE id = $1 AND at > {DB_NOW_MS} - $2");
            let stmt = client.prepare_cached(&sql).await?;
            let row = client.query_opt(&stmt, &[&id, &TTL_MS]).await?;
            row.map(|r| Ok(SharedResponse { id, owner: r.try_get(0)?, items: r.try_get(1)? })).transpose()
        })
        .await
    }

    /// Forget what is past [`TTL_MS`], then the oldest beyond `count` responses or `bytes` for the whole team
    /// (the leader, each upkeep round), in the background.
    pub fn prune_responses(&self, count: usize, bytes: usize) {
        let (count, bytes) = (i64::try_from(count).unwrap_or(i64::MAX), i64::try_from(bytes).unwrap_or(i64::MAX));
        self.background("prune the team's kept responses", move |client| async move {
            let expired = format!("DELETE FROM stored_responses WHERE at < {DB_NOW_MS} - $1");
            let beyond = "DELETE FROM stored_responses WHERE id IN (
                SELECT id FROM (
                    SELECT id, row_number() OVER w AS n, sum(bytes) OVER w AS running FROM stored_responses
                    WINDOW w AS (ORDER BY at DESC, id)
                ) newest WHERE n > $1::bigint OR running > $2::bigint)";
            client.execute(&expired, &[&TTL_MS]).await?;
            client.execute(beyond, &[&count, &bytes]).await?;
            Ok(())
        });
    }
}
