//! The Ollama bridge (spec/dialects.md §4): a second listener, off by default, for clients that only speak
//! Ollama (Open WebUI, VS Code Copilot's Ollama provider, the `ollama` libraries).
//!
//! It is served in-process from the main server's [`AppState`] (no loopback HTTP hop) and has no client
//! authentication, like Ollama itself; so it binds loopback unless `ollama.allow_remote` is set, allows CORS
//! only for loopback origins (and `[server] allowed_origins`), and its requests pass the main port's guard
//! (server/guard.rs): a web page elsewhere, or on a rebinding name, cannot spend the user's plan. Routes:
//! `GET|HEAD /`, `/api/version`, `/api/tags`, `/api/show`, `/api/ps`, `/api/chat`, `/api/generate`, the
//! embedding routes (refused), and the OpenAI routes under `/v1/*`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use dialects::assemble::Collected;
use dialects::ollama::{
    Decoded, Endpoint, OllamaEncoder, VERSION, model_name, ps_entry, render_chat, render_generate, rfc3339,
    show_response, tag_entry,
};
use dialects::{ErrorKind, GatewayError, UpstreamRequest};
use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tracing::{info, warn};

use crate::app::{AppState, request_id};
use crate::catalog;
use crate::config::Config;
use crate::keys::Caller;
use crate::record::Api;
use crate::relay::exchange::StartError;
use crate::server::dialect::{self, Dialect, Shape};
use crate::server::errors::body_error;
use crate::server::handler::post_route;
use crate::server::routes::ModelCall;
use crate::server::{guard, models, openai, others};

/// Bind the bridge's listener when it is enabled, and say where it listens (stdout, after the main line).
pub async fn bind(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let bridge = &config.ollama;
    if !bridge.enabled {
        return Ok(None);
    }
    let listener = TcpListener::bind(bridge.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the Ollama bridge: {e}", bridge.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        warn!(
            "THE OLLAMA BRIDGE ON {addr} HAS NO AUTHENTICATION: anyone who can reach this address can use your \
             ChatGPT plan through it (ollama.allow_remote is set)"
        );
    }
    // Scripts and tests read this exact line to learn the bridge's port.
    println!("codex-gateway ollama bridge listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    Ok(Some(listener))
}

/// Serve the bridge (if a listener is given) in the background until `shutdown`; returns the shutdown future
/// for the main listener, so one signal stops both.
pub fn serve(
    state: Arc<AppState>,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let shutdown = shutdown.shared();
    if let Some(listener) = listener {
        let policy = Arc::new(guard::Policy::ollama_bridge(&state, shape_of));
        let timeouts = state.config.timeouts.clone();
        // Its own drain: the bridge serves no WebSocket, and its connections are waited for by its own loop.
        let drain = crate::app::Drain::default();
        let app = router(state, policy.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move { super::listen::serve(listener, app, policy, stop, &timeouts, drain).await });
    }
    shutdown
}

/// The bridge's router: Ollama routes, the OpenAI routes under `/v1`, CORS for the origins `policy` allows, no
/// client key. `listen::serve` puts the guard with the same policy in front of it.
pub fn router(state: Arc<AppState>, policy: Arc<guard::Policy>) -> Router {
    let limit = state.config.body_limit;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| policy.origin_allowed(origin.as_bytes())))
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers(tower_http::cors::Any);
    // Routes that are not model calls get their access line from a layer (see `server::router`).
    let other_routes = Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/embed", post(embeddings))
        .route("/api/embeddings", post(embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.records.clone(), others::record_other));
    Router::new()
        .route("/api/chat", post_route::<Ollama>(Endpoint::Chat, "/api/chat"))
        .route("/api/generate", post_route::<Ollama>(Endpoint::Generate, "/api/generate"))
        .route("/v1/chat/completions", ModelCall::Chat.route())
        .route("/v1/responses", ModelCall::Responses.route())
        .merge(other_routes)
        // Set after the merge, so it covers every route: 405 in Ollama's shape (OpenAI's under `/v1/`), recorded.
        .method_not_allowed_fallback(|State(state): State<Arc<AppState>>, req: Request| async move {
            others::method_not_allowed_in(shape_of, &state, &req)
        })
        .layer(cors)
        .layer(DefaultBodyLimit::max(limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The error shape of a path of the bridge: OpenAI's under `/v1/`, else Ollama's (the guard's refusals too).
fn shape_of(path: &str) -> Shape {
    if path.starts_with("/v1/") { openai::SHAPE } else { Shape::of::<Ollama>() }
}

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version() -> Response {
    Json(json!({ "version": VERSION })).into_response()
}

async fn not_found(req: Request) -> Response {
    let err = GatewayError::new(
        ErrorKind::NotFound,
        format!("{} {} is not served by this bridge", req.method(), req.uri().path()),
    );
    Ollama::fail(&err, &request_id(req.headers()))
}

async fn embeddings(headers: HeaderMap) -> Response {
    let err = GatewayError::invalid("Embeddings are not supported: the Codex backend has no embedding models.");
    Ollama::fail(&err, &request_id(&headers))
}

async fn tags(State(state): State<Arc<AppState>>) -> Json<Value> {
    let models: Vec<Value> = state.catalog.entries().await.iter().map(|e| tag_entry(&e.slug)).collect();
    Json(json!({ "models": models }))
}

async fn ps(State(state): State<Arc<AppState>>) -> Json<Value> {
    let entries = state.catalog.entries().await;
    let models: Vec<Value> = entries.iter().map(|e| ps_entry(&e.slug, e.context_window_or_default())).collect();
    Json(json!({ "models": models }))
}

fn unknown_model(name: &str) -> GatewayError {
    GatewayError::new(ErrorKind::NotFound, format!("model \"{name}\" not found")).with_code("model_not_found")
}

/// `POST /api/show {"model"}` (older clients send `name`).
async fn show(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let shown = async {
        let body = body.map_err(|r| body_error(r, state.config.body_limit))?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let name = v.get("model").or_else(|| v.get("name")).and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            return Err(GatewayError::invalid_param("model", "model is required"));
        }
        let wanted = dialects::models::ModelRef::parse(model_name(name));
        let entries = state.catalog.entries().await;
        let e = catalog::find(&entries, &wanted.slug).ok_or_else(|| unknown_model(name))?;
        Ok(show_response(name, &wanted.slug, e.context_window_or_default(), e.thinks(), e.sees_images()))
    };
    match shown.await {
        Ok(show) => Json(show).into_response(),
        Err(e) => Ollama::fail(&e, &request_id(&headers)),
    }
}

fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_nanos())
}

