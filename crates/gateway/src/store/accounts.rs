//! The stored account: its kind, status and credentials as the `accounts` table holds them, on either backend
//! (`sqlite/`, `postgres/`). The pool (`accounts/`) turns rows into accounts; the credential code (`auth/`)
//! reads and refreshes the tokens.

use super::{Backend, Store};

/// The `accounts` table's columns as both backends first created them, written once: SQLite's first migration
/// and PostgreSQL's (`sqlite/mod.rs`, `postgres/migrations.rs`) are this text inside `CREATE TABLE accounts (...)`,
/// PostgreSQL's with its own columns after it. A macro, not a `const`, so `concat!` can join it at compile time.
/// (SQLite reads `BIGINT` with integer affinity, as `INTEGER`.)
macro_rules! accounts_columns {
    () => {
        "
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    label TEXT,
    email TEXT,
    plan TEXT,
    chatgpt_account_id TEXT,
    id_token TEXT,
    access_token TEXT,
    refresh_token TEXT,
    api_key TEXT,
    base_url TEXT,
    last_refresh BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'active',
    status_reason TEXT,
    created_at BIGINT NOT NULL"
    };
}
pub(super) use accounts_columns;

/// ChatGPT login tokens of one account.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    pub account_id: String,
    /// Unix seconds of the last successful refresh (or import).
    pub last_refresh: i64,
}

impl std::fmt::Debug for Tokens {
    // Never print secrets, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("account_id", &self.account_id)
            .field("access_token", &redact(&self.access_token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("last_refresh", &self.last_refresh)
            .finish()
    }
}

/// Show only enough of a secret to tell two apart.
pub fn redact(secret: &str) -> String {
    if secret.len() <= 8 {
        "***".to_string()
    } else {
        format!("{}…({} chars)", secret.chars().take(4).collect::<String>(), secret.len())
    }
}

/// How an account authenticates upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// ChatGPT login tokens against the Codex backend.
    Chatgpt,
    /// An OpenAI API key against the OpenAI API's /v1/responses.
    ApiKey,
    /// Any Responses-compatible service: a base URL and a key.
    Relay,
    /// The store holds a kind this build does not know (a newer version's, a hand edit). Such an account is never
    /// served (its status reads as [`AccountStatus::Unrecognized`], the stored kind in the reason) and never
    /// written back: the row stays as it is for the build that knows it.
    Unrecognized,
}

/// A kind string that is none of [`AccountKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown account kind {0:?}")]
pub struct UnknownKind(pub String);

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Chatgpt => "chatgpt",
            AccountKind::ApiKey => "api_key",
            AccountKind::Relay => "relay",
            AccountKind::Unrecognized => "unrecognized",
        }
    }

    /// The kind a stored string names. Anything else is an error, never a guess: reading an unknown kind as
    /// `chatgpt` sent another kind's credentials to the Codex backend. `unrecognized` describes a row; nobody
    /// stores it.
    pub fn parse(s: &str) -> Result<AccountKind, UnknownKind> {
        match s {
            "chatgpt" => Ok(AccountKind::Chatgpt),
            "api_key" => Ok(AccountKind::ApiKey),
            "relay" => Ok(AccountKind::Relay),
            other => Err(UnknownKind(other.to_string())),
        }
    }
}

/// Whether an account may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// The refresh token is dead: only a new login fixes it.
    NeedsLogin,
    /// Turned off by the user.
    Disabled,
    /// The store holds a status this build does not know (written by a newer version, or by hand). Never served:
    /// an account is only used when its status says so. The stored value is kept in the status reason, so
    /// `accounts list` and the admin API show it; `accounts enable` or a new login writes a known one.
    Unrecognized,
}

/// A status string that is none of [`AccountStatus`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown account status {0:?}")]
pub struct UnknownStatus(pub String);

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::NeedsLogin => "needs_login",
            AccountStatus::Disabled => "disabled",
            AccountStatus::Unrecognized => "unrecognized",
        }
    }

    /// The status a stored string names. Anything else is an error, never a guess: reading an unknown status as
    /// `active` put accounts a newer version had parked (or a typo) back into service. `unrecognized` is not
    /// accepted either: it describes a row, it is not a status anyone sets.
    pub fn parse(s: &str) -> Result<AccountStatus, UnknownStatus> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "needs_login" => Ok(AccountStatus::NeedsLogin),
            "disabled" => Ok(AccountStatus::Disabled),
            other => Err(UnknownStatus(other.to_string())),
        }
    }
}

