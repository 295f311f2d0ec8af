//! The fake's mutable world behind one lock: accounts, valid access tokens, single-use refresh
//! tokens, OAuth codes and device logins, scenario queues, quota windows, the prompt cache, and
//! the request/token-call logs. Handlers (`server.rs`, `oauth.rs`, `responses.rs`) call the
//! methods here and never hold the lock across an `.await`.

use crate::catalog::{self, Quota};
use crate::tokens::{self, Identity, now_secs};
use crate::types::{AccountCreds, AccountSpec, EndpointMode, FakeConfig, RecordedRequest, Scenario, TokenCall};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const PRIMARY_WINDOW_SECS: i64 = 18_000;
const SECONDARY_WINDOW_SECS: i64 = 604_800;

pub(crate) struct Account {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub plan: String,
    pub models: Vec<String>,
    pub primary_used: f64,
    pub secondary_used: f64,
    pub primary_reset_at: i64,
    pub secondary_reset_at: i64,
    pub quota_cost: f64,
    /// Lifetime of the access tokens issued to this account (seconds).
    pub token_ttl: u64,
}

impl Account {
    /// Roll windows whose reset time has passed.
    fn roll(&mut self, now: i64) {
        if now >= self.primary_reset_at {
            self.primary_used = 0.0;
            self.primary_reset_at = now + PRIMARY_WINDOW_SECS;
        }
        if now >= self.secondary_reset_at {
            self.secondary_used = 0.0;
            self.secondary_reset_at = now + SECONDARY_WINDOW_SECS;
        }
    }

    pub fn quota(&self) -> Quota {
        Quota {
            plan: self.plan.clone(),
            primary_used: self.primary_used,
            secondary_used: self.secondary_used,
            primary_reset_at: self.primary_reset_at,
            secondary_reset_at: self.secondary_reset_at,
        }
    }
}

struct AccessEntry {
    account_id: String,
    exp: i64,
    revoked: bool,
}

struct RefreshEntry {
    account_id: String,
    used: bool,
}

pub(crate) struct AuthCode {
    pub account_id: String,
    pub challenge: String,
    pub redirect_uri: String,
    pub used: bool,
}

pub(crate) struct DeviceLogin {
    pub user_code: String,
    pub polls: u32,
    /// (authorization_code, code_challenge, code_verifier) once approved.
    pub approved: Option<(String, String, String)>,
}

/// Why a bearer access token was refused.
pub(crate) enum TokenRejection {
    Unknown,
    Expired,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub accounts: HashMap<String, Account>,
    access: HashMap<String, AccessEntry>,
    refresh: HashMap<String, RefreshEntry>,
    pub api_keys: HashSet<String>,
    pub global_queue: VecDeque<Scenario>,
    pub account_queues: HashMap<String, VecDeque<Scenario>>,
    pub requests: VecDeque<RecordedRequest>,
    pub token_calls: Vec<TokenCall>,
    pub codes: HashMap<String, AuthCode>,
    pub devices: HashMap<String, DeviceLogin>,
    /// (owner, prompt_cache_key) -> serialized leading units of the previous request.
    pub prompt_cache: HashMap<(String, String), Vec<String>>,
    pub next_seq: u64,
    pub reasoning_counter: u64,
    /// Account order of creation, for the binary's listing.
    pub order: Vec<String>,
}

/// Everything the server tasks share.
pub(crate) struct Shared {
    pub cfg: FakeConfig,
    pub base_url: String,
    pub secret: [u8; 32],
    pub inner: Mutex<Inner>,
    pub stats: Stats,
    /// How `/oauth/token` answers (normal unless a test hangs or fails it).
    pub token_mode: Mutex<EndpointMode>,
    /// How the Codex model catalog answers.
    pub catalog_mode: Mutex<EndpointMode>,
    /// Catalog calls counted on arrival.
    pub catalog_calls: std::sync::atomic::AtomicUsize,
    /// `/oauth/token` calls counted on arrival (a hung one is never in the token-call log).
    pub token_arrivals: std::sync::atomic::AtomicUsize,
    /// Minimum client versions per model (`versions.rs`).
    pub min_versions: crate::versions::MinVersions,
    /// The Responses WebSocket's switches and counters (`ws.rs`).
    pub ws: crate::ws::WsState,
    /// Models whose catalog entry says `use_responses_lite` (set by tests; `catalog::mark_lite`).
    pub lite_models: Mutex<Vec<String>>,
    /// Models whose catalog entry says `supports_reasoning_effort_updates`: only they take a
    /// `configuration_update` input item (set by tests; `catalog::mark_effort_updates`).
    pub effort_update_models: Mutex<Vec<String>>,
    /// Responses answers streaming per account over HTTP: (now, the most at once) (`server::Streaming`).
    pub streaming: Mutex<HashMap<String, (usize, usize)>>,
    /// The first bytes of the latest TLS connections (`preface.rs`).
    pub prefaces: crate::preface::Prefaces,
}