/// Ollama `/api/chat` and `/api/generate`, translated to and from Responses (`dialects::ollama`).
pub struct Ollama;

pub struct OllamaAnswer {
    endpoint: Endpoint,
    model: String,
    created_at: String,
    think: bool,
    /// Ollama reports durations from the request's start.
    started: Instant,
}

impl Dialect for Ollama {
    const API: Api = Api::named("ollama");
    type Route = Endpoint;
    type Answer = OllamaAnswer;
    type Encoder = OllamaEncoder;

    async fn decode(
        state: &AppState,
        endpoint: Endpoint,
        _: &HeaderMap,
        _: Option<&Caller>,
        body: Bytes,
    ) -> Result<dialect::Decoded<Ollama>, GatewayError> {
        let started = Instant::now();
        let created_at = now_rfc3339();
        let decoded = match endpoint {
            Endpoint::Chat => dialects::ollama::decode_chat(&body)?,
            Endpoint::Generate => dialects::ollama::decode_generate(&body)?,
        };
        drop(body);
        match decoded {
            Decoded::Request(req, opts) => {
                let model = req.model.requested.clone();
                Ok(dialect::Decoded::Relay(
                    *req,
                    OllamaAnswer { endpoint, model, created_at, think: opts.think, started },
                ))
            }
            Decoded::Load { model } => load(state, &model, &created_at, endpoint).await.map(dialect::Decoded::Answered),
        }
    }

    fn start_error(err: StartError, req: &UpstreamRequest) -> GatewayError {
        if err.is_unknown_model() { unknown_model(&req.model.requested) } else { err.into_error() }
    }

    fn error_body(err: &GatewayError, _: &str) -> (u16, Value) {
        dialects::ollama::error_body(err)
    }

    fn encoder(a: &OllamaAnswer) -> OllamaEncoder {
        let started = a.started;
        let clock = Box::new(move || started.elapsed().as_nanos() as u64);
        OllamaEncoder::new(a.endpoint, a.model.clone(), a.created_at.clone(), a.think, clock)
    }

    fn stream_response(body: Body, _: &OllamaAnswer) -> Response {
        let mut resp = Response::new(body);
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        resp
    }

    fn render(collected: &Collected, a: OllamaAnswer) -> Value {
        let total = a.started.elapsed().as_nanos() as u64;
        match a.endpoint {
            Endpoint::Chat => render_chat(collected, &a.model, &a.created_at, a.think, total),
            Endpoint::Generate => render_generate(collected, &a.model, &a.created_at, a.think, total),
        }
    }
}

/// Empty messages / prompt: Ollama loads the model and answers `done_reason: "load"` (clients use it to warm up).
async fn load(state: &AppState, model: &str, created_at: &str, endpoint: Endpoint) -> Result<Response, GatewayError> {
    let slug = dialects::models::ModelRef::parse(model_name(model)).slug;
    if catalog::find(&state.catalog.entries().await, &slug).is_none() {
        return Err(unknown_model(model));
    }
    info!(model, "ollama load request (no upstream call)");
    let mut v = json!({"model": model, "created_at": created_at, "done": true, "done_reason": "load"});
    match endpoint {
        Endpoint::Chat => v["message"] = json!({"role": "assistant", "content": ""}),
        Endpoint::Generate => v["response"] = json!(""),
    }
    Ok((StatusCode::OK, Json(v)).into_response())
}
