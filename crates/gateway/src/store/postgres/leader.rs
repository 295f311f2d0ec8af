//! The leader lease: background jobs that must run on one instance at a time (quota polling, catalog refresh)
//! run where this lease is held. The holder renews it each upkeep round; when it stops (a crash, a shutdown)
//! the lease expires and the next instance to ask takes it over.

use std::time::Duration;

use super::{DB_NOW_MS, PgStore};

impl PgStore {
    /// Take or renew the lease `name` for `ttl`; whether this instance holds it now.
    pub async fn hold_lease(&self, name: &'static str, ttl: Duration) -> anyhow::Result<bool> {
        let (pool, me) = (self.pool(), self.instance.clone());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        self.run(async move {
            let client = pool.get().await?;
            let held = client
                .query_opt(
                    &format!(
                        "INSERT INTO leases (name, owner, until) VALUES ($1, $2, {DB_NOW_MS} + $3)
                         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
                         WHERE leases.owner = excluded.owner OR leases.until < {DB_NOW_MS}
                         RETURNING owner"
                    ),
                    &[&name, &me, &ttl_ms],
                )
                .await?;
            Ok(held.is_some())
        })
        .await
    }
}
