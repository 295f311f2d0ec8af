//! Conversation affinity: the bounded map from conversation key to the account that holds the conversation
//! (the upstream prompt cache is per account), which `lease.rs` reads first for every request with a key.
//!
//! With a team store (docs/team.md) the map is also a read-through cache of the team's table
//! (`store/postgres/affinity.rs`): what this instance decides is shared in the background when it is new (a
//! first turn, a move to another account) or was last shared an hour ago, never per turn; what the others
//! decide is pulled into the map every half second; and a conversation the map does not have is asked of the
//! table before its account is chosen (once, within [`ASK_WITHIN`]), so that a turn that follows the one before
//! on another instance at once keeps its account. No other request waits for the database.
//!
//! An entry also says whether the conversation is held on its account (`hold.rs`: the upstream flagged it), and
//! which account got the conversation's own identifiers when it moved since (`relay/exchange/open.rs` gives every
//! other account identifiers of its own).

use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;

use super::hold::{Held, Hold};
use super::{Account, Pool, Source};
use crate::auth::now_ms;
use crate::store::team::{AffinityRow, AskedAffinity, PULL, PullCursor, RESHARE_SECS};

/// How long a request waits for the team store's answer about a conversation this instance has not seen: some
/// round trips to a database on the same network, and a small share of a turn; past it the instance decides
/// alone, as when the database is away.
const ASK_WITHIN: Duration = Duration::from_millis(200);

/// A brand-new conversation's row on its way to the team's table: answered once it is written.
pub(super) struct Written(tokio::sync::oneshot::Receiver<()>);

impl Written {
    /// Until the row is written, the write failed, or [`ASK_WITHIN`] passed (then the turn goes on: the next
    /// one may land elsewhere, as when the database is away).
    pub(super) async fn wait(self) {
        let _ = tokio::time::timeout(ASK_WITHIN, self.0).await;
    }
}

/// A conversation's account as this instance knows it.
#[derive(Debug, Clone)]
pub struct Affine {
    pub account: String,
    /// The account that got the conversation's own identifiers (its thread id and what derives from it), when
    /// another than `account`: the conversation moved since. `None`: `account` did.
    pub(super) origin: Option<String>,
    /// Why the conversation may not leave `account` (`hold.rs`); `None`: it may, when `account` cannot serve.
    pub(super) hold: Option<Held>,
    /// When this instance last shared it, or pulled it from the team (unix ms).
    shared_ms: i64,
    /// Decided here (a lease), not pulled.
    local: bool,
}

impl Affine {
    pub(super) fn new(account: &str, now: i64) -> Affine {
        Affine { account: account.to_string(), origin: None, hold: None, shared_ms: now, local: true }
    }

    pub(super) fn row(&self, key: &str) -> AffinityRow {
        AffinityRow {
            key: key.to_string(),
            account: self.account.clone(),
            origin: self.origin.clone(),
            hold: self.hold.as_ref().map(|h| h.hold.as_str().to_string()),
        }
    }

    pub fn origin(&self) -> &str {
        self.origin.as_deref().unwrap_or(&self.account)
    }

    pub fn hold(&self) -> Option<&Hold> {
        self.hold.as_ref().map(|h| &h.hold)
    }
}

/// Put `entry` in the map for `key`. A held conversation is not forgotten for a newer one while the map has
/// entries that hold nothing: those go first (the map is bounded; a hold lasts until an operator releases it).
pub(super) fn insert(map: &mut LruCache<String, Affine>, key: String, entry: Affine) {
    if map.len() >= map.cap().get() && !map.contains(&key) {
        // At most one pass over the held entries (few: each is a flagged conversation), each moved to the front.
        for _ in 0..map.len() {
            let held = match map.peek_lru() {
                Some((k, a)) if a.hold.is_some() => k.clone(),
                Some(_) | None => break,
            };
            map.promote(&held);
        }
    }
    map.put(key, entry);
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
    /// This instance decided otherwise within [`SETTLE_MS`]: share that (its row) again instead.
    Reshare(AffinityRow),
    /// Take it.
    Adopt,
}

fn on_pulled(local: Option<&Affine>, row: &AffinityRow, now_ms: i64) -> Pulled {
    match local {
        Some(a)
            if a.account == row.account
                && a.origin == row.origin
                && a.hold.as_ref().map(|h| h.hold.as_str()) == row.hold.as_deref() =>
        {
            Pulled::Known
        }
        Some(a) if a.local && now_ms - a.shared_ms < SETTLE_MS => Pulled::Reshare(a.row(&row.key)),
        Some(_) | None => Pulled::Adopt,
    }
}

