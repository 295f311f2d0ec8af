//! Anthropic Messages routes (spec/dialects.md §2): `POST /v1/messages` and `POST /v1/messages/count_tokens`
//! (query strings such as Claude Code's `?beta=true` are ignored). Translation lives in
//! `dialects::anthropic`; this module drives it: model aliases from `[anthropic] model_aliases`, the
//! conversation key from `X-Claude-Code-Session-Id`, `event: ping` keepalives, errors in the Anthropic shape
//! with a `request-id` header. (A conversation that moved between accounts is unsealed for every dialect alike:
//! relay/moves.rs.)

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use dialects::anthropic::{
    AnthropicEncoder, AnthropicOptions, countable_text, decode_for_count, decode_with, render_message,
};
use dialects::assemble::Collected;
use dialects::{GatewayError, UpstreamRequest};
use serde_json::{Value, json};

use crate::app::{AppState, request_id};
use crate::keys::Caller;
use crate::record::Api;
use crate::relay::exchange::StartError;
use crate::server::dialect::{Decoded, Dialect};
use crate::server::errors::body_error;
use crate::tokens;

/// Tokens `count_tokens` adds per image or document part: Anthropic's cost of an image at its largest
/// (about 1.15 megapixels / 750). The gateway does not decode images, so this is an upper-end estimate.
const TOKENS_PER_IMAGE: u64 = 1_600;

/// The token count (local, no upstream call).
pub fn other_routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/messages/count_tokens", post(count_tokens))
}

/// Anthropic Messages, translated to and from Responses (`dialects::anthropic`).
pub struct Anthropic;

pub struct MessageAnswer {
    id: String,
    model: String,
    opts: AnthropicOptions,
    input_estimate: u64,
}

impl Dialect for Anthropic {
    const API: Api = Api::named("anthropic");
    type Route = ();
    type Answer = MessageAnswer;
    type Encoder = AnthropicEncoder;

    async fn decode(
        state: &AppState,
        _: (),
        headers: &HeaderMap,
        _: Option<&Caller>,
        body: Bytes,
    ) -> Result<Decoded<Anthropic>, GatewayError> {
        let session = headers.get("x-claude-code-session-id").and_then(|v| v.to_str().ok());
        let (req, opts) = decode_with(&body, session, &state.live.config().anthropic_model_aliases, &state.catalog)?;
        drop(body);
        // Only `message_start` shows this number (the final usage comes from the upstream in `message_delta`), so
        // a byte estimate does: tokenizing a 100 kB Claude Code request would add milliseconds to every first byte.
        let input_estimate =
            dialects::limits::estimate_tokens(&countable_text(&req)) + TOKENS_PER_IMAGE * count_images(&req);
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let answer = MessageAnswer { id, model: req.model.requested.clone(), opts, input_estimate };
        Ok(Decoded::Relay(req, answer))
    }

    fn start_error(err: StartError, req: &UpstreamRequest) -> GatewayError {
        explain_model_error(err, req)
    }

    fn error_body(err: &GatewayError, request_id: &str) -> (u16, Value) {
        dialects::anthropic::error_response(err, request_id)
    }

    fn encoder(a: &MessageAnswer) -> AnthropicEncoder {
        AnthropicEncoder::new(a.id.clone(), a.model.clone(), &a.opts, a.input_estimate)
    }

    fn render(collected: &Collected, a: MessageAnswer) -> Value {
        render_message(collected, &a.id, &a.model, &a.opts)
    }

    /// Anthropic clients read the `request-id` header of successful responses too.
    fn finish(mut response: Response, request_id: &str) -> Response {
        if let Ok(v) = HeaderValue::from_str(request_id) {
            response.headers_mut().insert("request-id", v);
        }
        response
    }
}

/// The catalog names the Codex slug; an Anthropic client should also learn which id it sent and how to map it.
fn explain_model_error(e: StartError, req: &UpstreamRequest) -> GatewayError {
    if !e.is_unknown_model() {
        return e.into_error();
    }
    let e = e.into_error();
    let requested = &req.model.requested;
    let slug = &req.model.slug;
    let message = if requested == slug {
        format!(
            "model: {requested} is not served by this gateway. Use a Codex model id (GET /v1/models lists them), \
             a Claude model id (claude-opus-*, claude-sonnet-*, claude-haiku-*), or map it in the config's \
             [anthropic] model_aliases table."
        )
    } else {
        format!(
            "model: {requested} maps to `{slug}`, which is not served by this gateway (GET /v1/models lists the \
             available models). Change the mapping in the config's [anthropic] model_aliases table."
        )
    };
    GatewayError { message, ..e }
}

/// Image and file parts in the input (including those inside tool results).
fn count_images(req: &UpstreamRequest) -> u64 {
    let image = |p: &&Value| matches!(p.get("type").and_then(Value::as_str), Some("input_image" | "input_file"));
    let parts = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, |v| v.iter().filter(image).count() as u64);
    let items = req.body.get("input").and_then(Value::as_array).into_iter().flatten();
    items.map(|item| parts(item.get("content")) + parts(item.get("output"))).sum()
}

/// `POST /v1/messages/count_tokens`: a local o200k count of the translated request (spec C7). Counting is
/// local, so the model is not checked against the catalog.
async fn count_tokens(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let counted = async {
        let req = decode_for_count(&body.map_err(|r| body_error(r, state.config.body_limit))?)?;
        let images = TOKENS_PER_IMAGE.saturating_mul(count_images(&req));
        let text = countable_text(&req);
        drop(req);
        // Off the request workers: a large body takes seconds to count (see `tokens`).
        Ok::<_, GatewayError>(tokens::count_off_workers(text).await?.saturating_add(images))
    };
    match counted.await {
        Ok(n) => Anthropic::finish(Json(json!({"input_tokens": n})).into_response(), &request_id(&headers)),
        Err(e) => Anthropic::fail(&e, &request_id(&headers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialects::models::ModelRef;

    fn req(input: Value) -> UpstreamRequest {
        UpstreamRequest {
            body: json!({"input": input}).as_object().cloned().unwrap_or_default(),
            model: ModelRef::parse("gpt-5.4"),
            stream: true,
            conversation_key: None,
            limits: Default::default(),
        }
    }

    #[test]
    fn counts_images_in_messages_and_tool_results() {
        let r = req(json!([
            {"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"data:"}]},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"data:"}]},
        ]));
        assert_eq!(count_images(&r), 2);
    }
}
