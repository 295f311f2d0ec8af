//! Team store (docs/team.md): the cluster-wide half of the single-flight refresh. Inside an instance the
//! account's refresh lock already lets one request refresh (`tokens.rs`); across instances the store's refresh
//! lease does (`store/postgres/lease.rs`). The lease holder refreshes from the store's newest tokens and commits
//! them with a compare-and-swap on their version; the others wait and adopt what it committed. A waiting
//! instance waits for that one attempt, within the caller's bound, as it waits for one of its own (issue 71).
//! When the store cannot be reached no lease is taken and nothing is refreshed: a refresh that cannot be
//! committed would spend the single-use refresh token for tokens no other instance could learn.

use std::time::{Duration, Instant};

use dialects::{ErrorKind, GatewayError};
use tracing::{info, warn};

use super::{Account, Pool};
use crate::auth::Tokens;
use crate::store::team::RefreshLease;

/// Added to the token call's own bound to make the lease: the commit that follows must fit inside it.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often a waiting instance looks at the store for the holder's tokens.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// What the coordination decided.
pub(super) enum Coordinated {
    /// No other instance refreshes the account (a local store): refresh as one instance does.
    Alone,
    /// This instance holds the lease: refresh from these tokens (the store's newest).
    Refresh(Tokens),
    /// Another instance (or an earlier lease holder) committed fresh tokens: they are in memory now; this access
    /// token serves the request.
    Adopted(String),
}

impl Pool {
    /// Take the account's cluster-wide refresh lease, or wait for whoever holds it and adopt their tokens. The
    /// wait ends at `deadline` (the caller's bound): another instance's attempt is waited for as this instance's
    /// own would be, once. When it ends without fresh tokens, this instance refreshes only if a whole bound is
    /// still ahead of the caller (it failed fast); otherwise the caller hears that it failed.
    pub(super) async fn coordinate_refresh(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
        deadline: Instant,
    ) -> Result<Coordinated, GatewayError> {
        let limit = self.config.timeouts.token_refresh;
        let ttl = limit + LEASE_MARGIN;
        let mut waited = false;
        loop {
            let lease = self.store.take_refresh_lease(&account.id, ttl).await.map_err(|e| {
                warn!(account = %account.id, "cannot reach the shared store to refresh; not refreshing: {e:#}");
                GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    "The gateway cannot reach its shared store, so it does not refresh this login now (a refresh \
                     it could not save would lose it); retry shortly.",
                )
            })?;
            match lease {
                RefreshLease::Alone => return Ok(Coordinated::Alone),
                RefreshLease::Held(Some(tokens)) if !stale(&tokens) => {
                    // Committed by another instance between our read and the lease: nothing to refresh.
                    let _ = self.store.end_refresh_lease(&account.id).await;
                    return Ok(Coordinated::Adopted(adopt(account, tokens)));
                }
                RefreshLease::Held(Some(_)) if waited && deadline.saturating_duration_since(Instant::now()) < limit => {
                    // The holder's attempt ended without tokens, late in the caller's bound (it timed out, most
                    // likely): its outcome, not a second attempt the caller would wait through.
                    let _ = self.store.end_refresh_lease(&account.id).await;
                    return Err(other_instance_timeout(account, limit, "did not succeed"));
                }
                RefreshLease::Held(Some(tokens)) => return Ok(Coordinated::Refresh(tokens)),
                RefreshLease::Held(None) => {
                    let _ = self.store.end_refresh_lease(&account.id).await;
                    return Err(GatewayError::internal("the shared store holds no tokens for this account"));
                }
                RefreshLease::Gone => return Err(self.no_account_error()),
                RefreshLease::Busy(Some(tokens)) if !stale(&tokens) => {
                    return Ok(Coordinated::Adopted(adopt(account, tokens)));
                }
                RefreshLease::Busy(_) => {
                    // A holder that died leaves its lease to expire; meanwhile its account answers no caller
                    // here later than a bound, and the first caller after the expiry takes it over.
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        warn!(account = %account.id, "another instance's refresh of this login did not end within the bound");
                        return Err(other_instance_timeout(account, limit, "did not finish"));
                    }
                    waited = true;
                    tokio::time::sleep(left.min(WAIT_POLL)).await;
                }
            }
        }
    }
}

/// The 504 of a caller that waited its bound (`limit`) for another instance's refresh of `account`, which `what`
/// ("did not finish", "did not succeed"). The login is kept.
fn other_instance_timeout(account: &Account, limit: Duration, what: &str) -> GatewayError {
    let why = format!("Another gateway instance's refresh of the ChatGPT login of {} {what}", account.describe());
    super::tokens::timed_out(why, limit)
}

/// Use tokens another instance committed; returns their access token.
fn adopt(account: &Account, tokens: Tokens) -> String {
    info!(account = %account.id, "adopting tokens another gateway instance refreshed");
    let access = tokens.access_token.clone();
    account.creds.write().set_tokens(tokens);
    access
}
