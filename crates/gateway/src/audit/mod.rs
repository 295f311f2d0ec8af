//! The audit trail (docs/operations.md, "Audit trail"): every change of state the gateway is asked for (accounts,
//! keys, settings, reloads, dashboard logins), who asked ([`Actor`]), from where, what changed (never a secret),
//! and how it went, appended to the store (`store/audit.rs`) as a hash chain (`chain.rs`) that `verify.rs` walks
//! and `export.rs` writes out as JSON lines. The surfaces record in one place each: the admin API's layer
//! (server/admin/audit.rs), the dashboard's (dashboard/audit.rs), the command line's local target
//! (cli/destination/local.rs) and the reload (app/reload.rs).
//!
//! A failed append does not undo the change it describes: it is logged and counted ([`append_failures`], in
//! `/admin/status`).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::{IntoResponseParts, ResponseParts};
use serde_json::{Map, Value};

pub use crate::accounts::manage::accounts_detail;
use crate::store::Store;
use crate::store::audit::AuditRow;
pub use crate::store::audit::{Note, redact_url};

pub mod bursts;
pub mod chain;
pub mod export;
pub mod query;
pub mod verify;

/// Who made a change: the person signed in, or the credential used, as a stable string in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The admin API, with the admin key presented.
    AdminKey,
    /// The admin API while no admin credential is configured (a keyless single-user install).
    AdminOpen,
    /// A dashboard session opened by logging in with the admin key.
    DashboardAdminKey,
    /// A dashboard session opened without a login (`[dashboard] loopback_without_login`).
    DashboardLoopback,
    /// A person signed in (users/), by their user name.
    User { name: String },
    /// Nobody yet: a dashboard login that failed.
    Anonymous,
    /// The command line on the local store, as this OS user.
    Cli { user: String },
    /// Whoever sent the gateway SIGHUP (the OS does not say who).
    Signal,
    /// The gateway itself (the config file's watcher).
    Gateway,
}

impl Actor {
    /// The string the trail keeps and the filters match.
    pub fn as_text(&self) -> String {
        match self {
            Actor::AdminKey => "admin-key".into(),
            Actor::AdminOpen => "admin-api-open".into(),
            Actor::DashboardAdminKey => "dashboard:admin-key".into(),
            Actor::DashboardLoopback => "dashboard:loopback".into(),
            Actor::User { name } => format!("user:{name}"),
            Actor::Anonymous => "anonymous".into(),
            Actor::Cli { user } => format!("cli:{user}"),
            Actor::Signal => "signal".into(),
            Actor::Gateway => "gateway".into(),
        }
    }

    /// The command line as the OS user running it (`$USER`, else `$LOGNAME`, else the uid).
    pub fn cli() -> Actor {
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("uid {}", current_uid()));
        Actor::Cli { user }
    }
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    0
}

/// How the change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Refused as asked (a 4xx: no such account, a wrong key, a bad value).
    Refused,
    /// Failed on the gateway's side (a 5xx, a store error).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }

    pub fn of_status(status: axum::http::StatusCode) -> Outcome {
        match status.as_u16() {
            ..400 => Outcome::Ok,
            400..500 => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

/// One change, before the store gives it its place in the chain.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Actor,
    pub source: Option<String>,
    /// `account.disable`, `key.create`, `config.reload`, ... (docs/operations.md lists them).
    pub action: String,
    pub target: Option<String>,
    pub details: Map<String, Value>,
    pub outcome: Outcome,
}

impl Entry {
    pub fn new(actor: Actor, action: impl Into<String>) -> Entry {
        Entry { actor, source: None, action: action.into(), target: None, details: Map::new(), outcome: Outcome::Ok }
    }
}

/// Field names a detail never has: whatever a caller passes, a value under such a name stays out of the trail.
const SECRET_NAMES: &[&str] = &["secret", "password", "cookie", "api_key", "auth_json", "authorization", "credential"];

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    // `token` alone or as a word (`refresh_token`, `token_value`), not `daily_tokens` (a limit).
    let token = name == "token" || name.ends_with("_token") || name.starts_with("token_");
    token || SECRET_NAMES.iter().any(|s| name.contains(s))
}

/// Appends that failed since start (`/admin/status`: `audit_append_failures`).
static FAILURES: AtomicU64 = AtomicU64::new(0);

pub fn append_failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

/// Append `e` to the trail of `store`. A failure is logged and counted, never returned: the change it describes
/// has happened.
pub fn record(store: &Store, mut e: Entry) {
    e.details.retain(|k, _| !is_secret_name(k));
    let row = AuditRow {
        id: 0,
        at_ms: crate::usage::when::now_ms(),
        actor: e.actor.as_text(),
        source: e.source,
        action: e.action,
        target: e.target,
        details: Value::Object(e.details).to_string(),
        outcome: e.outcome.as_str().into(),
        prev_hash: String::new(),
        hash: String::new(),
    };
    if let Err(err) = store.append_audit(row.clone(), chain::seal) {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        tracing::error!(action = %row.action, actor = %row.actor, "the audit trail could not be written: {err:#}");
    }
}

// The note itself is the store's (store/audit.rs), so the accounts below the trail may answer one.
impl Note {
    pub fn apply(self, e: &mut Entry) {
        if let Some(a) = self.action {
            e.action = a;
        }
        if self.target.is_some() {
            e.target = self.target;
        }
        e.details.extend(self.details);
    }
}

impl IntoResponseParts for Note {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// How an account came in, by name (never the material itself).
pub fn import_kind(source: &crate::accounts::manage::ImportSource) -> &'static str {
    use crate::accounts::manage::ImportSource::*;
    match source {
        AuthJson(_) => "auth.json",
        Export(_) => "export",
        RefreshToken(_) => "refresh token",
        ApiKey { .. } => "api key",
    }
}

/// A client key's settings after a change: its name and limits (never its secret, its hash or its prefix).
pub fn key_note(row: &crate::store::StoredKey) -> Note {
    let l = &row.limits;
    Note::target(row.id.clone())
        .with("name", row.name.clone())
        .with("models", row.models.clone())
        .with("rpm", l.rpm)
        .with("concurrency", l.concurrency)
        .with("daily_tokens", l.daily_tokens)
        .with("monthly_tokens", l.monthly_tokens)
        .with("expires_at", row.expires_at)
        .with("opportunistic", row.opportunistic)
        .with("revoked", row.revoked_at.is_some())
        .with("suspended", row.suspended.is_some())
        .with("owner", row.owner.clone())
}

/// The client's address as the listener gave it (axum's `ConnectInfo`), for the trail's `source`.
pub fn source_of(ext: &axum::http::Extensions) -> Option<String> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_named_details_stay_out() {
        for name in ["secret", "refresh_token", "api_key", "Password", "session_cookie"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["name", "label", "email", "policy", "rpm", "applied", "daily_tokens"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("socks5://u:p4ss@proxy:1080"), "socks5://***@proxy:1080");
        assert_eq!(redact_url("http://proxy:3128/?k=v"), "http://proxy:3128/");
    }

    #[test]
    fn actors_are_stable_strings() {
        assert_eq!(Actor::AdminKey.as_text(), "admin-key");
        assert_eq!(Actor::Cli { user: "ana".into() }.as_text(), "cli:ana");
        assert_eq!(Actor::DashboardLoopback.as_text(), "dashboard:loopback");
    }
}
