//! Client keys the admin creates, with limits (docs/operations.md, "Client keys"): the in-memory registry the
//! guard looks keys up in (one SHA-256 and one probe of an `ArcSwap` snapshot; requests never touch the store),
//! the admission check before the upstream is called, the budget charge when a request's record ends, and the
//! suspension of a key refused too often under the upstream's usage policy (docs/accounts.md, "Risk signals").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use dialects::{ErrorKind, GatewayError};
use parking_lot::Mutex;

use crate::auth::codex_file::format_rfc3339;
use crate::auth::now_unix;
pub use crate::record::Permit;
use crate::record::{RecordSink, RequestRecord};
use crate::store::usage::Spender;
use crate::store::{Store, StoredKey, Suspension};
use crate::users::sha256;

pub mod limits;
pub mod manage;
pub mod team;
pub mod users;

use limits::{InFlight, Limits, PolicyRefusals, Rate, Refused, Spent};

/// A client key as requests see it: its settings and the counters its limits run on.
#[derive(Debug, Default)]
pub struct ClientKey {
    pub id: Arc<str>,
    pub name: String,
    /// Models the key may use (`None`: any); matched against the model as the client named it and as resolved.
    pub models: Option<Box<[String]>>,
    pub limits: Limits,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// Refused until an operator lifts it (the store's row says so).
    pub suspended: Option<Suspension>,
    /// From the configuration file (`[keys.NAME]`): no row to keep a suspension in, so never suspended.
    configured: bool,
    /// Its requests are served only from quota that would otherwise expire (the lease's `Need::opportunistic`).
    pub opportunistic: bool,
    /// The user the key belongs to (`None`: the gateway's); their budget applies too (users.rs).
    pub owner: Option<Arc<str>>,
    /// Shared with the key's next version after an update, so counters survive a change of limits.
    state: Arc<KeyState>,
}

/// The counters a set of limits runs on: a key's, or a user's across all their keys (users.rs).
#[derive(Debug, Default)]
struct KeyState {
    /// Locked briefly at a request's admission and end: uncontended but for the key's own simultaneous requests.
    counters: Mutex<Counters>,
    in_flight: InFlight,
    policy: Mutex<PolicyRefusals>,
    /// Suspended here, its row not yet written (or the write failed): refused meanwhile.
    suspending: AtomicBool,
}

impl KeyState {
    /// Tokens used today and this month (UTC), and requests in flight, on this instance's counters, as the admin
    /// API shows them.
    fn usage(&self, now: i64) -> serde_json::Value {
        let (day, month) = self.counters.lock().spent.used(now);
        serde_json::json!({"tokens_today": day, "tokens_this_month": month, "in_flight": self.in_flight.count()})
    }
}

#[derive(Debug, Default)]
struct Counters {
    rate: Rate,
    spent: Spent,
}

/// Whether a key found by its secret may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Usable,
    Revoked,
    Expired,
}

impl ClientKey {
    pub fn standing(&self, now: i64) -> Standing {
        match (self.revoked, self.expires_at) {
            (true, _) => Standing::Revoked,
            (false, Some(t)) if now >= t => Standing::Expired,
            (false, _) => Standing::Usable,
        }
    }

    /// Its requests refused under the upstream's usage policy in the last 24 hours, on this instance.
    pub fn policy_refusals(&self, now: i64) -> usize {
        self.state.policy.lock().count(now)
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended.is_some() || self.state.suspending.load(Ordering::Relaxed)
    }

    /// The key a request with a user's Codex CLI token (oauth/) is served under, so the request is the user's
    /// wherever a key's request is: id `user:<user id>`, no limits of its own, no row (never suspended).
    pub fn signed_in(user: &crate::users::User) -> ClientKey {
        ClientKey {
            id: Arc::from(format!("user:{}", user.id)),
            name: format!("{} (Codex sign-in)", user.name),
            configured: true,
            owner: Some(Arc::from(user.id.as_str())),
            ..ClientKey::default()
        }
    }
}

/// The key a request authenticated with, put into the request's extensions by the guard. Requests with the
/// shared key (`CODEX_GATEWAY_API_KEY`), the admin key, or none carry no `Caller` and have no limits.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ClientKey>);

impl Caller {
    /// The user the request is for: the one place the ledger, the request log, the metrics and the budgets learn it.
    pub fn user(&self) -> Option<Arc<str>> {
        self.0.owner.clone()
    }
}

