//! Conversation affinity shared by the team (docs/team.md): which account holds each conversation, so that a
//! turn landing on another instance stays on the account whose prompt cache has the conversation.
//!
//! Written off the request path: a lease that learns something new about a conversation (a first turn, a move
//! to another account, or an hour since it was last shared) puts one entry into a bounded queue
//! ([`PgStore::publish_affinity`], a `try_send`; a full queue drops the entry and counts it), and a writer task on
//! the store's runtime upserts it at once, with whatever else waits by then, as one statement.
//! Read through the pool's local map (`accounts/affinity.rs`): a poll ([`PgStore::pull_affinity`], every
//! [`PULL`]) copies the rows the other instances wrote since the last one into it, and a key the map does not
//! have is looked up first ([`PgStore::ask_affinity`]: one primary-key lookup, within a short deadline).
//!
//! Why both: the poll keeps every instance's map current for one statement per half second whatever the
//! traffic, but a turn that lands on another instance sooner than a flush plus a poll after the one before (an
//! agent's tool loop behind a load balancer: turns back to back) would miss it and be routed afresh, to another
//! account and its cold prompt cache. The lookup closes that gap for the turns that need it: only on a local
//! miss (each instance asks once per conversation; a new conversation's first turn is one indexed lookup),
//! bounded, and skipped while the database is known to be unreachable. It finds a decision another instance
//! made a few milliseconds earlier because a brand-new key's first turn is sent only once its row has committed
//! ([`PgStore::share_new_affinity`]: the writer does not gather, so that is one statement of about a
//! millisecond, bounded by the same deadline as the lookup); before, the turn went on at once, and a fast
//! answer let the next turn reach another instance before the row did.
//!
//! The leader deletes rows not shared for [`TTL_MS`] ([`PgStore::prune_affinity`]), except held ones: a
//! conversation the upstream flagged stays with its account until an operator releases it
//! ([`PgStore::release_hold`]), whichever instance its next turn lands on (docs/accounts.md, "Risk signals").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::{DB_NOW_MS, PgStore};
use crate::store::team::AskedAffinity;

/// Migration 8: one row per conversation key, the account that holds it, who wrote it and when (database clock).
pub const SCHEMA: &str = r#"
CREATE TABLE conversation_affinity (
    key TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    instance TEXT NOT NULL,
    -- Unix ms on the database's clock when it was last written: pulls read the rows newer than their last one,
    -- the leader deletes the old ones.
    at BIGINT NOT NULL
);
CREATE INDEX conversation_affinity_at ON conversation_affinity (at);
"#;

/// Migration 12: why a conversation may not leave its account (NULL: it may), and the account that got its own
/// identifiers when that is another one (NULL: `account_id` did), as the gateway writes them.
pub const HOLD_AND_ORIGIN: &str = r#"
ALTER TABLE conversation_affinity ADD COLUMN hold TEXT;
ALTER TABLE conversation_affinity ADD COLUMN origin TEXT;
"#;

/// One conversation as the team shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityRow {
    pub key: String,
    /// The account that holds it.
    pub account: String,
    /// The account that got the conversation's own identifiers, when another than `account`.
    pub origin: Option<String>,
    /// Why it may not leave `account`, as the gateway wrote it (`None`: it may).
    pub hold: Option<String>,
}
/// At most this many entries in one statement; more wait for the next.
const BATCH: usize = 500;
/// Entries waiting for the writer; beyond this a new one is dropped and counted (the conversation then stays
/// affine on this instance only).
const QUEUE: usize = 8192;
/// How often each instance pulls the rows the others wrote.
pub const PULL: Duration = Duration::from_millis(500);
/// A pull reads again the last second before the previous pull: a row whose statement took its time stamp
/// before that pull but committed after it is still seen.
const OVERLAP_MS: i64 = 1_000;
/// A conversation not shared for this long is forgotten by the team (its prompt cache is long gone).
pub const TTL_MS: i64 = 6 * 3_600_000;
/// A conversation still in use is shared again after this long, so that its row outlives [`TTL_MS`].
pub const RESHARE_SECS: i64 = 3_600;

/// One entry for the writer, with whoever waits until it is written (a brand-new conversation's first turn).
struct Queued {
    row: AffinityRow,
    written: Option<oneshot::Sender<()>>,
}

