//! Reloading the configuration while serving: on SIGHUP, `POST /admin/reload` (what `codex-gateway reload` uses
//! when it cannot signal; server/admin/), a change of the file when `[server] watch_config = true`, and after
//! the dashboard's Settings save (dashboard/settings.rs). The file is read again and [`apply`], the one function
//! all of them go through, puts into force what is safe to change live: the routing strategy, model aliases,
//! keepalive, client keys (`api_keys`, `[keys.NAME]` and their limits), the price table and the log filter.
//! Everything else is reported as needing a restart and stays as started; a file that does not load is refused
//! whole and the running configuration stays.
//!
//! Requests never wait on a reload: what they read live is swapped whole (`ArcSwap` snapshots: `Live::config`,
//! the guard's `SharedKeys`, the key registry, the ledger's prices, the pool's strategy atomic), so a request sees
//! either the old or the new value, never a mix within one snapshot.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;

use super::AppState;
use crate::config::{Config, ProcessEnv, UsageSettings};

/// How often `[server] watch_config` looks at the file. A poll of its metadata rather than inotify (the `notify`
/// crate): inotify misses a file replaced by an editor's rename unless the directory is watched, and sees nothing
/// on the network and bind-mounted filesystems a container's config often lives on; one `stat` a second costs
/// nothing and needs no dependency.
const WATCH_POLL: Duration = Duration::from_secs(1);

/// What started a reload (in the log line and the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    #[default]
    Start,
    Signal,
    Admin,
    Watch,
    Dashboard,
}

/// The outcome of the last reload (`GET /admin/reload`).
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Counts reloads since start (0: none yet), so `codex-gateway reload` can tell its own from an older one.
    pub seq: u64,
    pub at: i64,
    pub trigger: Trigger,
    /// Whether the file loaded. When false nothing was applied and `error` says why.
    pub ok: bool,
    /// Settings that changed and are in force now.
    pub applied: Vec<&'static str>,
    /// Settings that differ from the running ones and take effect at the next start.
    pub restart: Vec<&'static str>,
    pub error: Option<String>,
}

impl Report {
    /// The report in the audit trail: whether the file loaded and the names of what changed (never the values,
    /// nor the error's text, which may quote a line of the file).
    pub fn note(&self) -> crate::audit::Note {
        crate::audit::Note::default()
            .with("trigger", serde_json::to_value(self.trigger).unwrap_or_default())
            .with("loaded", self.ok)
            .with("applied", self.applied.clone())
            .with("restart", self.restart.clone())
    }
}

/// The keys of the configuration, as one snapshot a reload replaces; the request guard (server/guard.rs) checks
/// them.
#[derive(Debug, Default)]
pub struct SharedKeys {
    /// Unrestricted client keys: `api_keys` and the admin key (none, and no created key: no key is asked for).
    pub(crate) keys: Box<[String]>,
    /// What `/admin/*` and `/metrics` accept (server/mod.rs `Config::admin_keys`).
    pub(crate) admin_keys: Box<[String]>,
}

impl SharedKeys {
    /// The main port's keys from `config`.
    pub fn main(config: &Config) -> SharedKeys {
        let mut keys = config.api_keys.clone();
        keys.extend(config.access.admin_key.iter().cloned());
        SharedKeys { keys: keys.into(), admin_keys: config.admin_keys().into() }
    }
}

/// What a reload can replace, shared by the request path and [`apply`].
pub struct Live {
    /// The configuration in force: as started, with the live settings of the last successful reload.
    pub config: ArcSwap<Config>,
    /// The guard's configured keys (server/guard.rs).
    pub shared_keys: Arc<ArcSwap<SharedKeys>>,
    /// One reload at a time (the signal, the watcher, the admin call and the dashboard may race).
    lock: Mutex<()>,
    last: Mutex<Report>,
}