/// Route handlers take `Option<Caller>`: the key the guard found, if any.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Option<Caller>, Self::Rejection> {
        Ok(parts.extensions.get::<Caller>().cloned())
    }
}

impl crate::record::Slot for KeyState {
    fn release(&self) {
        self.in_flight.release();
    }
}

// Here rather than in record/, which sits under the keys.
impl crate::record::Recorder {
    /// Who the request is for, as the guard found it: its key, and the user it is attributed to ([`Caller::user`]).
    pub fn set_caller(&mut self, caller: Option<&Caller>) {
        let (key, user) = caller.map_or((None, None), |c| (Some(c.0.id.clone()), c.user()));
        self.attribute(key, user);
    }
}

#[derive(Default)]
struct Snapshot {
    /// SHA-256 of the secret -> key.
    by_hash: HashMap<[u8; 32], Arc<ClientKey>>,
    by_id: HashMap<Arc<str>, Arc<ClientKey>>,
    /// Every user with the limits and counters of their budget (users.rs).
    users: HashMap<Arc<str>, Arc<users::UserBudget>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("count", &self.snapshot.load().by_id.len()).finish()
    }
}

/// Every created key, in memory.
pub struct Keys {
    store: Arc<Store>,
    snapshot: ArcSwap<Snapshot>,
    /// Whether any key exists: the one thing requests without a created key ask, as one relaxed load.
    any: AtomicBool,
    /// The rate limiter's clock (monotonic milliseconds since start).
    epoch: Instant,
    /// `[keys.NAME]` from the configuration file, merged into every snapshot (replaced on a config reload).
    configured: Mutex<Arc<[crate::config::ConfiguredKey]>>,
    /// Held through a whole [`Keys::reload`]: the last to store its snapshot is the last that read the store, so a
    /// round that read before a revoke cannot put the key back after the revoke's own reload.
    reloading: Mutex<()>,
    /// `[routing] policy_refusals_per_key` (0: off), applied live.
    policy_limit: AtomicU32,
}

impl Keys {
    pub fn load(store: Arc<Store>) -> anyhow::Result<Keys> {
        let keys = Keys {
            store,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            any: AtomicBool::new(false),
            epoch: Instant::now(),
            configured: Mutex::new(Arc::from(Vec::new())),
            reloading: Mutex::new(()),
            policy_limit: AtomicU32::new(0),
        };
        keys.reload()?;
        Ok(keys)
    }

    /// Replace the keys of the configuration file (`[keys.NAME]`) and rebuild the snapshot.
    pub fn set_configured(&self, keys: &[crate::config::ConfiguredKey]) -> anyhow::Result<()> {
        *self.configured.lock() = Arc::from(keys.to_vec());
        self.reload()
    }

    /// Re-read the store every `period`, forever: a change the command line wrote straight to the store (it did not
    /// reach this gateway, `cli::service::reach`) applies within a period, so a revoked key is not served for long.
    pub async fn follow_store(self: Arc<Self>, period: std::time::Duration) {
        crate::users::reread_every(period, "client keys", move || self.reload()).await
    }

