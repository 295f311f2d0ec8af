//! The usage ledger: every request record, stored off the request path.
//!
//! A [`RecordSink`] hands each record to a bounded channel ([`LedgerSink`]: never waits; when the channel is
//! full the record is dropped and counted; the bound is a count, so the channel holds memory only for what
//! waits); one writer thread (`writer.rs`) commits them in batches, with their hourly rollups, to the store's
//! ledger (`store/usage.rs`: the SQLite file's, or the team's PostgreSQL database's) and prunes old rows now and
//! then. Queries for the admin API and the CLI are in `query.rs`, the price table in `pricing.rs`, the HTTP
//! handlers in `api.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;

use crate::config::UsageSettings;
use crate::record::{RecordSink, RequestRecord};
use crate::store::Store;
use crate::store::usage::{DAY_MS, HOUR_MS, LedgerReader, LedgerRows};

pub mod api;
pub mod pricing;
pub mod query;
pub mod when;
mod writer;

#[cfg(test)]
mod tests;

/// What the sink and the writer share.
#[derive(Default)]
struct Shared {
    /// Records dropped because the channel was full or the writer gone, or lost when a batch could not be saved.
    dropped: AtomicU64,
    /// Shutdown began: the writer drains the channel, commits and ends.
    stop: AtomicBool,
    /// Records sent and not yet taken by the writer: the channel's bound (`[usage] channel_capacity`) is checked
    /// against this count. A bounded `sync_channel` allocated and wrote every slot when the gateway started
    /// (16,384 slots: 256 KB of idle RSS); the unbounded channel allocates a block of slots as records wait.
    queued: AtomicUsize,
}

/// `queued` once the writer has ended: far above any bound, so no record is sent after it.
const CLOSED: usize = usize::MAX / 2;

impl Shared {
    /// The writer took a record out of the channel.
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// The writer ends: the channel is dropped with whatever was sent into it after the writer's last look, and
    /// those records are counted as dropped here. A sender whose record this count took in learns it when its
    /// send fails (`queued` is past [`CLOSED`]) and does not count it again.
    fn close(&self, rx: std::sync::mpsc::Receiver<Msg>) {
        drop(rx);
        let left = self.queued.swap(CLOSED, Ordering::SeqCst);
        self.dropped.fetch_add(left as u64, Ordering::Relaxed);
    }
}

enum Msg {
    /// Boxed: a channel slot holds a pointer, not a whole record.
    Record(Box<RequestRecord>),
    /// Look at the stop flag now.
    Wake,
}

/// The sink half: the request path's only contact with the ledger.
pub struct LedgerSink {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    /// At most this many records wait in the channel.
    capacity: usize,
}

impl RecordSink for LedgerSink {
    /// Only when the ledger is not the last sink: a copy of the record (see [`LedgerSink::take`]).
    fn record(&self, record: &RequestRecord) {
        if record.api != crate::record::Api::Other {
            self.take(Box::new(record.clone()));
        }
    }