/// Early stream ends remembered for `/_fake/stats` (the newest ones).
const MAX_EARLY_ENDS: usize = 256;

/// Counters for benchmarks (`/_fake/stats`): connections accepted, failed TLS handshakes, streams started /
/// finished / ended early because the client went away, and when those early ends happened. Kept apart from
/// `inner` so the hot path takes no extra lock.
#[derive(Default)]
pub(crate) struct Stats {
    pub connections: AtomicU64,
    pub streams_started: AtomicU64,
    pub streams_completed: AtomicU64,
    pub streams_dropped: AtomicU64,
    /// TLS mode: connections whose handshake failed or timed out (e.g. a client that does not trust the cert).
    pub tls_handshake_failures: AtomicU64,
    /// Unix microseconds at which the fake saw a stream's receiver go away, newest last.
    pub dropped_at_us: Mutex<VecDeque<u64>>,
    /// TLS mode: bytes received from clients inside TLS (heads, bodies and WebSocket frames as sent: compressed
    /// when the client compressed them).
    pub bytes_received: Arc<AtomicU64>,
}

impl Stats {
    pub fn stream_dropped(&self) {
        self.streams_dropped.fetch_add(1, Ordering::Relaxed);
        let mut q = self.dropped_at_us.lock();
        if q.len() >= MAX_EARLY_ENDS {
            q.pop_front();
        }
        q.push_back(tokens::now_us());
    }

    pub fn tls_handshake_failed(&self, why: &dyn std::fmt::Display) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("fake-codex TLS handshake failed: {why}");
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let started = self.streams_started.load(Ordering::Relaxed);
        let completed = self.streams_completed.load(Ordering::Relaxed);
        let dropped = self.streams_dropped.load(Ordering::Relaxed);
        serde_json::json!({
            "connections_accepted": self.connections.load(Ordering::Relaxed),
            "streams_started": started,
            "streams_completed": completed,
            "streams_dropped": dropped,
            "streams_open": started.saturating_sub(completed + dropped),
            "tls_handshake_failures": self.tls_handshake_failures.load(Ordering::Relaxed),
            "bytes_received": self.bytes_received.load(Ordering::Relaxed),
            "dropped_at_unix_us": self.dropped_at_us.lock().iter().collect::<Vec<_>>(),
        })
    }
}

impl Shared {
    pub fn new(cfg: FakeConfig, base_url: String) -> Self {
        Self {
            cfg,
            base_url,
            secret: rand::random(),
            inner: Mutex::new(Inner::default()),
            stats: Stats::default(),
            token_mode: Mutex::new(EndpointMode::Normal),
            catalog_mode: Mutex::new(EndpointMode::Normal),
            catalog_calls: std::sync::atomic::AtomicUsize::new(0),
            token_arrivals: std::sync::atomic::AtomicUsize::new(0),
            min_versions: crate::versions::MinVersions::default(),
            ws: crate::ws::WsState::default(),
            lite_models: Mutex::new(Vec::new()),
            effort_update_models: Mutex::new(Vec::new()),
            streaming: Mutex::new(HashMap::new()),
            prefaces: Default::default(),
        }
    }

    /// Flag `slug` `use_responses_lite` in the catalog, or no longer.
    pub(crate) fn set_lite(&self, slug: &str, lite: bool) {
        let mut models = self.lite_models.lock();
        models.retain(|m| m != slug);
        if lite {
            models.push(slug.to_string());
        }
    }

    /// Flag `slug` `supports_reasoning_effort_updates` in the catalog, or no longer.
    pub(crate) fn set_effort_updates(&self, slug: &str, on: bool) {
        let mut models = self.effort_update_models.lock();
        models.retain(|m| m != slug);
        if on {
            models.push(slug.to_string());
        }
    }

