//! How many conversations an account is serving lately: the planner shares an account's spare quota among them
//! (`planner::choose`). Counted without keeping the conversations: each one marks a slot of a small table by a
//! hash of its key with the time, and the count is estimated from the slots marked within
//! `planner::defaults::ACTIVE_SECS` (linear counting). Exact for a handful, within a few percent up to about
//! [`SLOTS`], saturating beyond (the planner only needs to tell a few from many); a lease marks one slot and
//! reads the estimate at most once a second.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

pub const SLOTS: usize = 128;

#[derive(Debug)]
pub struct Active {
    slots: [AtomicI64; SLOTS],
    /// The last estimate, and when it was made (unix seconds).
    estimate: AtomicU32,
    estimated_at: AtomicI64,
}

impl Default for Active {
    fn default() -> Active {
        Active {
            slots: std::array::from_fn(|_| AtomicI64::new(i64::MIN / 2)),
            estimate: AtomicU32::new(0),
            estimated_at: AtomicI64::new(i64::MIN / 2),
        }
    }
}

impl Active {
    /// A request of the conversation whose key hashes to `hash` was served now.
    pub fn mark(&self, hash: u64, now: i64) {
        // The top bits of a multiplicative hash: spread even when the key's own hash is weak in its low bits.
        let slot = (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize;
        self.slots[slot % SLOTS].store(now, Ordering::Relaxed);
        // The next count looks again (it is cached for the second otherwise).
        self.estimated_at.store(i64::MIN / 2, Ordering::Relaxed);
    }

    /// Conversations active within `planner::defaults::ACTIVE_SECS` of `now`.
    pub fn count(&self, now: i64) -> usize {
        if self.estimated_at.load(Ordering::Relaxed) == now {
            return self.estimate.load(Ordering::Relaxed) as usize;
        }
        let since = now - planner::defaults::ACTIVE_SECS;
        let marked = self.slots.iter().filter(|s| s.load(Ordering::Relaxed) >= since).count();
        let m = SLOTS as f64;
        let estimate =
            if marked >= SLOTS { SLOTS as u32 * 4 } else { (-m * (1.0 - marked as f64 / m).ln()).round() as u32 };
        self.estimate.store(estimate, Ordering::Relaxed);
        self.estimated_at.store(now, Ordering::Relaxed);
        estimate as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_recent_conversations_and_forgets_old_ones() {
        let a = Active::default();
        assert_eq!(a.count(1_000), 0);
        for key in 0..5u64 {
            a.mark(key, 1_000);
            a.mark(key, 1_001);
        }
        assert_eq!(a.count(1_002), 5, "one conversation's requests count once");
        assert_eq!(a.count(1_001 + planner::defaults::ACTIVE_SECS + 1), 0, "an hour later none is active");
        // Keys hashed as the lease hashes them: the estimate holds for hashes that collide at random.
        let b = Active::default();
        for key in 0..60u64 {
            use std::hash::{Hash, Hasher};
            let mut h = rustc_hash::FxHasher::default();
            format!("conversation {key}").hash(&mut h);
            b.mark(h.finish(), 50);
        }
        let n = b.count(60);
        assert!((48..=75).contains(&n), "about 60: {n}");
    }
}
