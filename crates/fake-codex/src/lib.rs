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

mod body;
pub mod catalog;
mod compact;
mod control;
mod default_reply;
mod encode;
pub mod images;
mod oauth;
mod preface;
mod ratelimits;
mod replay;
mod responses;
mod scenario;
mod server;
mod sse;
mod state;
pub mod tokens;
mod types;
mod validate;
mod versions;
mod wham;
mod ws;
mod ws_chain;

pub use default_reply::schema_instance;
pub use sse::Framing;
pub use types::{
    AccountCreds, AccountSpec, CallSpec, End, EndpointMode, FakeConfig, RecordedRequest, ReplyItem, Scenario,
    TokenCall, ToolArgs,
};
pub use ws::WsFault;

use state::Shared;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A client that stalls mid-handshake loses its connection after this long.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`: the acceptor serving it (ALPN
/// prefers h2, like the real backend) and its PEM, which clients trust as their CA.
fn self_signed_tls(http1_only: bool) -> std::io::Result<(tokio_rustls::TlsAcceptor, String)> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(std::io::Error::other)?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    // An explicit provider: nothing depends on a process-wide default being installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())
        .map_err(std::io::Error::other)?;
    config.alpn_protocols =
        if http1_only { vec![b"http/1.1".to_vec()] } else { vec![b"h2".to_vec(), b"http/1.1".to_vec()] };
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), cert.pem()))
}

/// Serve HTTP/1.1 and HTTP/2 until `stop`: over TLS (ALPN) when `tls` is set, otherwise in clear text
/// (h2 by prior knowledge, as the benchmark's gateway speaks it). In-flight responses finish on their own tasks.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: tokio_util::sync::WaitForCancellationFutureOwned,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(shared.cfg.h2_max_concurrent_streams);
    // Chunks that are ready are copied into one buffer and written together (hyper's default queue of vectored
    // writes flushes every 16 buffers), as a server writes a burst its producer got ahead with.
    builder.http1().writev(false);
    let builder = Arc::new(builder);
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
        let connection = shared.stats.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // Small SSE frames must not wait for Nagle's algorithm (the real backend streams promptly).
        let _ = tcp.set_nodelay(true);
        // Each request carries its connection's number, so tests can see which requests shared a connection.
        let app = app.clone().layer(axum::Extension(types::ConnectionNumber(connection)));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let (builder, tls, shared) = (builder.clone(), tls.clone(), shared.clone());
        // The handshake runs on the connection's own task so a slow client cannot hold up accepting others.
        tokio::spawn(async move {
            let served = match tls {
                None => builder.serve_connection_with_upgrades(TokioIo::new(tcp), service).await,
                Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let received = shared.stats.bytes_received.clone();
                        let stream = preface::Recording::new(stream, shared.prefaces.open(connection), received);
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await
                    }
                    Ok(Err(e)) => {
                        shared.stats.tls_handshake_failed(&e);
                        return;
                    }
                    Err(_) => {
                        shared.stats.tls_handshake_failed(&"timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                // Debug formatting: hyper's text says only "http2 error", not which one (RUST_LOG=debug).
                tracing::debug!("fake-codex connection ended: {e:?}");
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
    /// The self-signed certificate in TLS mode.
    ca_pem: Option<Arc<str>>,
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
        let (tls, ca_pem) = if cfg.tls {
            let (acceptor, pem) = self_signed_tls(cfg.tls_http1_only)?;
            (Some(acceptor), Some(Arc::<str>::from(pem)))
        } else {
            (None, None)
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared::new(cfg, format!("{scheme}://{addr}")));
        let token = CancellationToken::new();
        let app = server::router(shared.clone());
        let stop = token.clone().cancelled_owned();
        tokio::spawn(accept_loop(listener, app, shared.clone(), tls, stop));
        Ok(FakeCodex { shared, guard: Arc::new(ShutdownGuard(token)), ca_pem })
    }

    /// Stop accepting connections (in-flight streams finish).
    pub fn shutdown(&self) {
        self.guard.0.cancel();
    }

    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` in TLS mode.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// In TLS mode, the fake's self-signed certificate in PEM, for clients to trust as a root (CA bundle).
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.as_deref().map(str::to_string)
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

    /// The most Responses answers (over HTTP) one account had streaming at once since the start.
    pub fn peak_streaming(&self, account_id: &str) -> usize {
        self.shared.streaming.lock().get(account_id).map_or(0, |e| e.1)
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

    /// Raise the minimum client version of a model (`x.y.z`): older clients no longer see it in the catalog
    /// and get the backend's 400 "requires a newer version of Codex" (see `versions.rs`).
    pub fn set_min_client_version(&self, slug: &str, version: &str) {
        if let Some(v) = versions::parse(version) {
            self.shared.min_versions.set(slug, v);
        }
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

    /// How `POST /oauth/token` answers from now on (hang or fail it to test the gateway's refresh bounds).
    pub fn set_token_endpoint(&self, mode: EndpointMode) {
        *self.shared.token_mode.lock() = mode;
    }

    /// How `GET /backend-api/codex/models` answers from now on.
    pub fn set_catalog_endpoint(&self, mode: EndpointMode) {
        *self.shared.catalog_mode.lock() = mode;
    }

    /// Calls of the model catalog received so far, counted on arrival (a hanging call that the client gave up
    /// on is never recorded in [`FakeCodex::requests`], which logs requests once answered).
    pub fn catalog_calls(&self) -> usize {
        self.shared.catalog_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls of `POST /oauth/token` received so far, counted on arrival (hung ones included).
    pub fn token_arrivals(&self) -> usize {
        self.shared.token_arrivals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Account ids in creation order.
    /// The Responses WebSocket refuses every handshake with 426 (the official client then uses HTTP SSE).
    pub fn set_ws_refuse(&self, refuse: bool) {
        self.shared.ws.set_refuse(refuse);
    }

    /// The Responses WebSocket answers every handshake 404, as an origin that serves the HTTP endpoints only.
    pub fn set_ws_absent(&self, absent: bool) {
        self.shared.ws.set_absent(absent);
    }

    /// Break the Responses WebSocket where the origin is reached (`None`: it works); the HTTP endpoint goes on
    /// answering.
    pub fn set_ws_fault(&self, fault: Option<WsFault>) {
        self.shared.ws.set_fault(fault);
    }

    /// Hold no response for chaining on any WebSocket connection: every `previous_response_id` is refused with
    /// `previous_response_not_found`, as the backend refuses one it lost.
    pub fn set_ws_forget_responses(&self, forget: bool) {
        self.shared.ws.set_forget(forget);
    }

    /// How long a Responses WebSocket connection lives before the backend ends it with
    /// `websocket_connection_limit_reached` (`None`: the backend's 60 minutes). Applies to new connections.
    pub fn set_ws_connection_limit(&self, limit: Option<std::time::Duration>) {
        self.shared.ws.set_limit(limit);
    }

    /// The largest message a new Responses WebSocket connection takes, advertised on its handshake as
    /// `x-codex-websocket-max-message-bytes` (`None`: the default, 64 MiB); a larger message is refused with
    /// `websocket_message_too_large` and the connection closed.
    pub fn set_ws_max_message(&self, bytes: Option<u64>) {
        self.shared.ws.set_max_message(bytes);
    }

    /// Responses WebSocket messages refused for their size.
    pub fn ws_messages_too_large(&self) -> u64 {
        self.shared.ws.too_large()
    }

    /// The model's catalog entry says `supports_reasoning_effort_updates` (the official client then changes a
    /// conversation's effort with a `configuration_update` item), or no longer does.
    pub fn set_effort_updates(&self, slug: &str, on: bool) {
        self.shared.set_effort_updates(slug, on);
    }

    /// The model's catalog entry says `prefer_websockets` (what `[upstream] transport = "auto"` follows).
    pub fn set_ws_preferred(&self, slug: &str, prefer: bool) {
        self.shared.ws.set_preferred(slug, prefer);
    }

    /// The model's catalog entry says `use_responses_lite` (the official client then sends Responses Lite).
    pub fn set_responses_lite(&self, slug: &str, lite: bool) {
        self.shared.set_lite(slug, lite);
    }

    /// Responses WebSocket connections upgraded since start.
    pub fn ws_connections_opened(&self) -> u64 {
        self.shared.ws.opened()
    }

    /// Every Responses WebSocket message received, as sent, oldest first.
    pub fn ws_messages(&self) -> Vec<serde_json::Value> {
        self.shared.ws.messages()
    }

    pub fn account_ids(&self) -> Vec<String> {
        self.shared.inner.lock().order.clone()
    }
}