impl Live {
    pub fn new(config: Arc<Config>) -> Live {
        let shared = Arc::new(ArcSwap::from_pointee(SharedKeys::main(&config)));
        let last = Report { at: crate::auth::now_unix(), ok: true, ..Report::default() };
        Live { config: ArcSwap::new(config), shared_keys: shared, lock: Mutex::new(()), last: Mutex::new(last) }
    }

    /// The configuration in force (one `ArcSwap` load: a few atomic operations, no lock).
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    pub fn last(&self) -> Report {
        self.last.lock().clone()
    }
}

/// Settings that apply live and settings that need a restart, between `old` and `next`. The destructuring has
/// no `..`: a new field of `Config` does not compile until it is sorted into one list or the other.
fn classify(old: &Config, next: &Config) -> (Vec<&'static str>, Vec<&'static str>) {
    let Config {
        listen,
        api_keys,
        data_dir,
        upstream_base_url,
        chatgpt_base_url,
        auth_issuer,
        openai_base_url,
        codex_home,
        openai_api_key,
        proxy,
        ca_bundle,
        upstream_h2c,
        body_limit,
        keepalive,
        upstream_idle_timeout,
        timeouts,
        upkeep_interval,
        default_reasoning_effort,
        log,
        log_format,
        ollama,
        gemini_model_aliases,
        anthropic_model_aliases,
        routing,
        access,
        metrics,
        dashboard,
        oauth,
        config_file,
        usage,
        configured_keys,
        watch_config,
        inbound_ws,
        stored_responses,
        overrides,
        store,
        client,
        upstream_ws,
    } = next;
    let [mut live, routing_restart] = routing.changes(&old.routing);
    let mut restart = Vec::new();
    let mut live_if = |changed: bool, name: &'static str| live.extend(changed.then_some(name));
    live_if(*api_keys != old.api_keys, "api_keys");
    live_if(*configured_keys != old.configured_keys, "keys");
    live_if(*keepalive != old.keepalive, "keepalive_secs");
    live_if(*anthropic_model_aliases != old.anthropic_model_aliases, "anthropic.model_aliases");
    live_if(*gemini_model_aliases != old.gemini_model_aliases, "gemini.model_aliases");
    live_if(usage.prices != old.usage.prices, "usage.prices");
    live_if(*log != old.log, "log");
    let mut restart_if = |changed: bool, name: &'static str| restart.extend(changed.then_some(name));
    restart_if(*listen != old.listen, "host/port");
    restart_if(*data_dir != old.data_dir, "data_dir (the store)");
    restart_if(*upstream_base_url != old.upstream_base_url, "upstream_base_url");
    restart_if(*chatgpt_base_url != old.chatgpt_base_url, "chatgpt_base_url");
    restart_if(*auth_issuer != old.auth_issuer, "auth_issuer");
    restart_if(*openai_base_url != old.openai_base_url, "openai_base_url");
    restart_if(*codex_home != old.codex_home, "codex_home");
    restart_if(*openai_api_key != old.openai_api_key, "OPENAI_API_KEY");
    restart_if(*proxy != old.proxy, "proxy");
    restart_if(*ca_bundle != old.ca_bundle, "ca_bundle");
    restart_if(*upstream_h2c != old.upstream_h2c, "upstream_h2c");
    restart_if(*body_limit != old.body_limit, "body_limit_mb");
    restart_if(*upstream_idle_timeout != old.upstream_idle_timeout, "upstream_idle_timeout_secs");
    restart_if(*timeouts != old.timeouts, "timeouts (*_timeout_secs)");
    restart_if(*upkeep_interval != old.upkeep_interval, "upkeep_interval_secs");
    restart_if(*default_reasoning_effort != old.default_reasoning_effort, "default_reasoning_effort");
    restart_if(*log_format != old.log_format, "log_format");
    restart_if(*store != old.store, "store.url");
    restart_if(*client != old.client, "upstream.client_version / user_agent");
    restart_if(*upstream_ws != old.upstream_ws, "upstream.transport / websocket_*");
    restart_if(*ollama != old.ollama, "ollama");
    restart_if(*oauth != old.oauth, "oauth");
    routing_restart.into_iter().for_each(|name| restart_if(true, name));
    restart_if(*access != old.access, "server (allowed_hosts, allowed_origins, trusted_proxies, admin_key)");
    restart_if(*watch_config != old.watch_config, "server.watch_config");
    restart_if(*inbound_ws != old.inbound_ws, "server.websocket*");
    restart_if(*stored_responses != old.stored_responses, "server.stored_responses*");
    restart_if(*metrics != old.metrics, "metrics");
    restart_if(*dashboard != old.dashboard, "dashboard");
    restart_if(*config_file != old.config_file || *overrides != old.overrides, "the config file's path");
    let usage_rest = UsageSettings { prices: old.usage.prices.clone(), ..usage.clone() };
    restart_if(usage_rest != old.usage, "usage (other than prices)");
    (live, restart)
}