impl Pool {
    /// The account that holds conversation `key`, and why it may not leave it, if this instance knows one. One
    /// lock and a clone of the id.
    pub(super) fn affine_account(&self, key: &str) -> Option<(String, Option<Hold>)> {
        self.affinity.lock().get(key).map(|a| (a.account.clone(), a.hold().cloned()))
    }

    /// The account that holds conversation `key`: this instance's map, else (a key it has not seen) the team
    /// store's answer, taken into the map as pulled (not as a decision of this instance's, so it is not shared
    /// again). The store is asked within [`ASK_WITHIN`]; on a local store it answers at once with no I/O; when it
    /// is slow or unreachable the conversation is decided here alone, as before there was a table.
    pub(super) async fn affine_account_or_ask(&self, key: &str) -> Option<(String, Option<Hold>)> {
        if let Some(known) = self.affine_account(key) {
            return Some(known);
        }
        match self.store.ask_affinity(key, ASK_WITHIN).await {
            Ok(AskedAffinity::Known(row)) => {
                let now = now_ms();
                let found = {
                    let mut map = self.affinity.lock();
                    // A turn of the conversation leased here meanwhile decided already: that decision stands.
                    if let Some(decided) = map.get(key) {
                        return Some((decided.account.clone(), decided.hold().cloned()));
                    }
                    let hold = row.hold.as_deref().map(|h| Held { hold: Hold::parse(h), since: now / 1000 });
                    let found = (row.account.clone(), hold.as_ref().map(|h| h.hold.clone()));
                    let entry = Affine { account: row.account, origin: row.origin, hold, shared_ms: now, local: false };
                    insert(&mut map, row.key, entry);
                    found
                };
                if found.1.is_some() {
                    self.recount_holds();
                }
                Some(found)
            }
            Ok(AskedAffinity::Unknown | AskedAffinity::Alone) => None,
            Err(e) => {
                tracing::debug!("conversation affinity: the team store did not say ({e:#}); deciding alone");
                None
            }
        }
    }

    /// The account that served conversation `key`'s last turn (its home: the state it sealed is readable there
    /// only), and the account that got its own identifiers when that is another one (the conversation moved since),
    /// if known. One lock and a clone of the id (two for a conversation that moved).
    pub fn home_account(&self, key: &str) -> Option<(String, Option<String>)> {
        self.affinity.lock().peek(key).map(|a| (a.account.clone(), a.origin.clone()))
    }

    /// Conversation `key` stays with `home` (a turn leased another account but could not move there, so the
    /// conversation's next turn should look for its home again).
    pub fn keep_home(&self, key: &str, home: &str) {
        if let Some(account) = self.get(home) {
            // Known already (the conversation had a home): nothing new to wait for.
            let _ = self.remember_affinity(key, &account);
        }
    }

    /// Conversation `key` is served by `account` now. With a team store, shared when that is news: no database
    /// work here (a `try_send` into the writer's queue), and none at all for a turn that stays where it was.
    /// For a conversation this instance did not know (nor the team: it was asked), the answer says when its row
    /// is written: the lease waits for it, within [`ASK_WITHIN`], before the turn is sent.
    ///
    /// A conversation that moves keeps the account that got its own identifiers (`origin`), and loses a hold (a
    /// held conversation is leased to its own account only, so it moves only once released).
    pub(super) fn remember_affinity(&self, key: &str, account: &Account) -> Option<Written> {
        let now = now_ms();
        let mut released = false;
        let (news, new) = {
            let mut map = self.affinity.lock();
            match map.get_mut(key) {
                Some(a) if a.account == account.id => {
                    let stale = now - a.shared_ms >= RESHARE_SECS * 1000;
                    if stale {
                        a.shared_ms = now;
                        a.local = true;
                    }
                    (stale.then(|| a.row(key)), false)
                }
                Some(a) => {
                    let origin = a.origin().to_string();
                    a.origin = (origin != account.id).then_some(origin);
                    a.account.clone_from(&account.id);
                    released = a.hold.take().is_some();
                    a.shared_ms = now;
                    a.local = true;
                    (Some(a.row(key)), false)
                }
                None => {
                    let entry = Affine::new(&account.id, now);
                    let row = entry.row(key);
                    insert(&mut map, key.to_string(), entry);
                    (Some(row), true)
                }
            }
        };
        if released {
            self.recount_holds();
        }
        let row = news.filter(|_| account.source == Source::Store)?;
        if new {
            return self.store.share_new_affinity(row).map(Written);
        }
        self.store.publish_affinity(row);
        None
    }

