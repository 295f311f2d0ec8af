//! The second phase of an exchange: lease an account, send the prepared request, and fail over to another
//! account while nothing has reached the client, within `[routing] max_accounts_per_request`. What a failure
//! leads to is `decide.rs`'s; what it teaches the pool is `Pool::record_failure`'s.

use std::time::{Duration, Instant};

use dialects::{ErrorKind, GatewayError};
use tracing::warn;

use super::decide::{Attempt, Next, after_failure};
use super::peek::peek;
use super::send::{PeekWindow, Sent, send_once};
use super::{Exchange, Later, Prepared, StartError};
use crate::accounts::{LeaseError, Need, RefreshBudget};
use crate::app::AppState;
use crate::record::Recorder;
use crate::relay::reader::EventReader;
use crate::upstream::UpstreamResponse;
use crate::upstream::ratelimits::RateLimitHeaders;

/// Open the upstream stream for a prepared request: lease an account, send, fail over while nothing has reached
/// the client.
///
/// The peek window (`keepalive`, at most 10 s) is measured from when the first request is sent, and covers the
/// wait for its response headers too: a streaming request whose headers have not come by then is returned
/// with them still pending ([`LateHeaders`]), so the client gets its status line and keepalives while the
/// pump waits for them (up to the header deadline; from then on a failure is an in-stream error).
///
/// What follows a failed attempt is [`after_failure`]'s decision (whether another account may try is the
/// failure's own, [`dialects::UpstreamFailure::failover`]); what the failure does to the account is
/// [`crate::accounts::Pool::record_failure`]'s.
///
/// A conversation served by another account than its home (the account that served its last turn, which cannot
/// serve now) moves: the turn goes without the state sealed to the home account ([`super::moves`]), and the record
/// notes the move. A turn refused for a foreign reasoning item is sent again without reasoning, once. An account
/// other than the one that got the conversation's own identifiers gets identifiers of its own
/// ([`Prepared::for_account`]).
///
/// A request goes to at most `[routing] max_accounts_per_request` accounts: a request every account fails would
/// otherwise be sent to the whole pool, each attempt one more account that saw it.
pub async fn open(state: &AppState, prepared: &Prepared, record: &mut Recorder) -> Result<Exchange, StartError> {
    let Prepared { slug, key, input_estimate, stream, opportunistic, .. } = prepared;
    let input_estimate = *input_estimate;
    let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
    let known = conversation.and_then(|k| state.pool.home_account(k));
    let home = known.as_ref().map(|(home, _)| home.as_str());
    // Both apply live (app/reload.rs): one snapshot load per request.
    let (keepalive, max_accounts) = {
        let live = state.live.config();
        (live.keepalive, live.routing.max_accounts_per_request)
    };
    let mut foreign_reasoning = false;
    let mut window = PeekWindow { len: keepalive.min(Duration::from_secs(10)), end: None };
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<GatewayError> = None;
    // One token refresh attempt for the whole request, whichever accounts it goes through (issues 58, 71),
    // counted from when it began: an attempt the catalog check waited through on its way here is one of them.
    let mut refresh = RefreshBudget::since(record.started());
    loop {
        if tried.len() >= max_accounts {
            return Err(StartError::Unavailable(last_error.unwrap_or_else(no_other_account)));
        }
        let need = Need { model: slug, conversation, input_tokens: input_estimate, opportunistic: *opportunistic };
        let lease = match state.pool.lease(&need, &tried).await {
            Ok(l) => l,
            // Every eligible account was tried: report what went wrong with them, not the empty pool.
            Err(LeaseError::Exhausted) => {
                return Err(StartError::Unavailable(last_error.unwrap_or_else(no_other_account)));
            }
            Err(LeaseError::UnknownModel(e)) => return Err(StartError::UnknownModel(e)),
            Err(LeaseError::Unavailable(e)) => return Err(StartError::Unavailable(pick_error(last_error, e))),
            Err(LeaseError::Held { hold, error }) => {
                record.held(&hold);
                return Err(StartError::Held(error));
            }
        };
        let account = lease.account.clone();
        tried.push(account.id.clone());
        record.attempt(&account.id);
        let moved_from = home.filter(|h| *h != account.id);
        // Not the account that got the conversation's own identifiers (the one it moved from earlier, else its
        // home, else this request's first): identifiers of its own.
        let own_identity = match &known {
            Some((_, Some(origin))) => *origin != account.id,
            Some((home, None)) => *home != account.id,
            None => tried.first().is_some_and(|first| *first != account.id),
        };
        let unsealed: Prepared;
        let current = match (moved_from.is_some() || foreign_reasoning, own_identity) {
            (false, false) => prepared,
            (strip, _) => {
                let base = match strip {
                    false => None,
                    true => match crate::relay::moves::unseal(prepared) {
                        Ok(edited) => edited,
                        Err(sealed) => {
                            if let (Some(k), Some(h)) = (conversation, home) {
                                state.pool.keep_home(k, h);
                            }
                            let error = sealed.error(moved_from.or(home).unwrap_or_default());
                            return Err(StartError::Unavailable(error));
                        }
                    },
                };
                let base = base.as_ref().unwrap_or(prepared);
                unsealed = match own_identity {
                    true => base.for_account(&account.id).unwrap_or_else(|| base.clone()),
                    false => base.clone(),
                };
                &unsealed
            }
        };
        let ctx = &current.ctx;
        let exchange = |reader, rate_limits, record: &mut Recorder| {
            record.served_by(&account.id);
            if let Some(from) = moved_from {
                record.moved_from(from);
            }
            Exchange {
                reader,
                lease,
                request_id: ctx.request_id.clone(),
                input_estimate,
                rate_limits,
                later: Box::new(Later { pool: state.pool.clone(), key: String::new() }),
            }
        };
        let sent = send_once(state, &account, current.body.clone(), ctx, *stream, &mut window, &mut refresh);
        let failure = match sent.await {
            Ok(Sent::Late(late)) => {
                return Ok(exchange(EventReader::late(late), RateLimitHeaders::default(), record));
            }
            Ok(Sent::Response(UpstreamResponse { headers, body, .. })) => {
                state.pool.record_success(&account, &headers);
                let rate_limits = RateLimitHeaders::from_upstream(&headers);
                // Freed before the peek, not after it: the upstream's header map (~1.5–2.5 KB) would otherwise
                // be held by every request waiting for its first event (docs/performance.md, "Small waiting requests").
                drop(headers);
                let mut reader = EventReader::new(body);
                let until = window.end.unwrap_or_else(|| Instant::now() + window.len);
                match peek(&mut reader, until).await {
                    Ok(()) => return Ok(exchange(reader, rate_limits, record)),
                    // Failed before any output: nothing has reached the client, so another account may try.
                    Err(failure) => failure,
                }
            }
            Err(failure) => failure,
        };
        record.attempt_failed(&failure);
        // What the failure teaches the pool about the account (a cooldown, a status change, a risk signal), whether
        // another account may try or not: a policy refusal stops the request and holds its conversation.
        state.pool.record_failure(&account, slug, conversation, &failure);
        let attempt = Attempt { without_reasoning: foreign_reasoning, moved: moved_from.is_some() };
        match after_failure(attempt, &failure, || matches!(crate::relay::moves::unseal(prepared), Ok(Some(_)))) {
            Next::OtherAccount => {
                let error = failure.to_error();
                warn!(account = %account.id, error = %error, "account could not serve the request; trying another");
                last_error = Some(pick_error(last_error, error));
            }
            Next::UnknownModel => return Err(StartError::UnknownModel(failure.to_error())),
            // Reasoning sealed to another account (a conversation that moved earlier): once more without it, on
            // the same account.
            Next::AgainWithoutReasoning => {
                warn!(account = %account.id, error = %failure.to_error(), "upstream refused earlier reasoning; retrying without it");
                foreign_reasoning = true;
                tried.pop();
            }
            Next::Refused => return Err(StartError::Refused(failure)),
        }
    }
}

/// The pool ran out of accounts to try before any was tried (not reached in practice: the first lease reports
/// the pool's own reason instead).
fn no_other_account() -> GatewayError {
    GatewayError::new(ErrorKind::UpstreamUnavailable, "No other account could serve the request.")
        .with_code("no_other_account")
}

/// Among several account failures report one: the rate limit with the soonest reset, else the latest.
fn pick_error(previous: Option<GatewayError>, new: GatewayError) -> GatewayError {
    match previous {
        Some(p) if p.kind == ErrorKind::RateLimited && new.kind == ErrorKind::RateLimited => {
            if p.retry_after.unwrap_or(u64::MAX) <= new.retry_after.unwrap_or(u64::MAX) { p } else { new }
        }
        Some(p) if p.kind == ErrorKind::RateLimited => p,
        _ => new,
    }
}
