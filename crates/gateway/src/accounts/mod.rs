//! Accounts: one upstream identity each (ChatGPT login, OpenAI API key, or a Responses-compatible relay), with
//! the runtime state routing needs (quota, cooldowns, catalog, concurrency), and the pool that chooses among them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dialects::failure::CooldownReason;
use parking_lot::{Mutex, RwLock};
use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::auth::{Tokens, jwt, now_unix};
use crate::store::{AccountKind, AccountStatus, StoredAccount};

mod active;
mod affinity;
mod catalog;
mod gate;
mod hold;
mod installation;
mod lease;
pub mod manage;
mod pool;
mod probe;
pub mod quota;
mod shared;
mod shared_refresh;
pub mod steward;
mod tokens;
mod upkeep;

pub use catalog::AccountCatalog;
pub use hold::{AccountRisk, HeldConversation, Hold};
pub use lease::{Lease, LeaseError, Need, plan_rank};
pub use pool::Pool;
pub use quota::QuotaSnapshot;
pub use steward::QuotaSink;
pub use tokens::RefreshBudget;
use tokens::RefreshFlight;

/// Where an account's credentials live, which decides where a refresh is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Store,
    /// The Codex CLI's auth.json, shared with it.
    Linked(PathBuf),
    /// `OPENAI_API_KEY` from the environment (never written).
    Env,
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Store => "store".into(),
            Source::Linked(p) => format!("linked:{}", p.display()),
            Source::Env => "env".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Creds {
    tokens: Option<Tokens>,
    pub(crate) api_key: Option<String>,
    /// `exp` of the access token, decoded when the tokens are set: every request asks whether it is due.
    access_exp: Option<i64>,
    /// `Bearer <access token>`, built when the tokens are set: every request sends it, and a clone shares the
    /// bytes (an access token is a JWT of one or two kilobytes; copying it per request added up while thousands
    /// of requests waited for the upstream).
    bearer: Option<HeaderValue>,
}

impl Creds {
    pub(crate) fn new(tokens: Option<Tokens>, api_key: Option<String>) -> Creds {
        let access_exp = tokens.as_ref().and_then(access_token_exp);
        let bearer = tokens.as_ref().and_then(|t| bearer_header(&t.access_token));
        Creds { tokens, api_key, access_exp, bearer }
    }

    pub(crate) fn set_tokens(&mut self, tokens: Tokens) {
        self.access_exp = access_token_exp(&tokens);
        self.bearer = bearer_header(&tokens.access_token);
        self.tokens = Some(tokens);
    }

    /// The prebuilt `Authorization` value for the current access token, unless it must be refreshed first.
    pub(crate) fn fresh_bearer(&self, now: i64) -> Option<HeaderValue> {
        match self.access_token(now) {
            Some((_, false)) => self.bearer.clone(),
            _ => None,
        }
    }

    /// The access token, and whether it must be refreshed before use (`needs_refresh`, without decoding it).
    pub(crate) fn access_token(&self, now: i64) -> Option<(&str, bool)> {
        let t = self.tokens.as_ref()?;
        Some((&t.access_token, crate::auth::refresh::due(t, self.access_exp, now)))
    }
}

/// `Bearer <token>` as a header value marked sensitive (never logged); `None` if the token has bytes a header
/// cannot carry.
pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn access_token_exp(tokens: &Tokens) -> Option<i64> {
    jwt::claims(&tokens.access_token).and_then(|c| c.exp)
}

/// A period during which an account (or one model on it) is skipped, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cooldown {
    /// `None`: the whole account.
    pub model: Option<String>,
    pub until: i64,
    /// Why, as a type: decides the pool's answer when every account is cooling down.
    pub kind: CooldownReason,
    /// Why, in words (`accounts list`, the pool's error).
    #[serde(rename = "reason")]
    pub note: String,
}

/// Why an account cannot serve a model now, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub until: i64,
    pub reason: CooldownReason,
    pub note: String,
}

