//! Propagation between instances: every write to `accounts` or `client_keys` bumps one counter (a trigger,
//! `store/migrations.rs`); each instance polls it every [`POLL`] and re-reads the tables when it moved. A change made
//! on one instance (an account added, a status learned, a key created or revoked, rotated tokens) reaches the
//! others within one poll plus one re-read, with no database round trip on the request path. While the database
//! is unreachable the instance keeps serving from what it read last and logs the outage once.
//!
//! The same poll is the instance's heartbeat (the `instances` table) and counts the live instances: a client
//! key's rpm and concurrency are shared out by that count (`keys::admit`, docs/team.md). One statement per poll,
//! as before.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use super::{DB_NOW_MS, PgStore};

/// How often the change counter is read: two polls fit in the 2 s propagation bound, with time to re-read.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a heartbeat keeps an instance live: six polls, so a slow poll or two do not drop it, while a dead
/// instance stops counting within 3 s.
const LIVE_MS: i64 = 3_000;
/// Heartbeats older than this are deleted (an instance that stopped long ago).
const FORGET_MS: i64 = 3_600_000;

impl PgStore {
    /// The change counter now; renews this instance's heartbeat and counts the live instances.
    pub async fn change_counter(&self) -> anyhow::Result<i64> {
        let me = self.instance.clone();
        let (counter, live) = self
            .run(move |client| async move {
                // The outer SELECT does not see the CTEs' writes (one snapshot): this instance is counted apart.
                let row = client
                    .query_one(
                        &format!(
                            "WITH beat AS (
                                INSERT INTO instances (id, until) VALUES ($1, {DB_NOW_MS} + $2)
                                ON CONFLICT (id) DO UPDATE SET until = excluded.until
                             ), gone AS (
                                DELETE FROM instances WHERE until < {DB_NOW_MS} - $3
                             )
                             SELECT (SELECT counter FROM store_changes WHERE id = 1),
                                    (SELECT count(*) FROM instances WHERE until >= {DB_NOW_MS} AND id <> $1) + 1"
                        ),
                        &[&me, &LIVE_MS, &FORGET_MS],
                    )
                    .await?;
                Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?))
            })
            .await?;
        self.live_instances.store(u32::try_from(live).unwrap_or(u32::MAX).max(1), Ordering::Relaxed);
        Ok(counter)
    }

    /// Instances with a live heartbeat at the last poll, this one included (1 until the first poll; the last
    /// count while the database is unreachable).
    pub fn live_instances(&self) -> u32 {
        self.live_instances.load(Ordering::Relaxed)
    }

    /// Whether the last poll reached the database (`/ready` and the metrics may report it).
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Poll the change counter forever and run `on_change` (blocking work: it runs off the async workers) each
    /// time it moves, and once at the first poll: the caller read the tables before this task was spawned, and a
    /// change another instance made in between moved the counter before the first poll saw it (three instances
    /// started together missed a key created on one of them until the next change, it::team).
    pub fn follow<F>(self: &Arc<Self>, on_change: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> anyhow::Result<()> + Send + Sync + 'static,
    {
        let (store, on_change) = (self.clone(), Arc::new(on_change));
        tokio::spawn(async move {
            let mut seen: Option<i64> = None;
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = match store.change_counter().await {
                    Ok(now) => {
                        if !store.reachable.swap(true, Ordering::Relaxed) {
                            info!("the PostgreSQL store is reachable again");
                        }
                        now
                    }
                    Err(e) => {
                        if store.reachable.swap(false, Ordering::Relaxed) {
                            warn!("the PostgreSQL store is unreachable; serving from memory: {e:#}");
                        }
                        continue;
                    }
                };
                if seen != Some(now) {
                    let on_change = on_change.clone();
                    // A re-read that failed is tried again at the next poll (`seen` stays behind).
                    match tokio::task::spawn_blocking(move || on_change()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!("could not re-read the shared store after a change: {e:#}");
                            continue;
                        }
                        Err(e) => {
                            warn!("the shared store re-read stopped: {e}");
                            continue;
                        }
                    }
                }
                seen = Some(now);
            }
        })
    }
}
