//! A client dialect as the server drives it: the [`Dialect`] trait the generic handler (handler.rs) is generic
//! over: its record name, its error answer, its decode, exchange and answer hooks. [`Shape`] is a dialect's error
//! answer as a value, for errors raised before a handler runs (the guard's refusals, 404, 405), whose dialect
//! only the path tells (routes.rs `shape_of`).
//!
//! A dialect is its module in `dialects` (decode, encoder, renderer, error body), its `Dialect` impl (one file
//! here: openai.rs, anthropic.rs, gemini.rs, ollama.rs) and one line of registration (routes.rs).

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dialects::assemble::Collected;
use dialects::encoder::StreamEncoder;
use dialects::{GatewayError, OutputLimits, UpstreamRequest, Usage};
use serde_json::Value;

use crate::app::AppState;
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::relay::exchange::{Exchange, StartError};
use crate::relay::pump;

/// One client dialect, as the generic handler drives it.
pub trait Dialect: Sized + Send + 'static {
    /// What the request record calls it.
    const API: Api;
    /// What the route's path and query add to the body (Gemini's model and framing, Ollama's endpoint).
    type Route: Send + 'static;
    /// What the answer needs besides the upstream events: ids, the model as the client named it, decode options.
    type Answer: Send + 'static;
    type Encoder: StreamEncoder;

    /// Decode the body into the neutral request. The body's bytes must be dropped before anything is awaited
    /// (they pin the connection's read buffer while the request waits; docs/performance.md, "Small waiting requests"). May answer by itself (a model
    /// load without an upstream call). `caller` is the created client key, if any (what the caller may reach of
    /// what the gateway keeps: the Responses answers named by `previous_response_id`).
    fn decode(
        state: &AppState,
        route: Self::Route,
        headers: &HeaderMap,
        caller: Option<&Caller>,
        body: Bytes,
    ) -> impl Future<Output = Result<Decoded<Self>, GatewayError>> + Send;

    /// The client's error when no exchange could be opened (a dialect may word an unknown model its own way).
    fn start_error(err: StartError, _req: &UpstreamRequest) -> GatewayError {
        err.into_error()
    }

    fn encoder(answer: &Self::Answer) -> Self::Encoder;

    /// The response around a streaming body (SSE unless the dialect frames otherwise).
    fn stream_response(body: Body, _answer: &Self::Answer) -> Response {
        sse_response(body)
    }

    /// A whole (non-streaming) answer's body, rendered from the collected upstream events. Called only by the
    /// default [`Dialect::whole`]: a dialect that assembles its answer in its own (Responses, from the raw events as
    /// they came) renders nothing.
    fn render(_collected: &Collected, _answer: Self::Answer) -> Value {
        Value::Null
    }

    /// A whole (non-streaming) answer: read the exchange to its end and render it, with the usage it reported.
    fn whole(
        ex: Exchange,
        answer: Self::Answer,
        limits: OutputLimits,
        idle_timeout: Duration,
        record: &mut Recorder,
    ) -> impl Future<Output = Result<(Response, Usage), GatewayError>> + Send {
        async move {
            let collected = pump::collect(ex, limits, idle_timeout, record).await?;
            Ok((Json(Self::render(&collected, answer)).into_response(), collected.usage))
        }
    }

    /// Its error answer, status and body (rendered by its module in `dialects`; OpenAI's unless it has its own):
    /// for its own errors, and for those raised on its paths before its handler runs ([`Shape`]).
    fn error_body(err: &GatewayError, _request_id: &str) -> (u16, Value) {
        (err.status(), err.openai_body())
    }

    /// Last touch on every response of the dialect, success or error (Anthropic's `request-id` header).
    fn finish(response: Response, _request_id: &str) -> Response {
        response
    }

    /// An error as the dialect answers it: [`Dialect::error_body`], then [`Dialect::finish`].
    fn fail(err: &GatewayError, request_id: &str) -> Response {
        crate::server::errors::error_response(Shape::of::<Self>(), err, request_id)
    }
}

/// What decoding produced.
pub enum Decoded<D: Dialect> {
    /// A request for the upstream, and what its answer needs.
    Relay(UpstreamRequest, D::Answer),
    /// The dialect answered by itself.
    Answered(Response),
}

/// A dialect's error answer as a value ([`Shape::of`]): what an error raised before any handler ran is rendered
/// with, the dialect chosen by the path (routes.rs `shape_of`) or the listener (the Ollama bridge's).
#[derive(Clone, Copy)]
pub struct Shape {
    /// [`Dialect::error_body`].
    pub(super) body: fn(&GatewayError, &str) -> (u16, Value),
    /// [`Dialect::finish`].
    pub(super) finish: fn(Response, &str) -> Response,
}

impl Shape {
    pub const fn of<D: Dialect>() -> Shape {
        Shape { body: D::error_body, finish: D::finish }
    }
}

/// SSE response headers around a streaming body.
pub fn sse_response(body: Body) -> Response {
    streaming_response(body, "text/event-stream; charset=utf-8")
}

/// A streaming body's response, of `content_type`, that no cache or proxy holds back.
pub fn streaming_response(body: Body, content_type: &'static str) -> Response {
    let mut resp = Response::new(body);
    // Room for these three, the request id and the serving account's rate-limit headers (a dozen, put on by the
    // handler): grown on the way, the map was reallocated and rehashed on every streamed answer.
    *resp.headers_mut() = HeaderMap::with_capacity(20);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
