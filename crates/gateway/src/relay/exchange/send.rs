//! The third phase of an exchange: one account's send with a fresh token, once more after a refresh on 401,
//! waiting for the response headers within the header deadline (a stream only within the peek window, then in
//! its response body), and an error answer's body read within bounds and classified.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dialects::UpstreamFailure;
use dialects::failure::{Credential, Reason, Refusal, Stage};
use futures_util::StreamExt;
use tracing::info;

use crate::accounts::{Account, RefreshBudget};
use crate::app::AppState;
use crate::auth::now_unix;
use crate::relay::reader::LateHeaders;
use crate::store::AccountKind;
use crate::upstream::{BodyStream, CallContext, IntoFailure, UpstreamResponse, classify};

/// Largest upstream error body we read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The peek window of a request: its length, and when it ends (set at the first send).
pub(super) struct PeekWindow {
    pub(super) len: Duration,
    pub(super) end: Option<Instant>,
}

/// What sending produced: the response, or (streaming only) headers still awaited when the peek window closed.
pub(super) enum Sent {
    Response(UpstreamResponse),
    Late(Box<LateHeaders>),
}

/// Send with a fresh token; on 401 refresh (single-flight) and send once more. Each send waits for its response
/// headers until the header deadline (`upstream_header_timeout_secs`, then the account cannot serve: another
/// one may), and a streaming one only until the peek window ends (set at the first send).
pub(super) async fn send_once(
    state: &AppState,
    account: &Arc<Account>,
    body: Bytes,
    ctx: &CallContext,
    stream: bool,
    peek: &mut PeekWindow,
    refresh: &mut RefreshBudget,
) -> Result<Sent, UpstreamFailure> {
    let timeouts = &state.config.timeouts;
    let mut auth = state.pool.authorization(account, None, refresh).await.map_err(UpstreamFailure::Credentials)?;
    let mut refreshed = false;
    loop {
        let sent_at = Instant::now();
        let header_deadline = sent_at + timeouts.upstream_headers;
        let window_end = *peek.end.get_or_insert(sent_at + peek.len);
        // Boxed: a streaming request's send moves into the response body if the peek window closes first, and
        // every request's future then carries a pointer instead of room for the send (memory while waiting is
        // unchanged; one allocation per request, ~0.1 us next to ~225 us of CPU per streamed request).
        let mut sending = Box::pin(state.upstream.send(account, auth.clone(), body.clone(), ctx));
        // A stream waits for its headers until the peek window ends, then goes on waiting in the response body;
        // anything else waits until the header deadline.
        let late = stream && window_end < header_deadline;
        let stop = if late { window_end } else { header_deadline };
        let answer = match tokio::time::timeout_at(stop.into(), &mut sending).await {
            Ok(answer) => answer,
            Err(_) if late => {
                return Ok(Sent::Late(Box::new(LateHeaders::new(
                    sending,
                    header_deadline,
                    timeouts.upstream_headers,
                    timeouts.upstream_error_body,
                ))));
            }
            Err(_) => return Err(UpstreamFailure::HeaderTimeout { limit: timeouts.upstream_headers }),
        };
        let response = answer.map_err(|e| e.failure(Stage::Request))?;
        if response.status.is_success() {
            return Ok(Sent::Response(response));
        }
        let failure = error_answer(response, timeouts.upstream_error_body).await;
        let UpstreamFailure::Refused(Refusal { reason: Reason::Unauthorized, .. }) = failure else {
            return Err(failure);
        };
        if refreshed {
            // Refused again with a credential just renewed: the account's problem, not the client's key, so never
            // a 401 (SDKs and Claude Code read that as their own key being wrong). The account rests meanwhile.
            return Err(login_refused(account));
        }
        info!(account = %account.id, "upstream said 401; refreshing the token once");
        refreshed = true;
        let refused = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        auth = state.pool.authorization(account, Some(refused), refresh).await.map_err(UpstreamFailure::Credentials)?;
    }
}

/// The failure when the upstream refuses a credential the gateway just renewed (the account then cools down,
/// see `dialects::failure`).
fn login_refused(account: &Account) -> UpstreamFailure {
    let credential = match account.kind {
        AccountKind::Chatgpt => Credential::ChatgptLogin,
        AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => Credential::ApiKey,
    };
    UpstreamFailure::LoginRefused { account: account.describe(), credential }
}

/// What an error answer says: its body read within `limit` (see [`read_limited`]), then classified.
pub(in crate::relay) async fn error_answer(mut response: UpstreamResponse, limit: Duration) -> UpstreamFailure {
    let bytes = read_limited(&mut response.body, limit).await;
    classify(response.status, &response.headers, &bytes, now_unix())
}

/// An error answer's body, up to [`MAX_ERROR_BODY`] bytes and `limit` of waiting: whatever arrived by then is
/// classified (a body that stalls must not hold the request, its account slot and shutdown).
async fn read_limited(body: &mut BodyStream, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        out.extend_from_slice(&chunk);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}
