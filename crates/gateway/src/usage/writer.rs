//! The ledger's one writer: a thread that takes records from the channel and commits them in batches (every
//! [`FLUSH`] after a batch's first record, or at [`BATCH`] records), prunes old rows every [`PRUNE_EVERY`] (on a
//! team store, only on the instance holding the leader lease), and on shutdown drains the channel before it ends.
//!
//! A thread rather than a tokio task: SQLite calls block, and a batch commit must not take a runtime worker.
//!
//! The batches go to the store's ledger ([`LedgerWriter`]): the instance's SQLite file, or the team's PostgreSQL
//! database (`store/usage.rs`). While PostgreSQL is unreachable the writer keeps retrying its batch instead of
//! giving it up after [`ATTEMPTS`] (`LedgerWriter::gives_up`): the records queue in the batch (at most [`BATCH`]) and the
//! channel (`[usage] channel_capacity`), and arrive when the database is back; records beyond that bound are
//! dropped and counted (docs/team.md).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use super::{Msg, Shared};
use crate::record::RequestRecord;
use crate::store::usage::{LedgerEntry, LedgerWriter, unix_ms};

/// A batch is committed this long after its first record arrived...
pub const FLUSH: Duration = Duration::from_millis(250);
/// ...or when it has this many records.
pub const BATCH: usize = 500;
/// How often old rows are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long the writer sleeps when idle before it looks at the stop flag and the prune clock again.
const IDLE: Duration = Duration::from_secs(1);
/// Commit attempts for one batch before it is given up (and counted as dropped): 20 x FLUSH = 5 s, on top of
/// SQLite's own 5 s busy wait per attempt.
const ATTEMPTS: u32 = 20;
/// Records dropped are logged at most this often (the first at once), with the count since the last warning.
const DROP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// When the writer last warned of dropped records, and the count it had then.
#[derive(Default)]
pub(super) struct DropWarnings {
    reported: u64,
    last: Option<Instant>,
}

impl DropWarnings {
    /// Records dropped since the last warning, when a warning is due: some were dropped and the last warning is
    /// [`DROP_WARNING_EVERY`] old (or there was none). `now` is passed in so a test need not wait a minute.
    pub(super) fn due(&mut self, dropped: u64, now: Instant) -> Option<u64> {
        let new = dropped.saturating_sub(self.reported);
        if new == 0 || self.last.is_some_and(|t| now.duration_since(t) < DROP_WARNING_EVERY) {
            return None;
        }
        self.reported = dropped;
        self.last = Some(now);
        Some(new)
    }

    /// Warn if due (see [`DropWarnings::due`]); `force` ignores the interval (the writer's last look).
    fn warn(&mut self, shared: &Shared, force: bool) {
        if force {
            self.last = None;
        }
        if let Some(n) = self.due(shared.dropped.load(Ordering::Relaxed), Instant::now()) {
            tracing::warn!(
                "usage ledger: {n} request records were not stored (the queue to the database was full, or a \
                 batch could not be saved); `usage_records_dropped` in /admin/status counts them since start, \
                 `[usage] channel_capacity` bounds the queue"
            );
        }
    }
}

pub(super) fn run(mut ledger: LedgerWriter, rx: Receiver<Msg>, shared: Arc<Shared>, retention: (Duration, Duration)) {
    let mut batch: Vec<Box<RequestRecord>> = Vec::with_capacity(BATCH);
    // When the batch's oldest record ended (its request finished): the batch is due FLUSH after that, so records
    // that waited in the channel during a slow commit do not wait a whole window more.
    let mut first_at: Option<Instant> = None;
    let mut failures = 0u32;
    let mut next_prune = Instant::now();
    // Dropped records are counted where they are dropped (the request path must not log per record); the writer,
    // which wakes at least every IDLE, says so in the log.
    let mut drops = DropWarnings::default();
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        // Fill the batch until it is full or due. Once due (or stopping), only what already waits in the channel
        // is taken, never waited for. `finished`: the channel is closed, or empty while stopping: the writer ends
        // after this batch.
        let mut finished = false;
        while batch.len() < BATCH {
            let wait = match (stopping, first_at) {
                (true, _) => Duration::ZERO,
                (false, Some(t)) => FLUSH.saturating_sub(t.elapsed()),
                (false, None) => IDLE,
            };
            let msg = if wait.is_zero() {
                match rx.try_recv() {
                    Ok(m) => m,
                    // Empty while running only means the batch goes now; while stopping, the drain is complete.
                    Err(TryRecvError::Empty) => {
                        finished = stopping;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        finished = true;
                        break;
                    }
                }
            } else if first_at.is_some() {
                // A batch is open: sleep until it is due, then take what waits, rather than block for each record.
                // Blocked in `recv`, the writer was woken by every send: a futex wake and a context switch per
                // request on the gateway's core (the ledger's overhead fell from +11% to +3%; docs/performance.md,
                // "Ledger writer batches").
                std::thread::sleep(wait);
                continue;
            } else {
                // Idle: the first record of the next batch wakes the writer (one wake per batch).
                match rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        finished = true;
                        break;
                    }
                }
            };
            match msg {
                Msg::Record(r) => {
                    shared.taken();
                    first_at.get_or_insert_with(|| ended_at(&r));
                    batch.push(r);
                }
                // Wakes the loop to read the stop flag.
                Msg::Wake => break,
            }
        }
        let due = batch.len() >= BATCH || first_at.is_some_and(|t| t.elapsed() >= FLUSH) || stopping || finished;
        if !batch.is_empty() && due {
            commit(&mut ledger, &mut batch, &mut first_at, &mut failures, &shared, stopping);
        }
        // While another instance leads, the prune stays due: this one prunes as soon as it takes the lease over.
        if next_prune <= Instant::now() && !stopping && ledger.prunes() {
            next_prune = Instant::now() + PRUNE_EVERY;
            prune_old(&mut ledger, retention);
        }
        drops.warn(&shared, false);
        if finished && batch.is_empty() {
            shared.close(rx);
            drops.warn(&shared, true);
            return;
        }
    }
}

