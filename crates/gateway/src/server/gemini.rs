//! Gemini routes (spec/dialects.md §3): `POST /{v1beta|v1alpha|v1}/models/{model}:{method}` for
//! `generateContent`, `streamGenerateContent` (`?alt=sse` -> SSE, else a JSON array), `countTokens`, and the
//! refused `embedContent` / `batchEmbedContents`; `GET /{v1beta|v1alpha}/models[/{model}]`.
//!
//! The method is part of the last path segment (`gemini-2.5-pro:generateContent`), so one `{id}` route per
//! version takes every call and splits at the last `:`. `/v1/models/{id}` shares its path with the OpenAI model
//! route, so only its POST lives here. Translation is in `dialects::gemini`; this module only drives it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use dialects::assemble::Collected;
use dialects::gemini::{
    Framing, GeminiEncoder, countable, decode, decode_count_tokens, render_response, resolve_model,
};
use dialects::{ErrorKind, GatewayError};
use serde_json::{Value, json};

use crate::app::{AppState, request_id};
use crate::catalog::{self, ModelEntry};
use crate::keys::Caller;
use crate::record::{Api, Recorder};
use crate::server::dialect::{Decoded, Dialect, Shape, sse_response, streaming_response};
use crate::server::errors::{body_error, method_not_allowed_response};
use crate::server::handler::handle;
use crate::tokens;

/// Tokens counted per image or file part by `countTokens` (Gemini's own per-image figure).
const TOKENS_PER_IMAGE: u64 = 258;

/// Output token limit advertised in the model list: the backend's catalog gives none (the Codex models' limit).
const OUTPUT_TOKEN_LIMIT: u64 = 128_000;

/// The path pattern the request record names for every model call.
const ROUTE: &str = "/v1beta/models/{model}:{method}";

/// The model calls (`{model}:{method}`, all POST), served by the generic handler.
pub fn model_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1beta/models/{id}", post(call))
        .route("/v1alpha/models/{id}", post(call))
        .route("/v1/models/{id}", post(call))
}

/// The model list and model resources (GET).
pub fn other_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1beta/models", get(list_models))
        .route("/v1alpha/models", get(list_models))
        .route("/v1beta/models/{id}", get(get_model))
        .route("/v1alpha/models/{id}", get(get_model))
}

/// Whether `path` is Gemini's (its API versions, or a `{model}:{method}` under `/v1/models/`): errors there are
/// rendered in Gemini's shape before a handler runs, and the guard takes the client key from `?key=` there.
pub fn owns(path: &str) -> bool {
    path.starts_with("/v1beta/")
        || path.starts_with("/v1alpha/")
        || (path.starts_with("/v1/models/") && path.contains(':'))
}

