//! The one handler every model route uses, generic over the [`Dialect`] trait (dialect.rs).
//!
//! A request goes: decode (the dialect) -> a created client key's limits (keys/) -> exchange (relay::exchange:
//! lease, send, fail over, peek) -> the answer, streamed through the dialect's encoder (relay::pump) or collected
//! and rendered whole -> one [`RequestRecord`](crate::record::RequestRecord) when it ends, success or failure.
//! Nothing here names a dialect.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use dialects::{GatewayError, OutputLimits, Usage};

use super::dialect::{Decoded, Dialect};
use super::errors::body_error;
use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::record::Recorder;
use crate::relay::exchange::{self, Exchange};
use crate::relay::pump;

/// What the exchange produced.
enum Reply<D: Dialect> {
    Stream {
        ex: Exchange,
        answer: D::Answer,
        limits: OutputLimits,
    },
    /// A whole answer (the serving account's limit headers on it), and its usage.
    Whole(Response, Usage),
    Local(Response),
}

/// The POST route serving dialect `D` with [`handle`], what its path adds (`route`) and the name it records.
pub fn post_route<D: Dialect<Route: Copy + Sync>>(
    route: D::Route,
    route_name: &'static str,
) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>,
              caller: Option<Caller>,
              headers: HeaderMap,
              body: Result<Bytes, BytesRejection>| handle::<D>(state, route, route_name, caller, headers, body),
    )
}

/// Serve one model request of dialect `D`: the only request path for model calls.
pub async fn handle<D: Dialect>(
    state: Arc<AppState>,
    route: D::Route,
    route_name: &'static str,
    caller: Option<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rid = request_id(&headers);
    let mut record = Recorder::new(state.records.clone(), D::API, route_name, rid);
    record.set_caller(caller.as_ref());
    let response = match serve::<D>(&state, route, caller, headers, body, &mut record).await {
        Ok(Reply::Stream { mut ex, answer, limits }) => {
            let cfg = &state.config;
            // The keepalive applies live (app/reload.rs): one snapshot load per stream.
            let keepalive = state.live.config().keepalive;
            let encoder = D::encoder(&answer);
            // The head first (the record moves into the body, which ends it).
            let mut head = D::finish(D::stream_response(Body::empty(), &answer), record.request_id());
            std::mem::take(&mut ex.rate_limits).apply(head.headers_mut());
            record.status_sent(head.status().as_u16());
            let body = pump::stream_body(ex, encoder, limits, keepalive, cfg.upstream_idle_timeout, record);
            let (parts, _) = head.into_parts();
            return Response::from_parts(parts, body);
        }
        Ok(Reply::Whole(response, usage)) => {
            record.usage(usage);
            response
        }
        Ok(Reply::Local(response)) => response,
        Err(err) => {
            record.error(&err);
            D::fail(&err, record.request_id())
        }
    };
    let response = D::finish(response, record.request_id());
    record.finish(response.status().as_u16());
    response
}

async fn serve<D: Dialect>(
    state: &AppState,
    route: D::Route,
    caller: Option<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut Recorder,
) -> Result<Reply<D>, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let (mut req, answer) = match D::decode(state, route, &headers, caller.as_ref(), body).await? {
        Decoded::Relay(req, answer) => (req, answer),
        Decoded::Answered(response) => return Ok(Reply::Local(response)),
    };
    record.set_request(&req.model.requested, req.stream);
    // A created key's limits, the one place they are checked: after decoding (the model is known), before the
    // upstream is called. The concurrency slot rides in the record until the request ends.
    if let Some(Caller(key)) = &caller {
        record.hold(state.keys.admit(key, &req.model.requested, &req.model.slug)?);
    }
    let key = caller.as_ref().map(|Caller(k)| &**k);
    let mut ex = exchange::start(state, headers, &mut req, key, record).await.map_err(|e| D::start_error(e, &req))?;
    if req.stream {
        return Ok(Reply::Stream { ex, answer, limits: req.limits });
    }
    let rate_limits = std::mem::take(&mut ex.rate_limits);
    let (mut response, usage) = D::whole(ex, answer, req.limits, state.config.upstream_idle_timeout, record).await?;
    rate_limits.apply(response.headers_mut());
    Ok(Reply::Whole(response, usage))
}
