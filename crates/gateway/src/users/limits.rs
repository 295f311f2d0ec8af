//! Failed attempts at the sign-in pages (docs/security.md, "Guessing at the sign-in pages"): for each key (a client
//! address, a dashboard session, a name tried that is nobody's) the count of its failures and when it may try
//! again, in bounded maps whose least recently used keys go first, so a flood of made-up names or addresses cannot
//! grow them. Nothing here waits: a key that must wait is refused at once with how long (429 and `Retry-After`,
//! rendered by its surface), and every other key goes on, so a guesser delays only itself.
//!
//! An attempt is counted as a failure when it is let through (before the password is checked), and given back
//! when it turns out not to be one: parallel guesses are counted as they start, not after the last one ended. An
//! existing user's count and lockout are kept in the store instead (`users` columns, store/users.rs), where every
//! instance of a team sees them and an admin lifts them ([`Users::unlock`](super::Users)); what is here is per
//! instance. The audit trail gets the failures in bursts (audit/bursts.rs), not one row per guess.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use crate::audit::bursts::Bursts;
use crate::config::AttemptLimits;

/// Keys each map keeps at once; beyond it the least recently used key is forgotten.
const KEYS: usize = 4096;
/// A key that has not failed for this long past its wait starts again from nothing.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The longest lockout, however many times an account was locked.
const LONGEST_LOCKOUT: Duration = Duration::from_secs(24 * 3600);

/// How long a key waits after its n-th consecutive failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts let through one after another before the first wait (a wait follows the `free`-th failure).
    pub free: u32,
    /// The first wait past the free failures, doubling with each further one, up to `max`.
    pub base: Duration,
    pub max: Duration,
    /// Every `lockout_after` consecutive failures (none: never) the key is locked: for `lockout` the first time,
    /// twice as long each further time, at most a day.
    pub lockout_after: Option<u32>,
    pub lockout: Duration,
}

impl Policy {
    /// An account's or a made-up name's policy (per name: a guesser trying one name).
    pub fn account(l: &AttemptLimits) -> Policy {
        Policy {
            free: l.free_failures,
            base: l.backoff,
            max: l.backoff_max,
            lockout_after: Some(l.lockout_failures),
            lockout: l.lockout,
        }
    }

    /// A session's policy (wrong device codes): the account's allowance and waits, never locked.
    pub fn session(l: &AttemptLimits) -> Policy {
        Policy { lockout_after: None, ..Policy::account(l) }
    }

    /// A client address's policy: a larger allowance (people behind one NAT), never locked.
    pub fn address(l: &AttemptLimits) -> Policy {
        Policy { free: l.address_free_failures, ..Policy::session(l) }
    }

    /// The wait after the `n`-th consecutive failure.
    pub fn wait_after(&self, n: u32) -> Duration {
        // The free failures need no wait; the one that uses the last of them sets the first.
        let backoff = match (n + 1).checked_sub(self.free + 1) {
            None => Duration::ZERO,
            Some(doublings) => self.base.saturating_mul(1u32 << doublings.min(20)).min(self.max),
        };
        let lockout = match self.lockout_after {
            Some(after) if self.lockout_begins(n) => {
                self.lockout.saturating_mul(1u32 << (n / after - 1).min(20)).min(LONGEST_LOCKOUT)
            }
            _ => Duration::ZERO,
        };
        backoff.max(lockout)
    }

    /// Whether the `n`-th consecutive failure begins a lockout.
    pub fn lockout_begins(&self, n: u32) -> bool {
        self.lockout_after.is_some_and(|after| after > 0 && n >= after && n.is_multiple_of(after))
    }

    /// Whether `n` consecutive failures make a lockout (rather than a pause).
    pub fn locks(&self, n: u32) -> bool {
        self.lockout_after.is_some_and(|after| after > 0 && n >= after)
    }
}

/// Why an attempt was not let through, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub retry_after: Duration,
    /// The account (or the name) is locked after repeated failures: an admin may lift it.
    pub locked: bool,
}

impl Wait {
    /// Whole seconds for `Retry-After`, never 0.
    pub fn seconds(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }

