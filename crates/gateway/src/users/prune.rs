//! The periodic prune of expired sign-ins (docs/team.md, "What is shared"): the Codex CLI's refresh tokens past
//! their expiry, its authorization and device codes a day past theirs, and expired sessions (dashboard sessions
//! and the CLI's access tokens), deleted by `Store::prune_expired_sign_ins` (store/oauth.rs) every
//! [`PRUNE_EVERY`]. On a team store only the instance holding the leader lease prunes (`Store::leads`), as the
//! ledger's retention does; the SQLite file's own instance always does. Nothing here decides what a token
//! means: a row past its expiry is already refused wherever it is read.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::blocking;
use crate::auth::now_unix;
use crate::store::Store;

/// How often the leader prunes (and once when it starts leading, or when the gateway starts on its own file).
pub const PRUNE_EVERY: Duration = Duration::from_secs(300);
/// How often a prune that is due looks whether this instance leads: a new leader prunes within this of taking the
/// lease over. Asking is a clock comparison in memory, no statement.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Prune expired sign-ins every `every`, forever: at once when this instance leads (or is alone), then each
/// `every`. While another instance leads the prune stays due, so this one prunes as soon as it takes the lease.
pub async fn prune_expired(store: Arc<Store>, every: Duration) {
    let mut due = Instant::now();
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        look.tick().await;
        if Instant::now() < due || !store.leads() {
            continue;
        }
        // Set before the statements: a store that fails is tried again next period, not every second (an
        // unreachable database would otherwise fill the log).
        due = Instant::now() + every;
        let store = store.clone();
        match blocking("prune", move || store.prune_expired_sign_ins(now_unix())).await {
            Ok(p) if p.total() > 0 => tracing::debug!(
                refresh_tokens = p.refresh_tokens,
                grants = p.grants,
                sessions = p.sessions,
                "pruned expired sign-ins"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not prune expired sign-ins: {e:#}"),
        }
    }
}