/// The writer's end of the queue, and what it could not take.
pub(crate) struct AffinityQueue {
    tx: mpsc::Sender<Queued>,
    dropped: Arc<AtomicU64>,
}

impl AffinityQueue {
    /// The queue, and its writer task spawned on `rt` (it ends when the queue is dropped with the store).
    pub(super) fn start(rt: &tokio::runtime::Handle, pool: Pool, instance: String) -> AffinityQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        rt.spawn(write_batches(rx, pool, instance, dropped.clone()));
        AffinityQueue { tx, dropped }
    }
}

/// Upsert the first entry that arrives with everything queued behind it (up to [`BATCH`]) in one statement, and
/// again. One statement at a time: the entries that arrive while one runs wait for the next, so a batch grows
/// with the traffic, and they wake nothing (only an idle writer, waiting on the queue, is woken by an entry; a
/// wake per entry under load would cost the requests that send them a cross-thread notification each). No
/// gathering pause: a brand-new conversation's row must be there before its next turn, which may follow on
/// another instance as soon as this turn is answered.
async fn write_batches(mut rx: mpsc::Receiver<Queued>, pool: Pool, instance: String, dropped: Arc<AtomicU64>) {
    while let Some(first) = rx.recv().await {
        // Last one wins for a key that moved twice while the statement before ran.
        let mut batch: HashMap<String, AffinityRow> = HashMap::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(q) = next.take() {
            waiting.extend(q.written);
            batch.insert(q.row.key.clone(), q.row);
            next = if batch.len() < BATCH { rx.try_recv().ok() } else { None };
        }
        let n = batch.len();
        match upsert(&pool, &instance, batch.into_values().collect()).await {
            Ok(()) => waiting.into_iter().for_each(|w| {
                let _ = w.send(());
            }),
            // An outage: these conversations stay affine on this instance only (docs/team.md); whoever waits is
            // let go by the dropped senders.
            Err(e) => {
                dropped.fetch_add(n as u64, Ordering::Relaxed);
                tracing::debug!("could not share {n} conversation affinities: {e:#}");
            }
        }
    }
}

async fn upsert(pool: &Pool, instance: &str, rows: Vec<AffinityRow>) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let sql = format!(
        "INSERT INTO conversation_affinity (key, account_id, instance, at, origin, hold)
         SELECT k, a, $3, {DB_NOW_MS}, o, h FROM UNNEST($1::text[], $2::text[], $4::text[], $5::text[]) AS t(k, a, o, h)
         ON CONFLICT (key) DO UPDATE SET account_id = excluded.account_id, instance = excluded.instance,
             at = excluded.at, origin = excluded.origin, hold = excluded.hold"
    );
    let ((keys, accounts), (origins, holds)): ((Vec<_>, Vec<_>), (Vec<_>, Vec<_>)) =
        rows.into_iter().map(|r| ((r.key, r.account), (r.origin, r.hold))).unzip();
    let stmt = client.prepare_cached(&sql).await?;
    client.execute(&stmt, &[&keys, &accounts, &instance, &origins, &holds]).await?;
    Ok(())
}

/// Where the next pull starts (database clock, unix ms); `None` before the first pull.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullCursor(Option<i64>);

impl PgStore {
    /// Share where conversation `row.key` is, in the background (never waits; a full queue drops the entry and
    /// counts it).
    pub fn publish_affinity(&self, row: AffinityRow) {
        self.queue_affinity(Queued { row, written: None });
    }

