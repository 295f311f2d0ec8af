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
use dialects::gemini::{
    Framing, GeminiEncoder, countable, decode, decode_count_tokens, render_response, resolve_model,
};
use dialects::{ErrorKind, GatewayError};
use serde_json::{Value, json};

use crate::catalog::{self, ModelEntry};
use crate::relay::exchange::{self, request_id};
use crate::relay::pump::{self, Translated};
use crate::server::errors::{Dialect, body_error, error_response};
use crate::server::{AppState, method_not_allowed_response, sse_response};
use crate::tokens;

/// Tokens counted per image or file part by `countTokens` (Gemini's own per-image figure).
const TOKENS_PER_IMAGE: u64 = 258;

/// Output token limit advertised in the model list.
const OUTPUT_TOKEN_LIMIT: u64 = 128_000;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1beta/models", get(list_models))
        .route("/v1alpha/models", get(list_models))
        .route("/v1beta/models/{id}", get(get_model).post(call))
        .route("/v1alpha/models/{id}", get(get_model).post(call))
        .route("/v1/models/{id}", post(call))
}

fn fail(request_id: &str, err: &GatewayError) -> Response {
    error_response(Dialect::Gemini, err, request_id)
}

/// 405 for a method the `{id}` route serves only for the other kind of path (model vs `model:method`); axum's
/// own `Allow` (every method of the route) would be wrong here, so the header names what this path takes.
fn refuse_method(method: &Method, uri: &Uri, headers: &HeaderMap, allow: &'static str) -> Response {
    let mut resp = method_not_allowed_response(Dialect::Gemini, method, uri.path(), &request_id(headers));
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// `POST .../models/{model}:{method}`.
async fn call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some((model, method)) = id.rsplit_once(':') else {
        // `models/{model}` is the model resource: it is read with GET, never posted to.
        return refuse_method(&Method::POST, &uri, &headers, "GET, HEAD");
    };
    let rid = request_id(&headers);
    let result = match method {
        "generateContent" => generate(&state, headers, model, None, body).await,
        "streamGenerateContent" => {
            let framing =
                if query.get("alt").map(String::as_str) == Some("sse") { Framing::Sse } else { Framing::JsonArray };
            generate(&state, headers, model, Some(framing), body).await
        }
        "countTokens" => count_tokens(&state, model, body).await,
        "embedContent" | "batchEmbedContents" => {
            Err(GatewayError::invalid("Embeddings are not supported: the Codex backend has no embedding models.")
                .with_code("unsupported"))
        }
        other => Err(GatewayError::new(ErrorKind::NotFound, format!("Unknown method `{other}` for models/{model}"))),
    };
    result.unwrap_or_else(|e| fail(&rid, &e))
}

async fn generate(
    state: &AppState,
    headers: HeaderMap,
    model: &str,
    framing: Option<Framing>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let (mut req, opts) = decode(&body, model, framing.is_some(), &state.config.gemini_model_aliases)?;
    // Free the request's bytes before waiting on the upstream (they pin hyper's read buffer; bench/notes.md).
    drop(body);
    let ex = exchange::start(state, headers, &mut req).await?;
    let response_id = uuid::Uuid::new_v4().simple().to_string();
    let model = req.model.requested.clone();
    match framing {
        Some(framing) => {
            let encoder = Translated(GeminiEncoder::new(framing, response_id, model.clone(), opts.include_thoughts));
            let cfg = &state.config;
            let body = pump::stream_body(ex, encoder, req.limits, cfg.keepalive, cfg.upstream_idle_timeout, model);
            Ok(match framing {
                Framing::Sse => sse_response(body),
                Framing::JsonArray => json_stream_response(body),
            })
        }
        None => {
            let collected = pump::collect(ex, req.limits, state.config.upstream_idle_timeout).await?;
            Ok(axum::Json(render_response(&collected, &response_id, &model, opts.include_thoughts)).into_response())
        }
    }
}

fn json_stream_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// `countTokens`: a local o200k count of the translated input (spec C7), images at a fixed rate.
/// Counting runs off the request workers: a large body takes seconds to count (see `tokens`).
async fn count_tokens(
    state: &AppState,
    model: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
    let req = decode_count_tokens(&body, model, &state.config.gemini_model_aliases)?;
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
        "thinking": true,
    })
}

/// `GET /v1beta/models`: the Codex models, plus the configured Gemini aliases that resolve to one of them.
async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let entries = state.catalog.entries().await;
    let mut models: Vec<Value> = entries.iter().map(|e| model_entry(&e.slug, e)).collect();
    let aliases = &state.config.gemini_model_aliases;
    let mut names: Vec<&String> = aliases.keys().filter(|k| k.contains('-')).collect();
    names.sort();
    for name in names {
        let target = resolve_model(name, aliases);
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
    let target = resolve_model(&id, &state.config.gemini_model_aliases);
    let entries = state.catalog.entries().await;
    match catalog::find(&entries, &target.slug) {
        Some(e) => axum::Json(model_entry(&target.requested, e)).into_response(),
        None => fail(&request_id(&headers), &GatewayError::model_not_found(&id)),
    }
}
