//! A faithful, strict fake of the ChatGPT Codex backend and its OAuth endpoints, for the
//! gateway's tests, benchmarks and demos. [`FakeCodex::start`] binds a local port and serves:
//! the Responses endpoint in ChatGPT mode (`/backend-api/codex/responses`) and API-key mode
//! (`/v1/responses`), the model catalog, the usage endpoint, `/oauth/token` with single-use
//! refresh tokens, browser and device logins, and a `/_fake/*` control API mirroring this handle.
//!
//! Layout: `types` (public data), `state` (the locked world), `server` (router, recorder, auth),
//! `responses` + `validate` + `scenario` + `default_reply` + `sse` (the answer path), `oauth`,
//! `control`, `catalog`, `tokens`.

// Handlers return `Result<_, Response>` for early exits; the large error variant is fine here.
#![allow(clippy::result_large_err)]

mod catalog;
mod control;
mod default_reply;
mod oauth;
mod responses;
mod scenario;
mod server;
mod sse;
mod state;
pub mod tokens;
mod types;
mod validate;

pub use default_reply::schema_instance;
pub use types::{
    AccountCreds, AccountSpec, CallSpec, End, FakeConfig, RecordedRequest, ReplyItem, Scenario, TokenCall, ToolArgs,
};

use state::Shared;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Serve HTTP/1.1 and HTTP/2 without TLS (prior knowledge, as the benchmark's gateway speaks it) until `stop`;
/// in-flight responses finish on their own tasks.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shared: Arc<Shared>,
    h2_max_concurrent_streams: u32,
    stop: tokio_util::sync::WaitForCancellationFutureOwned,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(h2_max_concurrent_streams);
    let mut stop = std::pin::pin!(stop);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("fake-codex accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        shared.stats.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Small SSE frames must not wait for Nagle's algorithm (the real backend streams promptly).
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("fake-codex connection ended: {e}");
            }
        });
    }
}

/// Stops the server when the last handle is dropped.
struct ShutdownGuard(CancellationToken);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A running fake. Cheap to clone; the server stops when the last clone is dropped or on
/// [`FakeCodex::shutdown`].
#[derive(Clone)]
pub struct FakeCodex {
    shared: Arc<Shared>,
    guard: Arc<ShutdownGuard>,
}

impl std::fmt::Debug for FakeCodex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCodex").field("base_url", &self.shared.base_url).finish()
    }
}

impl FakeCodex {
    /// Bind `cfg.bind` and serve in a spawned task (needs a Tokio runtime).
    pub async fn start(cfg: FakeConfig) -> std::io::Result<FakeCodex> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared::new(cfg, base_url));
        let token = CancellationToken::new();
        let app = server::router(shared.clone());
        let stop = token.clone().cancelled_owned();
        let counted = shared.clone();
        let h2_streams = shared.cfg.h2_max_concurrent_streams;
        tokio::spawn(accept_loop(listener, app, counted, h2_streams, stop));
        Ok(FakeCodex { shared, guard: Arc::new(ShutdownGuard(token)) })
    }

    /// Stop accepting connections (in-flight streams finish).
    pub fn shutdown(&self) {
        self.guard.0.cancel();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base}/backend-api/codex`: POST `/responses`, GET `/models`.
    pub fn codex_base_url(&self) -> String {
        format!("{}/backend-api/codex", self.shared.base_url)
    }

    /// `{base}/backend-api`: GET `/wham/usage`.
    pub fn chatgpt_base_url(&self) -> String {
        format!("{}/backend-api", self.shared.base_url)
    }

    /// The OAuth issuer, `{base}` (token endpoint `{base}/oauth/token`).
    pub fn issuer(&self) -> String {
        self.shared.base_url.clone()
    }

    /// `{base}/v1`: POST `/responses` with `Bearer <api key>`, GET `/models`.
    pub fn openai_api_base(&self) -> String {
        format!("{}/v1", self.shared.base_url)
    }

    /// The configuration in force.
    pub fn config(&self) -> &FakeConfig {
        &self.shared.cfg
    }

    /// Create an account and return its first credentials.
    pub fn add_account(&self, spec: AccountSpec) -> AccountCreds {
        self.shared.add_account(spec)
    }

    /// Register an API key for `/v1/responses`.
    pub fn add_api_key(&self, key: &str) {
        self.shared.inner.lock().api_keys.insert(key.to_string());
    }

    /// Queue a scenario (FIFO) for one account, or for anyone with `None`; an account's own
    /// queue is served before the global one.
    pub fn enqueue(&self, account_id: Option<&str>, scenario: Scenario) {
        self.shared.enqueue(account_id, scenario);
    }

    /// Every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.inner.lock().requests.iter().cloned().collect()
    }

    /// Recorded requests whose path contains `fragment`.
    pub fn requests_to(&self, fragment: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path.contains(fragment)).collect()
    }

    /// Every `/oauth/token` call with its outcome.
    pub fn token_calls(&self) -> Vec<TokenCall> {
        self.shared.inner.lock().token_calls.clone()
    }

    /// Forget recorded requests and token calls.
    pub fn reset_requests(&self) {
        self.shared.reset_requests();
    }

    /// Make every access token issued so far for the account answer 401.
    pub fn expire_access_tokens(&self, account_id: &str) {
        self.shared.expire_access_tokens(account_id);
    }

    /// Set the used percentages; `resets_at` (unix s) moves the primary window's reset.
    pub fn set_quota(
        &self,
        account_id: &str,
        primary_used_percent: f64,
        secondary_used_percent: f64,
        resets_at: Option<i64>,
    ) {
        self.shared.set_quota(account_id, primary_used_percent, secondary_used_percent, resets_at);
    }

    /// Each successful response adds this to the primary used percent (a tenth of it to the
    /// secondary); at 100 the account answers 429 usage_limit_reached.
    pub fn set_quota_cost(&self, account_id: &str, percent_per_request: f64) {
        self.shared.set_quota_cost(account_id, percent_per_request);
    }

    /// Benchmark counters, as `GET /_fake/stats` returns them.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats.snapshot()
    }

    /// Account ids in creation order.
    pub fn account_ids(&self) -> Vec<String> {
        self.shared.inner.lock().order.clone()
    }
}