/// Rotated tokens that exist only in memory: committing them (to the store, or to auth.json in linked mode)
/// failed. The refresh token they replaced is already spent upstream, so these are the account's only live
/// tokens; the gateway keeps using them and retries the commit (`Pool::retry_unsaved_tokens`) until it succeeds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UnsavedTokens {
    /// Unix seconds of the first failed commit.
    pub since: i64,
    pub attempts: u32,
    pub error: String,
}

/// One upstream identity and its runtime state.
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub source: Source,
    pub label: RwLock<Option<String>>,
    pub email: Option<String>,
    pub plan: RwLock<Option<String>>,
    /// Relay base URL (ends before `/responses`).
    pub base_url: Option<String>,
    /// Models an API-key or relay account serves (None: any).
    pub models: Option<Vec<String>>,
    pub proxy: Option<String>,
    pub(crate) http: reqwest::Client,
    pub(crate) creds: RwLock<Creds>,
    pub(crate) status: RwLock<(AccountStatus, Option<String>)>,
    /// The single-flight refresh: its lock, and how the last attempt ended, which a caller that waited for that
    /// attempt takes as its own (`accounts/tokens.rs`).
    pub(crate) refresh: RefreshFlight,
    /// Set while the newest tokens could not be committed (see [`UnsavedTokens`]).
    pub(crate) unsaved: Mutex<Option<UnsavedTokens>>,
    pub quota: RwLock<QuotaSnapshot>,
    pub(crate) cooldowns: Mutex<Vec<Cooldown>>,
    pub(crate) catalog: RwLock<Option<AccountCatalog>>,
    /// Its requests in flight and waiting (`gate.rs`); the limit is the steward's governor's.
    pub(crate) gate: gate::Gate,
    /// The conversations it served lately (`active.rs`).
    pub(crate) active: active::Active,
    /// What the planner knows and decides of it (`steward.rs`).
    pub(crate) steward: Mutex<steward::Steward>,
    /// The pool's scale of learnt capacity (`Pool::quota_correction`), shared by its accounts for their views.
    pub(crate) correction: Arc<steward::Correction>,
    /// Unix milliseconds of the last lease (0: never).
    pub last_used: AtomicI64,
    pub requests: AtomicU64,
    /// The official client's per-installation id this account presents (ChatGPT accounts; upstream/identity).
    pub installation_id: Option<String>,
    /// A token refresh made the workspace check due (the official client runs it after each refresh); the
    /// upkeep round runs it.
    pub(crate) discovery_due: std::sync::atomic::AtomicBool,
    /// Its policy refusals and held conversations (`hold.rs`; docs/accounts.md, "Risk signals").
    pub risk: AccountRisk,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("id", &self.id).field("kind", &self.kind).field("source", &self.source).finish()
    }
}

impl Account {
    pub(crate) fn new(stored: StoredAccount, source: Source, http: reqwest::Client, max_concurrent: usize) -> Account {
        let steward = steward::Steward::new(stored.plan.as_deref(), max_concurrent, planner::Policy::Normal);
        Account {
            id: stored.id,
            kind: stored.kind,
            source,
            label: RwLock::new(stored.label),
            email: stored.email,
            plan: RwLock::new(stored.plan),
            base_url: stored.base_url,
            models: stored.models,
            proxy: stored.proxy,
            http,
            creds: RwLock::new(Creds::new(stored.tokens, stored.api_key)),
            status: RwLock::new((stored.status, stored.status_reason)),
            refresh: RefreshFlight::new(),
            unsaved: Mutex::new(None),
            quota: RwLock::new(QuotaSnapshot::default()),
            cooldowns: Mutex::new(Vec::new()),
            catalog: RwLock::new(None),
            gate: gate::Gate::default(),
            active: active::Active::default(),
            steward: Mutex::new(steward),
            correction: Arc::default(),
            last_used: AtomicI64::new(0),
            requests: AtomicU64::new(0),
            installation_id: None,
            discovery_due: std::sync::atomic::AtomicBool::new(false),
            risk: AccountRisk::default(),
        }
    }

    pub fn status(&self) -> (AccountStatus, Option<String>) {
        self.status.read().clone()
    }