    /// A count and a send of the record itself (the ledger is the last sink, so nothing reads it after): O(1), no
    /// lock held while waiting, never blocks the request. Only model calls are stored: health checks, model lists
    /// and admin calls (a dashboard polls them) are in the access log, not in the ledger.
    fn take(&self, record: Box<RequestRecord>) {
        if record.api == crate::record::Api::Other {
            return;
        }
        // Past the bound, or the writer has ended (`CLOSED`).
        if self.shared.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.shared.taken();
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Msg::Record(record)).is_err() {
            // The writer ended between the count and the send. If it has closed the count, this record is in
            // the count it took as dropped; otherwise it is counted here.
            if self.shared.queued.fetch_sub(1, Ordering::SeqCst) < CLOSED {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The ledger of a running gateway: its reader, prices, and the writer it drains on shutdown.
pub struct Ledger {
    reader: LedgerReader,
    /// `[usage.prices]`, replaced by a config reload (app/reload.rs); read once per ledger query.
    prices: arc_swap::ArcSwap<pricing::Prices>,
    shared: Arc<Shared>,
    /// A sender kept to wake the writer at shutdown (`None`: the ledger is off, nothing is written).
    wake: Option<Sender<Msg>>,
    /// Resolves when the writer thread has ended.
    done: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Ledger {
    /// Open the ledger on the store's backend (migrated when the store opened). With `settings.enabled`, start
    /// the writer and return the sink to add to the request path.
    pub fn open_for(store: &Store, settings: &UsageSettings) -> anyhow::Result<(Ledger, Option<Arc<dyn RecordSink>>)> {
        let shared = Arc::new(Shared::default());
        let mut ledger = Ledger {
            reader: store.ledger_reader(),
            prices: arc_swap::ArcSwap::from_pointee(settings.prices.clone()),
            shared: shared.clone(),
            wake: None,
            done: Mutex::new(None),
        };
        if !settings.enabled {
            return Ok((ledger, None));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let backend = store.ledger_writer()?;
        let retention = (settings.retention, settings.rollup_retention);
        std::thread::Builder::new()
            .name("usage-ledger".into())
            .spawn(move || {
                writer::run(backend, rx, shared, retention);
                drop(done_tx);
            })
            .context("cannot start the usage ledger's writer")?;
        ledger.wake = Some(tx.clone());
        *ledger.done.get_mut() = Some(done_rx);
        let sink: Arc<dyn RecordSink> = Arc::new(LedgerSink {
            tx,
            shared: ledger.shared.clone(),
            // Below `CLOSED`, which must stay above every bound.
            capacity: settings.channel_capacity.min(CLOSED / 2),
        });
        Ok((ledger, Some(sink)))
    }

    /// Records that never reached the store since start (channel full, writer gone, a batch that failed to
    /// commit repeatedly). `/admin/status` shows it as `usage_records_dropped`; the metrics read it here.
    pub fn records_dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Shutdown: the writer commits what the channel holds and ends; waits at most `limit`. Records that end
    /// after this are counted as dropped.
    pub async fn drain(&self, limit: Duration) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(tx) = &self.wake {
            // Outside the records' bound: the writer reads the flag when it takes this, or after the batch it is
            // committing. A writer already gone needs no wake-up.
            let _ = tx.send(Msg::Wake);
        }
        let done = self.done.lock().take();
        if let Some(done) = done
            && tokio::time::timeout(limit, done).await.is_err()
        {
            tracing::warn!("the usage ledger did not finish writing within the shutdown timeout");
        }
    }

    pub fn prices(&self) -> Arc<pricing::Prices> {
        self.prices.load_full()
    }

    /// Use `prices` from the next query on (a config reload, or the dashboard's Settings after writing the file).
    pub fn set_prices(&self, prices: pricing::Prices) {
        self.prices.store(Arc::new(prices));
    }

    /// Run a read of the ledger off the async workers (a query may take a while).
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&LedgerReader, &pricing::Prices) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.reader, &me.prices.load())).await.context("ledger query failed")?
    }

    /// Usage over time (`query::usage`).
    pub async fn usage(self: &Arc<Self>, q: query::UsageQuery) -> anyhow::Result<query::UsageReport> {
        let rows = LedgerRows::Rollups { bucket: q.bucket, from: q.from, to: q.to };
        self.read(move |r, p| r.read(&rows, |c| Ok(query::usage(c, &q, p)?))).await
    }

    /// Requests started in each minute of `[from, to)`.
    pub async fn requests_per_minute(self: &Arc<Self>, from: i64, to: i64) -> anyhow::Result<Vec<u32>> {
        self.read(move |r, _| r.requests_per_minute(from, to)).await
    }

    /// A page of request rows (`query::requests`).
    pub async fn requests(self: &Arc<Self>, q: query::RequestsQuery) -> anyhow::Result<query::RequestsPage> {
        self.read(move |r, p| r.read(&LedgerRows::Requests(q.clone()), |c| Ok(query::requests(c, &q, p)?))).await
    }
}

/// Input plus output tokens per client key (or per user, `by`) since `since_unix_ms`, from the rollups: the hours up
/// to the next UTC midnight from the hourly ones, whole days after it from the daily ones (a month costs ~30 rows
/// per key and combination, not ~720). The hour that holds `since_unix_ms` counts whole: budgets start on an hour.
/// Requests without a client key (or for nobody) are not included.
pub fn tokens_since(
    store: &Store,
    by: crate::store::usage::Spender,
    since_unix_ms: i64,
) -> anyhow::Result<HashMap<String, u64>> {
    let from = since_unix_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let midnight = (from + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
    store.tokens_by(by, from, midnight)
}
