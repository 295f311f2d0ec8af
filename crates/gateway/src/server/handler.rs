//! The one handler every model route uses, and the [`Dialect`] trait it is generic over.
//!
//! A request goes: decode (the dialect) -> a created client key's limits (keys/) -> exchange (relay::exchange: lease, send, fail over, peek) -> the
//! answer, streamed through the dialect's encoder (relay::pump) or collected and rendered whole -> one
//! [`RequestRecord`](crate::record::RequestRecord) when it ends, success or failure. A dialect is its own module
//! (decode, encoder, renderer, error shape, hooks) plus one route registration; nothing here names one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use dialects::encoder::StreamEncoder;
use dialects::{GatewayError, OutputLimits, UpstreamRequest, Usage};

use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::relay::exchange::{self, Exchange, StartError};
use crate::relay::pump;
use crate::server::errors::{Shape, body_error, error_response};
use crate::upstream::ratelimits::RateLimitHeaders;

/// One client dialect, as the generic handler drives it.
pub trait Dialect: Sized + Send + 'static {
    /// What the request record calls it.
    const API: Api;
    /// The error body its clients parse.
    const SHAPE: Shape;
    /// What the route's path and query add to the body (Gemini's model and framing, Ollama's endpoint).
    type Route: Send + 'static;
    /// What the answer needs besides the upstream events: ids, the model as the client named it, decode options.
    type Answer: Send + 'static;
    type Encoder: StreamEncoder;

    /// Decode the body into the neutral request. The body's bytes must be dropped before anything is awaited
    /// (they pin the connection's read buffer while the request waits; bench/notes.md). May answer by itself (a model
    /// load without an upstream call).
    fn decode(
        state: &AppState,
        route: Self::Route,
        headers: &HeaderMap,
        body: Bytes,
    ) -> impl Future<Output = Result<Decoded<Self>, GatewayError>> + Send;

    /// Open the upstream exchange. Hook for a dialect that retries in its own way (Anthropic).
    fn start(
        state: &AppState,
        headers: HeaderMap,
        req: &mut UpstreamRequest,
        record: &mut Recorder,
    ) -> impl Future<Output = Result<Exchange, StartError>> + Send {
        exchange::start(state, headers, req, record)
    }

    /// The client's error when no exchange could be opened (a dialect may word an unknown model its own way).
    fn start_error(err: StartError, _req: &UpstreamRequest) -> GatewayError {
        err.into_error()
    }

    /// The streaming encoder for this answer.
    fn encoder(answer: &Self::Answer) -> Self::Encoder;

    /// The response around a streaming body (SSE unless the dialect frames otherwise).
    fn stream_response(body: Body, _answer: &Self::Answer) -> Response {
        sse_response(body)
    }

    /// A whole (non-streaming) answer: read the exchange to its end and render it, with the usage it reported.
    fn whole(
        ex: Exchange,
        answer: Self::Answer,
        limits: OutputLimits,
        idle_timeout: Duration,
        record: &mut Recorder,
    ) -> impl Future<Output = Result<(Response, Usage), GatewayError>> + Send;

    /// Last touch on every response of the dialect, success or error (Anthropic's `request-id` header).
    fn finish(response: Response, _request_id: &str) -> Response {
        response
    }
}

/// What decoding produced.
pub enum Decoded<D: Dialect> {
    /// A request for the upstream, and what its answer needs.
    Relay(UpstreamRequest, D::Answer),
    /// The dialect answered by itself.
    Answered(Response),
}

/// What the exchange produced.
enum Reply<D: Dialect> {
    Stream {
        ex: Exchange,
        answer: D::Answer,
        limits: OutputLimits,
    },
    /// A whole answer, and the serving account's limit headers for its head.
    Whole(Response, Usage, RateLimitHeaders),
    Local(Response),
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
    record.set_client_key(caller.as_ref().map(|c| c.0.id.clone()));
    match serve::<D>(&state, route, caller, headers, body, &mut record).await {
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
            Response::from_parts(parts, body)
        }
        Ok(Reply::Whole(mut response, usage, rate_limits)) => {
            record.usage(usage);
            rate_limits.apply(response.headers_mut());
            let response = D::finish(response, record.request_id());
            record.finish(response.status().as_u16());
            response
        }
        Ok(Reply::Local(response)) => {
            let response = D::finish(response, record.request_id());
            record.finish(response.status().as_u16());
            response
        }
        Err(err) => {
            record.error(&err);
            let response = D::finish(error_response(D::SHAPE, &err, record.request_id()), record.request_id());
            record.finish(response.status().as_u16());
            response
        }
    }
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
    let (mut req, answer) = match D::decode(state, route, &headers, body).await? {
        Decoded::Relay(req, answer) => (req, answer),
        Decoded::Answered(response) => return Ok(Reply::Local(response)),
    };
    record.set_request(&req.model.requested, req.stream);
    // A created key's limits, the one place they are checked: after decoding (the model is known), before the
    // upstream is called. The concurrency slot rides in the record until the request ends.
    if let Some(Caller(key)) = &caller {
        record.hold(state.keys.admit(key, &req.model.requested, &req.model.slug)?);
    }
    let mut ex = D::start(state, headers, &mut req, record).await.map_err(|e| D::start_error(e, &req))?;
    if req.stream {
        return Ok(Reply::Stream { ex, answer, limits: req.limits });
    }
    let rate_limits = std::mem::take(&mut ex.rate_limits);
    let (response, usage) = D::whole(ex, answer, req.limits, state.config.upstream_idle_timeout, record).await?;
    Ok(Reply::Whole(response, usage, rate_limits))
}

/// SSE response headers around a streaming body.
pub fn sse_response(body: axum::body::Body) -> Response {
    let mut resp = Response::new(body);
    // Room for these three, the request id and the serving account's rate-limit headers (a dozen, put on by the
    // handler): grown on the way, the map was reallocated and rehashed on every streamed answer.
    *resp.headers_mut() = HeaderMap::with_capacity(20);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
