//! Propagation between instances: every write to `accounts` or `client_keys` bumps one counter (a trigger,
//! `migrations.rs`); each instance polls it every [`POLL`] and re-reads the tables when it moved. A change made
//! on one instance (an account added, a status learned, a key created or revoked, rotated tokens) reaches the
//! others within one poll plus one re-read, with no database round trip on the request path. While the database
//! is unreachable the instance keeps serving from what it read last and logs the outage once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use super::PgStore;

/// How often the change counter is read: two polls fit in the 2 s propagation bound, with time to re-read.
pub const POLL: Duration = Duration::from_millis(500);

impl PgStore {
    /// The change counter now.
    pub async fn change_counter(&self) -> anyhow::Result<i64> {
        let pool = self.pool();
        self.run(async move {
            let client = pool.get().await?;
            Ok(client.query_one("SELECT counter FROM store_changes WHERE id = 1", &[]).await?.try_get(0)?)
        })
        .await
    }

    /// Whether the last poll reached the database (`/ready` and the metrics may report it).
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Poll the change counter forever and run `on_change` (blocking work: it runs off the async workers) each
    /// time it moves. The first poll only records where the counter stands: the caller has just read the tables.
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
                if seen.is_some_and(|s| s != now) {
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

/// Starts true: the store was reachable when it opened.
pub(super) fn reachable_flag() -> AtomicBool {
    AtomicBool::new(true)
}
