//! What the instances of a team share through the store (docs/team.md), asked of every store: cooldowns, the
//! refresh lease, the leader lease, conversation affinity, the keys' spend, the live instances, and the watch
//! for the others' changes. On the SQLite file each call is what one instance alone does (nothing to share, no
//! lease to take, one instance, every job its own); on PostgreSQL it goes to `postgres/`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dialects::failure::CooldownReason;
use tokio::task::JoinHandle;

use super::postgres::PgStore;
use super::{Backend, Store, Tokens};

pub use super::postgres::affinity::{AffinityRow, PULL, PullCursor, RESHARE_SECS};
pub use super::postgres::responses::SharedResponse;

/// What the team store knows of a Responses answer this instance does not keep ([`Store::ask_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskedResponse {
    /// Nobody else to ask: the store is this instance's own file.
    Alone,
    /// An instance shared it.
    Known(SharedResponse),
    /// No instance shared it (or it expired).
    Unknown,
}

/// What the team store knows of a conversation this instance has not seen ([`Store::ask_affinity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskedAffinity {
    /// Nobody else to ask: the store is this instance's own file.
    Alone,
    /// An instance shared the conversation: its row.
    Known(AffinityRow),
    /// No instance shared it: a new conversation.
    Unknown,
}

/// One cooldown as the team shares it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedCooldown {
    pub account_id: String,
    /// `None`: the whole account.
    pub model: Option<String>,
    /// Unix seconds.
    pub until: i64,
    pub kind: CooldownReason,
    pub note: String,
}

/// What asking for an account's refresh lease gave.
#[derive(Debug)]
pub enum RefreshLease {
    /// No other instance refreshes this account (the store is one instance's): refresh without a lease.
    Alone,
    /// This instance holds the lease until it commits or `end_refresh_lease`s; refresh from these tokens (the
    /// store's newest, possibly newer than the caller's).
    Held(Option<Tokens>),
    /// Another instance holds it: the store's tokens now (adopt them once they are fresh, else wait).
    Busy(Option<Tokens>),
    /// The account is not in the store (removed meanwhile).
    Gone,
}

/// Who runs the jobs one instance of a team runs for all (quota polling, catalog refresh, pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// The only instance: it runs them all.
    Alone,
    /// This instance holds the leader lease.
    Leads,
    /// Another instance holds it.
    Follows,
}

/// A key's tokens (input + output) in the team's ledger: (key id, today, this month).
pub type KeySpend = (String, u64, u64);

/// The store as `/ready`, the metrics and the dashboard report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    /// The instance's own SQLite file: always there.
    Local,
    /// The team's database as the change watcher last found it.
    Team {
        reachable: bool,
        /// Live instances, this one included: what a key's rpm and concurrency are divided by.
        instances: u32,
        /// Conversation affinities not shared (queue full or database unreachable).
        affinity_dropped: u64,
    },
}

/// The tasks that follow the other instances of a team ([`Store::follow_team`]; `None`: a local store, nobody to
/// follow).
pub struct Following(Option<Vec<JoinHandle<()>>>);

impl Following {
    /// Run `task` (a loop that reads what the other instances share) beside the change watcher. On a local store
    /// there is nobody to follow: `task` is dropped unrun.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(tasks) = &mut self.0 {
            tasks.push(tokio::spawn(task));
        }
    }

    /// Stop every task (shutdown).
    pub fn stop(self) {
        self.0.iter().flatten().for_each(JoinHandle::abort);
    }
}

impl Store {
    /// The team's database; `None` on the SQLite file, where each call below is what one instance alone does.
    fn team(&self) -> Option<&Arc<PgStore>> {
        match &self.backend {
            Backend::Sqlite => None,
            Backend::Postgres(pg) => Some(pg),
        }
    }

    /// Share a cooldown that just started with the other instances, in the background.
    pub fn publish_cooldown(&self, c: SharedCooldown) {
        if let Some(pg) = self.team() {
            pg.publish_cooldown(c);
        }
    }

    /// The cooldowns the instances shared that still run.
    pub fn shared_cooldowns(&self) -> anyhow::Result<Vec<SharedCooldown>> {
        self.team().map_or(Ok(Vec::new()), |pg| pg.cooldowns())
    }

    /// Forget an account's shared cooldowns (an operator cleared them), in the background.
    pub fn clear_shared_cooldowns(&self, account_id: &str) {
        if let Some(pg) = self.team() {
            pg.clear_cooldowns(account_id);
        }
    }

    /// Take or renew the leader lease for `ttl` (`postgres/leader.rs`).
    pub async fn lead(&self, ttl: Duration) -> anyhow::Result<Leadership> {
        let Some(pg) = self.team() else { return Ok(Leadership::Alone) };
        Ok(match pg.hold_lease(ttl).await? {
            true => Leadership::Leads,
            false => Leadership::Follows,
        })
    }

    /// Whether this instance runs the team's single-instance jobs now: always on the SQLite file; on a team store
    /// while it holds the leader lease (which the pool's upkeep takes and renews). Jobs outside the upkeep loop ask
    /// this (users/prune.rs), as the ledger's writer asks its own.
    pub fn leads(&self) -> bool {
        self.team().is_none_or(|pg| pg.leads())
    }

    /// Take account `id`'s refresh lease for `ttl` unless another instance holds an unexpired one
    /// (`postgres/lease.rs`).
    pub async fn take_refresh_lease(&self, id: &str, ttl: Duration) -> anyhow::Result<RefreshLease> {
        let Some(pg) = self.team() else { return Ok(RefreshLease::Alone) };
        pg.take_refresh_lease(id, ttl).await
    }

