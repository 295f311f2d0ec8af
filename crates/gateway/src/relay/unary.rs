//! One unary upstream call (a JSON answer, not a stream): the remote compaction (`server/compact.rs`) and the
//! image endpoints (`server/images.rs`). Sent with a fresh token within the header deadline, once more after a
//! refresh on 401, the answer read whole within the idle deadline; a refusal is classified by the one
//! classifier (`dialects::failure`), so the caller decides on it as a model call would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use dialects::UpstreamFailure;
use dialects::failure::{Reason, Refusal, Stage};
use futures_util::StreamExt;

use crate::accounts::{Account, RefreshBudget};
use crate::app::AppState;
use crate::auth::now_unix;
use crate::upstream::{BodyStream, IntoFailure, TransportError, UpstreamResponse, classify};

/// Largest answer read (a long conversation's compacted history; several images in base64).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Send with `call` (given the authorization to use) and read the answer: its status, headers and body. Token
/// refreshes come out of the request's `refresh` budget: one attempt for the request, whichever accounts it
/// tries (issues 58, 71).
pub async fn send<F, Fut>(
    state: &AppState,
    account: &Arc<Account>,
    refresh: &mut RefreshBudget,
    call: F,
) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamFailure>
where
    F: Fn(HeaderValue) -> Fut,
    Fut: Future<Output = Result<UpstreamResponse, TransportError>>,
{
    let timeouts = &state.config.timeouts;
    let mut auth = state.pool.authorization(account, None, refresh).await.map_err(UpstreamFailure::Credentials)?;
    let mut refreshed = false;
    loop {
        let response = match tokio::time::timeout(timeouts.upstream_headers, call(auth.clone())).await {
            Ok(answer) => answer.map_err(|e| e.failure(Stage::Request))?,
            Err(_) => return Err(UpstreamFailure::HeaderTimeout { limit: timeouts.upstream_headers }),
        };
        let UpstreamResponse { status, headers, mut body } = response;
        if status.is_success() {
            let bytes = read_all(&mut body, state.config.upstream_idle_timeout).await?;
            return Ok((status, headers, bytes));
        }
        let bytes = read_all(&mut body, timeouts.upstream_error_body).await.unwrap_or_default();
        let failure = classify(status, &headers, &bytes, now_unix());
        match &failure {
            UpstreamFailure::Refused(Refusal { reason: Reason::Unauthorized, .. }) if !refreshed => {
                refreshed = true;
                let refused = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
                auth = state
                    .pool
                    .authorization(account, Some(refused), refresh)
                    .await
                    .map_err(UpstreamFailure::Credentials)?;
            }
            _ => return Err(failure),
        }
    }
}

/// The whole answer, up to [`MAX_ANSWER`] bytes, each wait bounded by `idle`.
async fn read_all(body: &mut BodyStream, idle: Duration) -> Result<Bytes, UpstreamFailure> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => {
                out.extend_from_slice(&chunk);
                if out.len() > MAX_ANSWER {
                    return Err(UpstreamFailure::StreamCut);
                }
            }
            Ok(Some(Err(e))) => return Err(e.failure(Stage::Body)),
            Ok(None) => return Ok(Bytes::from(out)),
            Err(_) => return Err(UpstreamFailure::Idle),
        }
    }
}