    /// Take conversations the other instances decided (pulled from the team store) into the map.
    pub fn adopt_affinity(&self, pulled: Vec<AffinityRow>) {
        let now = now_ms();
        let mut reshare = Vec::new();
        let mut holds_changed = false;
        {
            let mut map = self.affinity.lock();
            for row in pulled {
                match on_pulled(map.peek(&row.key), &row, now) {
                    Pulled::Known => {}
                    Pulled::Reshare(mine) => reshare.push(mine),
                    Pulled::Adopt => {
                        // Dated when this instance first knew it (the team's table keeps no date).
                        let known = map.peek(&row.key).and_then(|a| a.hold.as_ref()).map(|h| h.since);
                        let since = known.unwrap_or(now / 1000);
                        let hold = row.hold.as_deref().map(|h| Held { hold: Hold::parse(h), since });
                        holds_changed |= hold.is_some() || known.is_some();
                        let entry =
                            Affine { account: row.account, origin: row.origin, hold, shared_ms: now, local: false };
                        insert(&mut map, row.key, entry);
                    }
                }
            }
        }
        for row in reshare {
            self.store.publish_affinity(row);
        }
        if holds_changed {
            self.recount_holds();
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
        Affine { account: account.into(), origin: None, hold: None, shared_ms, local }
    }

    fn row(account: &str, hold: Option<&str>) -> AffinityRow {
        AffinityRow { key: "k".into(), account: account.into(), origin: None, hold: hold.map(str::to_string) }
    }

    #[test]
    fn a_pulled_row_is_adopted_unless_a_different_local_decision_is_younger_than_the_settle_time() {
        let now = 1_000_000;
        let b = row("b", None);
        assert_eq!(on_pulled(None, &b, now), Pulled::Adopt);
        assert_eq!(on_pulled(Some(&affine("b", now - 10, true)), &b, now), Pulled::Known);
        // Two instances routed the conversation at once: the young local decision is shared again.
        assert_eq!(on_pulled(Some(&affine("a", now - 100, true)), &b, now), Pulled::Reshare(row("a", None)));
        // Settled: the team's newer decision wins (a move on another instance, say).
        assert_eq!(on_pulled(Some(&affine("a", now - SETTLE_MS, true)), &b, now), Pulled::Adopt);
        // A pulled entry never holds out against a newer pulled one.
        assert_eq!(on_pulled(Some(&affine("a", now - 100, false)), &b, now), Pulled::Adopt);
        // The same account with a hold placed, or released, elsewhere is news.
        let held = row("b", Some("policy:cyber"));
        assert_eq!(on_pulled(Some(&affine("b", now - SETTLE_MS, false)), &held, now), Pulled::Adopt);
        let mut mine = affine("b", now - SETTLE_MS, false);
        mine.hold = Some(Held { hold: Hold::parse("policy:cyber"), since: 1 });
        assert_eq!(on_pulled(Some(&mine), &held, now), Pulled::Known);
        assert_eq!(on_pulled(Some(&mine), &b, now), Pulled::Adopt, "released on another instance");
    }

    /// The map is bounded: a new conversation pushes out the least recently used one that holds nothing, not a
    /// held one.
    #[test]
    fn a_full_map_forgets_a_conversation_that_holds_nothing_before_a_held_one() {
        let cap = std::num::NonZeroUsize::MIN.saturating_add(2);
        let mut map = LruCache::new(cap);
        let mut held = affine("a", 0, true);
        held.hold = Some(Held { hold: Hold::Deactivated, since: 1 });
        insert(&mut map, "held".into(), held);
        insert(&mut map, "b".into(), affine("a", 0, true));
        insert(&mut map, "c".into(), affine("a", 0, true));
        insert(&mut map, "d".into(), affine("a", 0, true));
        assert!(map.contains("held"), "the held conversation stays");
        assert!(!map.contains("b"), "the oldest that held nothing went");
        assert_eq!(map.len(), 3);
    }
}