    /// Give a refresh lease back without a commit (the refresh failed or was not needed).
    pub async fn end_refresh_lease(&self, id: &str) -> anyhow::Result<()> {
        let Some(pg) = self.team() else { return Ok(()) };
        pg.end_refresh_lease(id).await
    }

    /// Share where a conversation is (its account, origin and hold), in the background (never waits).
    pub fn publish_affinity(&self, row: AffinityRow) {
        if let Some(pg) = self.team() {
            pg.publish_affinity(row);
        }
    }

    /// Share a conversation no instance knew yet, with an answer once it is written (on a team store; the SQLite
    /// file shares nothing and answers `None`, as does a full queue).
    pub fn share_new_affinity(&self, row: AffinityRow) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.team()?.share_new_affinity(row)
    }

    /// Which account the team holds conversation `key` on, asked within `within` (a lookup on a team store; on
    /// the SQLite file `Alone` at once, with no I/O). An error: the database did not answer in time, or is known
    /// to be unreachable.
    pub async fn ask_affinity(&self, key: &str, within: Duration) -> anyhow::Result<AskedAffinity> {
        let Some(pg) = self.team() else { return Ok(AskedAffinity::Alone) };
        pg.ask_affinity(key, within).await
    }

    /// The conversations the other instances shared since the last pull.
    pub async fn pull_affinity(&self, cursor: &mut PullCursor, limit: usize) -> anyhow::Result<Vec<AffinityRow>> {
        let Some(pg) = self.team() else { return Ok(Vec::new()) };
        pg.pull_affinity(cursor, limit).await
    }

    /// Release a conversation's hold for the whole team (a local store keeps none: the pool's map is all there
    /// is). Whether the team's table held it.
    pub async fn release_shared_hold(&self, key: &str) -> anyhow::Result<bool> {
        let Some(pg) = self.team() else { return Ok(false) };
        pg.release_hold(key).await
    }

    /// Share a kept Responses answer with the team (`previous_response_id` on another instance), in the
    /// background; the SQLite file keeps nothing beyond the instance's memory.
    pub fn share_response(&self, response: SharedResponse) {
        if let Some(pg) = self.team() {
            pg.share_response(response);
        }
    }

    /// The Responses answer `id` as the team keeps it, asked within `within` (`Alone` on the SQLite file, at
    /// once). An error: the database did not answer in time, or is known to be unreachable.
    pub async fn ask_response(&self, id: &str, within: Duration) -> anyhow::Result<AskedResponse> {
        let Some(pg) = self.team() else { return Ok(AskedResponse::Alone) };
        Ok(pg.ask_response(id, within).await?.map_or(AskedResponse::Unknown, AskedResponse::Known))
    }

    /// Forget the team's kept responses past their time, and the oldest beyond these bounds (the leader).
    pub fn prune_shared_responses(&self, count: usize, bytes: usize) {
        if let Some(pg) = self.team() {
            pg.prune_responses(count, bytes);
        }
    }

    /// Delete the conversations nobody shared for hours (the leader, each upkeep round), in the background.
    pub fn prune_shared_affinity(&self) {
        if let Some(pg) = self.team() {
            pg.prune_affinity();
        }
    }

    /// What the team spent of each key (or user) in `ids` since `today_ms` and since `month_ms`
    /// (`postgres/budgets.rs`).
    pub async fn team_spend(
        &self,
        by: super::usage::Spender,
        ids: Vec<String>,
        today_ms: i64,
        month_ms: i64,
    ) -> anyhow::Result<Vec<KeySpend>> {
        let Some(pg) = self.team() else { return Ok(Vec::new()) };
        pg.team_spend(by, ids, today_ms, month_ms).await
    }

    /// Instances sharing the store, this one included: a key's rpm and concurrency are shared out by it. One
    /// relaxed load (it is read per admitted request).
    pub fn live_instances(&self) -> u32 {
        self.team().map_or(1, |pg| pg.live_instances())
    }

    pub fn health(&self) -> StoreHealth {
        self.team().map_or(StoreHealth::Local, |pg| StoreHealth::Team {
            reachable: pg.reachable(),
            instances: pg.live_instances(),
            affinity_dropped: pg.affinity_dropped(),
        })
    }

    /// Follow the other instances: run `on_change` (blocking work) whenever one of them changed the accounts,
    /// keys or cooldowns (`postgres/watch.rs`), and whatever else the returned [`Following`] spawns. A local store
    /// has nobody to follow.
    pub fn follow_team<F>(&self, on_change: F) -> Following
    where
        F: Fn() -> anyhow::Result<()> + Send + Sync + 'static,
    {
        Following(self.team().map(|pg| vec![pg.follow(on_change)]))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::AskedAffinity;
    use crate::store::Store;

    /// A local store has nobody to ask about a conversation: it says so at once, within no time at all (no I/O,
    /// no wait), and the lease decides alone.
    #[tokio::test]
    async fn a_local_store_answers_alone_about_a_conversation_without_waiting() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-ask-{}", uuid::Uuid::new_v4().simple()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let asked = tokio::time::timeout(Duration::ZERO, store.ask_affinity("conversation", Duration::ZERO)).await;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(asked.ok().transpose()?, Some(AskedAffinity::Alone));
        Ok(())
    }
}
