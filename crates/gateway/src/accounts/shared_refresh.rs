//! Team store (docs/team.md): the cluster-wide half of the single-flight refresh. Inside an instance the
//! account's refresh lock already lets one request refresh (`tokens.rs`); across instances the store's refresh
//! lease does (`store/postgres/lease.rs`). The lease holder refreshes from the store's newest tokens and commits
//! them with a compare-and-swap on their version; the others wait and adopt what it committed. When the store
//! cannot be reached no lease is taken and nothing is refreshed: a refresh that cannot be committed would spend
//! the single-use refresh token for tokens no other instance could learn.

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
    /// Take the account's cluster-wide refresh lease, or wait for whoever holds it and adopt their tokens.
    pub(super) async fn coordinate_refresh(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
    ) -> Result<Coordinated, GatewayError> {
        let ttl = self.config.timeouts.token_refresh + LEASE_MARGIN;
        // A holder that died leaves its lease to expire: waiting one lease and a margin covers it.
        let give_up = Instant::now() + ttl + LEASE_MARGIN;
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
                RefreshLease::Held(Some(tokens)) => return Ok(Coordinated::Refresh(tokens)),
                RefreshLease::Held(None) => {
                    let _ = self.store.end_refresh_lease(&account.id).await;
                    return Err(GatewayError::internal("the shared store holds no tokens for this account"));
                }
                RefreshLease::Gone => return Err(self.no_account_error()),
                RefreshLease::Busy(Some(tokens)) if !stale(&tokens) => {
                    return Ok(Coordinated::Adopted(adopt(account, tokens)));
                }
                RefreshLease::Busy(_) if Instant::now() >= give_up => {
                    return Err(GatewayError::new(
                        ErrorKind::UpstreamUnavailable,
                        "Another gateway instance is refreshing this login and has not finished; retry shortly.",
                    ));
                }
                RefreshLease::Busy(_) => tokio::time::sleep(WAIT_POLL).await,
            }
        }
    }
}

/// Use tokens another instance committed; returns their access token.
fn adopt(account: &Account, tokens: Tokens) -> String {
    info!(account = %account.id, "adopting tokens another gateway instance refreshed");
    let access = tokens.access_token.clone();
    account.creds.write().set_tokens(tokens);
    access
}