/// One row of `accounts`.
#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub id: String,
    pub kind: AccountKind,
    pub label: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
    pub tokens: Option<Tokens>,
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    /// Upstream proxy for this account only (http, https, socks5).
    pub proxy: Option<String>,
    /// Models an API-key or relay account serves (None: any).
    pub models: Option<Vec<String>>,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub created_at: i64,
    /// The owner's policy as stored (`normal`, `burn_first`, `preserve:N`; the pool reads it, and a value it does
    /// not know reads as `normal`, never rewritten). Always present in a row read back. `None` in a row a login or
    /// an import makes without one: a new account is `normal`, an account already stored keeps its own (as a
    /// label does).
    pub policy: Option<String>,
}

/// Accounts on the store's backend.
impl Store {
    pub fn list_accounts(&self) -> anyhow::Result<Vec<StoredAccount>> {
        match &self.backend {
            Backend::Sqlite => self.file.list_accounts(),
            Backend::Postgres(pg) => pg.list_accounts(),
        }
    }

    pub fn get_account(&self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        match &self.backend {
            Backend::Sqlite => self.file.get_account(id),
            Backend::Postgres(pg) => pg.get_account(id),
        }
    }

    /// Insert or replace an account (import, login).
    pub fn upsert_account(&self, a: &StoredAccount) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite => self.file.upsert_account(a),
            Backend::Postgres(pg) => pg.upsert_account(a),
        }
    }

    /// Commit rotated tokens. Called the moment the token endpoint answers, before anything uses them.
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite => self.file.save_tokens(id, t),
            Backend::Postgres(pg) => pg.save_tokens(id, t),
        }
    }

    pub fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.set_label(id, label),
            Backend::Postgres(pg) => pg.set_label(id, label),
        }
    }

    pub fn set_proxy(&self, id: &str, proxy: Option<&str>) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.set_proxy(id, proxy),
            Backend::Postgres(pg) => pg.set_proxy(id, proxy),
        }
    }

    /// Write the owner's policy (the caller checked it: `accounts::manage::set_policy`); false when no account
    /// has this id.
    pub fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.set_policy(id, policy),
            Backend::Postgres(pg) => pg.set_policy(id, policy),
        }
    }

    pub fn remove_account(&self, id: &str) -> anyhow::Result<bool> {
        match &self.backend {
            Backend::Sqlite => self.file.remove_account(id),
            Backend::Postgres(pg) => pg.remove_account(id),
        }
    }

    /// The account's installation id: the one it has, or `fresh` written as its first (a random UUID made by the
    /// caller). Made once and kept: it never changes across restarts, and no two accounts share one.
    pub fn installation_id(&self, id: &str, fresh: &str) -> anyhow::Result<Option<String>> {
        match &self.backend {
            Backend::Sqlite => self.file.installation_id(id, fresh),
            Backend::Postgres(pg) => pg.installation_id(id, fresh),
        }
    }

    pub fn set_status(&self, id: &str, status: AccountStatus, reason: Option<&str>) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite => self.file.set_status(id, status, reason),
            Backend::Postgres(pg) => pg.set_status(id, status, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_exactly() {
        for status in [AccountStatus::Active, AccountStatus::NeedsLogin, AccountStatus::Disabled] {
            assert_eq!(AccountStatus::parse(status.as_str()), Ok(status));
        }
        for unknown in ["", "paused", "Active", "unrecognized"] {
            assert_eq!(AccountStatus::parse(unknown), Err(UnknownStatus(unknown.into())));
        }
    }

    #[test]
    fn kinds_parse_exactly() {
        for kind in [AccountKind::Chatgpt, AccountKind::ApiKey, AccountKind::Relay] {
            assert_eq!(AccountKind::parse(kind.as_str()), Ok(kind));
        }
        for unknown in ["", "passkey", "ChatGPT", "unrecognized"] {
            assert_eq!(AccountKind::parse(unknown), Err(UnknownKind(unknown.into())));
        }
    }
}