/// Put `next` into force as far as it applies live; the one apply function of every reload path. Everything
/// that can fail runs before anything is replaced, so a refusal leaves the running configuration whole. The
/// caller holds `state.live.lock` from before it read `next` ([`reload`]).
fn apply(state: &AppState, next: Config, trigger: Trigger) -> Report {
    let old = state.live.config.load_full();
    let (applied, restart) = classify(&old, &next);
    // Checked first: an invalid filter refuses the reload before anything changed.
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&next.log) {
        return finish(state, trigger, Err(format!("log = `{}` is not a log filter: {e}", next.log)));
    }
    // Reads the store (the created keys); the one step that can fail, so it goes first.
    if next.configured_keys != old.configured_keys
        && let Err(e) = state.keys.set_configured(&next.configured_keys)
    {
        return finish(state, trigger, Err(format!("{e:#}")));
    }
    let mut running = (*old).clone();
    running.routing.keep_live(&next.routing);
    running.api_keys = next.api_keys;
    running.configured_keys = next.configured_keys;
    running.keepalive = next.keepalive;
    running.anthropic_model_aliases = next.anthropic_model_aliases;
    running.gemini_model_aliases = next.gemini_model_aliases;
    running.usage.prices = next.usage.prices;
    running.log = next.log;
    state.pool.set_strategy(running.routing.strategy);
    state.keys.set_policy_limit(running.routing.policy_refusals_per_key);
    state.live.shared_keys.store(Arc::new(SharedKeys::main(&running)));
    state.ledger.set_prices(running.usage.prices.clone());
    if applied.contains(&"log") {
        // The filter parsed above; a process without our subscriber (a test) has nothing to change.
        let _ = crate::logging::set_filter(&running.log);
    }
    state.live.config.store(Arc::new(running));
    finish(state, trigger, Ok((applied, restart)))
}

type Changes = (Vec<&'static str>, Vec<&'static str>);

fn finish(state: &AppState, trigger: Trigger, outcome: Result<Changes, String>) -> Report {
    let mut last = state.live.last.lock();
    let (ok, (applied, restart), error) = match outcome {
        Ok(changes) => (true, changes, None),
        Err(e) => (false, (Vec::new(), Vec::new()), Some(e)),
    };
    *last = Report { seq: last.seq + 1, at: crate::auth::now_unix(), trigger, ok, applied, restart, error };
    last.clone()
}

/// Read the file again and [`apply`] it (a file that does not load is refused: the report says why). Blocking
/// (file and store reads): async callers go through [`reload_logged`].
pub fn reload(state: &AppState, trigger: Trigger) -> Report {
    // Held from the read to the swap: of two reloads close together (a SIGHUP and the file watcher after one
    // save, a second save), the one that read the file last is the one left in force.
    let _one = state.live.lock.lock();
    let current = state.live.config();
    match current.reread(&ProcessEnv) {
        Ok(next) => apply(state, next, trigger),
        Err(e) => finish(state, trigger, Err(format!("{e:#}"))),
    }
}

