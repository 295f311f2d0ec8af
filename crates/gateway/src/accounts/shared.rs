//! Team store (docs/team.md), the pool's shared state besides tokens (`shared_refresh.rs`): cooldowns one
//! instance learns reach the others (`store/postgres/shared.rs`): published when one starts (a failure path, in
//! the background: the request does not wait), adopted by the other instances at their next re-read after the
//! change counter moved. And the leader lease that keeps quota polling and catalog refreshes on one instance.

use std::time::Duration;

use dialects::failure::CooldownReason;
use tracing::{info, warn};

use super::{Account, Pool, Source};
use crate::auth::now_unix;
use crate::store::team::{Leadership, SharedCooldown};

impl Pool {
    /// Skip `account` (or one model on it) until `until`, here and (with a team store) on the other instances;
    /// its waiters choose again rather than wait out the cooldown.
    pub(super) fn cool_down(
        &self,
        account: &Account,
        model: Option<&str>,
        until: i64,
        kind: CooldownReason,
        note: &str,
    ) {
        account.cool_down(model, until, kind, note);
        if account.source == Source::Store {
            self.store.publish_cooldown(SharedCooldown {
                account_id: account.id.clone(),
                model: model.map(str::to_string),
                until,
                kind,
                note: note.to_string(),
            });
        }
        account.gate.wake_all();
    }

    /// Apply the cooldowns other instances published (the change follower calls this after a re-read).
    pub fn adopt_shared_cooldowns(&self) -> anyhow::Result<()> {
        let now = now_unix();
        for c in self.store.shared_cooldowns()? {
            let Some(account) = self.get(&c.account_id) else { continue };
            let covered = account.cooldowns(now).iter().any(|x| x.model == c.model && x.until >= c.until);
            if !covered {
                account.cool_down(c.model.as_deref(), c.until, c.kind, &c.note);
            }
        }
        Ok(())
    }

    /// Clear an account's cooldowns here and, with a team store, everywhere (admin API, dashboard).
    pub fn clear_cooldowns(&self, account: &Account) {
        account.clear_cooldowns();
        self.store.clear_shared_cooldowns(&account.id);
    }
}

/// Upkeep rounds a leader may miss before another instance takes its lease over.
const LEADER_ROUNDS: u32 = 3;

impl Pool {
    /// Whether this instance runs the cluster's single-instance jobs this round (quota polling, catalog
    /// refresh): always without a team store; with one, while it holds the leader lease. An unreachable store
    /// makes nobody leader (each instance still refreshes on demand and reads quota headers from its answers).
    pub(super) async fn upkeep_leader(&self, was: bool) -> bool {
        let ttl = self.config.upkeep_interval.saturating_mul(LEADER_ROUNDS).max(Duration::from_secs(1));
        let now = match self.store.lead(ttl).await {
            Ok(Leadership::Alone) => return true,
            Ok(Leadership::Leads) => true,
            Ok(Leadership::Follows) => false,
            Err(e) => {
                warn!("cannot reach the shared store for the leader lease: {e:#}");
                false
            }
        };
        if now && !was {
            info!("this instance leads the background jobs (quota polling, catalog refresh)");
        }
        if now {
            // Conversations nobody shared for hours (store/postgres/affinity.rs), in the background.
            self.store.prune_shared_affinity();
            // Kept responses past their hour or beyond the team's bounds (store/postgres/responses.rs).
            let kept = self.config.stored_responses;
            self.store.prune_shared_responses(kept.responses, kept.bytes);
        }
        now
    }
}
