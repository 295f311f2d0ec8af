//! The HTTP server: routes, the request guard (host, origin, client key: guard.rs), body limit, request ids,
//! and `run`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dialects::{ErrorKind, GatewayError};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::accounts::Pool;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::keys::{BudgetSink, Keys};
use crate::metrics::Metrics;
use crate::record::{Api, RecordSink, Recorder, Sinks, access_log::AccessLog};
use crate::store::Store;
use crate::store::team::StoreHealth;
use crate::upstream::{Upstream, build_http_client};

mod admin;
mod admin_keys;
mod anthropic;
mod codex_usage;
mod compact;
mod direct;
pub mod errors;
mod gemini;
pub mod guard;
pub mod handler;
mod http1;
mod images;
pub mod listen;
mod models;
mod ollama;
mod openai;
pub mod reload;
mod websocket;

use errors::{Shape, error_response};

/// Everything a request handler needs.
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: Arc<Pool>,
    pub upstream: Arc<Upstream>,
    pub catalog: Catalog<Pool>,
    /// Where each request's record goes when it ends (the access log, plus any sinks the caller adds).
    pub records: Sinks,
    /// Client keys the admin created, with their limits (keys/).
    pub keys: Arc<Keys>,
    /// The Prometheus metrics (`[metrics] enabled`).
    pub metrics: Option<Arc<Metrics>>,
    /// The usage ledger (usage/): its sink is one of `records`; `run` drains it on shutdown.
    pub ledger: Arc<crate::usage::Ledger>,
    /// What a config reload replaces (reload.rs): request paths read the live settings (strategy, aliases,
    /// keepalive, keys, prices) from here, not from `config`, which stays as started.
    pub live: reload::Live,
    /// The shutdown's drain, which upgraded WebSocket sessions join (listen.rs, websocket.rs).
    pub drain: listen::Drain,
}

impl AppState {
    /// Open the store, build the HTTP client and load the account pool.
    pub fn new(config: Config) -> anyhow::Result<AppState> {
        AppState::with_sinks(config, Vec::new())
    }

    /// [`AppState::new`] with record sinks besides the access log.
    pub fn with_sinks(config: Config, sinks: Vec<Arc<dyn RecordSink>>) -> anyhow::Result<AppState> {
        let config = Arc::new(config);
        let store = Arc::new(config.open_store()?);
        let http = build_http_client(&config)?;
        let pool = Arc::new(Pool::load(config.clone(), store.clone(), http.clone())?);
        let upstream = Arc::new(Upstream::new(&config, http)?);
        let catalog = Catalog::new(pool.clone());
        let keys = Arc::new(Keys::load(store.clone())?);
        keys.set_configured(&config.configured_keys)?;
        seed_budgets(&keys, &store)?;
        let mut all: Vec<Arc<dyn RecordSink>> = vec![Arc::new(AccessLog)];
        // Client keys: token budgets are charged from each record.
        all.push(Arc::new(BudgetSink(keys.clone())));
        let (ledger, ledger_sink) = crate::usage::Ledger::open_for(pool.store(), &config.usage)?;
        let ledger = Arc::new(ledger);
        let metrics = config
            .metrics
            .enabled
            .then(|| Arc::new(Metrics::new(pool.clone(), ledger.clone(), config.metrics.email_labels)));
        if let Some(m) = &metrics {
            all.push(m.clone());
        }
        all.extend(sinks);
        // Last: the ledger keeps the record itself rather than a copy (`RecordSink::take`).
        all.extend(ledger_sink);
        let live = reload::Live::new(config.clone());
        Ok(AppState {
            config,
            pool,
            upstream,
            catalog,
            records: Sinks::new(all),
            metrics,
            keys,
            ledger,
            live,
            drain: listen::Drain::default(),
        })
    }
}

/// Each client key's tokens today and this month (UTC) from the usage ledger, so token budgets hold across
/// restarts. (Records still in the ledger's queue when the last run was killed are not counted: at most the last
/// batch, docs/operations.md.)
fn seed_budgets(keys: &Keys, store: &Store) -> anyhow::Result<()> {
    let ids = keys.ids();
    if ids.is_empty() {
        return Ok(());
    }
    let (day_start, month_start) = crate::keys::limits::period_starts(crate::auth::now_unix());
    let today = crate::usage::tokens_by_key_since(store, day_start * 1000)?;
    let month = crate::usage::tokens_by_key_since(store, month_start * 1000)?;
    for id in ids {
        let get = |m: &std::collections::HashMap<String, u64>| m.get(&*id).copied().unwrap_or(0);
        keys.seed(&id, get(&today), get(&month));
    }
    Ok(())
}

