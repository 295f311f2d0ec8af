//! Conversation affinity: the bounded map from conversation key to the account that holds the conversation
//! (the upstream prompt cache is per account), which `lease.rs` reads first for every request with a key.
//!
//! With a team store (docs/team.md) the map is also a read-through cache of the team's table
//! (`store/postgres/affinity.rs`): what this instance decides is shared in the background when it is new (a
//! first turn, a move to another account) or was last shared an hour ago, never per turn; what the others
//! decide is pulled into the map every half second; and a conversation the map does not have is asked of the
//! table before its account is chosen (once, within [`ASK_WITHIN`]), so that a turn that follows the one before
//! on another instance at once keeps its account. No other request waits for the database.

use std::sync::Arc;
use std::time::Duration;

use super::{Account, Pool, Source};
use crate::auth::now_ms;
use crate::store::team::{AskedAffinity, PULL, PullCursor, RESHARE_SECS};

/// How long a request waits for the team store's answer about a conversation this instance has not seen: some
/// round trips to a database on the same network, and a small share of a turn; past it the instance decides
/// alone, as when the database is away.
const ASK_WITHIN: Duration = Duration::from_millis(200);

/// A conversation's account as this instance knows it.
#[derive(Debug, Clone)]
pub struct Affine {
    pub account: String,
    /// When this instance last shared it, or pulled it from the team (unix ms).
    shared_ms: i64,
    /// Decided here (a lease), not pulled.
    local: bool,
}

/// A local decision younger than this beats a different one pulled from the team, and is shared again: the two
/// were made at about the same time (two requests of one conversation on two instances at once), and the one
/// in the table may be this one's, still on its way or written after the other. Longer than the writer's
/// statements (the one running when the entry came, and its own), shorter than a pull period, so the instances
/// settle on the one the table ends with.
const SETTLE_MS: i64 = 300;

/// What a row pulled from the team does to this instance's entry for the conversation.
#[derive(Debug, PartialEq)]
enum Pulled {
    /// Nothing: the same account.
    Known,
    /// This instance decided otherwise within [`SETTLE_MS`]: share that again instead.
    Reshare(String),
    /// Take it.
    Adopt,
}

fn on_pulled(local: Option<&Affine>, account: &str, now_ms: i64) -> Pulled {
    match local {
        Some(a) if a.account == account => Pulled::Known,
        Some(a) if a.local && now_ms - a.shared_ms < SETTLE_MS => Pulled::Reshare(a.account.clone()),
        Some(_) | None => Pulled::Adopt,
    }
}

impl Pool {
    /// The account that holds conversation `key`, if this instance knows one. One lock and a clone of the id.
    pub(super) fn affine_account(&self, key: &str) -> Option<String> {
        self.affinity.lock().get(key).map(|a| a.account.clone())
    }

    /// The account that holds conversation `key`: this instance's map, else (a key it has not seen) the team
    /// store's answer, taken into the map as pulled (not as a decision of this instance's, so it is not shared
    /// again). The store is asked within [`ASK_WITHIN`]; on a local store it answers at once with no I/O; when it
    /// is slow or unreachable the conversation is decided here alone, as before there was a table.
    pub(super) async fn affine_account_or_ask(&self, key: &str) -> Option<String> {
        if let Some(account) = self.affine_account(key) {
            return Some(account);
        }
        match self.store.ask_affinity(key, ASK_WITHIN).await {
            Ok(AskedAffinity::Held(account)) => {
                let now = now_ms();
                let mut map = self.affinity.lock();
                // A turn of the conversation leased here meanwhile decided already: that decision stands.
                if let Some(decided) = map.get(key) {
                    return Some(decided.account.clone());
                }
                map.put(key.to_string(), Affine { account: account.clone(), shared_ms: now, local: false });
                Some(account)
            }
            Ok(AskedAffinity::Unknown | AskedAffinity::Alone) => None,
            Err(e) => {
                tracing::debug!("conversation affinity: the team store did not say ({e:#}); deciding alone");
                None
            }
        }
    }

