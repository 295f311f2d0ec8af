//! `POST /v1/images/generations` and `/v1/images/edits` (issue 59, docs/protocol.md "Images"): the OpenAI Images
//! API, JSON or (edits, as the SDKs send them) a multipart form, decoded by `dialects::images`, served by the
//! backend's image endpoints (`upstream/images.rs`) on a ChatGPT account on a paid plan
//! (`Pool::lease_for_images`). Refusals are classified like a model call's (`dialects::failure`), failing over
//! to another account while one may serve; the answer carries the images as `b64_json` and the account's
//! `x-codex-*` limit headers; the request's record (its usage in image tokens) goes to the ledger as `images`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use dialects::failure::Failover;
use dialects::images::{self, FormField, ImageRequest, Operation};
use dialects::{ErrorKind, GatewayError, Usage};

use crate::accounts::{LeaseError, RefreshBudget};
use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::relay::unary;
use crate::server::errors::{body_error, error_response, too_large};
use crate::server::openai;
use crate::upstream::CallContext;
use crate::upstream::ratelimits::RateLimitHeaders;

pub fn routes() -> Router<Arc<AppState>> {
    let op = |op, route| post(move |State(state): State<Arc<AppState>>, req: Request| handle(state, op, route, req));
    let generations = op(Operation::Generate, "/v1/images/generations");
    let edits = op(Operation::Edit, "/v1/images/edits");
    Router::new()
        .route("/v1/images/generations", generations.clone())
        .route("/images/generations", generations)
        .route("/v1/images/edits", edits.clone())
        .route("/images/edits", edits)
}

/// One image request, recorded under `route`.
async fn handle(state: Arc<AppState>, op: Operation, route: &'static str, req: Request) -> Response {
    let rid = request_id(req.headers());
    let mut record = Recorder::new(state.records.clone(), Api::Images, route, rid.clone());
    let caller = req.extensions().get::<Caller>().cloned();
    record.set_caller(caller.as_ref());
    let response = match serve(&state, op, req, caller, &mut record).await {
        Ok((response, usage)) => {
            record.usage(usage);
            response
        }
        Err(err) => {
            record.error(&err);
            error_response(openai::SHAPE, &err, &rid)
        }
    };
    record.finish(response.status().as_u16());
    response
}

async fn serve(
    state: &AppState,
    op: Operation,
    req: Request,
    caller: Option<Caller>,
    record: &mut Recorder,
) -> Result<(Response, Usage), GatewayError> {
    let request = read(state, op, req).await?;
    record.set_request(&request.model, false);
    record.set_resolved(&request.model);
    if let Some(Caller(key)) = &caller {
        record.hold(state.keys.admit(key, &request.model, &request.model)?);
    }
    let ImageRequest { model, body, .. } = request;
    let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| GatewayError::internal(e.to_string()))?);
    let ctx = CallContext { request_id: record.request_id().to_string(), ..CallContext::default() };
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<GatewayError> = None;
    let mut refresh = RefreshBudget::since(record.started());
    loop {
        let opportunistic = caller.as_ref().is_some_and(|Caller(k)| k.opportunistic);
        let lease = match state.pool.lease_for_images(&model, opportunistic, &tried).await {
            Ok(lease) => lease,
            Err(LeaseError::Exhausted) => return Err(last_error.unwrap_or_else(no_account)),
            Err(LeaseError::UnknownModel(_)) => return Err(no_account()),
            Err(LeaseError::Unavailable(e)) => return Err(last_error.unwrap_or(e)),
            // Not reached: an image request names no conversation.
            Err(LeaseError::Held { error, .. }) => return Err(error),
        };
        let account = lease.account.clone();
        tried.push(account.id.clone());
        record.attempt(&account.id);
        let call = |auth| state.upstream.images(&account, auth, op.upstream_path(), body.clone(), &ctx);
        match unary::send(state, &account, &mut refresh, call).await {
            Ok((_, headers, answer)) => {
                state.pool.record_success(&account, &headers);
                record.served_by(&account.id);
                let (json, usage) = images::render(&answer)?;
                let mut response = axum::Json(json).into_response();
                RateLimitHeaders::from_upstream(&headers).apply(response.headers_mut());
                return Ok((response, usage));
            }
            Err(failure) => {
                record.attempt_failed(&failure);
                // Images belong to no conversation: nothing is held, but the account learns what the failure says.
                state.pool.record_failure(&account, &model, None, &failure);
                match failure.failover() {
                    Failover::OtherAccount => {
                        last_error = Some(failure.to_error());
                    }
                    Failover::Stop => return Err(failure.to_error()),
                }
            }
        }
    }
}

/// No account can make images: none is a ChatGPT login on a paid plan, or every one is disabled.
fn no_account() -> GatewayError {
    // 503: the gateway cannot serve this now (as with a pool of accounts that are all unavailable), not a 502.
    GatewayError::new(
        ErrorKind::Overloaded,
        "Image generation needs a ChatGPT account on a paid plan (Plus, Pro, Business, ...): API-key, relay and \
         Free accounts have no image endpoint here (docs/protocol.md, Images).",
    )
    .with_code("no_image_account")
}

/// The request, from a multipart form or a JSON body.
async fn read(state: &AppState, op: Operation, req: Request) -> Result<ImageRequest, GatewayError> {
    if is_multipart(req.headers()) {
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| GatewayError::invalid(format!("Could not read the multipart form: {}", e.body_text())))?;
        let mut fields = Vec::new();
        while let Some(field) = form.next_field().await.map_err(|e| form_error(e, state.config.body_limit))? {
            let name = field.name().unwrap_or_default().to_string();
            let file = field.file_name().is_some();
            let content_type = field.content_type().map(str::to_string);
            let bytes = field.bytes().await.map_err(|e| form_error(e, state.config.body_limit))?;
            fields.push(if file {
                FormField::File { name, content_type, bytes: bytes.to_vec() }
            } else {
                let value = String::from_utf8(bytes.to_vec())
                    .map_err(|_| GatewayError::invalid_param(&name, "A text field must be UTF-8"))?;
                FormField::Text { name, value }
            });
        }
        return images::decode_form(op, fields);
    }
    let body = Bytes::from_request(req, state).await.map_err(|r| body_error(r, state.config.body_limit))?;
    images::decode_json(op, &body)
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

fn form_error(e: axum::extract::multipart::MultipartError, limit: usize) -> GatewayError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return too_large(limit);
    }
    GatewayError::invalid(format!("Could not read the multipart form: {}", e.body_text()))
}
