//! The application's state, shared by every layer that serves requests (server/, dashboard/, relay/): the
//! [`AppState`] every handler is given, built once at start from the configuration (with the responses kept for
//! `previous_response_id`, `stored_responses.rs`); the request id
//! ([`request_id`]); what a config reload replaces ([`reload`]); the shutdown's drain ([`Drain`]).
//!
//! It builds the layers below it (store, accounts, upstream, keys, usage, metrics) and knows nothing of routes:
//! server/ builds the router on it.

use std::sync::Arc;

use axum::http::{HeaderMap, header};

use crate::accounts::Pool;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::keys::{BudgetSink, Keys};
use crate::metrics::Metrics;
use crate::record::{RecordSink, Sinks, access_log::AccessLog};
use crate::store::Store;
use crate::stored_responses::{Bounds, StoredResponses};
use crate::upstream::{Upstream, build_http_client};
use crate::users::manage::with_failures;

mod drain;
pub mod reload;

pub use drain::Drain;

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
    /// The shutdown's drain, which upgraded WebSocket sessions join (server/listen.rs, server/websocket.rs).
    pub drain: Drain,
    /// Each conversation's reasoning-effort baseline and updates (`upstream::identity::efforts`).
    pub efforts: Arc<crate::upstream::identity::efforts::Efforts>,
    /// Recent Responses answers, for `previous_response_id` over HTTP and the WebSocket (stored_responses.rs).
    pub stored: Arc<StoredResponses>,
    /// People who sign in and their sessions (users/); none on a single-user install.
    pub users: Arc<crate::users::Users>,
}

impl AppState {
    /// A change of the users' store (users/manage.rs), off the async workers; the registries (users, keys) follow
    /// the store before the caller answers (`/admin/users`, the dashboard's Users page).
    pub async fn change_users<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, crate::users::manage::UserError> + Send + 'static,
    ) -> Result<T, crate::users::manage::UserError> {
        let store = self.users.store().clone();
        let done = crate::users::blocking("store", move || f(&store)).await?;
        self.users.reload().and_then(|()| self.keys.reload())?;
        Ok(done)
    }

    /// Every user, each with their budget's use (`Keys::user_with_usage`) and failed sign-ins
    /// (`manage::with_failures`).
    pub async fn users_listed(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let store = self.users.store().clone();
        let read =
            crate::users::blocking("store", move || anyhow::Ok((store.list_users()?, store.all_sign_in_failures()?)));
        let (rows, failures) = read.await?;
        let failures: std::collections::HashMap<String, _> = failures.into_iter().collect();
        let lockout_after = self.config.dashboard.attempts.lockout_failures;
        let shown = |r| with_failures(self.keys.user_with_usage(r), failures.get(&r.id).copied(), lockout_after);
        Ok(rows.iter().map(shown).collect())
    }

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
        keys.set_policy_limit(config.routing.policy_refusals_per_key);
        let users =
            Arc::new(crate::users::Users::load(store.clone(), config.dashboard.session, config.dashboard.attempts)?);
        seed_budgets(&keys, &store)?;
        let mut all: Vec<Arc<dyn RecordSink>> = vec![Arc::new(AccessLog)];
        // Client keys: token budgets are charged from each record, and policy refusals counted; and each
        // account's quota, what it used.
        all.push(Arc::new(BudgetSink(keys.clone())));
        all.push(Arc::new(crate::accounts::QuotaSink(pool.clone())));
        let (ledger, ledger_sink) = crate::usage::Ledger::open_for(pool.store(), &config.usage)?;
        let ledger = Arc::new(ledger);
        let metrics =
            config.metrics.enabled.then(|| Arc::new(Metrics::new(pool.clone(), ledger.clone(), &config.metrics)));
        if let Some(m) = &metrics {
            all.push(m.clone());
        }
        all.extend(sinks);
        // Last: the ledger keeps the record itself rather than a copy (`RecordSink::take`).
        all.extend(ledger_sink);
        let kept = config.stored_responses;
        Ok(AppState {
            live: reload::Live::new(config.clone()),
            stored: Arc::new(StoredResponses::new(Bounds { responses: kept.responses, bytes: kept.bytes })),
            config,
            pool,
            upstream,
            catalog,
            records: Sinks::new(all),
            metrics,
            keys,
            ledger,
            drain: Drain::default(),
            efforts: Default::default(),
            users,
        })
    }
}

/// Each client key's tokens today and this month (UTC) from the usage ledger, so token budgets hold across
/// restarts. (Records still in the ledger's queue when the last run was killed are not counted: at most the last
/// batch, docs/operations.md.)
fn seed_budgets(keys: &Keys, store: &Store) -> anyhow::Result<()> {
    let (day_start, month_start) = crate::keys::limits::period_starts(crate::auth::now_unix());
    let get = |m: &std::collections::HashMap<String, u64>, id: &str| m.get(id).copied().unwrap_or(0);
    // Users' budgets the same way as the keys', from the ledger's user column.
    use crate::store::usage::Spender;
    let spenders = [(keys.ids(), Spender::Key), (keys.budget_ids(Spender::User), Spender::User)];
    for (ids, by) in spenders.into_iter().filter(|(ids, _)| !ids.is_empty()) {
        let tokens_since = |since_s: i64| crate::usage::tokens_since(store, by, since_s * 1000);
        let (today, month) = (tokens_since(day_start)?, tokens_since(month_start)?);
        for id in ids {
            keys.seed(by, &id, get(&today, &id), get(&month, &id));
        }
    }
    Ok(())
}

/// The request's id: the client's `x-request-id`, or the one the router made when it sent none.
pub fn request_id(headers: &HeaderMap) -> String {
    // A static name: a `&str` one is parsed again on every lookup.
    static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
    headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}
