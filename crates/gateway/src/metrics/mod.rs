//! Prometheus metrics (`GET /metrics`, OpenMetrics text from the `prometheus-client` crate): request counters
//! and histograms fed by the request records (a [`RecordSink`]), and gauges read from the pool at each scrape
//! (`accounts.rs`). Names and labels are listed in docs/operations.md.
//!
//! Label values are bounded: dialects and statuses are fixed sets, `model` is a model the catalog check let
//! through (a refused request's model is `other`), accounts are the pool's, users the first `[metrics]
//! user_labels` seen (`users.rs`: the rest are `other`). No request ids, no free text.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::accounts::Pool;
use crate::record::{Api, RecordSink, RequestRecord};
use crate::usage::Ledger;

pub mod accepts;
mod accounts;
pub mod streams;
mod users;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    dialect: &'static str,
    model: String,
    status: u16,
}

/// One label: `dialect`, `kind` or `outcome`, and its value.
type Label = [(&'static str, &'static str); 1];

/// Upper bounds (seconds) of the model call duration's buckets, 5 ms to 20 min: a whole answer can take minutes.
/// Written out rather than computed (`exponential_buckets` multiplies floats, and its bounds printed as
/// `le="0.030518...01"`-like labels that nobody can type into a query).
const DURATION_BOUNDS: [f64; 16] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0, 300.0, 1200.0];

/// Upper bounds (seconds) of the time to the first byte's buckets, 1 ms to 4 min.
const FIRST_BYTE_BOUNDS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 240.0];

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<Label, Histogram>,
    first_byte: Family<Label, Histogram>,
    tokens: Family<Label, Counter>,
    attempts: Family<Label, Counter>,
    failovers: Counter,
    conversation_moves: Counter,
    /// Requests and tokens per user (users.rs).
    users: users::UserMetrics,
    /// Running totals since start, for the dashboard's Overview (the families above keep no sum across labels).
    totals: [AtomicU64; 6],
}

/// What the dashboard's Overview shows: model calls and tokens since start.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    /// Answered with a status of 400 or more (client disconnects, 499, included).
    pub errors: u64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub failovers: u64,
}

impl Metrics {
    /// The registry with the request metrics, and the pool's gauges read at each scrape. `email_labels`: name
    /// accounts by email when they have no label (off by default: an email is personal data); `user_labels`: the
    /// most users named in the per-user metrics.
    pub fn new(pool: Arc<Pool>, ledger: Arc<Ledger>, config: &crate::config::MetricsConfig) -> Metrics {
        let mut registry = Registry::with_prefix("codex_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Model calls answered, by dialect, served model and HTTP status",
            requests.clone(),
        );
        let duration = Family::<Label, Histogram>::new_with_constructor(|| Histogram::new(DURATION_BOUNDS));
        registry.register(
            "request_duration_seconds",
            "Model call duration, from the handler to the last byte",
            duration.clone(),
        );
        let first_byte = Family::<Label, Histogram>::new_with_constructor(|| Histogram::new(FIRST_BYTE_BOUNDS));
        registry.register(
            "time_to_first_byte_seconds",
            "Model call time to the first byte of the answer's body",
            first_byte.clone(),
        );
        let tokens = Family::<Label, Counter>::default();
        registry.register("tokens", "Tokens the upstream reported, by kind (input includes cached)", tokens.clone());
        let attempts = Family::<Label, Counter>::default();
        registry.register(
            "upstream_attempts",
            "Attempts on an account, by outcome (ok, or the failure's name)",
            attempts.clone(),
        );
        let failovers = Counter::default();
        registry.register("failovers", "Times another account took over a request after one failed", failovers.clone());
        let conversation_moves = Counter::default();
        registry.register(
            "conversation_moves",
            "Conversations that moved to another account because theirs could not serve the turn",
            conversation_moves.clone(),
        );
        let users = users::UserMetrics::register(&mut registry, config.user_labels);
        registry.register_collector(Box::new(accounts::PoolGauges { pool, ledger, email_labels: config.email_labels }));
        Metrics {
            registry,
            requests,
            duration,
            first_byte,
            tokens,
            attempts,
            failovers,
            conversation_moves,
            users,
            totals: Default::default(),
        }
    }

    /// Model calls and tokens since start (the dashboard's Overview).
    pub fn totals(&self) -> Totals {
        let [requests, errors, input_tokens, cached_tokens, output_tokens, failovers] =
            self.totals.each_ref().map(|t| t.load(Ordering::Relaxed));
        Totals { requests, errors, input_tokens, cached_tokens, output_tokens, failovers }
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl RecordSink for Metrics {
    fn record(&self, r: &RequestRecord) {
        if r.api == Api::Other {
            return;
        }
        let dialect = r.api.as_str();
        let model = r.model.clone().unwrap_or_else(|| "other".to_string());
        self.requests.get_or_create(&RequestLabels { dialect, model, status: r.status }).inc();
        let d = [("dialect", dialect)];
        self.duration.get_or_create(&d).observe(r.duration.as_secs_f64());
        if let Some(t) = r.time_to_first_byte {
            self.first_byte.get_or_create(&d).observe(t.as_secs_f64());
        }
        let u = &r.usage;
        // Six relaxed adds per request, beside the families' own updates; in the order of [`Metrics::totals`].
        let counts =
            [1, u64::from(r.status >= 400), u.input_tokens, u.cached_tokens, u.output_tokens, r.failovers.into()];
        for (total, n) in self.totals.iter().zip(counts) {
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
        for (kind, n) in [
            ("input", u.input_tokens),
            ("cached", u.cached_tokens),
            ("output", u.output_tokens),
            ("reasoning", u.reasoning_tokens),
        ] {
            if n > 0 {
                self.tokens.get_or_create(&[("kind", kind)]).inc_by(n);
            }
        }
        for outcome in &r.attempt_failures {
            self.attempts.get_or_create(&[("outcome", *outcome)]).inc();
        }
        if r.account.is_some() {
            self.attempts.get_or_create(&[("outcome", "ok")]).inc();
        }
        if r.failovers > 0 {
            self.failovers.inc_by(u64::from(r.failovers));
        }
        if r.moved_from.is_some() {
            self.conversation_moves.inc();
        }
        if let Some(user) = &r.user {
            self.users.record(user, u);
        }
    }
}
