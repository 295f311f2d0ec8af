//! Held conversations (issue 71; docs/accounts.md, "Risk signals"): a conversation the upstream refused under its
//! usage policy, or whose account it deactivated, stays with that account. Sent on to the next account it would
//! flag that one too, and a pool loses its accounts one after another that way; so its later turns go to its own
//! account only, and while that account cannot serve the client is told so (403 `conversation_held`) instead of
//! the conversation moving. The hold lives in the conversation's affinity entry (`affinity.rs`), shared with the
//! team's table when there is one, and lasts until an operator releases it (`DELETE
//! /admin/conversations/{key}/hold`).
//!
//! Beside it, each account's policy refusals since the gateway started: what `accounts list`, the admin API, the
//! dashboard and the metrics show of an account's standing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use dialects::failure::PolicyKind;
use dialects::{ErrorKind, GatewayError};
use serde::Serialize;
use serde_json::{Value, json};

use super::affinity::Affine;
use super::{Account, Pool, Source};
use crate::auth::now_unix;
pub use crate::record::Hold;

/// A hold and since when this instance knows it (unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Held {
    pub(super) hold: Hold,
    pub(super) since: i64,
}

/// A held conversation, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldConversation {
    /// The conversation key (its `prompt_cache_key` or session id, or the gateway's `gw-` hash of its start).
    pub key: String,
    pub account: String,
    /// The hold's name (`policy:cyber`, `deactivated`).
    pub reason: String,
    /// Unix seconds since this instance holds it.
    pub since: i64,
}

impl HeldConversation {
    fn new(key: &str, account: &str, held: &Held) -> HeldConversation {
        let reason = held.hold.as_str().to_string();
        HeldConversation { key: key.to_string(), account: account.to_string(), reason, since: held.since }
    }
}

/// One account's standing as the upstream's risk signals show it, since the gateway started.
#[derive(Debug, Default)]
pub struct AccountRisk {
    /// Policy refusals by kind (`PolicyKind::index`).
    refusals: [AtomicU64; PolicyKind::ALL.len()],
    /// Unix seconds of the last one (0: none).
    last_refusal: AtomicI64,
    /// Conversations held on the account, as the pool last counted them (`Pool::recount_holds`).
    held: AtomicUsize,
}

