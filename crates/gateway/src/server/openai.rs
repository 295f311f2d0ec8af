//! OpenAI routes: Chat Completions (translated) and Responses (passthrough), as [`Dialect`]s of the generic
//! handler.

use std::time::Duration;

use axum::Json;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dialects::assemble::Collected;
use dialects::chat::{ChatEncoder, ChatOptions, render_completion};
use dialects::responses::ResponsesAssembler;
use dialects::{GatewayError, OutputLimits, Usage};
use serde_json::Value;

use crate::app::AppState;
use crate::auth::now_unix;
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::relay::exchange::Exchange;
use crate::relay::pump;
use crate::server::chaining::{self, Keep, KeepingEncoder};
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

impl Dialect for Chat {
    const API: Api = Api::named("chat");
    type Route = ();
    type Answer = ChatAnswer;
    type Encoder = ChatEncoder;

    async fn decode(
        _: &AppState,
        _: (),
        _: &HeaderMap,
        _: Option<&Caller>,
        body: Bytes,
    ) -> Result<Decoded<Chat>, GatewayError> {
        let (req, opts) = dialects::chat::decode(&body)?;
        let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
        let answer = ChatAnswer { id, created: now_unix() as u64, model: req.model.requested.clone(), opts };
        Ok(Decoded::Relay(req, answer))
    }

    fn encoder(a: &ChatAnswer) -> ChatEncoder {
        ChatEncoder::new(a.id.clone(), a.created, a.model.clone(), a.opts.include_usage)
    }

    fn render(collected: &Collected, a: ChatAnswer) -> Value {
        render_completion(collected, &a.id, a.created, &a.model)
    }
}

/// OpenAI Responses: the request normalised, the events passed through unchanged (`dialects::responses`);
/// `previous_response_id` and `store` served from the responses the gateway keeps (`chaining.rs`).
pub struct Responses;

impl Dialect for Responses {
    const API: Api = Api::named("responses");
    type Route = ();
    /// How to keep the response when it completes (`None`: the request said `store: false`, or keeping is off).
    type Answer = Option<Keep>;
    type Encoder = KeepingEncoder;

    async fn decode(
        state: &AppState,
        _: (),
        _: &HeaderMap,
        caller: Option<&Caller>,
        body: Bytes,
    ) -> Result<Decoded<Responses>, GatewayError> {
        let (mut req, chain) = dialects::responses::decode(&body)?;
        drop(body);
        chaining::fetch_shared(state.pool.store(), &state.stored, caller, &chain).await;
        let keep =
            chaining::resolve(&state.stored, caller, &mut req, chain)?.map(|k| k.shared_through(state.pool.store()));
        // Only some models take `reasoning.context` (pydantic-ai sends it by default): forward it where the catalog
        // says so, else drop it (docs/parameter-policy.md). `check` makes sure the catalog is fetched; the exchange
        // repeats it on its fast path.
        if dialects::responses::has_reasoning_context(&req) {
            state.catalog.check(&req.model.slug).await?;
            if !state.catalog.supports_reasoning_context(&req.model.slug) {
                dialects::responses::drop_reasoning_context(&mut req);
            }
        }
        Ok(Decoded::Relay(req, keep))
    }

    fn encoder(keep: &Option<Keep>) -> KeepingEncoder {
        KeepingEncoder::new(keep.clone())
    }

    async fn whole(
        ex: Exchange,
        keep: Option<Keep>,
        _: OutputLimits,
        idle: Duration,
        record: &mut Recorder,
    ) -> Result<(Response, Usage), GatewayError> {
        let mut assembler = ResponsesAssembler::new();
        let usage = pump::drain_raw(ex, idle, record, |v| assembler.on_payload(v)).await?;
        let response = assembler.finish()?;
        if let Some(keep) = keep
            && response.get("status").and_then(Value::as_str) == Some("completed")
        {
            keep.completed(&response);
        }
        Ok((Json(response).into_response(), usage))
    }
}