    /// Re-read the store (after a change, a revoke applies to the next request); keys that stay keep their counters.
    pub fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock();
        let old = self.snapshot.load();
        let mut next = Snapshot::default();
        let configured = self.configured.lock().clone();
        for k in configured.iter() {
            let id: Arc<str> = format!("config:{}", k.name).into();
            let key = Arc::new(ClientKey {
                name: k.name.clone(),
                models: k.models.clone().map(Vec::into_boxed_slice),
                limits: k.limits,
                configured: true,
                opportunistic: k.opportunistic,
                state: old.by_id.get(&id).map(|k| k.state.clone()).unwrap_or_default(),
                id: id.clone(),
                ..ClientKey::default()
            });
            next.by_hash.insert(sha256(&k.secret), key.clone());
            next.by_id.insert(id, key);
        }
        let users = self.store.list_users()?;
        // A key whose owner is disabled or gone is refused even if its revocation was never written (made in the
        // instant the owner was removed).
        let live_owners: std::collections::HashSet<&str> =
            users.iter().filter(|u| u.disabled_at.is_none()).map(|u| u.id.as_str()).collect();
        for row in self.store.list_keys()? {
            let Some(hash) = decode_hash(&row.secret_sha256) else {
                tracing::warn!(key = %row.id, "client key with an unreadable hash in the store; it is not accepted");
                continue;
            };
            let id: Arc<str> = row.id.as_str().into();
            let previous = old.by_id.get(&id);
            let state = previous.map(|k| k.state.clone()).unwrap_or_default();
            // Lifted (here or by another instance of the team): the key starts afresh.
            if previous.is_some_and(|k| k.suspended.is_some()) && row.suspended.is_none() {
                state.suspending.store(false, Ordering::Relaxed);
                state.policy.lock().clear();
            }
            let key = Arc::new(ClientKey {
                id: id.clone(),
                name: row.name,
                models: row.models.map(Vec::into_boxed_slice),
                limits: row.limits,
                expires_at: row.expires_at,
                revoked: row.revoked_at.is_some() || row.owner.as_deref().is_some_and(|o| !live_owners.contains(o)),
                suspended: row.suspended,
                configured: false,
                opportunistic: row.opportunistic,
                owner: row.owner.map(Arc::from),
                state,
            });
            next.by_hash.insert(hash, key.clone());
            next.by_id.insert(id, key);
        }
        next.users = users::budgets(&old, users);
        self.any.store(!next.by_id.is_empty(), Ordering::Relaxed);
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// No key was ever created: the guard skips hashing.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Relaxed)
    }

    /// Every key's id (to seed the budgets from the usage ledger at start).
    pub fn ids(&self) -> Vec<Arc<str>> {
        self.snapshot.load().by_id.keys().cloned().collect()
    }

    /// The key whose secret is `presented`, revoked and expired ones included. The probe is not constant-time,
    /// but it is keyed by the SHA-256 of what was presented, which an attacker cannot steer toward a stored hash;
    /// secrets are 256 random bits, so an unsalted fast hash is enough (slow salted ones are for passwords).
    pub fn find(&self, presented: &str) -> Option<Arc<ClientKey>> {
        let snapshot = self.snapshot.load();
        if snapshot.by_hash.is_empty() {
            return None;
        }
        snapshot.by_hash.get(&sha256(presented)).cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ClientKey>> {
        self.snapshot.load().by_id.get(id).cloned()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The counters of a key, or of a user's budget.
    fn state_of(&self, by: Spender, id: &str) -> Option<Arc<KeyState>> {
        let snapshot = self.snapshot.load();
        match by {
            Spender::Key => snapshot.by_id.get(id).map(|k| k.state.clone()),
            Spender::User => snapshot.users.get(id).map(|u| u.state.clone()),
        }
    }

    /// Set a key's or a user's use today and this month (UTC), e.g. from the usage ledger at start.
    pub fn seed(&self, by: Spender, id: &str, day_tokens: u64, month_tokens: u64) {
        if let Some(state) = self.state_of(by, id) {
            state.counters.lock().spent.seed(day_tokens, month_tokens, now_unix());
        }
    }

    /// Add a finished request's tokens to a key's or a user's budget.
    fn charge(&self, by: Spender, id: &str, tokens: u64) {
        if let Some(state) = self.state_of(by, id) {
            state.counters.lock().spent.charge(tokens, now_unix());
        }
    }

    /// `[routing] policy_refusals_per_key` (`None`: off), at start and on a config reload.
    pub fn set_policy_limit(&self, limit: Option<u32>) {
        self.policy_limit.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// A request of key `id` was refused under the upstream's usage policy: counted (on this instance) while the
    /// setting is on, the key suspended when the count within 24 hours reaches it: here at once, and in the store
    /// off the request's task (so every instance refuses it at its next re-read).
    pub fn note_policy_refusal(self: &Arc<Self>, id: &str, kind: dialects::failure::PolicyKind) {
        let limit = self.policy_limit.load(Ordering::Relaxed);
        let Some(key) = self.get(id).filter(|k| limit > 0 && !k.configured && !k.is_suspended()) else { return };
        let now = now_unix();
        let count = key.state.policy.lock().note(now);
        if count < limit as usize || key.state.suspending.swap(true, Ordering::Relaxed) {
            return;
        }
        let suspension = Suspension {
            at: now,
            reason: format!(
                "{count} requests refused under the upstream's usage policy within 24 h (the last: {})",
                kind.name()
            ),
        };
        tracing::warn!(key = %key.id, name = %key.name, reason = %suspension.reason, "client key suspended");
        let keys = self.clone();
        let write = move || {
            // On failure, refused here until a restart or a lift: the row says nothing, so other instances serve it.
            if let Err(e) = keys.store.set_key_suspension(&key.id, Some(&suspension)).and_then(|_| keys.reload()) {
                tracing::error!(key = %key.id, "could not save the key's suspension: {e:#}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    /// Lift a key's suspension in this registry (`manage::update` lifts the row): its refusals start afresh.
    pub fn lift_suspension(&self, id: &str) {
        if let Some(key) = self.get(id) {
            key.state.suspending.store(false, Ordering::Relaxed);
            key.state.policy.lock().clear();
        }
    }

    /// Admit a request of `key` for `model` (as the client named it) resolved to `slug`: a suspension, the model
    /// allow-list, then the key's and its owner's limits (`Keys::admit_all`).
    pub fn admit(&self, key: &ClientKey, model: &str, slug: &str) -> Result<Permit, GatewayError> {
        if key.is_suspended() {
            return Err(suspended(key));
        }
        if let Some(models) = &key.models
            && !models.iter().any(|m| m == model || m == slug)
        {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                format!("The key `{}` may not use the model `{model}`; it may use: {}.", key.name, models.join(", ")),
            )
            .with_code("model_not_allowed"));
        }
        let user = key.owner.as_deref().and_then(|id| self.user_budget(id));
        let limited = [Some((Whose::Key(&key.name), &key.limits, &key.state)), user.as_ref().map(|u| u.limited())];
        self.admit_all(limited.into_iter().flatten())
    }

    /// Admit a request against each set of limits (a key's, a user's): every budget first, then a slot of each,
    /// then a place in each rate, undoing what was taken when a later one refuses, so a refused request takes
    /// neither a slot nor a place in a rate.
    fn admit_all<'a>(
        &self,
        limited: impl Iterator<Item = (Whose<'a>, &'a Limits, &'a Arc<KeyState>)> + Clone,
    ) -> Result<Permit, GatewayError> {
        let now = now_unix();
        // Team store: this instance's share of the limits (docs/team.md). One relaxed load.
        let instances = self.store.live_instances();
        for (whose, limits, state) in limited.clone() {
            state.counters.lock().spent.check(limits, now).map_err(|r| refusal(whose, r, now))?;
        }
        let mut permit = Permit::default();
        for (whose, limits, state) in limited.clone() {
            // Counted without a limit too, so the admin API shows requests in flight.
            if !state.in_flight.acquire(limits.concurrency.map_or(u32::MAX, |l| share(l, instances))) {
                let limit = limits.concurrency.unwrap_or(u32::MAX);
                return Err(refusal(whose, Refused::Concurrency { limit }, now));
            }
            match whose {
                Whose::Key(_) => permit.key = Some(state.clone()),
                Whose::User(_) => permit.user = Some(state.clone()),
            }
        }
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut admitted: Vec<&Arc<KeyState>> = Vec::new();
        for (whose, limits, state) in limited {
            let Some(rpm) = limits.rpm else { continue };
            if let Err(wait) = state.counters.lock().rate.admit(share(rpm, instances), now_ms) {
                for earlier in admitted {
                    earlier.counters.lock().rate.undo_last();
                }
                return Err(refusal(whose, Refused::Rate { rpm, retry_after_ms: wait }, now));
            }
            admitted.push(state);
        }
        Ok(permit)
    }
}

/// Whose limits refused a request: a key's or a user's, by name (the client's message says which).
#[derive(Debug, Clone, Copy)]
enum Whose<'a> {
    Key(&'a str),
    User(&'a str),
}

/// One instance's share of a limit when `instances` share it, rounded up: a positive limit never shares out to 0.
fn share(limit: u32, instances: u32) -> u32 {
    limit.div_ceil(instances.max(1))
}

/// The client's error for a suspended key: 403, what happened and how an operator lifts it.
fn suspended(key: &ClientKey) -> GatewayError {
    let why = key.suspended.as_ref().map_or("repeated refusals under the upstream's usage policy", |s| &s.reason);
    GatewayError::new(
        ErrorKind::PermissionDenied,
        format!(
            "The key `{name}` is suspended ({why}). An operator lifts it with `codex-gateway keys update {name} \
             --resume` (or PATCH /admin/keys/{id} with {{\"suspended\": false}}).",
            name = key.name,
            id = key.id,
        ),
    )
    .with_code("key_suspended_policy")
}

/// The client's error for a refusal: 429 with `Retry-After`, and a code that says which limit and whose.
fn refusal(whose: Whose<'_>, r: Refused, now: i64) -> GatewayError {
    // A key's budget codes predate users' and stay as they were: `daily_token_budget_exceeded`.
    let (who, prefix, budget_prefix) = match whose {
        Whose::Key(name) => (format!("The key `{name}`"), "key", ""),
        Whose::User(name) => (format!("The user `{name}` (across all their keys)"), "user", "user_"),
    };
    match r {
        Refused::Rate { rpm, retry_after_ms } => GatewayError::new(
            ErrorKind::RateLimited,
            format!("{who} is limited to {rpm} requests per minute; retry after the Retry-After time."),
        )
        .with_code(format!("{prefix}_rate_limit_exceeded"))
        .with_retry_after(retry_after_ms.div_ceil(1000).max(1)),
        Refused::Concurrency { limit } => GatewayError::new(
            ErrorKind::RateLimited,
            format!("{who} may have {limit} requests in flight at once; retry when one has finished."),
        )
        .with_code(format!("{prefix}_concurrency_limit_exceeded"))
        .with_retry_after(1),
        Refused::Budget { budget, limit, used, resets_at } => GatewayError::new(
            ErrorKind::RateLimited,
            format!(
                "{who} has used its {} token budget ({used} of {limit} tokens); it resets at {}.",
                budget.as_str(),
                format_rfc3339(resets_at)
            ),
        )
        .with_code(format!("{budget_prefix}{}_token_budget_exceeded", budget.as_str()))
        .with_retry_after(u64::try_from(resets_at - now).unwrap_or(0).max(1)),
    }
}

/// Charges each finished request's tokens to its key's and user's budgets, and counts its policy refusal.
pub struct BudgetSink(pub Arc<Keys>);

impl RecordSink for BudgetSink {
    fn record(&self, record: &RequestRecord) {
        if let Some(id) = &record.client_key
            && let Some(kind) = record.refusal
        {
            self.0.note_policy_refusal(id, kind);
        }
        let tokens = record.usage.input_tokens.saturating_add(record.usage.output_tokens);
        if tokens == 0 {
            return;
        }
        for (by, id) in [(Spender::Key, &record.client_key), (Spender::User, &record.user)] {
            if let Some(id) = id {
                self.0.charge(by, id, tokens);
            }
        }
    }
}

/// The 32 bytes of a stored SHA-256 written as 64 hex digits (`None` for anything else).
fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Look up in the store as the API would show it: with the counters of the running gateway when given.
pub fn stored_with_usage(keys: Option<&Keys>, row: &StoredKey) -> serde_json::Value {
    let now = now_unix();
    let key = keys.and_then(|k| k.get(&row.id));
    let mut summary = manage::summary(row, now);
    if let Some(k) = key {
        summary["usage"] = k.state.usage(now);
        summary["usage"]["policy_refusals_24h"] = serde_json::json!(k.policy_refusals(now));
        // Suspended on this instance, its row not written yet.
        if k.is_suspended() && row.revoked_at.is_none() {
            summary["status"] = serde_json::json!("suspended");
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manage::{KeySpec, create};

    fn keys_with(spec: KeySpec) -> (Keys, Arc<ClientKey>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("cgw-registry-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::open(&dir.join("gateway.db")).unwrap_or_else(|e| panic!("{e}")));
        let (row, secret) = create(&store, spec, None, now_unix()).unwrap_or_else(|e| panic!("{e}"));
        let keys = Keys::load(store).unwrap_or_else(|e| panic!("{e}"));
        let key = keys.find(&secret).unwrap_or_else(|| panic!("not found"));
        assert_eq!(&*key.id, row.id);
        assert!(keys.find("cgw_other").is_none());
        (keys, key, dir)
    }

    /// Once the reload after a revoke has returned, no reload still running (the upkeep round's, a team change's)
    /// brings the key back with what it read before the revoke.
    #[test]
    fn a_reload_that_read_before_a_revoke_does_not_undo_it() {
        let dir = std::env::temp_dir().join(format!("cgw-registry-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::open(&dir.join("gateway.db")).unwrap_or_else(|e| panic!("{e}")));
        let keys = Arc::new(Keys::load(store.clone()).unwrap_or_else(|e| panic!("{e}")));
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = {
            let (keys, stop) = (keys.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = keys.reload();
                }
            })
        };
        for i in 0..100 {
            let spec = KeySpec { name: format!("k{i}"), ..KeySpec::default() };
            let (row, secret) = create(&store, spec, None, now_unix()).unwrap_or_else(|e| panic!("{e}"));
            keys.reload().unwrap_or_else(|e| panic!("{e}"));
            crate::keys::manage::revoke(&store, &row.id, now_unix()).unwrap_or_else(|e| panic!("{e:?}"));
            keys.reload().unwrap_or_else(|e| panic!("{e}"));
            for _ in 0..20 {
                let key = keys.find(&secret).unwrap_or_else(|| panic!("k{i} not found"));
                assert!(key.revoked, "k{i} served again after its revoke's reload");
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = rounds.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_limit_is_shared_out_rounded_up() {
        assert_eq!(super::share(10, 1), 10);
        assert_eq!(super::share(10, 3), 4);
        assert_eq!(super::share(3, 3), 1);
        assert_eq!(super::share(1, 3), 1);
        assert_eq!(super::share(0, 3), 0);
        assert_eq!(super::share(7, 0), 7);
    }

    #[test]
    fn a_refused_request_takes_neither_a_slot_nor_a_place_in_the_rate() {
        let spec = KeySpec { name: "k".into(), rpm: Some(2), concurrency: Some(1), ..Default::default() };
        let (keys, key, dir) = keys_with(spec);
        let first = keys.admit(&key, "gpt-5.4", "gpt-5.4").unwrap_or_else(|e| panic!("{e}"));
        let busy = keys.admit(&key, "gpt-5.4", "gpt-5.4").err().and_then(|e| e.code);
        assert_eq!(busy.as_deref(), Some("key_concurrency_limit_exceeded"));
        drop(first);
        // The refused request did not count toward the rate: the second admission still fits.
        let second = keys.admit(&key, "gpt-5.4", "gpt-5.4");
        assert!(second.is_ok());
        drop(second);
        let rate = keys.admit(&key, "gpt-5.4", "gpt-5.4").err();
        assert_eq!(rate.as_ref().and_then(|e| e.code.as_deref()), Some("key_rate_limit_exceeded"));
        assert!(rate.and_then(|e| e.retry_after).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(key.state.usage(now_unix())["in_flight"], 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn budgets_are_charged_from_records_and_seeded_and_survive_a_reload() {
        let spec = KeySpec {
            name: "b".into(),
            models: Some(vec!["gpt-5.4".into()]),
            daily_tokens: Some(100),
            ..Default::default()
        };
        let (keys, key, dir) = keys_with(spec);
        let denied = keys.admit(&key, "gpt-5.2", "gpt-5.2").err().and_then(|e| e.code);
        assert_eq!(denied.as_deref(), Some("model_not_allowed"));
        // A Gemini or Anthropic name is allowed by what it resolves to.
        assert!(keys.admit(&key, "gemini-2.5-flash", "gpt-5.4").is_ok());
        keys.seed(Spender::Key, &key.id, 60, 60);
        keys.reload().unwrap_or_else(|e| panic!("{e}"));
        let key = keys.get(&key.id).unwrap_or_else(|| panic!("gone"));
        assert_eq!(key.state.usage(now_unix())["tokens_today"], 60);
        let usage = dialects::Usage { input_tokens: 30, output_tokens: 15, ..Default::default() };
        // The charge comes from the request's record when it ends.
        let keys = Arc::new(keys);
        let sinks = crate::record::Sinks::new(vec![Arc::new(BudgetSink(keys.clone()))]);
        let mut record =
            crate::record::Recorder::new(sinks, crate::record::Api::named("chat"), "/v1/chat/completions", "r".into());
        record.set_caller(Some(&Caller(key.clone())));
        record.usage(usage);
        record.finish(200);
        let key = keys.get(&key.id).unwrap_or_else(|| panic!("gone"));
        assert_eq!(key.state.usage(now_unix())["tokens_today"], 105);
        let over = keys.admit(&key, "gpt-5.4", "gpt-5.4").err();
        assert_eq!(over.as_ref().and_then(|e| e.code.as_deref()), Some("daily_token_budget_exceeded"));
        assert!(over.is_some_and(|e| e.message.contains("105 of 100 tokens") && e.message.contains("T00:00:00Z")));
        let _ = std::fs::remove_dir_all(dir);
    }
}
