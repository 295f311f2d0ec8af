//! What the pool does when the upstream says it is overloaded while an account serves (`RiskSignal::Overload`:
//! an HTTP 503, or `server_is_overloaded` / `slow_down` inside a stream), called from `Pool::record_failure`.

use super::{Account, Pool};

impl Pool {
    /// The upstream was overloaded while `account` served a request. Nothing yet: the request already moved on
    /// to another account, and no cooldown follows (one 503 must not become a minute of refusals). The overload
    /// governor fills this in (issue 71): easing the pressure on an account the upstream keeps saying is busy.
    pub(super) fn note_overload(&self, _account: &Account) {}
}
