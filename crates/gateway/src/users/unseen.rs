//! Access tokens of the Codex CLI's sign-in (oauth/) that this instance has not seen: issued on another instance of
//! a team since this one's last re-read of the sessions. The guard (server/guard/token.rs) looks such a token up in
//! the store at once, as a dashboard session is ([`Users::resolve`]), rather than refuse it until the re-read.
//! Three bounds keep a flood of made-up tokens off the store: only a token of the shape the sign-in issues is
//! looked up; a token the store did not have is not asked again for [`MISS_TTL`] (the digests of the latest
//! [`MISSES`] misses, in memory); and at most [`LOOK_UPS`] look-ups run at once, the others wait for one to end.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::{ACCESS_PREFIX, Method, SignedIn, Users, blocking, sha256, sha256_hex};

/// How long a token the store did not have is refused without asking again. A token is in the store before it
/// is handed out, so a miss cannot be a token that is merely early; the bound only saves the store a statement
/// per replay of a made-up one.
pub const MISS_TTL: Duration = Duration::from_secs(5);
/// The misses remembered: beyond these the oldest is forgotten (and may cost one more look-up).
pub const MISSES: usize = 4096;
/// Look-ups in the store at once from this instance's guard.
pub const LOOK_UPS: usize = 4;
/// Base64url characters in the 256 random bits of a token (`random_token`).
const TOKEN_CHARS: usize = 43;

/// The recent misses and the look-ups' permits.
pub(super) struct Unseen {
    /// SHA-256 of a token the store did not have -> when.
    misses: parking_lot::Mutex<LruCache<[u8; 32], Instant>>,
    permits: tokio::sync::Semaphore,
}

impl Default for Unseen {
    fn default() -> Unseen {
        let cap = NonZeroUsize::new(MISSES).unwrap_or(NonZeroUsize::MIN);
        Unseen { misses: parking_lot::Mutex::new(LruCache::new(cap)), permits: tokio::sync::Semaphore::new(LOOK_UPS) }
    }
}

impl Unseen {
    /// Whether the store did not have the token of digest `key` within [`MISS_TTL`] before `now`.
    fn recently_missed(&self, key: &[u8; 32], now: Instant) -> bool {
        let mut misses = self.misses.lock();
        match misses.get(key) {
            Some(at) if now.saturating_duration_since(*at) < MISS_TTL => true,
            Some(_) => {
                misses.pop(key);
                false
            }
            None => false,
        }
    }

    fn missed(&self, key: [u8; 32], now: Instant) {
        self.misses.lock().put(key, now);
    }
}

/// Whether `token` has the shape the sign-in issues: the access prefix and 256 bits in base64url.
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(ACCESS_PREFIX).is_some_and(|body| {
        body.len() == TOKEN_CHARS && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl Users {
    /// Whether a token [`Users::access`] did not find is worth asking the store for: well-formed, and not missed
    /// there within [`MISS_TTL`]. Synchronous (the guard decides by it whether to go asynchronous at all).
    pub fn worth_a_look_up(&self, token: &str) -> bool {
        well_formed(token) && !self.unseen.recently_missed(&sha256(token), Instant::now())
    }

    /// [`Users::access`], else the store (a token issued on another instance since this one's last re-read),
    /// within the bounds of the module's doc. A token found is kept in the snapshot like one issued here.
    pub async fn resolve_access(self: &Arc<Self>, token: &str) -> Option<Arc<SignedIn>> {
        if !well_formed(token) {
            return None;
        }
        if let Some(s) = self.access(token) {
            return Some(s);
        }
        let key = sha256(token);
        if self.unseen.recently_missed(&key, Instant::now()) {
            return None;
        }
        let _permit = self.unseen.permits.acquire().await.ok()?;
        // While this request waited for a permit, another may have looked the same token up.
        if let Some(s) = self.access(token) {
            return Some(s);
        }
        if self.unseen.recently_missed(&key, Instant::now()) {
            return None;
        }
        let (me, hash) = (self.clone(), sha256_hex(token));
        let found = match blocking("look-up", move || me.look_up(&hash)).await {
            Ok(found) => found.filter(|s| s.method == Method::OAuth.as_str()),
            Err(e) => {
                // Counted as a miss too: while the store fails, each token is tried once per MISS_TTL, not per
                // request. The error names no token.
                tracing::warn!("could not look a Codex CLI token up in the store: {e:#}");
                None
            }
        };
        if found.is_none() {
            self.unseen.missed(key, Instant::now());
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_of_the_issued_shape_are_looked_up() {
        let issued = format!("{ACCESS_PREFIX}{}", crate::users::random_token());
        assert!(well_formed(&issued), "{}", issued.len());
        for bad in [
            String::new(),
            "cga_".into(),
            "cga_short".into(),
            format!("cgs_{}", crate::users::random_token()),
            format!("{issued}x"),
            format!("{ACCESS_PREFIX}{}", "a".repeat(42) + "="),
            format!("{ACCESS_PREFIX}{}", "é".repeat(21) + "a"),
        ] {
            assert!(!well_formed(&bad), "{bad}");
        }
    }

    #[test]
    fn a_miss_is_remembered_for_a_while_then_asked_again() {
        let unseen = Unseen::default();
        let (key, t0) = (sha256("cga_x"), Instant::now());
        assert!(!unseen.recently_missed(&key, t0));
        unseen.missed(key, t0);
        assert!(unseen.recently_missed(&key, t0 + MISS_TTL - Duration::from_millis(1)));
        assert!(!unseen.recently_missed(&key, t0 + MISS_TTL), "asked again once the while is over");
        assert!(!unseen.recently_missed(&key, t0 + Duration::from_millis(1)), "and forgotten");
        // Bounded: the oldest of more than MISSES misses is forgotten.
        for i in 0..=MISSES {
            unseen.missed(sha256(&format!("cga_{i}")), t0);
        }
        assert!(!unseen.recently_missed(&sha256("cga_0"), t0));
        assert!(unseen.recently_missed(&sha256(&format!("cga_{MISSES}")), t0));
    }
}