/// [`reload`] off the async workers, with one log line saying what happened.
pub async fn reload_logged(state: Arc<AppState>, trigger: Trigger) -> Report {
    let s = state.clone();
    let report = match tokio::task::spawn_blocking(move || reload(&s, trigger)).await {
        Ok(r) => r,
        Err(e) => {
            let _one = state.live.lock.lock();
            finish(&state, trigger, Err(format!("the reload did not complete: {e}")))
        }
    };
    // The admin API and the dashboard record the reloads they ask for with their own actor; a signal and the
    // file's watcher are recorded here.
    let actor = match trigger {
        Trigger::Signal => Some(crate::audit::Actor::Signal),
        Trigger::Watch => Some(crate::audit::Actor::Gateway),
        Trigger::Start | Trigger::Admin | Trigger::Dashboard => None,
    };
    if let Some(actor) = actor {
        let mut entry = crate::audit::Entry::new(actor, "config.reload");
        entry.outcome = if report.ok { crate::audit::Outcome::Ok } else { crate::audit::Outcome::Refused };
        report.note().apply(&mut entry);
        let store = state.pool.store().clone();
        if let Err(e) = tokio::task::spawn_blocking(move || crate::audit::record(&store, entry)).await {
            tracing::error!("the audit trail's append did not complete: {e}");
        }
    }
    match (&report.error, report.applied.is_empty() && report.restart.is_empty()) {
        (Some(e), _) => tracing::error!(?trigger, "config reload refused, the running configuration stays: {e}"),
        (None, true) => tracing::info!(?trigger, "config reloaded: nothing changed"),
        (None, false) => tracing::info!(
            ?trigger,
            "config reloaded: applied [{}]; needs a restart [{}]",
            report.applied.join(", "),
            report.restart.join(", ")
        ),
    }
    report
}

/// Reload on every SIGHUP until the task is aborted. The handler is installed here, before the task is spawned
/// and so before the gateway answers: a SIGHUP sent once `start` returned must not meet the default action
/// (which ends the process).
pub fn on_hangup(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    reload_logged(state.clone(), Trigger::Signal).await;
                }
            }),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP ({e}); reload with POST /admin/reload");
                tokio::spawn(async {})
            }
        }
    }
    #[cfg(not(unix))]
    {
        drop(state);
        tokio::spawn(async {})
    }
}

/// What identifies a version of the file without reading it: modification time, length and inode (an editor's
/// save by rename changes the inode even within one clock tick).
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok()?, m.len(), ino))
}

/// `[server] watch_config = true`: reload when the file changes (created, edited, replaced or removed).
pub async fn watch(state: Arc<AppState>) {
    let path = state.config.config_file.clone();
    let mut seen = stamp(&path);
    let mut tick = tokio::time::interval(WATCH_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now != seen {
            seen = now;
            reload_logged(state.clone(), Trigger::Watch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, RawConfig};

    fn resolve(toml: &str) -> Config {
        let raw: RawConfig = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}"));
        let env = std::collections::HashMap::<String, String>::from([("HOME".into(), "/nonexistent".into())]);
        Config::resolve(raw, &Overrides::default(), &env).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn live_settings_and_restart_settings_are_told_apart() {
        let old = resolve("");
        let next = resolve(
            "port = 9999\nkeepalive_secs = 3\n[routing]\nstrategy = \"sticky\"\nplan_priority = [\"pro\"]\n\
             [keys.team]\nsecret = \"cgw_team_secret\"\nrpm = 5\n[usage.prices.m]\ninput = 1.0\noutput = 2.0",
        );
        let (live, restart) = classify(&old, &next);
        assert_eq!(live, ["routing.strategy", "keys", "keepalive_secs", "usage.prices"]);
        assert_eq!(restart, ["host/port", "routing.plan_priority"]);
        assert_eq!(classify(&next, &next), (Vec::new(), Vec::new()));
    }
}