    /// Share a conversation no instance knew yet (its first turn, decided here after the table had no row): the
    /// same queue, and an answer once its statement has committed, so that the turn can be sent after it and its
    /// next turn, on whichever instance, finds the row ([`PgStore::ask_affinity`]). `None`: not queued.
    pub fn share_new_affinity(&self, row: AffinityRow) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.queue_affinity(Queued { row, written: Some(tx) }).then_some(rx)
    }

    /// Whether the entry was queued; a full queue drops it and counts it.
    fn queue_affinity(&self, queued: Queued) -> bool {
        let queued = self.affinity.tx.try_send(queued).is_ok();
        if !queued {
            self.affinity.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Release conversation `key`'s hold for the whole team, now (an operator's call, not the request path: it
    /// waits for the database, so the release cannot be lost in a full queue). The row is stamped as this
    /// instance's newest, so the others pull it. Whether a row was held.
    pub async fn release_hold(&self, key: &str) -> anyhow::Result<bool> {
        let (me, key) = (self.instance.clone(), key.to_string());
        self.run(move |client| async move {
            let sql = format!(
                "UPDATE conversation_affinity SET hold = NULL, instance = $2, at = {DB_NOW_MS}
                 WHERE key = $1 AND hold IS NOT NULL"
            );
            Ok(client.execute(&sql, &[&key, &me]).await? > 0)
        })
        .await
    }

    /// Affinity entries not shared: the queue was full or the database unreachable when they were written.
    pub fn affinity_dropped(&self) -> u64 {
        self.affinity.dropped.load(Ordering::Relaxed)
    }

    /// The conversations other instances shared since the last pull, oldest first, at most `limit` (the newest
    /// ones: the local map holds no more). The first pull reads the last [`TTL_MS`], and every held conversation
    /// whatever its age (a hold outlives the prompt cache: it lasts until an operator releases it).
    pub async fn pull_affinity(&self, cursor: &mut PullCursor, limit: usize) -> anyhow::Result<Vec<AffinityRow>> {
        let me = self.instance.clone();
        let first = cursor.0.is_none();
        let since = cursor.0.unwrap_or(i64::MIN);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (now, keys, accounts, origins, holds) = self
            .run(move |client| async move {
                // One row whatever matched (an aggregate), so the database's clock comes back with no rows too.
                let sql = format!(
                    "SELECT {DB_NOW_MS}, array_agg(key ORDER BY at), array_agg(account_id ORDER BY at),
                         array_agg(origin ORDER BY at), array_agg(hold ORDER BY at)
                     FROM (SELECT key, account_id, at, origin, hold FROM conversation_affinity
                           WHERE (at > GREATEST($1, {DB_NOW_MS} - $2) OR ($5 AND hold IS NOT NULL))
                               AND instance <> $3
                           ORDER BY at DESC LIMIT $4) newest"
                );
                let stmt = client.prepare_cached(&sql).await?;
                let row = client.query_one(&stmt, &[&since, &TTL_MS, &me, &limit, &first]).await?;
                Ok((
                    row.try_get::<_, i64>(0)?,
                    row.try_get::<_, Option<Vec<String>>>(1)?.unwrap_or_default(),
                    row.try_get::<_, Option<Vec<String>>>(2)?.unwrap_or_default(),
                    row.try_get::<_, Option<Vec<Option<String>>>>(3)?.unwrap_or_default(),
                    row.try_get::<_, Option<Vec<Option<String>>>>(4)?.unwrap_or_default(),
                ))
            })
            .await?;
        cursor.0 = Some(now - OVERLAP_MS);
        let rows = keys.into_iter().zip(accounts).zip(origins.into_iter().zip(holds));
        Ok(rows.map(|((key, account), (origin, hold))| AffinityRow { key, account, origin, hold }).collect())
    }

    /// Conversation `key`'s row, if an instance shared it within [`TTL_MS`] or holds it (a hold lasts until an
    /// operator releases it): one lookup by the table's primary key, on the store's runtime, abandoned after
    /// `within`. While the change watcher finds the database unreachable it is not asked (an error at once).
    pub async fn ask_affinity(&self, key: &str, within: Duration) -> anyhow::Result<AskedAffinity> {
        let key = key.to_string();
        self.ask(within, move |client| async move {
            let sql = format!(
                "SELECT account_id, origin, hold FROM conversation_affinity \
                 WHERE key = $1 AND (at > {DB_NOW_MS} - $2 OR hold IS NOT NULL)"
            );
            let stmt = client.prepare_cached(&sql).await?;
            let row = client.query_opt(&stmt, &[&key, &TTL_MS]).await?;
            Ok(match row {
                Some(row) => AskedAffinity::Known(AffinityRow {
                    key,
                    account: row.try_get(0)?,
                    origin: row.try_get(1)?,
                    hold: row.try_get(2)?,
                }),
                None => AskedAffinity::Unknown,
            })
        })
        .await
    }

    /// Delete the conversations nobody shared for [`TTL_MS`] (the leader, each upkeep round), in the background.
    pub fn prune_affinity(&self) {
        self.background("prune shared conversation affinities", |client| async move {
            let sql = format!("DELETE FROM conversation_affinity WHERE at < {DB_NOW_MS} - $1 AND hold IS NULL");
            client.execute(&sql, &[&TTL_MS]).await?;
            Ok(())
        });
    }
}
