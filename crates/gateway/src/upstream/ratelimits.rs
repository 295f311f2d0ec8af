//! The serving account's rate-limit headers, carried from the upstream's answer to the client's.
//!
//! The Codex backend reports each limit family in `x-codex-*` response headers (`x-codex-primary-used-percent`,
//! `-window-minutes`, `-reset-at`, the same for `secondary`, `x-codex-credits-*`, and per metered limit
//! `x-codex-<limit>-primary-...` with `-limit-name`); the Codex CLI reads them from every `/responses` answer
//! to show its rate-limit status. The relay (`relay/exchange/`) keeps them off the upstream response and the
//! handler (`server/handler.rs`) puts them on the client's response head. Neighbours: `accounts/quota.rs` reads
//! the same headers into the pool's quota snapshot.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The prefix of every header the backend uses to report limits and credits.
const PREFIX: &str = "x-codex-";

/// `x-codex-*` headers that are not about limits: the sticky-routing token is for the gateway's own next
/// request on the same account, not for a client that may be routed elsewhere.
const NOT_LIMITS: [&str; 1] = ["x-codex-turn-state"];

/// The limit headers of one upstream answer, as the backend sent them (name and value untouched).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RateLimitHeaders(Vec<(HeaderName, HeaderValue)>);

impl RateLimitHeaders {
    /// Keep the limit headers of an upstream answer. Cost: one prefix test per response header (about a dozen),
    /// and one small allocation only when the answer carries limits.
    pub fn from_upstream(headers: &HeaderMap) -> RateLimitHeaders {
        let kept = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(PREFIX) && !NOT_LIMITS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        RateLimitHeaders(kept)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Put them on the client's response (replacing any of the same name).
    pub fn apply(self, headers: &mut HeaderMap) {
        // Room for all of them at once: a dozen inserts into a small map grew it (and rehashed it) twice.
        headers.reserve(self.0.len());
        for (name, value) in self.0 {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_limit_families_and_credits_but_not_the_turn_state() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-codex-primary-used-percent", "12.5"),
            ("x-codex-secondary-reset-at", "1704069000"),
            ("x-codex-credits-balance", "3"),
            ("x-codex-bengalfox-primary-used-percent", "80"),
            ("x-codex-bengalfox-limit-name", "gpt-5.2-codex-sonic"),
            ("x-codex-turn-state", "sticky"),
            ("x-request-id", "r1"),
            ("openai-model", "gpt-5.4"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let kept = RateLimitHeaders::from_upstream(&h);
        let mut out = HeaderMap::new();
        kept.apply(&mut out);
        assert_eq!(out.len(), 5);
        assert_eq!(out.get("x-codex-primary-used-percent").map(|v| v.as_bytes()), Some(&b"12.5"[..]));
        assert_eq!(out.get("x-codex-bengalfox-limit-name").map(|v| v.as_bytes()), Some(&b"gpt-5.2-codex-sonic"[..]));
        assert!(out.get("x-codex-turn-state").is_none());
        assert!(out.get("x-request-id").is_none());
        assert!(RateLimitHeaders::from_upstream(&HeaderMap::new()).is_empty());
    }
}
