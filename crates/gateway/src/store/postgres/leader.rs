//! The leader lease: background jobs that must run on one instance at a time (quota polling, catalog refresh,
//! the ledger's retention pruning) run where this lease is held. The pool's upkeep takes and renews it each
//! round (`accounts/shared.rs`); when the holder stops (a crash, a shutdown) the lease expires and the next
//! instance to ask takes it over. Jobs that do not run in the upkeep loop (the ledger's writer thread) ask
//! [`PgStore::leads`], which the renewals keep current.

use std::time::{Duration, Instant};

use super::{DB_NOW_MS, PgStore};

/// The leader lease's name.
const LEADER: &str = "upkeep";

impl PgStore {
    /// Take or renew the leader lease for `ttl`; whether this instance holds it now.
    pub async fn hold_lease(&self, ttl: Duration) -> anyhow::Result<bool> {
        // Counted from before the statement: the database's lease ends later than this, never earlier.
        let asked = Instant::now();
        let me = self.instance.clone();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let held = self
            .run(move |client| async move {
                let held = client
                    .query_opt(
                        &format!(
                            "INSERT INTO leases (name, owner, until) VALUES ($1, $2, {DB_NOW_MS} + $3)
                             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                             WHERE leases.owner = excluded.owner OR leases.until < {DB_NOW_MS}
                             RETURNING owner"
                        ),
                        &[&LEADER, &me, &ttl_ms],
                    )
                    .await?;
                Ok(held.is_some())
            })
            .await;
        *self.leader_until.lock() = match held {
            Ok(true) => Some(asked + ttl),
            Ok(false) | Err(_) => None,
        };
        held
    }

    /// Whether this instance holds the leader lease: it took or renewed it within the lease's time to live
    /// (false once it lapsed here, even if no renewal has been tried since, so two instances never both lead).
    pub fn leads(&self) -> bool {
        self.leader_until.lock().is_some_and(|until| Instant::now() < until)
    }
}
