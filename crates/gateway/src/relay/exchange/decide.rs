//! What a request does after an attempt failed before anything reached the client: one pure decision of the
//! attempt and its failure, tested by the table below. Whether a failure lets another account try is the
//! failure's own ([`UpstreamFailure::failover`], decided in `dialects::failure` and tested there by its own
//! table); this adds what only the attempt knows: a turn refused for reasoning sealed to another account is sent
//! once more without it, on the same account.

use dialects::UpstreamFailure;
use dialects::failure::{Failover, Reason};

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Another account, if the pool and `[routing] max_accounts_per_request` allow one.
    OtherAccount,
    /// The same account once more, without the reasoning items sealed to another account.
    AgainWithoutReasoning,
    /// The upstream does not know the model: the client's dialect says so in its own words.
    UnknownModel,
    /// The upstream refused the request itself (every account would): the client gets the refusal.
    Refused,
}

/// The attempt a failure came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attempt {
    /// This attempt already went without the conversation's earlier reasoning.
    pub(super) without_reasoning: bool,
    /// The conversation moved to this account for this turn: what was sealed to its home was left out already.
    pub(super) moved: bool,
}

/// The decision. `has_reasoning` says whether the turn carries reasoning that could be left out; it reads the
/// body again, so it is asked only for a refusal of foreign reasoning.
pub(super) fn after_failure(attempt: Attempt, failure: &UpstreamFailure, has_reasoning: impl FnOnce() -> bool) -> Next {
    match (failure.failover(), failure.reason()) {
        (Failover::OtherAccount, _) => Next::OtherAccount,
        (Failover::Stop, Some(Reason::ModelNotFound)) => Next::UnknownModel,
        (Failover::Stop, Some(Reason::ForeignReasoning))
            if !attempt.without_reasoning && !attempt.moved && has_reasoning() =>
        {
            Next::AgainWithoutReasoning
        }
        (Failover::Stop, _) => Next::Refused,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dialects::failure::{Credential, PolicyKind, Refusal, Via};

    use super::*;

    fn refused(reason: Reason) -> UpstreamFailure {
        UpstreamFailure::Refused(Refusal { reason, via: Via::Event, message: "test".into(), code: None, param: None })
    }

    /// Every kind of failure, with each attempt it can meet: (failure, already without reasoning, moved, the turn
    /// has reasoning to leave out) -> what follows.
    #[test]
    fn what_follows_each_failure() {
        let fresh = (false, false, true);
        let rows: Vec<(UpstreamFailure, (bool, bool, bool), Next)> = vec![
            // The account's or the moment's failures: another account.
            (UpstreamFailure::HeaderTimeout { limit: Duration::from_secs(1) }, fresh, Next::OtherAccount),
            (UpstreamFailure::Idle, fresh, Next::OtherAccount),
            (UpstreamFailure::StreamCut, fresh, Next::OtherAccount),
            (
                UpstreamFailure::LoginRefused { account: "a".into(), credential: Credential::ChatgptLogin },
                fresh,
                Next::OtherAccount,
            ),
            (refused(Reason::QuotaExhausted { resets_in: None, plan: None }), fresh, Next::OtherAccount),
            (refused(Reason::RateLimited { retry_after: None }), fresh, Next::OtherAccount),
            (refused(Reason::Overloaded), fresh, Next::OtherAccount),
            (refused(Reason::ServerError), fresh, Next::OtherAccount),
            (refused(Reason::Unauthorized), fresh, Next::OtherAccount),
            (refused(Reason::Forbidden), fresh, Next::OtherAccount),
            (refused(Reason::ModelNotSupportedByPlan), fresh, Next::OtherAccount),
            (refused(Reason::UsageNotIncluded), fresh, Next::OtherAccount),
            (refused(Reason::CloudflareChallenge), fresh, Next::OtherAccount),
            // The model: said in the client's words.
            (refused(Reason::ModelNotFound), fresh, Next::UnknownModel),
            // Foreign reasoning: once more without it, only when there is some to leave out and it was not left
            // out already (by a retry or by the move).
            (refused(Reason::ForeignReasoning), fresh, Next::AgainWithoutReasoning),
            (refused(Reason::ForeignReasoning), (true, false, true), Next::Refused),
            (refused(Reason::ForeignReasoning), (false, true, true), Next::Refused),
            (refused(Reason::ForeignReasoning), (false, false, false), Next::Refused),
            // Risk signals and refusals of the request itself: never another account.
            (refused(Reason::PolicyRefused { kind: PolicyKind::Cyber }), fresh, Next::Refused),
            (refused(Reason::AccountDeactivated), fresh, Next::Refused),
            (refused(Reason::ContextTooLong), fresh, Next::Refused),
            (refused(Reason::InvalidRequest), fresh, Next::Refused),
            (refused(Reason::NotFound), fresh, Next::Refused),
            (refused(Reason::MalformedEvent), fresh, Next::Refused),
            (refused(Reason::WebsocketMessageTooLarge), fresh, Next::Refused),
        ];
        for (failure, (without_reasoning, moved, has_reasoning), next) in rows {
            let attempt = Attempt { without_reasoning, moved };
            assert_eq!(after_failure(attempt, &failure, || has_reasoning), next, "{failure:?} {attempt:?}");
        }
    }

    /// The body is read again only for a refusal of foreign reasoning.
    #[test]
    fn the_body_is_read_again_only_when_it_decides() {
        let attempt = Attempt { without_reasoning: false, moved: false };
        let mut asked = false;
        after_failure(attempt, &refused(Reason::Overloaded), || {
            asked = true;
            true
        });
        assert!(!asked);
    }
}