/// Commit the batch: cleared when saved, or when it is given up (the backend gives up after ATTEMPTS failures, or
/// the writer is stopping: the records are counted as dropped); else kept for the next try after FLUSH.
// The records stay boxed as the channel brings them (`Msg::Record`): moving each out of its box would copy it.
#[allow(clippy::vec_box)]
fn commit(
    ledger: &mut LedgerWriter,
    batch: &mut Vec<Box<RequestRecord>>,
    first_at: &mut Option<Instant>,
    failures: &mut u32,
    shared: &Shared,
    stopping: bool,
) {
    let began = Instant::now();
    let entries: Vec<LedgerEntry<'_>> = batch.iter().map(|r| LedgerEntry::from(&**r)).collect();
    match ledger.commit(&entries) {
        Ok(()) => tracing::debug!(
            records = batch.len(),
            ms = began.elapsed().as_secs_f64() * 1000.0,
            waiting = shared.queued.load(Ordering::Relaxed),
            "usage ledger: batch committed"
        ),
        Err(e) => {
            *failures += 1;
            // Once per outage, then every ATTEMPTS tries: a long PostgreSQL outage must not flood the log.
            if *failures % ATTEMPTS == 1 {
                tracing::warn!("usage ledger: cannot save {} request records: {e:#}", batch.len());
            }
            if !(stopping || (ledger.gives_up() && *failures >= ATTEMPTS)) {
                std::thread::sleep(FLUSH);
                return;
            }
            shared.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
    batch.clear();
    *first_at = None;
    *failures = 0;
}

/// When a record's request ended, on the monotonic clock (now, if its end looks later than now).
fn ended_at(r: &RequestRecord) -> Instant {
    let end = r.started_at + r.duration;
    let ago = SystemTime::now().duration_since(end).unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn prune_old(ledger: &mut LedgerWriter, (requests, rollups): (Duration, Duration)) {
    let now = SystemTime::now();
    let before = |age: Duration| now.checked_sub(age).map(unix_ms).unwrap_or(0);
    match ledger.prune(before(requests), before(rollups)) {
        Ok(0) => {}
        Ok(n) => tracing::info!("usage ledger: pruned {n} request rows older than the retention"),
        Err(e) => tracing::warn!("usage ledger: pruning failed: {e:#}"),
    }
}

/// What the ledger stores of a request's record.
impl<'a> From<&'a RequestRecord> for LedgerEntry<'a> {
    fn from(r: &'a RequestRecord) -> LedgerEntry<'a> {
        let u = &r.usage;
        LedgerEntry {
            id: 0,
            request_id: &r.request_id,
            started_at: unix_ms(r.started_at),
            started_time: String::new(),
            api: r.api.as_str(),
            route: &r.route,
            client_key: r.client_key.as_deref(),
            user_id: r.user.as_deref(),
            model_requested: r.model_requested.as_deref(),
            model: r.model.as_deref(),
            effort: r.effort.as_deref(),
            stream: r.stream,
            account: r.account.as_deref(),
            accounts_tried: &r.accounts_tried,
            attempts: r.attempts,
            failovers: r.failovers,
            status: r.status,
            error: r.error.as_ref().map(|e| e.name()),
            error_code: r.error.as_ref().and_then(|e| e.code.as_deref()),
            ttfb_ms: r.time_to_first_byte.map(|d| d.as_millis() as i64),
            duration_ms: r.duration.as_millis() as i64,
            input_tokens: u.input_tokens,
            cached_tokens: u.cached_tokens,
            cache_write_tokens: u.cache_write_tokens,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.reasoning_tokens,
            budget_units: u.budget_units,
            client_disconnected: r.client_disconnected,
            moved_from: r.moved_from.as_deref(),
            refusal: r.refusal.map(dialects::failure::PolicyKind::name),
            held: r.held.as_ref().map(crate::record::Hold::as_str),
            cost_usd: None,
        }
    }
}