    /// The account that served conversation `key`'s last turn (its home: the state it sealed is readable there
    /// only), if known.
    pub fn home_account(&self, key: &str) -> Option<String> {
        self.affine_account(key)
    }

    /// Conversation `key` stays with `home` (a turn leased another account but could not move there, so the
    /// conversation's next turn should look for its home again).
    pub fn keep_home(&self, key: &str, home: &str) {
        if let Some(account) = self.get(home) {
            self.remember_affinity(key, &account);
        }
    }

    /// Conversation `key` is served by `account` now. With a team store, shared when that is news: no database
    /// work here (a `try_send` into the writer's queue), and none at all for a turn that stays where it was.
    pub(super) fn remember_affinity(&self, key: &str, account: &Account) {
        let now = now_ms();
        let news = {
            let mut map = self.affinity.lock();
            match map.get_mut(key) {
                Some(a) if a.account == account.id => {
                    let stale = now - a.shared_ms >= RESHARE_SECS * 1000;
                    if stale {
                        *a = Affine { account: account.id.clone(), shared_ms: now, local: true };
                    }
                    stale
                }
                Some(a) => {
                    *a = Affine { account: account.id.clone(), shared_ms: now, local: true };
                    true
                }
                None => {
                    map.put(key.to_string(), Affine { account: account.id.clone(), shared_ms: now, local: true });
                    true
                }
            }
        };
        if news && account.source == Source::Store {
            self.store.publish_affinity(key, &account.id);
        }
    }

    /// Take conversations the other instances decided (pulled from the team store) into the map.
    pub fn adopt_affinity(&self, pulled: Vec<(String, String)>) {
        let now = now_ms();
        let mut reshare = Vec::new();
        {
            let mut map = self.affinity.lock();
            for (key, account) in pulled {
                match on_pulled(map.peek(&key), &account, now) {
                    Pulled::Known => {}
                    Pulled::Reshare(mine) => reshare.push((key, mine)),
                    Pulled::Adopt => {
                        map.put(key, Affine { account, shared_ms: now, local: false });
                    }
                }
            }
        }
        for (key, account) in reshare {
            self.store.publish_affinity(&key, &account);
        }
    }

    /// With a team store (`Store::follow_team`): pull the conversations the other instances decided every
    /// [`PULL`], forever. While the database is unreachable the map keeps what it has (and this instance's own
    /// decisions).
    pub async fn follow_shared_affinity(self: Arc<Self>) {
        let mut cursor = PullCursor::default();
        let mut tick = tokio::time::interval(PULL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let limit = self.config.routing.affinity_capacity;
        loop {
            tick.tick().await;
            match self.store.pull_affinity(&mut cursor, limit).await {
                Ok(pulled) if pulled.is_empty() => {}
                // Possibly thousands of entries after a start: off the async workers.
                Ok(pulled) => {
                    let pool = self.clone();
                    let _ = tokio::task::spawn_blocking(move || pool.adopt_affinity(pulled)).await;
                }
                Err(e) => {
                    tracing::debug!("could not pull shared conversation affinities: {e:#}");
                    // The change watcher reports the outage; no need to hurry back.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affine(account: &str, shared_ms: i64, local: bool) -> Affine {
        Affine { account: account.into(), shared_ms, local }
    }

    #[test]
    fn a_pulled_row_is_adopted_unless_a_different_local_decision_is_younger_than_the_settle_time() {
        let now = 1_000_000;
        assert_eq!(on_pulled(None, "b", now), Pulled::Adopt);
        assert_eq!(on_pulled(Some(&affine("b", now - 10, true)), "b", now), Pulled::Known);
        // Two instances routed the conversation at once: the young local decision is shared again.
        assert_eq!(on_pulled(Some(&affine("a", now - 100, true)), "b", now), Pulled::Reshare("a".into()));
        // Settled: the team's newer decision wins (a move on another instance, say).
        assert_eq!(on_pulled(Some(&affine("a", now - SETTLE_MS, true)), "b", now), Pulled::Adopt);
        // A pulled entry never holds out against a newer pulled one.
        assert_eq!(on_pulled(Some(&affine("a", now - 100, false)), "b", now), Pulled::Adopt);
    }
}
