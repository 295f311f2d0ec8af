//! The pooled usage endpoint in the Codex backend's own shape, for the Codex CLI whose ChatGPT base URL points
//! at the gateway: `GET /backend-api/wham/usage` (a base URL holding `/backend-api`), `GET /api/codex/usage`
//! (any other base URL; the CLI picks the path by that rule), and `GET /wham/usage`.
//!
//! It reports the pool as one account would: the account a request without affinity would be routed to now
//! (`Pool::preview`: the pool's own choice, as a lease makes it), or, when every account is out,
//! the one that is back soonest, marked as limited. Numbers come from the quota the pool already keeps
//! (`accounts/quota.rs`: the `x-codex-*` headers of each answer and the upkeep's `/wham/usage` polls); nothing
//! is fetched here. Neighbours: `server/mod.rs` registers the routes; the guard asks for the client key as on
//! every route.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::accounts::QuotaSnapshot;
use crate::app::{AppState, request_id};
use crate::auth::now_unix;
use crate::server::errors::error_response;
use crate::server::openai;

/// The backend's window lengths (primary about five hours, secondary a week), which its headers also name.
const PRIMARY_WINDOW_SECS: i64 = 5 * 60 * 60;
const SECONDARY_WINDOW_SECS: i64 = 7 * 24 * 60 * 60;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/backend-api/wham/usage", get(usage))
        .route("/wham/usage", get(usage))
        .route("/api/codex/usage", get(usage))
}

async fn usage(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let now = now_unix();
    // The account the next request would go to, or, when every active account is out, the one back soonest.
    let (account, out_until) = match state.pool.preview(now) {
        (Some(account), _) => (account, None),
        (None, Some((account, until))) => (account, Some(until)),
        // The pool's own words for why no account serves (none, none logged in, all disabled).
        (None, None) => return error_response(openai::SHAPE, &state.pool.no_account_error(), &request_id(&headers)),
    };
    let q = account.quota.read().clone();
    axum::Json(body(account.plan().as_deref(), &q, out_until, now)).into_response()
}

/// The backend's usage body for one account's quota. `out_until`: every account is out until then, so the
/// answer says the limit is reached and a window that does not already say so is shown used up until then.
fn body(plan: Option<&str>, q: &QuotaSnapshot, out_until: Option<i64>, now: i64) -> Value {
    let mut primary = window(q.primary_used_percent, q.primary_reset_at, PRIMARY_WINDOW_SECS, now);
    let secondary = window(q.secondary_used_percent, q.secondary_reset_at, SECONDARY_WINDOW_SECS, now);
    if let Some(until) = out_until
        && q.blocked_until(now).is_none()
    {
        // Out for another reason (a cooldown after a 429 with no quota headers): the primary window carries it.
        primary = window(Some(100.0), Some(until), PRIMARY_WINDOW_SECS, now);
    }
    let reached = out_until.is_some();
    let mut rate_limit = json!({"allowed": !reached, "limit_reached": reached});
    if let Some(w) = primary {
        rate_limit["primary_window"] = w;
    }
    if let Some(w) = secondary {
        rate_limit["secondary_window"] = w;
    }
    let mut out = json!({
        // The backend always names a plan; an account without one (an API key) reads as the plan-less `guest`.
        "plan_type": plan.unwrap_or("guest"),
        "rate_limit": rate_limit,
    });
    if reached {
        out["rate_limit_reached_type"] = json!("rate_limit_reached");
    }
    out
}

/// One window in the backend's shape (whole percent and seconds, as its schema types them); none while the
/// account's use of it is unknown.
fn window(used: Option<f64>, reset_at: Option<i64>, length: i64, now: i64) -> Option<Value> {
    let used = used?;
    let reset_at = reset_at.unwrap_or(now + length);
    Some(json!({
        "used_percent": used.round().clamp(0.0, 100.0) as i64,
        "limit_window_seconds": length,
        "reset_after_seconds": (reset_at - now).max(0),
        "reset_at": reset_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(p: Option<f64>, pr: Option<i64>, s: Option<f64>, sr: Option<i64>) -> QuotaSnapshot {
        QuotaSnapshot {
            primary_used_percent: p,
            primary_reset_at: pr,
            secondary_used_percent: s,
            secondary_reset_at: sr,
            updated_at: 1,
            ..QuotaSnapshot::default()
        }
    }

    #[test]
    fn serving_account_in_the_backend_shape() {
        let b = body(Some("plus"), &quota(Some(12.4), Some(1_300), Some(40.0), Some(9_000)), None, 1_000);
        assert_eq!(b["plan_type"], "plus");
        assert_eq!(b["rate_limit"]["allowed"], true);
        assert_eq!(b["rate_limit"]["limit_reached"], false);
        assert_eq!(b["rate_limit"]["primary_window"]["used_percent"], 12);
        assert_eq!(b["rate_limit"]["primary_window"]["reset_after_seconds"], 300);
        assert_eq!(b["rate_limit"]["primary_window"]["limit_window_seconds"], 18_000);
        assert_eq!(b["rate_limit"]["secondary_window"]["reset_at"], 9_000);
        assert!(b.get("rate_limit_reached_type").is_none());
    }

    #[test]
    fn unknown_use_has_no_window_and_no_plan_reads_guest() {
        let b = body(None, &QuotaSnapshot::default(), None, 1_000);
        assert_eq!(b["plan_type"], "guest");
        assert!(b["rate_limit"].get("primary_window").is_none());
        assert!(b["rate_limit"].get("secondary_window").is_none());
    }

    #[test]
    fn all_out_names_the_soonest_reset() {
        // Out by quota: the windows say so themselves.
        let b = body(Some("pro"), &quota(Some(100.0), Some(1_500), Some(50.0), Some(9_000)), Some(1_500), 1_000);
        assert_eq!(b["rate_limit"]["limit_reached"], true);
        assert_eq!(b["rate_limit"]["allowed"], false);
        assert_eq!(b["rate_limit"]["primary_window"]["reset_at"], 1_500);
        assert_eq!(b["rate_limit_reached_type"], "rate_limit_reached");
        // Out by a cooldown the windows do not show: the primary window carries it.
        let b = body(Some("pro"), &quota(Some(10.0), Some(5_000), None, None), Some(1_200), 1_000);
        assert_eq!(b["rate_limit"]["primary_window"]["used_percent"], 100);
        assert_eq!(b["rate_limit"]["primary_window"]["reset_after_seconds"], 200);
    }
}
