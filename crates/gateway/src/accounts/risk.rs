//! What the pool does when the upstream says it is overloaded while an account serves (`RiskSignal::Overload`:
//! an HTTP 503, or `server_is_overloaded` / `slow_down` inside a stream), called from `Pool::record_failure` and
//! for failures after the first byte: the account's governor lowers its pace and, within a streak, rests it
//! (`steward.rs`, `planner::governor`).

use super::{Account, Pool};

impl Pool {
    /// The upstream was overloaded while `account` served a request: one overload halves its pace (the request
    /// itself already moved on to another account); a second within the streak rests it.
    pub(super) fn note_overload(&self, account: &Account) {
        self.overloaded(account);
    }
}
