//! The model calls of the main listener (routes.rs, [`ModelCall`]), served without the router: the same guard,
//! request id and handler the router gives them, in the connection's own future.
//!
//! Why (docs/performance.md, "Small waiting requests"): a model call waits for its first upstream event with everything it
//! holds, and thousands wait at once when many streams open together. Through the router each of them holds
//! three heap blocks: the route's boxed service future (~0.7 KB), the handler's boxed future (~2.5 KB), and the
//! connection's read-and-handle future. Here the handler is inline in the last one, which is freed before the
//! response streams. Every other request (and a model call whose body did not arrive in time or is over
//! `body_limit_mb`) goes through the router as before.

use std::future::Future;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either::{Left, Right};
use futures_util::future::ready;

use super::guard::Policy;
use super::routes::ModelCall;
use crate::app::AppState;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Serve a model call as the router would: the guard first (guard.rs), then the request id (the client's
/// `x-request-id`, or a new UUID) set on the request and carried to the response, then the route's handler.
/// `body` is the whole body, within `body_limit_mb` (the caller checks).
///
/// Not an `async fn`: one holds its arguments for its whole life and a future it awaits a second time, so the
/// handler's ~3.2 KB would count twice. The calls share one enum's room ([`ModelCall::serve`]; routes.rs says
/// which call is boxed).
pub fn serve(
    call: ModelCall,
    state: Arc<AppState>,
    policy: &Policy,
    parts: Parts,
    body: Bytes,
) -> impl Future<Output = Response> + Send + 'static {
    let req = Request::from_parts(parts, body);
    let caller = match policy.admit(&req) {
        Ok(caller) => caller,
        Err(refusal) => return Left(ready(policy.refuse(refusal, &req))),
    };
    let (mut parts, body) = req.into_parts();
    let request_id = match parts.headers.get(X_REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string());
            // A UUID is always a valid header value; the `else` is not reached.
            let id = id.unwrap_or(HeaderValue::from_static("unknown"));
            parts.headers.insert(X_REQUEST_ID, id.clone());
            id
        }
    };
    let handler = call.serve(state, caller, parts.headers, Ok(body));
    Right(handler.map(move |mut response| {
        if !response.headers().contains_key(X_REQUEST_ID) {
            response.headers_mut().insert(X_REQUEST_ID, request_id);
        }
        response
    }))
}