/// The full router. Requests reach it through the guard (host, origin, client key: guard.rs), which
/// `listen::serve` puts in front of it on each connection.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    // Routes that are not model calls: the generic handler records model calls itself, these get their access
    // line from a layer (not on the model routes, where a layer would box a future per request).
    let others = Router::new()
        .route("/", get(root).head(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .merge(admin::routes())
        .merge(admin_keys::routes())
        .merge(codex_usage::routes())
        .merge(compact::routes())
        .merge(reload::routes())
        .merge(gemini::other_routes())
        .merge(anthropic::other_routes())
        .merge(crate::dashboard::routes(state.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.records.clone(), record_other));
    // On the main listener the POSTs of the OpenAI and Anthropic model routes are served by direct.rs, not by
    // these routes (same handlers; its list of paths must match them). The Ollama bridge and requests hyper
    // serves (chunked or large bodies) still come here.
    let router = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(openai::responses).get(websocket::handshake))
        .route("/responses", post(openai::responses).get(websocket::handshake))
        .merge(gemini::model_routes())
        .merge(anthropic::model_routes())
        .merge(images::routes())
        .merge(others)
        // Set after the merge, so it covers every route; it records its answers itself.
        .method_not_allowed_fallback(method_not_allowed);
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
    run_with_sinks(config, listener, bridge, Vec::new(), shutdown).await
}

/// [`run_with_bridge`] with record sinks besides the access log (tests collect records this way).
pub async fn run_with_sinks(
    config: Config,
    listener: TcpListener,
    bridge: Option<TcpListener>,
    sinks: Vec<Arc<dyn RecordSink>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let c = &config;
    if c.listen.ip().is_loopback() && c.api_keys.is_empty() && !c.access.allowed_hosts.is_empty() {
        // A name in allowed_hosts on a loopback bind means a proxy or tunnel brings other machines here.
        tracing::warn!(
            "[server] allowed_hosts lets requests for {:?} in, but no client key is set: anyone who reaches the \
             gateway through that name can use your accounts. Set CODEX_GATEWAY_API_KEY (docs/security.md).",
            c.access.allowed_hosts
        );
    }
    let state = Arc::new(AppState::with_sinks(config, sinks)?);
    let shutdown = ollama::serve(state.clone(), bridge, shutdown);
    // The tokenizer is not warmed up here: its tables take ~50 MB, and only count_tokens and the emulated
    // max-tokens cap need it; the first such request loads it (docs/architecture.md, "Memory").
    let upkeep = tokio::spawn(state.pool.clone().upkeep());
    let keys_upkeep = tokio::spawn(state.keys.clone().follow_store(state.config.upkeep_interval));
    // Team store (docs/team.md): re-read accounts and keys within a second of a change another instance made;
    // pull the conversations the others decided into the pool's affinity map; count what the other instances'
    // keys spent against the token budgets (keys/team.rs). Nothing on a local store.
    let (pool, keys) = (state.pool.clone(), state.keys.clone());
    let mut team = state.pool.store().follow_team(move || {
        pool.reload()?;
        pool.adopt_shared_cooldowns()?;
        keys.reload()
    });
    team.spawn(state.pool.clone().follow_shared_affinity());
    team.spawn(state.keys.clone().follow_team_budgets());
    let trim = tokio::spawn(crate::memory::return_retained_memory());
    let hangup = reload::on_hangup(state.clone());
    let watch = state.config.watch_config.then(|| tokio::spawn(reload::watch(state.clone())));
    let shared = state.live.shared_keys.clone();
    let guard =
        Arc::new(guard::Policy::main(&state.config, state.keys.clone(), shared).with_records(state.records.clone()));
    let timeouts = state.config.timeouts.clone();
    let ledger = state.ledger.clone();
    let drain = state.drain.clone();
    let served = listen::serve(listener, router(state.clone()), guard, shutdown, &timeouts, drain, Some(state)).await;
    upkeep.abort();
    keys_upkeep.abort();
    trim.abort();
    team.stop();
    hangup.abort();
    if let Some(w) = watch {
        w.abort();
    }
    // Requests have ended (or were dropped at the shutdown bound): what they recorded reaches the store before
    // `run` returns, within the same bound.
    ledger.drain(timeouts.shutdown).await;
    served?;
    Ok(())
}

