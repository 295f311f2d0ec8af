//! The HTTP server: routes, local client-key auth, body limit, request ids, and `run`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dialects::{ErrorKind, GatewayError};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::accounts::Pool;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::store::Store;
use crate::upstream::{Upstream, build_http_client};

mod admin;
mod anthropic;
pub mod errors;
pub mod exchange;
mod gemini;
pub mod listen;
mod models;
mod ollama;
mod openai;
pub mod pump;
pub mod reader;

use errors::{Dialect, error_response};

/// Everything a request handler needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Arc<Pool>,
    pub upstream: Arc<Upstream>,
    pub catalog: Catalog,
}

impl AppState {
    /// Open the store, build the HTTP client and load the account pool.
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        let config = Arc::new(config);
        let store = Arc::new(Store::open(&config.db_path())?);
        let http = build_http_client(&config)?;
        let pool = Arc::new(Pool::load(config.clone(), store, http.clone())?);
        let upstream = Arc::new(Upstream::new(&config, http)?);
        Ok(AppState { config, pool, upstream, catalog: Catalog })
    }
}

/// The full router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    let router = Router::new()
        .route("/", get(root).head(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(openai::responses))
        .route("/responses", post(openai::responses))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .merge(admin::routes())
        .merge(gemini::routes())
        .merge(anthropic::routes())
        .fallback(not_found);
    // Without client keys the check passes every request: the layer (a boxed future per request, ~1 KB while the
    // request waits for the upstream) is left out.
    let router = if state.config.api_keys.is_empty() {
        router
    } else {
        router.layer(middleware::from_fn_with_state(state.clone(), client_auth))
    };
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serve until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bridge = ollama::bind(&config).await?;
    run_with_bridge(config, listener, bridge, shutdown).await
}

/// [`run`] with the Ollama bridge's listener bound by the caller (`None`: no bridge); tests bind port 0.
pub async fn run_with_bridge(
    config: Config,
    listener: TcpListener,
    bridge: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(config)?);
    let shutdown = ollama::serve(state.clone(), bridge, shutdown);
    // The tokenizer is not warmed up here: its tables take ~50 MB, and only count_tokens and the emulated
    // max-tokens cap need it; the first such request loads it (docs/architecture.md, "Memory").
    let upkeep = tokio::spawn(state.pool.clone().upkeep());
    let trim = tokio::spawn(crate::memory::return_retained_memory());
    let timeouts = state.config.timeouts.clone();
    let served = listen::serve(listener, router(state), shutdown, &timeouts).await;
    upkeep.abort();
    trim.abort();
    served?;
    Ok(())
}

/// SSE response headers around a streaming body.
pub fn sse_response(body: axum::body::Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

async fn root() -> &'static str {
    "codex-gateway is running"
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let total = state.pool.accounts().len();
    if state.pool.has_usable() {
        axum::Json(json!({"status": "ready", "accounts": total})).into_response()
    } else {
        let reason = if total == 0 { "no credentials: log in or import an account" } else { "no usable account" };
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": reason, "accounts": total})),
        )
            .into_response()
    }
}

async fn not_found(headers: HeaderMap, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let err = GatewayError::new(ErrorKind::NotFound, format!("No route for {} {path}", req.method()));
    error_response(Dialect::from_path(&path), &err, &exchange::request_id(&headers))
}

/// Paths that need no client key: liveness and Claude Code's connectivity preflight.
fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/health" | "/ready")
}

/// Check the client key when one is configured: `Authorization: Bearer`, `x-api-key`, `x-goog-api-key`, `?key=`.
/// Only layered when client keys are configured (see `router`).
async fn client_auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let header_key = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let query_key = req
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key").map(|(_, v)| v.into_owned()));
    let presented = [bearer, header_key("x-api-key"), header_key("x-goog-api-key"), query_key.as_deref()];
    let ok = presented.iter().flatten().any(|p| keys.iter().any(|k| constant_time_eq(k.as_bytes(), p.as_bytes())));
    if ok {
        return next.run(req).await;
    }
    let missing = presented.iter().all(Option::is_none);
    let msg = if missing {
        "Missing API key: send the gateway's key as `Authorization: Bearer <key>` (or x-api-key)."
    } else {
        "Invalid API key for this gateway."
    };
    let err = GatewayError::new(ErrorKind::Unauthorized, msg).with_code("invalid_api_key");
    error_response(Dialect::from_path(req.uri().path()), &err, &exchange::request_id(req.headers()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