    /// Whether the account holds rotated tokens that are not saved yet, and since when.
    pub fn unsaved_tokens(&self) -> Option<UnsavedTokens> {
        self.unsaved.lock().clone()
    }

    pub fn is_active(&self) -> bool {
        self.status.read().0 == AccountStatus::Active
    }

    /// The ChatGPT account id sent as `ChatGPT-Account-ID`.
    pub fn chatgpt_account_id(&self) -> Option<String> {
        self.creds.read().tokens.as_ref().map(|t| t.account_id.clone()).filter(|a| !a.is_empty())
    }

    /// `f` of the account's tokens, read under the credentials' lock (no copy of them).
    pub(crate) fn with_tokens<T>(&self, f: impl FnOnce(&Tokens) -> T) -> Option<T> {
        self.creds.read().tokens.as_ref().map(f)
    }

    pub fn api_key(&self) -> Option<String> {
        self.creds.read().api_key.clone()
    }

    pub(crate) fn tokens(&self) -> Option<Tokens> {
        self.creds.read().tokens.clone()
    }

    /// The HTTP client for this account (its own proxy, or the global client).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn label(&self) -> Option<String> {
        self.label.read().clone()
    }

    pub fn plan(&self) -> Option<String> {
        self.plan.read().clone()
    }

    /// The name people see: the label, else the e-mail, else the id.
    pub fn display_name(&self) -> String {
        self.label().or_else(|| self.email.clone()).unwrap_or_else(|| self.id.clone())
    }

    /// A short, safe description for logs and errors.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.display_name(), self.kind.as_str())
    }

    /// Active cooldowns (expired ones are dropped).
    pub fn cooldowns(&self, now: i64) -> Vec<Cooldown> {
        let mut c = self.cooldowns.lock();
        c.retain(|x| x.until > now);
        c.clone()
    }

    /// Skip this account (or one model on it) until `until`.
    pub fn cool_down(&self, model: Option<&str>, until: i64, kind: CooldownReason, note: &str) {
        let mut c = self.cooldowns.lock();
        c.retain(|x| x.model.as_deref() != model);
        c.push(Cooldown { model: model.map(str::to_string), until, kind, note: note.to_string() });
    }

    pub fn clear_cooldowns(&self) {
        self.cooldowns.lock().clear();
        self.steward.lock().quota.forgive();
        let q = &mut *self.quota.write();
        // A cleared account is tried again even if its last quota reading said it was full.
        for used in [&mut q.primary_used_percent, &mut q.secondary_used_percent] {
            if used.is_some_and(|u| u >= 100.0) {
                *used = Some(99.0);
            }
        }
    }

    /// When this account can serve `model` again and why not now, if it cannot now.
    pub fn blocked(&self, model: &str, now: i64) -> Option<Blocked> {
        let cooled = self
            .cooldowns(now)
            .into_iter()
            .filter(|c| c.model.is_none() || c.model.as_deref() == Some(model))
            .max_by_key(|c| c.until)
            .map(|c| Blocked { until: c.until, reason: c.kind, note: c.note });
        let (used_up, preserved) = {
            let steward = self.steward.lock();
            let preserved = match self.kind {
                AccountKind::Chatgpt => steward.preserved_until(now, self.correction.get()),
                AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => None,
            };
            (steward.quota.blocked_until(now), preserved.map(|until| (until, steward.policy)))
        };
        let window = |until, note: String| Blocked { until, reason: CooldownReason::QuotaWindow, note };
        let quota = used_up.map(|until| window(until, "quota window used up".to_string()));
        // Its owner's floor: to the pool, as good as used up until the window resets.
        let kept = preserved.map(|(until, policy)| {
            window(until, format!("kept for its owner: {}, the pool stops at that share left", policy.as_text()))
        });
        [cooled, quota, kept].into_iter().flatten().reduce(|a, b| if a.until >= b.until { a } else { b })
    }

    /// Whether this account's plan (or configuration) serves `slug`. Unknown catalog: assume yes.
    pub fn serves(&self, slug: &str) -> bool {
        if let Some(models) = &self.models {
            return models.iter().any(|m| m == slug);
        }
        match self.catalog.read().as_ref() {
            Some(c) => crate::catalog::find(&c.entries, slug).is_some(),
            None => true,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.gate.in_flight()
    }

    /// A JSON view for `accounts list` and the admin API. Never contains secrets.
    pub fn summary(&self, now: i64) -> Value {
        let (status, reason) = self.status();
        let q = self.quota.read().clone();
        serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "label": self.label(),
            "email": self.email,
            "plan": self.plan(),
            "source": self.source.describe(),
            "status": status.as_str(),
            "status_reason": reason,
            // Non-null while rotated tokens live only in this process (their commit failed and is retried).
            "tokens_not_saved": self.unsaved_tokens(),
            "base_url": self.base_url,
            "models": self.models,
            "proxy": self.proxy.as_deref().map(redact_proxy),
            "quota": {
                "primary_used_percent": q.primary_used_percent,
                "primary_reset_at": q.primary_reset_at,
                "secondary_used_percent": q.secondary_used_percent,
                "secondary_reset_at": q.secondary_reset_at,
                "updated_at": (q.updated_at > 0).then_some(q.updated_at),
            },
            "cooldowns": self.cooldowns(now),
            "in_flight": self.in_flight(),
            "waiting": self.gate.waiting(),
            "stewardship": self.stewardship(now, self.correction.get()),
            "requests": self.requests.load(Ordering::Relaxed),
            "last_used": match self.last_used.load(Ordering::Relaxed) { 0 => None, t => Some(t / 1000) },
            // Policy refusals and held conversations (docs/accounts.md, "Risk signals").
            "risk": self.risk.summary(),
        })
    }
}