    pub fn add_account(&self, spec: AccountSpec) -> AccountCreds {
        let id = uuid::Uuid::new_v4().to_string();
        let user_id = format!("user-{}", tokens::random_string(24));
        let email = spec.email.unwrap_or_else(|| format!("user-{}@fake-codex.test", &id[..8]));
        let plan = spec.plan;
        let models = spec.models.unwrap_or_else(|| catalog::plan_models(&plan));
        let now = now_secs();
        let account = Account {
            id: id.clone(),
            user_id,
            email: email.clone(),
            plan: plan.clone(),
            models,
            primary_used: 0.0,
            secondary_used: 0.0,
            primary_reset_at: now + PRIMARY_WINDOW_SECS,
            secondary_reset_at: now + SECONDARY_WINDOW_SECS,
            quota_cost: 0.0,
            token_ttl: spec.access_token_ttl_secs.unwrap_or(self.cfg.access_token_ttl_secs),
        };
        let mut inner = self.inner.lock();
        inner.accounts.insert(id.clone(), account);
        inner.order.push(id.clone());
        let (id_token, access_token, refresh_token) = self.issue_locked(&mut inner, &id);
        AccountCreds { account_id: id, id_token, access_token, refresh_token, email, plan }
    }

    /// Issue (id_token, access_token, refresh_token) for an existing account.
    pub fn issue_locked(&self, inner: &mut Inner, account_id: &str) -> (String, String, String) {
        let now = now_secs();
        let ttl = self.token_ttl_locked(inner, account_id);
        let exp = now + i64::try_from(ttl).unwrap_or(i64::MAX);
        let (id_token, access) = match inner.accounts.get(account_id) {
            Some(a) => {
                let ident = Identity { account_id: &a.id, user_id: &a.user_id, email: &a.email, plan: &a.plan };
                (
                    tokens::id_token(&ident, &self.base_url, now, exp),
                    tokens::access_token(&ident, &self.base_url, now, exp),
                )
            }
            None => (String::new(), String::new()),
        };
        let refresh = tokens::refresh_token();
        inner.access.insert(access.clone(), AccessEntry { account_id: account_id.to_string(), exp, revoked: false });
        inner.refresh.insert(refresh.clone(), RefreshEntry { account_id: account_id.to_string(), used: false });
        (id_token, access, refresh)
    }

    /// Lifetime of the access tokens issued to `account_id`: its own, else the configured one.
    pub fn token_ttl_locked(&self, inner: &Inner, account_id: &str) -> u64 {
        inner.accounts.get(account_id).map_or(self.cfg.access_token_ttl_secs, |a| a.token_ttl)
    }

    /// The account an access token belongs to, if it is currently valid.
    pub fn check_access(&self, token: &str) -> Result<String, TokenRejection> {
        let inner = self.inner.lock();
        let entry = inner.access.get(token).ok_or(TokenRejection::Unknown)?;
        if entry.revoked || entry.exp <= now_secs() {
            return Err(TokenRejection::Expired);
        }
        Ok(entry.account_id.clone())
    }

    pub fn expire_access_tokens(&self, account_id: &str) {
        let mut inner = self.inner.lock();
        for e in inner.access.values_mut() {
            if e.account_id == account_id {
                e.revoked = true;
            }
        }
    }

    /// Consume a refresh token: Ok(account) on first use, Err(outcome) otherwise.
    pub fn consume_refresh(&self, inner: &mut Inner, token: &str) -> Result<String, (&'static str, Option<String>)> {
        match inner.refresh.get_mut(token) {
            None => Err(("refresh_token_expired", None)),
            Some(e) if e.used => Err(("refresh_token_reused", Some(e.account_id.clone()))),
            Some(e) => {
                e.used = true;
                Ok(e.account_id.clone())
            }
        }
    }

    pub fn set_quota(&self, account_id: &str, primary: f64, secondary: f64, resets_at: Option<i64>) {
        let mut inner = self.inner.lock();
        if let Some(a) = inner.accounts.get_mut(account_id) {
            a.primary_used = primary;
            a.secondary_used = secondary;
            if let Some(r) = resets_at {
                a.primary_reset_at = r;
            }
        }
    }

    pub fn set_quota_cost(&self, account_id: &str, cost: f64) {
        if let Some(a) = self.inner.lock().accounts.get_mut(account_id) {
            a.quota_cost = cost;
        }
    }