/// The request's id: the client's `x-request-id`, or the one the router made when it sent none.
pub fn request_id(headers: &HeaderMap) -> String {
    // A static name: a `&str` one is parsed again on every lookup.
    static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
    headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// SSE response headers around a streaming body.
pub fn sse_response(body: axum::body::Body) -> Response {
    let mut resp = Response::new(body);
    // Room for these three, the request id and the serving account's rate-limit headers (a dozen, put on by the
    // handler): grown on the way, the map was reallocated and rehashed on every streamed answer.
    *resp.headers_mut() = HeaderMap::with_capacity(20);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The record of a request that is not a model call: route, status and time (the access line of a model list,
/// an admin call, a 404).
pub(crate) async fn record_other(State(sinks): State<Sinks>, req: Request, next: axum::middleware::Next) -> Response {
    let mut record = Recorder::new(sinks, Api::Other, method_route(&req), request_id(req.headers()));
    record.set_client_key(req.extensions().get::<crate::keys::Caller>().map(|c| c.0.id.clone()));
    let response = next.run(req).await;
    record.finish(response.status().as_u16());
    response
}

/// `GET /metrics`: the Prometheus exposition (OpenMetrics text). The guard asks for the admin credential unless
/// `[metrics] public = true`.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(m) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
            .into_response(),
        None => {
            let err = GatewayError::new(ErrorKind::NotFound, "Metrics are off ([metrics] enabled = false).");
            error_response(Shape::OpenAi, &err, "")
        }
    }
}

/// A browser (asking for HTML) goes to the dashboard; API clients and health checks get the plain answer.
async fn root(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if html && state.config.dashboard.enabled {
        return axum::response::Redirect::to("/dashboard").into_response();
    }
    "codex-gateway is running".into_response()
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let total = state.pool.accounts().len();
    if state.pool.has_usable() {
        // Team store: an outage is reported but does not make the instance unready (it serves from memory).
        let mut body = json!({"status": "ready", "accounts": total});
        match state.pool.store().health() {
            StoreHealth::Local => {}
            StoreHealth::Team { reachable, instances, .. } => {
                body["store"] = json!(if reachable { "reachable" } else { "unreachable" });
                // Live instances sharing the store: what a key's rpm and concurrency are divided by.
                body["instances"] = json!(instances);
            }
        }
        axum::Json(body).into_response()
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
    error_response(Shape::from_path(&path), &err, &request_id(&headers))
}

/// A known path with a method it does not serve: 405 in the route's dialect. axum adds the `Allow` header from
/// the route's methods (the default 405 had an empty body, which no client can parse).
async fn method_not_allowed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path();
    let record = Recorder::new(state.records.clone(), Api::Other, method_route(&req), request_id(req.headers()));
    let response = method_not_allowed_response(Shape::from_path(path), req.method(), path, record.request_id());
    record.finish(response.status().as_u16());
    response
}

/// The route pattern a request matched, for its record.
pub(crate) fn method_route<B>(req: &axum::http::Request<B>) -> std::borrow::Cow<'static, str> {
    match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(path) => std::borrow::Cow::Owned(path.as_str().to_string()),
        None => std::borrow::Cow::Borrowed("(none)"),
    }
}

/// The 405 body in `dialect`'s error shape (an invalid-request error with the 405 status). Routes that refuse a
/// method themselves (a GET on a Gemini method path) set `Allow` on the response.
pub(crate) fn method_not_allowed_response(
    dialect: Shape,
    method: &axum::http::Method,
    path: &str,
    request_id: &str,
) -> Response {
    let err =
        GatewayError::invalid(format!("Method {method} is not allowed on {path}")).with_code("method_not_allowed");
    if dialect == Shape::Gemini {
        // Gemini's body repeats the HTTP status in `error.code`.
        let (_, mut body) = dialects::gemini::error_body(&err);
        body["error"]["code"] = json!(StatusCode::METHOD_NOT_ALLOWED.as_u16());
        return (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response();
    }
    let mut resp = error_response(dialect, &err, request_id);
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}