impl AccountRisk {
    fn note_refusal(&self, kind: PolicyKind, now: i64) {
        if let Some(n) = self.refusals.get(kind.index()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        self.last_refusal.store(now, Ordering::Relaxed);
    }

    pub fn refusals(&self, kind: PolicyKind) -> u64 {
        self.refusals.get(kind.index()).map_or(0, |n| n.load(Ordering::Relaxed))
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The account summary's `risk` object (admin API, `accounts list`, the dashboard).
    pub fn summary(&self) -> Value {
        let by_kind: serde_json::Map<String, Value> =
            PolicyKind::ALL.into_iter().map(|k| (k.name().to_string(), json!(self.refusals(k)))).collect();
        let total: u64 = PolicyKind::ALL.into_iter().map(|k| self.refusals(k)).sum();
        let last = self.last_refusal.load(Ordering::Relaxed);
        json!({
            "policy_refusals": total,
            "policy_refusals_by_kind": by_kind,
            "last_policy_refusal_at": (last > 0).then_some(last),
            "held_conversations": self.held(),
        })
    }
}

impl Pool {
    /// The upstream refused a request of conversation `conversation` under its usage policy while `account`
    /// served it: counted on the account, and the conversation held there.
    pub fn record_policy_refusal(&self, account: &Account, conversation: Option<&str>, kind: PolicyKind) {
        let now = now_unix();
        account.risk.note_refusal(kind, now);
        tracing::warn!(account = %account.id, kind = kind.name(), "the upstream refused a request under its usage policy; its conversation is held on the account");
        if let Some(key) = conversation {
            self.hold_conversation(key, account, Hold::Policy(kind));
        }
    }

    /// The upstream deactivated `account`: conversation `conversation`, and every other one it holds, stay there.
    pub(super) fn hold_deactivated(&self, account: &Account, conversation: Option<&str>) {
        if let Some(key) = conversation {
            self.hold_conversation(key, account, Hold::Deactivated);
        }
        let now = now_unix();
        let mut rows = Vec::new();
        for (key, a) in self.affinity.lock().iter_mut() {
            if a.account == account.id && a.hold.is_none() {
                a.hold = Some(Held { hold: Hold::Deactivated, since: now });
                rows.push(a.row(key));
            }
        }
        if account.source == Source::Store {
            for row in rows {
                self.store.publish_affinity(row);
            }
        }
        self.recount_holds();
    }

    /// Hold conversation `key` on `account` for `hold` (a hold already there stays as it was: the first reason
    /// is the one an operator reads).
    fn hold_conversation(&self, key: &str, account: &Account, hold: Hold) {
        let now = now_unix();
        let row = {
            let mut map = self.affinity.lock();
            match map.get_mut(key) {
                Some(a) if a.account == account.id && a.hold.is_some() => None,
                Some(a) if a.account == account.id => {
                    a.hold = Some(Held { hold, since: now });
                    Some(a.row(key))
                }
                // The conversation was leased elsewhere meanwhile (another of its requests moved it), or forgotten:
                // it belongs where it was refused, and stays there.
                Some(_) | None => {
                    let origin = map.peek(key).map(|a| a.origin().to_string()).filter(|o| *o != account.id);
                    let mut entry = Affine::new(&account.id, now.saturating_mul(1000));
                    entry.origin = origin;
                    entry.hold = Some(Held { hold, since: now });
                    let row = entry.row(key);
                    super::affinity::insert(&mut map, key.to_string(), entry);
                    Some(row)
                }
            }
        };
        if let Some(row) = row {
            if account.source == Source::Store {
                self.store.publish_affinity(row);
            }
            self.recount_holds();
        }
    }

    /// Release conversation `key`'s hold, here and (with a team store) for the whole team: its next turn goes to
    /// its account while that can serve, and to another one otherwise, as any conversation's. What was held here,
    /// and whether the team's table held it.
    pub async fn release_hold(&self, key: &str) -> anyhow::Result<(Option<HeldConversation>, bool)> {
        let released = {
            let mut map = self.affinity.lock();
            map.peek_mut(key).and_then(|a| Some(HeldConversation::new(key, &a.account, &a.hold.take()?)))
        };
        self.recount_holds();
        let shared = self.store.release_shared_hold(key).await?;
        Ok((released, shared))
    }

    /// Release every conversation held on `account` (after it was enabled again, say), here and for the team.
    /// The keys released.
    pub async fn release_holds_of(&self, account: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        for (key, a) in self.affinity.lock().iter_mut() {
            if a.account == account && a.hold.take().is_some() {
                keys.push(key.clone());
            }
        }
        self.recount_holds();
        for key in &keys {
            self.store.release_shared_hold(key).await?;
        }
        Ok(keys)
    }

    /// Every conversation this instance knows to be held (with a team store, the team's holds it pulled too).
    pub fn held_conversations(&self) -> Vec<HeldConversation> {
        let map = self.affinity.lock();
        let mut held: Vec<HeldConversation> =
            map.iter().filter_map(|(key, a)| Some(HeldConversation::new(key, &a.account, a.hold.as_ref()?))).collect();
        held.sort_by(|a, b| (a.since, &a.key).cmp(&(b.since, &b.key)));
        held
    }

    pub fn held_total(&self) -> usize {
        self.held_total.load(Ordering::Relaxed)
    }

    /// Count the held conversations per account into each account's [`AccountRisk`]: after every change of a
    /// hold, which is rare (a flagged conversation, an operator's release), so the counts cost no request a scan.
    pub(super) fn recount_holds(&self) {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (_, a) in self.affinity.lock().iter().filter(|(_, a)| a.hold.is_some()) {
            *counts.entry(a.account.clone()).or_default() += 1;
        }
        self.held_total.store(counts.values().sum(), Ordering::Relaxed);
        for account in self.accounts().iter() {
            account.risk.held.store(counts.get(&account.id).copied().unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// The client's error when conversation `key` is held on `home`, which cannot serve it now (`why_not`).
    pub(super) fn held_error(key: &str, home: &str, hold: &Hold, why_not: &str) -> GatewayError {
        GatewayError::new(
            ErrorKind::PermissionDenied,
            format!(
                "This conversation is held on account {home} because {}, and that account cannot serve it now \
                 ({why_not}). The gateway does not move a conversation the upstream flagged to another account: \
                 start a new conversation, or ask an operator to release it (DELETE \
                 /admin/conversations/{key}/hold).",
                hold.why()
            ),
        )
        .with_code("conversation_held")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_reads_back_as_written_and_an_unknown_one_is_still_a_hold() {
        for hold in PolicyKind::ALL.map(Hold::Policy).into_iter().chain([Hold::Deactivated]) {
            assert_eq!(Hold::parse(hold.as_str()), hold);
        }
        let newer = Hold::parse("policy:something_new");
        assert_eq!(newer, Hold::Unrecognized("policy:something_new".into()));
        assert_eq!(newer.as_str(), "policy:something_new", "written back as it was");
    }

    #[test]
    fn the_clients_error_says_why_and_how_to_release() {
        let e = Pool::held_error("conv-1", "acc-1", &Hold::Policy(PolicyKind::Cyber), "disabled");
        assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::PermissionDenied, Some("conversation_held")));
        assert!(e.message.contains("acc-1") && e.message.contains("cyber") && e.message.contains("disabled"));
        assert!(e.message.contains("DELETE /admin/conversations/conv-1/hold"), "{}", e.message);
    }

    #[test]
    fn an_accounts_risk_counts_refusals_by_kind() {
        let risk = AccountRisk::default();
        risk.note_refusal(PolicyKind::Cyber, 10);
        risk.note_refusal(PolicyKind::Cyber, 11);
        risk.note_refusal(PolicyKind::ContentFilter, 12);
        let s = risk.summary();
        assert_eq!(s["policy_refusals"], 3);
        assert_eq!(s["policy_refusals_by_kind"]["cyber"], 2);
        assert_eq!(s["policy_refusals_by_kind"]["content_filter"], 1);
        assert_eq!(s["last_policy_refusal_at"], 12);
        assert_eq!(s["held_conversations"], 0);
    }
}
