//! The rate-limit headers the backend puts on its answers (`x-codex-*`, spec/codex-upstream.md; read by the
//! official client in codex-rs `rate_limits.rs`): per window the used percent, the window's length in minutes
//! and its reset time, then the credits. Used by `/responses` and `/responses/compact` answers.

use crate::state::Shared;
use axum::http::{HeaderMap, HeaderValue};

/// Put an account's current limits on an answer.
pub(crate) fn put(shared: &Shared, account: &str, h: &mut HeaderMap) {
    let Some(q) = shared.quota(account) else {
        return;
    };
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(k, v);
        }
    };
    put("x-codex-primary-used-percent", q.primary_used.to_string());
    put("x-codex-primary-window-minutes", "300".into());
    put("x-codex-primary-reset-at", q.primary_reset_at.to_string());
    put("x-codex-secondary-used-percent", q.secondary_used.to_string());
    put("x-codex-secondary-window-minutes", "10080".into());
    put("x-codex-secondary-reset-at", q.secondary_reset_at.to_string());
    put("x-codex-credits-has-credits", "false".into());
    put("x-codex-credits-unlimited", "false".into());
    put("x-codex-credits-balance", "0".into());
}
