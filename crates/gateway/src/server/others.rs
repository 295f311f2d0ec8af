//! The routes that are not model calls, as the router records them: their record (a layer: the generic handler
//! records model calls itself), and the answers to a path no route serves (404) or a method it does not (405), in
//! the error shape of the path.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use dialects::{ErrorKind, GatewayError};

use super::dialect::Shape;
use super::errors::{error_response, method_not_allowed_response};
use super::routes::shape_of;
use crate::app::{AppState, request_id};
use crate::record::{Api, Recorder, Sinks};

/// The record of a request that is not a model call: route, status and time (the access line of a model list,
/// an admin call, a 404).
pub async fn record_other(State(sinks): State<Sinks>, req: Request, next: axum::middleware::Next) -> Response {
    let mut record = Recorder::new(sinks, Api::Other, method_route(&req), request_id(req.headers()));
    record.set_caller(req.extensions().get::<crate::keys::Caller>());
    let response = next.run(req).await;
    record.finish(response.status().as_u16());
    response
}

pub async fn not_found(headers: HeaderMap, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let err = GatewayError::new(ErrorKind::NotFound, format!("No route for {} {path}", req.method()));
    error_response(shape_of(&path), &err, &request_id(&headers))
}

/// A known path with a method it does not serve: 405 in the route's dialect. axum adds the `Allow` header from
/// the route's methods (the default 405 had an empty body, which no client can parse).
pub async fn method_not_allowed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    method_not_allowed_in(shape_of, &state, &req)
}

/// [`method_not_allowed`] on a listener whose paths `shape_of` gives their dialect (the Ollama bridge's).
pub fn method_not_allowed_in(shape_of: fn(&str) -> Shape, state: &AppState, req: &Request) -> Response {
    let path = req.uri().path();
    let record = Recorder::new(state.records.clone(), Api::Other, method_route(req), request_id(req.headers()));
    let response = method_not_allowed_response(shape_of(path), req.method(), path, record.request_id());
    record.finish(response.status().as_u16());
    response
}

/// The route pattern a request matched, for its record.
pub fn method_route<B>(req: &axum::http::Request<B>) -> Cow<'static, str> {
    match req.extensions().get::<MatchedPath>() {
        Some(path) => Cow::Owned(path.as_str().to_string()),
        None => Cow::Borrowed("(none)"),
    }
}
