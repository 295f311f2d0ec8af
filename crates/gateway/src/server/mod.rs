//! The HTTP server: the router (routes, body limit, request ids), the request guard in front of it (host,
//! origin, client key: guard.rs), and `run`, which builds the app state (app/) and serves it until shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dialects::{ErrorKind, GatewayError};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::app::{AppState, reload};
use crate::config::Config;
use crate::record::RecordSink;
use crate::store::team::StoreHealth;

pub mod access_table;
mod admin;
mod anthropic;
mod chaining;
mod codex_usage;
mod compact;
pub mod dialect;
pub mod errors;
mod forwarded;
mod gemini;
pub mod guard;
pub mod handler;
mod images;
pub mod listen;
mod models;
mod ollama;
mod openai;
mod others;
mod routes;
mod scrape;
mod websocket;

use errors::error_response;

/// The full router. Requests reach it through the guard (host, origin, client key: guard.rs), which
/// `listen::serve` puts in front of it on each connection.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.body_limit;
    // Routes that are not model calls: the generic handler records model calls itself, these get their access
    // line from a layer (not on the model routes, where a layer would box a future per request).
    let other_routes = Router::new()
        .route("/", get(root).head(root))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .merge(admin::routes(state.clone()))
        .merge(codex_usage::routes())
        .merge(compact::routes())
        .merge(gemini::other_routes())
        .merge(anthropic::other_routes())
        .merge(crate::dashboard::routes(state.clone()))
        .fallback(others::not_found)
        .layer(axum::middleware::from_fn_with_state(state.records.clone(), others::record_other));
    // The model routes of the table (routes.rs). The Responses WebSocket shares its paths with the Responses route.
    let router = routes::model_routes()
        .route("/v1/responses", get(websocket::handshake))
        .route("/responses", get(websocket::handshake))
        .merge(gemini::model_routes())
        .merge(images::routes())
        .merge(other_routes)
        // Set after the merge, so it covers every route; it records its answers itself.
        .method_not_allowed_fallback(others::method_not_allowed);
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
    let mut tasks = vec![
        tokio::spawn(state.pool.clone().upkeep()),
        tokio::spawn(state.keys.clone().follow_store(state.config.upkeep_interval)),
    ];
    // Users and sessions: a user the command line disabled or removed on the SQLite file is refused within
    // `USERS_POLL` (three small reads); a team store's change counter already says when to re-read.
    let users_poll = match state.pool.store().health() {
        StoreHealth::Local => crate::users::USERS_POLL.min(state.config.upkeep_interval),
        StoreHealth::Team { .. } => state.config.upkeep_interval,
    };
    tasks.push(tokio::spawn(state.users.clone().follow_store(users_poll)));
    // Expired refresh tokens, codes and sessions: by the leader of a team, always on the SQLite file.
    tasks.push(tokio::spawn(crate::users::prune::prune_expired(
        state.pool.store().clone(),
        crate::users::prune::PRUNE_EVERY,
    )));
    // Refused sign-in attempts: the summaries of bursts that went quiet (audit/bursts.rs).
    tasks.push(tokio::spawn(crate::users::limits::sum_up_bursts(
        state.users.clone(),
        std::time::Duration::from_secs(5),
    )));
    // Team store (docs/team.md): re-read accounts and keys within a second of a change another instance made;
    // pull the conversations the others decided into the pool's affinity map; count what the other instances'
    // keys spent against the token budgets (keys/team.rs). Nothing on a local store.
    let (pool, keys, users) = (state.pool.clone(), state.keys.clone(), state.users.clone());
    let mut team = state.pool.store().follow_team(move || {
        pool.reload()?;
        pool.adopt_shared_cooldowns()?;
        keys.reload()?;
        // A user removed or a session ended on another instance: refused here from this re-read on.
        users.reload()
    });
    team.spawn(state.pool.clone().follow_shared_affinity());
    team.spawn(state.keys.clone().follow_team_budgets());
    tasks.push(reload::on_hangup(state.clone()));
    if state.config.watch_config {
        tasks.push(tokio::spawn(reload::watch(state.clone())));
    }
    let guard = Arc::new(guard::Policy::main(&state));
    let timeouts = state.config.timeouts.clone();
    let ledger = state.ledger.clone();
    let drain = state.drain.clone();
    listen::serve(listener, router(state), guard, shutdown, &timeouts, drain).await;
    tasks.iter().for_each(JoinHandle::abort);
    team.stop();
    // Requests have ended (or were dropped at the shutdown bound): what they recorded reaches the store before
    // `run` returns, within the same bound.
    ledger.drain(timeouts.shutdown).await;
    Ok(())
}

/// `GET /metrics`: the Prometheus exposition (OpenMetrics text). The guard asks for the admin credential unless
/// `[metrics] public = true`.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = scrape::may_read(&state, &headers).await {
        return error_response(openai::SHAPE, &e, &crate::app::request_id(&headers));
    }
    match &state.metrics {
        Some(m) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.render())
            .into_response(),
        None => {
            let err = GatewayError::new(ErrorKind::NotFound, "Metrics are off ([metrics] enabled = false).");
            error_response(openai::SHAPE, &err, "")
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