/// 405 for a method the `{id}` route serves only for the other kind of path (model vs `model:method`); axum's
/// own `Allow` (every method of the route) would be wrong here, so the header names what this path takes.
fn refuse_method(method: &Method, uri: &Uri, headers: &HeaderMap, allow: &'static str) -> Response {
    let mut resp = method_not_allowed_response(Shape::of::<Gemini>(), method, uri.path(), &request_id(headers));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// `POST .../models/{model}:{method}`.
async fn call(
    State(state): State<Arc<AppState>>,
    caller: Option<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (model, framing) = match id.rsplit_once(':') {
        Some((model, "generateContent")) => (model, None),
        Some((model, "streamGenerateContent")) => {
            let sse = query.get("alt").map(String::as_str) == Some("sse");
            (model, Some(if sse { Framing::Sse } else { Framing::JsonArray }))
        }
        split => return not_a_model_call(&state, &headers, &uri, split, body).await,
    };
    let route = GeminiRoute { model: model.to_string(), framing };
    handle::<Gemini>(state, route, ROUTE, caller, headers, body).await
}

/// A call on a model path that is not a model call (a token count, a refused method), and its record.
async fn not_a_model_call(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    split: Option<(&str, &str)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let record = Recorder::new(state.records.clone(), Api::Other, ROUTE, request_id(headers));
    let answer = match split {
        // `models/{model}` is the model resource: it is read with GET, never posted to.
        None => Ok(refuse_method(&Method::POST, uri, headers, "GET, HEAD")),
        Some((model, "countTokens")) => count_tokens(state, model, body).await,
        Some((_, "embedContent" | "batchEmbedContents")) => {
            Err(GatewayError::invalid("Embeddings are not supported: the Codex backend has no embedding models.")
                .with_code("unsupported"))
        }
        Some((model, other)) => {
            Err(GatewayError::new(ErrorKind::NotFound, format!("Unknown method `{other}` for models/{model}")))
        }
    };
    let response = answer.unwrap_or_else(|e| Gemini::fail(&e, record.request_id()));
    record.finish(response.status().as_u16());
    response
}

/// Gemini `generateContent` / `streamGenerateContent`, translated to and from Responses (`dialects::gemini`).
pub struct Gemini;

/// What the path and query say: the model, and for a stream its framing (`?alt=sse` or a JSON array).
pub struct GeminiRoute {
    model: String,
    framing: Option<Framing>,
}

pub struct GeminiAnswer {
    response_id: String,
    model: String,
    framing: Framing,
    include_thoughts: bool,
}

impl Dialect for Gemini {
    const API: Api = Api::named("gemini");
    type Route = GeminiRoute;
    type Answer = GeminiAnswer;
    type Encoder = GeminiEncoder;

    async fn decode(
        state: &AppState,
        route: GeminiRoute,
        _: &HeaderMap,
        _: Option<&Caller>,
        body: Bytes,
    ) -> Result<Decoded<Gemini>, GatewayError> {
        let live = state.live.config();
        let (req, opts) =
            decode(&body, &route.model, route.framing.is_some(), &live.gemini_model_aliases, &state.catalog)?;
        drop(live);
        let answer = GeminiAnswer {
            response_id: uuid::Uuid::new_v4().simple().to_string(),
            model: req.model.requested.clone(),
            framing: route.framing.unwrap_or(Framing::Sse),
            include_thoughts: opts.include_thoughts,
        };
        Ok(Decoded::Relay(req, answer))
    }

    fn error_body(err: &GatewayError, _: &str) -> (u16, Value) {
        dialects::gemini::error_body(err)
    }

    fn encoder(a: &GeminiAnswer) -> GeminiEncoder {
        GeminiEncoder::new(a.framing, a.response_id.clone(), a.model.clone(), a.include_thoughts)
    }

    fn stream_response(body: Body, a: &GeminiAnswer) -> Response {
        match a.framing {
            Framing::Sse => sse_response(body),
            Framing::JsonArray => streaming_response(body, "application/json; charset=UTF-8"),
        }
    }

    fn render(collected: &Collected, a: GeminiAnswer) -> Value {
        render_response(collected, &a.response_id, &a.model, a.include_thoughts)
    }
}

/// `countTokens`: a local o200k count of the translated input (spec C7), images at a fixed rate.
/// Counting runs off the request workers: a large body takes seconds to count (see `tokens`).
async fn count_tokens(
    state: &AppState,
    model: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let req = decode_count_tokens(&body, model, &state.live.config().gemini_model_aliases)?;
    drop(body);
    let (text, images) = countable(&req);
    drop(req);
    let text_tokens = tokens::count_off_workers(text).await?;
    let image_tokens = images.saturating_mul(TOKENS_PER_IMAGE);
    let total = text_tokens.saturating_add(image_tokens);
    let mut details = vec![json!({"modality": "TEXT", "tokenCount": text_tokens})];
    if images > 0 {
        details.push(json!({"modality": "IMAGE", "tokenCount": image_tokens}));
    }
    Ok(axum::Json(json!({"totalTokens": total, "promptTokensDetails": details})).into_response())
}

fn model_entry(name: &str, entry: &ModelEntry) -> Value {
    let display = entry.display_name.as_deref().unwrap_or(name);
    json!({
        "name": format!("models/{name}"),
        "baseModelId": name,
        "version": "001",
        "displayName": display,
        "description": format!("{display}, served by codex-gateway from the Codex backend"),
        "inputTokenLimit": entry.context_window_or_default(),
        "outputTokenLimit": OUTPUT_TOKEN_LIMIT,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        "thinking": entry.thinks(),
    })
}

/// `GET /v1beta/models`: the Codex models, plus the configured Gemini aliases that resolve to one of them.
async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let entries = state.catalog.entries().await;
    let mut models: Vec<Value> = entries.iter().map(|e| model_entry(&e.slug, e)).collect();
    let live = state.live.config();
    let aliases = &live.gemini_model_aliases;
    let mut names: Vec<&String> = aliases.keys().filter(|k| k.contains('-')).collect();
    names.sort();
    for name in names {
        let target = resolve_model(name, aliases, &state.catalog);
        if let Some(e) = catalog::find(&entries, &target.slug) {
            models.push(model_entry(name, e));
        }
    }
    axum::Json(json!({ "models": models })).into_response()
}

/// `GET /v1beta/models/{model}`: any id that resolves to a served model (Gemini ids via the alias table).
/// A method path (`{model}:generateContent`) is not a model: only POST serves it.
async fn get_model(
    State(state): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if id.contains(':') {
        return refuse_method(&method, &uri, &headers, "POST");
    }
    let target = resolve_model(&id, &state.live.config().gemini_model_aliases, &state.catalog);
    let entries = state.catalog.entries().await;
    match catalog::find(&entries, &target.slug) {
        Some(e) => axum::Json(model_entry(&target.requested, e)).into_response(),
        None => Gemini::fail(&GatewayError::model_not_found(&id), &request_id(&headers)),
    }
}
