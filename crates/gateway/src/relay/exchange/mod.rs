//! One upstream exchange, by phase: prepare the request (`prepare.rs`: validate the model, finalize and serialize
//! the body once), open it (`open.rs`: lease an account, send, fail over while nothing has reached the client),
//! send with a fresh token and one refresh on 401 (`send.rs`), and read the first events (`peek.rs`) so failures
//! that arrive inside a 200 stream still become proper HTTP errors. What follows a failed attempt is one pure
//! decision (`decide.rs`), tested by a table.

use std::sync::Arc;

use axum::http::HeaderMap;
use dialects::failure::PolicyKind;
use dialects::{GatewayError, UpstreamFailure, UpstreamRequest};

use crate::accounts::{Lease, Pool};
use crate::app::AppState;
use crate::keys::ClientKey;
use crate::record::Recorder;
use crate::relay::reader::EventReader;
use crate::upstream::ratelimits::RateLimitHeaders;

mod decide;
mod open;
mod peek;
mod prepare;
mod send;

pub use open::open;
pub use prepare::{Prepared, account_thread_id, prepare, thread_id_for};
pub(super) use send::error_answer;

/// An upstream response ready to be read, plus what the encoders need to know.
pub struct Exchange {
    pub reader: EventReader,
    /// The account serving this exchange; its concurrency slot is held until the exchange is dropped.
    pub lease: Lease,
    pub request_id: String,
    /// Rough input size, for usage numbers when the gateway cuts a stream itself.
    pub input_estimate: u64,
    /// issue 25: the serving account's `x-codex-*` limit headers, for the client's response head (empty when
    /// the upstream's headers came after the client's status line).
    pub rate_limits: RateLimitHeaders,
    /// Where a failure after the hand-over is reported ([`Exchange::report_failure`]). Boxed: every request's
    /// future carries the exchange while it waits for the upstream, and this is needed only if the answer fails.
    pub(super) later: Box<Later>,
}

/// What a failure after the hand-over is reported with.
pub(super) struct Later {
    pub(super) pool: Arc<Pool>,
    /// The conversation key the request went with (moved from the [`Prepared`] request by [`start`]).
    pub(super) key: String,
}

impl Exchange {
    /// The answer failed after the exchange was handed over (the pump's in-stream error, a whole answer's
    /// failure): the pool learns what it says of the account's standing, so its risk signal (a policy refusal, a
    /// deactivation) holds the conversation and counts on the account as before the first byte.
    pub fn report_failure(&self, failure: &UpstreamFailure) {
        let Later { pool, key, .. } = &*self.later;
        let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
        pool.record_standing(&self.lease.account, conversation, failure);
    }

    /// The upstream's content filter ended the answer after output had gone out: the client's dialect reports
    /// the finish as it always did, and the pool counts the refusal and holds the conversation.
    pub fn report_refusal(&self, kind: PolicyKind) {
        let Later { pool, key, .. } = &*self.later;
        let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
        pool.record_policy_refusal(&self.lease.account, conversation, kind);
    }
}

/// Why no exchange could be opened. Routes that word some of these in their own dialect match on it; the rest
/// turn it into the client's error with `?` ([`From`]).
#[derive(Debug)]
pub enum StartError {
    /// No account serves the model: the catalog does not list it, no account's plan serves it, or the upstream
    /// said it does not exist.
    UnknownModel(GatewayError),
    /// The upstream refused the request itself; no other account was tried, since every one would refuse it.
    Refused(UpstreamFailure),
    /// No account could serve it: the accounts' failures (the soonest rate limit among them), or the pool's own
    /// reason (cooling down, busy, none enabled or logged in), or the request could not be prepared.
    Unavailable(GatewayError),
    /// The conversation is held on an account that cannot serve it now (docs/accounts.md, "Risk signals"), and no
    /// other account may take it.
    Held(GatewayError),
}

impl StartError {
    /// The client's error.
    pub fn into_error(self) -> GatewayError {
        match self {
            StartError::UnknownModel(e) | StartError::Unavailable(e) | StartError::Held(e) => e,
            StartError::Refused(failure) => failure.to_error(),
        }
    }

    /// The request named a model no account serves (routes say so in their dialect's words).
    pub fn is_unknown_model(&self) -> bool {
        match self {
            StartError::UnknownModel(_) => true,
            StartError::Refused(_) | StartError::Unavailable(_) | StartError::Held(_) => false,
        }
    }
}

impl From<StartError> for GatewayError {
    fn from(e: StartError) -> GatewayError {
        e.into_error()
    }
}

/// Validate the model, finalize the body and open the upstream stream. The client's headers are dropped once the
/// request is prepared: they are not needed while it waits for the upstream.
///
/// `client_key` is the created client key the request came with, if any: an opportunistic key's request is served
/// only from quota that would otherwise expire (`Need::opportunistic`).
pub async fn start(
    state: &AppState,
    headers: HeaderMap,
    req: &mut UpstreamRequest,
    client_key: Option<&ClientKey>,
    record: &mut Recorder,
) -> Result<Exchange, StartError> {
    let prepared = prepare(state, &headers, req, client_key, record).await?;
    drop(headers);
    let mut exchange = open(state, &prepared, record).await?;
    // Moved, not copied: the request is done with it.
    exchange.later.key = prepared.key;
    Ok(exchange)
}