/// `http://user:pass@host:port` -> `http://***@host:port`.
pub fn redact_proxy(p: &str) -> String {
    match (p.find("://"), p.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &p[..s + 3], &p[at..]),
        _ => p.to_string(),
    }
}

/// Build a store row from ChatGPT tokens (import, login).
pub fn stored_from_tokens(tokens: Tokens, label: Option<String>) -> StoredAccount {
    let claims = jwt::claims(&tokens.id_token).or_else(|| jwt::claims(&tokens.access_token)).unwrap_or_default();
    let id = account_key(&tokens.account_id, claims.email.as_deref());
    StoredAccount {
        email: claims.email,
        plan: claims.plan,
        tokens: Some(tokens),
        ..new_row(id, AccountKind::Chatgpt, label)
    }
}

/// A stable id for a ChatGPT identity: one workspace account may hold several users.
pub fn account_key(chatgpt_account_id: &str, email: Option<&str>) -> String {
    hashed_id("acc", &format!("{chatgpt_account_id}\n{}", email.unwrap_or("")))
}

/// An API-key account (OpenAI API) or, with `base_url`, a relay account.
pub fn stored_from_api_key(key: &str, label: Option<String>, base_url: Option<String>) -> StoredAccount {
    let (prefix, kind) = if base_url.is_some() { ("relay", AccountKind::Relay) } else { ("key", AccountKind::ApiKey) };
    let id = hashed_id(prefix, &format!("{}\n{key}", base_url.as_deref().unwrap_or("")));
    let base_url = base_url.map(|u| u.trim_end_matches('/').to_string());
    StoredAccount { api_key: Some(key.to_string()), base_url, ..new_row(id, kind, label) }
}

/// `prefix-` and the first five bytes of the SHA-256 of `text`, in hex.
fn hashed_id(prefix: &str, text: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(text.as_bytes());
    format!("{prefix}-{}", d.iter().take(5).map(|b| format!("{b:02x}")).collect::<String>())
}

/// A new, active store row with nothing but its id, kind and label.
fn new_row(id: String, kind: AccountKind, label: Option<String>) -> StoredAccount {
    StoredAccount {
        id,
        kind,
        label,
        email: None,
        plan: None,
        tokens: None,
        api_key: None,
        base_url: None,
        proxy: None,
        models: None,
        status: AccountStatus::Active,
        status_reason: None,
        created_at: now_unix(),
        policy: None,
    }
}