    /// The refusal's name in the audit trail.
    pub fn reason(&self) -> &'static str {
        if self.locked { "locked" } else { "too_many_attempts" }
    }

    /// What a person reads (the same for a user and for a name that is nobody's).
    pub fn message(&self) -> String {
        let n = self.seconds();
        let when = if n >= 120 { format!("{} minutes", n.div_ceil(60)) } else { format!("{n} s") };
        if self.locked {
            format!(
                "Too many failed sign-ins: this account is locked. Try again in {when}, or ask an admin to unlock it."
            )
        } else {
            format!("Too many failed attempts: try again in {when}.")
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    failures: u32,
    until: Instant,
}

/// An attempt let through and counted as a failure; [`Limiter::refund`] takes it back.
#[derive(Debug)]
pub struct Charge {
    key: String,
    before: Slot,
    failures: u32,
}

/// Failures per key in memory, under one policy.
pub struct Limiter {
    slots: Mutex<LruCache<String, Slot>>,
    policy: Policy,
}

impl Limiter {
    pub fn new(policy: Policy) -> Limiter {
        let keys = NonZeroUsize::new(KEYS).unwrap_or(NonZeroUsize::MIN);
        Limiter { slots: Mutex::new(LruCache::new(keys)), policy }
    }

    /// Let an attempt of `key` through, counted as a failure until it is given back, or say how long to wait.
    pub fn admit(&self, key: &str, now: Instant) -> Result<Charge, Wait> {
        let mut slots = self.slots.lock();
        let slot = slots.get_or_insert_mut(key.to_string(), || Slot { failures: 0, until: now });
        if slot.failures > 0 && now >= slot.until + FORGET_AFTER {
            *slot = Slot { failures: 0, until: now };
        }
        if slot.until > now {
            return Err(Wait { retry_after: slot.until - now, locked: self.policy.locks(slot.failures) });
        }
        let before = *slot;
        slot.failures = slot.failures.saturating_add(1);
        slot.until = now + self.policy.wait_after(slot.failures);
        Ok(Charge { key: key.to_string(), before, failures: slot.failures })
    }

    /// The attempt was no failure (a right code, a right password): as if it had not come, unless later attempts
    /// were counted since.
    pub fn refund(&self, charge: Charge) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.peek_mut(&charge.key)
            && slot.failures == charge.failures
        {
            *slot = charge.before;
        }
    }

    /// Forget `key`'s failures (a right password for a name).
    pub fn clear(&self, key: &str) {
        self.slots.lock().pop(key);
    }

    /// How long `key` must still wait, without counting anything.
    pub fn waiting(&self, key: &str, now: Instant) -> Option<Wait> {
        let slots = self.slots.lock();
        let slot = slots.peek(key)?;
        (slot.until > now).then(|| Wait { retry_after: slot.until - now, locked: self.policy.locks(slot.failures) })
    }
}

/// Every limiter of the sign-in surfaces, and the audit trail's bursts (one instance's).
pub struct Guards {
    pub limits: AttemptLimits,
    /// Password and admin-key sign-ins, per client address.
    pub sign_in_addresses: Limiter,
    /// Names tried that are nobody's (a user's count is in the store), so they read as a user's would.
    pub names: Limiter,
    /// Device codes typed on the verification page, per dashboard session and per client address.
    pub code_sessions: Limiter,
    pub code_addresses: Limiter,
    /// Single sign-on answers refused, per client address.
    pub sso_addresses: Limiter,
    pub bursts: Bursts,
}

impl Guards {
    pub fn new(limits: AttemptLimits) -> Guards {
        Guards {
            sign_in_addresses: Limiter::new(Policy::address(&limits)),
            names: Limiter::new(Policy::account(&limits)),
            code_sessions: Limiter::new(Policy::session(&limits)),
            code_addresses: Limiter::new(Policy::address(&limits)),
            sso_addresses: Limiter::new(Policy::address(&limits)),
            bursts: Bursts::new(),
            limits,
        }
    }

    /// The account policy (for a user's count in the store).
    pub fn account_policy(&self) -> Policy {
        Policy::account(&self.limits)
    }
}

/// Write the summaries of bursts that ended quietly to the audit trail every `period`, forever (server/mod.rs
/// runs it; a burst's success or lockout writes its own at once).
pub async fn sum_up_bursts(users: std::sync::Arc<super::Users>, period: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ended = users.guards.bursts.sweep(crate::usage::when::now_ms());
        if ended.is_empty() {
            continue;
        }
        let store = users.store().clone();
        let wrote =
            tokio::task::spawn_blocking(move || ended.into_iter().for_each(|e| crate::audit::record(&store, e)));
        if let Err(e) = wrote.await {
            tracing::error!("the audit trail's burst summaries were not written: {e}");
        }
    }
}

/// A client address as a key (`None`: the listener gave none, e.g. a Unix socket; all such share one key).
pub fn address_key(source: Option<&str>) -> &str {
    source.unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            free: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            lockout_after: Some(10),
            lockout: Duration::from_secs(900),
        }
    }

    #[test]
    fn waits_grow_after_the_free_failures_and_lockouts_double() {
        let p = policy();
        let waits: Vec<u64> = (1..=9).map(|n| p.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(p.wait_after(10).as_secs(), 900, "the tenth failure locks");
        assert_eq!(p.wait_after(15).as_secs(), 300, "capped backoff between lockouts");
        assert_eq!(p.wait_after(20).as_secs(), 1800, "the second lockout is twice as long");
        assert_eq!(p.wait_after(1000).as_secs(), LONGEST_LOCKOUT.as_secs());
        assert!(!p.locks(9) && p.locks(10));
    }

    #[test]
    fn a_key_waits_alone_and_a_refund_gives_the_attempt_back() {
        let l = Limiter::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.admit("a", t0).is_ok());
        }
        let wait = l.admit("a", t0).err().unwrap_or_else(|| panic!("the fourth waits"));
        assert_eq!((wait.retry_after, wait.locked), (Duration::from_secs(1), false));
        assert!(l.admit("b", t0).is_ok(), "another key is not held up");
        let charge = l.admit("a", t0 + Duration::from_secs(1)).unwrap_or_else(|w| panic!("{w:?}"));
        l.refund(charge);
        assert!(l.admit("a", t0 + Duration::from_secs(1)).is_ok(), "given back: the same wait as before");
        assert!(l.admit("a", t0 + Duration::from_secs(1)).is_err());
        assert!(l.admit("a", t0 + Duration::from_secs(3) + FORGET_AFTER).is_ok(), "forgotten");
    }

    #[test]
    fn the_map_stays_bounded() {
        let l = Limiter::new(policy());
        let t0 = Instant::now();
        for i in 0..(KEYS + 100) {
            let _ = l.admit(&format!("name-{i}"), t0);
        }
        assert_eq!(l.slots.lock().len(), KEYS);
    }
}
