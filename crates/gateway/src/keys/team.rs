//! Token budgets with a team store (docs/team.md): each instance charges its own requests, and once a second
//! raises the counters of the keys and users with a budget to what the whole team spent according to the shared
//! ledger, so a budget spent on other instances is refused here too. No request waits for it.

use std::sync::Arc;
use std::time::Duration;

use super::Keys;
use super::limits::Limits;
use crate::auth::now_unix;
use crate::store::usage::Spender;

/// How often the team's spend is read: with the ledger writers' flush (at most 250 ms) the bound within which
/// another instance's spend counts here.
pub const BUDGET_POLL: Duration = Duration::from_secs(1);

impl Keys {
    /// The keys (revoked ones are refused anyway) or the users with a daily or monthly token budget.
    pub fn budget_ids(&self, by: Spender) -> Vec<Arc<str>> {
        let snapshot = self.snapshot.load();
        let budgeted = |l: &Limits| l.daily_tokens.is_some() || l.monthly_tokens.is_some();
        match by {
            Spender::Key => {
                snapshot.by_id.values().filter(|k| !k.revoked && budgeted(&k.limits)).map(|k| k.id.clone()).collect()
            }
            Spender::User => snapshot.users.values().filter(|u| budgeted(&u.limits)).map(|u| u.id.clone()).collect(),
        }
    }

    /// With a team store: read the team's spend of the keys and users with a budget every [`BUDGET_POLL`], forever.
    pub async fn follow_team_budgets(self: Arc<Self>) {
        let mut tick = tokio::time::interval(BUDGET_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (today, month) = super::limits::period_starts(now_unix());
            for by in [Spender::Key, Spender::User] {
                let ids: Vec<String> = self.budget_ids(by).iter().map(|id| id.to_string()).collect();
                if ids.is_empty() {
                    continue;
                }
                match self.store.team_spend(by, ids, today * 1000, month * 1000).await {
                    // Never lowered: this instance's last requests may not be in the ledger yet.
                    Ok(spent) => {
                        for (id, day, month) in spent {
                            if let Some(state) = self.state_of(by, &id) {
                                state.counters.lock().spent.raise(day, month, now_unix());
                            }
                        }
                    }
                    // The change watcher reports the outage; meanwhile each instance counts its own requests.
                    Err(e) => tracing::debug!("could not read the team's spend ({by:?}): {e:#}"),
                }
            }
        }
    }
}
