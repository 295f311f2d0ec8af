//! OpenAI routes: Chat Completions (translated) and Responses (passthrough), as [`Dialect`]s of the generic
//! handler.

use std::time::Duration;

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dialects::chat::{ChatEncoder, ChatOptions, render_completion};
use dialects::responses::{Passthrough, ResponsesAssembler};
use dialects::{GatewayError, OutputLimits, Usage};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::now_unix;
use crate::record::{Api, Recorder};
use crate::relay::exchange::Exchange;
use crate::relay::pump;
use crate::server::dialect::{Decoded, Dialect, Shape};

/// OpenAI Chat Completions, translated to and from Responses (`dialects::chat`).
pub struct Chat;

pub struct ChatAnswer {
    id: String,
    created: u64,
    model: String,
    opts: ChatOptions,
}

/// OpenAI's error answer: the gateway's own routes (model lists, admin, images, compaction) answer in it too, and
/// so does a path that no other dialect's routes claim.
pub const SHAPE: Shape = Shape::of::<Chat>();

/// `(status, {"error":{message, type, param, code}})`.
fn openai_error(err: &GatewayError) -> (u16, Value) {
    (err.status(), err.openai_body())
}

impl Dialect for Chat {
    const API: Api = Api::Chat;
    type Route = ();
    type Answer = ChatAnswer;
    type Encoder = ChatEncoder;

    async fn decode(_: &AppState, _: (), _: &HeaderMap, body: Bytes) -> Result<Decoded<Chat>, GatewayError> {
        let (req, opts) = dialects::chat::decode(&body)?;
        let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        let answer = ChatAnswer { id, created: now_unix() as u64, model: req.model.requested.clone(), opts };
        Ok(Decoded::Relay(req, answer))
    }

    fn error_body(err: &GatewayError, _: &str) -> (u16, Value) {
        openai_error(err)
    }

    fn encoder(a: &ChatAnswer) -> ChatEncoder {
        ChatEncoder::new(a.id.clone(), a.created, a.model.clone(), a.opts.include_usage)
    }

    async fn whole(
        ex: Exchange,
        a: ChatAnswer,
        limits: OutputLimits,
        idle: Duration,
        record: &mut Recorder,
    ) -> Result<(Response, Usage), GatewayError> {
        let collected = pump::collect(ex, limits, idle, record).await?;
        let body = render_completion(&collected, &a.id, a.created, &a.model);
        Ok((Json(body).into_response(), collected.usage))
    }
}

/// OpenAI Responses: the request normalised, the events passed through unchanged (`dialects::responses`).
pub struct Responses;

impl Dialect for Responses {
    const API: Api = Api::Responses;
    type Route = ();
    type Answer = ();
    type Encoder = Passthrough;

    async fn decode(state: &AppState, _: (), _: &HeaderMap, body: Bytes) -> Result<Decoded<Responses>, GatewayError> {
        let mut req = dialects::responses::decode(&body)?;
        drop(body);
        // Only some models take `reasoning.context` (pydantic-ai sends it by default): forward it where the catalog
        // says so, else drop it (docs/parameter-policy.md). `check` makes sure the catalog is fetched; the exchange
        // repeats it on its fast path.
        if dialects::responses::has_reasoning_context(&req) {
            state.catalog.check(&req.model.slug).await?;
            if !state.catalog.supports_reasoning_context(&req.model.slug) {
                dialects::responses::drop_reasoning_context(&mut req);
            }
        }
        Ok(Decoded::Relay(req, ()))
    }

    fn error_body(err: &GatewayError, _: &str) -> (u16, Value) {
        openai_error(err)
    }

    fn encoder(_: &()) -> Passthrough {
        Passthrough::new()
    }

    async fn whole(
        ex: Exchange,
        _: (),
        _: OutputLimits,
        idle: Duration,
        record: &mut Recorder,
    ) -> Result<(Response, Usage), GatewayError> {
        let mut assembler = ResponsesAssembler::new();
        let usage = pump::drain_raw(ex, idle, record, |v| assembler.on_payload(v)).await?;
        Ok((Json(assembler.finish()?).into_response(), usage))
    }
}