    /// Current quota of an account, after rolling elapsed windows.
    pub fn quota(&self, account_id: &str) -> Option<Quota> {
        let now = now_secs();
        let mut inner = self.inner.lock();
        let a = inner.accounts.get_mut(account_id)?;
        a.roll(now);
        Some(a.quota())
    }

    /// Charge one successful response to the account.
    pub fn charge(&self, account_id: &str) {
        if let Some(a) = self.inner.lock().accounts.get_mut(account_id) {
            a.primary_used += a.quota_cost;
            a.secondary_used += a.quota_cost / 10.0;
        }
    }

    pub fn enqueue(&self, account_id: Option<&str>, scenario: Scenario) {
        let mut inner = self.inner.lock();
        match account_id {
            Some(id) => inner.account_queues.entry(id.to_string()).or_default().push_back(scenario),
            None => inner.global_queue.push_back(scenario),
        }
    }

    /// Next scenario for this account: its own queue first, then the global one.
    pub fn dequeue(&self, account_id: Option<&str>) -> Option<Scenario> {
        let mut inner = self.inner.lock();
        if let Some(id) = account_id
            && let Some(s) = inner.account_queues.get_mut(id).and_then(VecDeque::pop_front)
        {
            return Some(s);
        }
        inner.global_queue.pop_front()
    }

    pub fn record_token_call(&self, grant_type: &str, account_id: Option<String>, outcome: &str) {
        self.inner.lock().token_calls.push(TokenCall {
            grant_type: grant_type.to_string(),
            account_id,
            outcome: outcome.to_string(),
            at_ms: tokens::now_ms(),
        });
    }

    pub fn next_seq(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.next_seq += 1;
        inner.next_seq
    }

    pub fn record_request(&self, r: RecordedRequest) {
        let mut inner = self.inner.lock();
        let pos = inner.requests.partition_point(|x| x.seq < r.seq);
        inner.requests.insert(pos, r);
        // One out for one in: dropping a batch at once (a body tree each) stalled every stream for
        // ~10 ms every 2,000 requests in benchmark runs.
        let oldest = match self.cfg.max_recorded {
            Some(max) if inner.requests.len() > max => inner.requests.pop_front(),
            _ => None,
        };
        drop(inner);
        drop(oldest);
    }

    /// Longest identical leading run (in bytes) against the previous request with the same
    /// owner and key, then remember this request's units.
    /// How many leading units of a request the prompt cache of (`owner`, `key`) holds; the request's units then
    /// replace what it holds.
    pub fn prompt_cache_hit(&self, owner: &str, key: &str, units: &[String]) -> usize {
        let mut inner = self.inner.lock();
        let slot = inner.prompt_cache.entry((owner.to_string(), key.to_string())).or_default();
        let hit = slot.iter().zip(units).take_while(|(a, b)| a == b).count();
        *slot = units.to_vec();
        hit
    }

    /// Forget recorded requests and token calls (the sequence keeps counting).
    pub fn reset_requests(&self) {
        let mut inner = self.inner.lock();
        inner.requests.clear();
        inner.token_calls.clear();
    }

    pub fn next_reasoning_counter(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.reasoning_counter += 1;
        inner.reasoning_counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(seq: u64) -> RecordedRequest {
        RecordedRequest {
            seq,
            method: "POST".into(),
            path: "/backend-api/codex/responses".into(),
            query: None,
            headers: Vec::new(),
            body: serde_json::Value::Null,
            account_id: None,
            status: 200,
            at_ms: 0,
            http_version: "HTTP/1.1".into(),
            connection: 1,
            chained_input: None,
        }
    }

    #[test]
    fn a_capped_log_keeps_exactly_the_newest_requests_in_order() {
        let shared = Shared::new(FakeConfig { max_recorded: Some(3), ..FakeConfig::default() }, String::new());
        // Out of order arrivals are placed by sequence number.
        for seq in [1, 2, 4, 3, 5, 6] {
            shared.record_request(recorded(seq));
            assert!(shared.inner.lock().requests.len() <= 3);
        }
        let seqs: Vec<u64> = shared.inner.lock().requests.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [4, 5, 6]);

        let uncapped = Shared::new(FakeConfig::default(), String::new());
        for seq in 1..=50 {
            uncapped.record_request(recorded(seq));
        }
        assert_eq!(uncapped.inner.lock().requests.len(), 50);
    }
}
