//! OpenAI routes: Chat Completions (translated) and Responses (passthrough).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dialects::chat::{ChatEncoder, render_completion};
use dialects::responses::{ResponsesAssembler, stream_error_frame};
use dialects::sse::{SseFrame, write_event};
use dialects::{Event, GatewayError};

use crate::auth::now_unix;
use crate::relay::exchange::{self, request_id};
use crate::relay::pump::{self, StreamEncoder, Translated};
use crate::server::errors::{Dialect, body_error, error_response};
use crate::server::{AppState, sse_response};

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rid = request_id(&headers);
    match chat(&state, headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(Dialect::OpenAi, &e, &rid),
    }
}

async fn chat(
    state: &AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let (mut req, opts) = dialects::chat::decode(&body)?;
    // Free the request's bytes before waiting on the upstream (they pin hyper's read buffer; bench/notes.md).
    drop(body);
    let ex = exchange::start(state, headers, &mut req).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix() as u64;
    let model = req.model.requested.clone();
    if req.stream {
        let encoder = Translated(ChatEncoder::new(id, created, model.clone(), opts.include_usage));
        let cfg = &state.config;
        Ok(sse_response(pump::stream_body(ex, encoder, req.limits, cfg.keepalive, cfg.upstream_idle_timeout, model)))
    } else {
        let collected = pump::collect(ex, req.limits, state.config.upstream_idle_timeout).await?;
        Ok(Json(render_completion(&collected, &id, created, &model)).into_response())
    }
}

/// `POST /v1/responses`: normalise the request, pass the events through unchanged.
pub async fn responses(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rid = request_id(&headers);
    match responses_inner(&state, headers, body).await {
        Ok(r) => r,
        Err(e) => error_response(Dialect::OpenAi, &e, &rid),
    }
}

async fn responses_inner(
    state: &AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let mut req = dialects::responses::decode(&body)?;
    // Free the request's bytes before waiting on the upstream (they pin hyper's read buffer; bench/notes.md).
    drop(body);
    // Only some models take `reasoning.context` (pydantic-ai sends it by default): forward it where the catalog
    // says so, else drop it (docs/parameter-policy.md). `check` makes sure the catalog is fetched; `exchange`
    // repeats it on its fast path.
    if dialects::responses::has_reasoning_context(&req) {
        state.catalog.check(&req.model.slug).await?;
        if !state.catalog.supports_reasoning_context(&req.model.slug) {
            dialects::responses::drop_reasoning_context(&mut req);
        }
    }
    let ex = exchange::start(state, headers, &mut req).await?;
    let model = req.model.requested.clone();
    if req.stream {
        let cfg = &state.config;
        let encoder = Passthrough { finished: false, done_items: Vec::new() };
        Ok(sse_response(pump::stream_body(ex, encoder, req.limits, cfg.keepalive, cfg.upstream_idle_timeout, model)))
    } else {
        let mut assembler = ResponsesAssembler::new();
        pump::drain_raw(ex, state.config.upstream_idle_timeout, |v| assembler.on_payload(v)).await?;
        Ok(Json(assembler.finish()?).into_response())
    }
}

/// Forwards upstream frames as they are (no re-serialisation), with one exception: the backend's
/// `response.completed` may carry an empty `output`, and SDKs build their final response from it, so that one
/// event gets the items of the `output_item.done` events filled in.
struct Passthrough {
    finished: bool,
    done_items: Vec<(u64, serde_json::Value)>,
}

impl StreamEncoder for Passthrough {
    fn on_event(&mut self, frame: &SseFrame, event: &Event, out: &mut Vec<u8>) {
        let name = match &frame.event {
            Some(n) => n.as_ref(),
            None => event_type(&frame.data),
        };
        match event {
            Event::ItemDone { output_index, .. } => {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&frame.data) {
                    self.done_items.push((u64::from(*output_index), v["item"].take()));
                }
            }
            Event::Finished { output, .. } if output.is_empty() && !self.done_items.is_empty() => {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&frame.data) {
                    self.done_items.sort_by_key(|(i, _)| *i);
                    v["response"]["output"] = serde_json::Value::Array(
                        std::mem::take(&mut self.done_items).into_iter().map(|(_, i)| i).collect(),
                    );
                    if let Ok(bytes) = serde_json::to_vec(&v) {
                        write_event(out, name, &bytes);
                        self.finished = true;
                        return;
                    }
                }
            }
            _ => {}
        }
        write_event(out, name, frame.data.as_bytes());
        if event.is_terminal() {
            self.finished = true;
        }
    }
    fn on_error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if !self.finished {
            stream_error_frame(err, out);
            self.finished = true;
        }
    }
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keepalive\n\n");
    }
    fn is_finished(&self) -> bool {
        self.finished
    }
    fn needs_delta_payloads(&self) -> bool {
        false
    }
}

/// The `type` of an event payload, for upstream frames that came without an `event:` line.
fn event_type(data: &str) -> &str {
    #[derive(serde::Deserialize)]
    struct T<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_str::<T>(data).map(|t| t.kind).unwrap_or("message")
}
