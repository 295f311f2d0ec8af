//! The team store on PostgreSQL (docs/team.md): accounts, tokens and client keys shared by several gateway
//! instances. `store/` runs its statements on this pool when `[store] url` names a PostgreSQL database; so does
//! the usage ledger's writer (`usage.rs`). Settings stay in the instance's own SQLite file.
//!
//! The rest of the gateway calls the store synchronously (as it calls SQLite), from request workers, blocking
//! tasks and CLI commands alike. The driver is async (tokio-postgres + deadpool), so the connections live on a
//! small runtime of their own, on its own thread: a synchronous call spawns its query there and waits for the
//! answer, which works whether or not the caller is inside a runtime (and of whichever flavour); async callers
//! await the spawned task instead ([`PgStore::run`]). None of this is on the request path: requests read the
//! in-memory pool and key table, which the change watcher (`watch.rs`) keeps current.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;

mod accounts;
pub mod affinity;
mod budgets;
pub mod copy;
pub mod leader;
pub mod lease;
pub mod responses;
pub mod shared;
pub mod usage;
pub mod watch;

/// How long a statement may wait for a pooled connection, or a new connection may take: an unreachable
/// database must fail calls quickly (the gateway keeps serving from memory), never hang them.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections per instance: the store is read in batches (a re-read on change, a refresh lease), not per
/// request, so a few are plenty.
const POOL_SIZE: usize = 4;

/// A PostgreSQL store: a connection pool on a runtime thread of its own.
pub struct PgStore {
    pool: Pool,
    rt: tokio::runtime::Handle,
    /// This process's name in leases (refresh, leader): random per start, so a restarted instance never
    /// mistakes a lease its previous life held for its own.
    pub(crate) instance: String,
    /// Token versions read under a refresh lease, by account id: the compare-and-swap of the commit that follows
    /// (`save_tokens`) expects exactly that version.
    held_versions: Mutex<std::collections::HashMap<String, i64>>,
    /// Whether the change watcher's last poll reached the database.
    reachable: std::sync::atomic::AtomicBool,
    /// Instances with a live heartbeat, this one included (`watch.rs`): a key's limits are shared out by it.
    live_instances: std::sync::atomic::AtomicU32,
    /// Until when this instance surely holds the leader lease (`leader.rs`), on the local monotonic clock.
    leader_until: Mutex<Option<std::time::Instant>>,
    /// Conversation affinity on its way to the shared table (`affinity.rs`).
    affinity: affinity::AffinityQueue,
    /// Kept Responses answers on their way to the shared table (`responses.rs`).
    responses: responses::ResponseQueue,
    /// Dropped with the store: ends the runtime thread.
    _stop: std::sync::mpsc::SyncSender<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("instance", &self.instance).finish_non_exhaustive()
    }
}

/// Whether a store URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStore {
    /// Connect (TLS as the URL's `sslmode` asks: `disable`, `prefer` (the default), `require`) and migrate.
    pub fn open(url: &str) -> anyhow::Result<Arc<PgStore>> {
        let mut config: tokio_postgres::Config =
            url.parse().context("the store URL is not a PostgreSQL connection URL")?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()?);
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let (rt, stop) = runtime_thread()?;
        let pool = {
            // Building the pool needs the runtime it will spawn on.
            let _entered = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .recycle_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .context("cannot build the PostgreSQL connection pool")?
        };
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let affinity = affinity::AffinityQueue::start(&rt, pool.clone(), instance.clone());
        let responses = responses::ResponseQueue::start(&rt, pool.clone());
        let store = Arc::new(PgStore {
            pool,
            rt,
            instance,
            held_versions: Mutex::new(Default::default()),
            // Starts true: the store was reachable when it opened (the migration below fails `open` otherwise).
            reachable: std::sync::atomic::AtomicBool::new(true),
            live_instances: std::sync::atomic::AtomicU32::new(1),
            leader_until: Mutex::new(None),
            affinity,
            responses,
            _stop: stop,
        });
        store
            .block(crate::store::migrations::on_postgres)
            .with_context(|| format!("cannot open the PostgreSQL store {}", redact_url(url)))?;
        Ok(store)
    }

    /// Run `f` with a pooled connection on the store's runtime and wait for it (synchronous callers).
    pub(crate) fn block<T: Send + 'static, F>(&self, f: impl FnOnce(Object) -> F + Send + 'static) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let task = connected(self.pool.clone(), f);
        self.rt.spawn(async move {
            let _ = tx.send(task.await);
        });
        rx.recv().map_err(|_| anyhow::anyhow!("the PostgreSQL store's runtime stopped"))?
    }

    /// Run `f` with a pooled connection on the store's runtime and await it (async callers: the refresh lease, the
    /// change watcher).
    pub(crate) async fn run<T: Send + 'static, F>(
        &self,
        f: impl FnOnce(Object) -> F + Send + 'static,
    ) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let task = self.rt.spawn(connected(self.pool.clone(), f));
        task.await.map_err(|e| anyhow::anyhow!("a PostgreSQL store task failed: {e}"))?
    }

    /// Run `f` with a pooled connection on the store's runtime without waiting for it: a failure (to `what`) is
    /// logged at debug level.
    pub(crate) fn background<F>(&self, what: &'static str, f: impl FnOnce(Object) -> F + Send + 'static)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let task = connected(self.pool.clone(), f);
        self.rt.spawn(async move {
            if let Err(e) = task.await {
                tracing::debug!("could not {what}: {e:#}");
            }
        });
    }

    /// [`PgStore::run`] on the request path: refused at once while the change watcher finds the database
    /// unreachable, abandoned after `within` (its connection goes back to the pool rather than waiting on for a
    /// statement nobody reads).
    pub(crate) async fn ask<T: Send + 'static, F>(
        &self,
        within: Duration,
        f: impl FnOnce(Object) -> F + Send + 'static,
    ) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        anyhow::ensure!(self.reachable(), "the store is unreachable");
        let mut lookup = self.rt.spawn(connected(self.pool.clone(), f));
        match tokio::time::timeout(within, &mut lookup).await {
            Ok(joined) => joined.context("the lookup's task failed")?,
            Err(_) => {
                lookup.abort();
                anyhow::bail!("the team store did not answer within {} ms", within.as_millis())
            }
        }
    }
}

/// `f` with a connection of `pool`.
async fn connected<T, F: Future<Output = anyhow::Result<T>>>(
    pool: Pool,
    f: impl FnOnce(Object) -> F,
) -> anyhow::Result<T> {
    f(pool.get().await.context("cannot connect")?).await
}

/// A current-thread runtime on a thread of its own, until the returned sender is dropped.
fn runtime_thread() -> anyhow::Result<(tokio::runtime::Handle, std::sync::mpsc::SyncSender<()>)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = rt.handle().clone();
    let (stop, stopped) = std::sync::mpsc::sync_channel::<()>(0);
    std::thread::Builder::new().name("store-postgres".into()).spawn(move || {
        // Drives the spawned queries until the store is dropped (`recv` then fails), off every other runtime.
        rt.block_on(async move {
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
        });
    })?;
    Ok((handle, stop))
}

/// Server certificates are checked against the Mozilla roots and the system's (a private CA installed there).
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot read is skipped, as the upstream client does.
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Unix milliseconds on the database's clock: leases compare against one clock, whatever the hosts' clocks say.
pub(crate) const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
