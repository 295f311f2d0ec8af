//! The stored account: its kind, status and credentials as the `accounts` table holds them, one statement for
//! both backends (`sql.rs`; PostgreSQL's token rotation is `postgres/accounts.rs`'). The pool (`accounts/`) turns
//! rows into accounts; the credential code (`auth/`) reads and refreshes the tokens.

use super::sql::{Cells, Val, int, need, opt, text};
use super::{Backend, Store};

/// The `accounts` table's columns as both backends first created them, written once: migration 1's texts
/// (`migrations.rs`) are this text inside `CREATE TABLE accounts (...)`, PostgreSQL's with its own columns after it. A
/// macro, not a `const`, so `concat!` can join it at compile time. (SQLite reads `BIGINT` with integer affinity, as
/// `INTEGER`.)
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
#[derive(Clone, Default, PartialEq, Eq)]
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
        let known = [AccountKind::Chatgpt, AccountKind::ApiKey, AccountKind::Relay];
        known.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_string()))
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
        let known = [AccountStatus::Active, AccountStatus::NeedsLogin, AccountStatus::Disabled];
        known.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownStatus(s.to_string()))
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

const COLUMNS: &str = "id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token, \
                       api_key, base_url, last_refresh, status, status_reason, created_at, proxy, models, policy";

/// One row as a [`StoredAccount`]. A row whose kind or status cannot be read is still returned, as
/// [`AccountStatus::Unrecognized`] with the parse error as its reason: failing the whole read would take every
/// account out of service for one bad row, and skipping the row would hide it. The pool never serves it and logs
/// it (`Pool::reload`).
fn account_of(r: &dyn Cells) -> anyhow::Result<StoredAccount> {
    // An unknown kind wins over the status: whatever the status says, the account cannot be used.
    let kind = AccountKind::parse(&need(r.text(1)?, "accounts.kind")?);
    let (kind, status, status_reason) = match (kind, AccountStatus::parse(&need(r.text(12)?, "accounts.status")?)) {
        (Err(e), _) => (AccountKind::Unrecognized, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
        (Ok(kind), Err(e)) => (kind, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
        (Ok(kind), Ok(status)) => (kind, status, r.text(13)?),
    };
    Ok(StoredAccount {
        id: need(r.text(0)?, "accounts.id")?,
        kind,
        label: r.text(2)?,
        email: r.text(3)?,
        plan: r.text(4)?,
        tokens: tokens_at(r, kind, 5)?,
        api_key: r.text(9)?,
        base_url: r.text(10)?,
        status,
        status_reason,
        created_at: need(r.int(14)?, "accounts.created_at")?,
        proxy: r.text(15)?,
        models: r.text(16)?.and_then(|m| serde_json::from_str(&m).ok()),
        policy: Some(need(r.text(17)?, "accounts.policy")?),
    })
}

/// The tokens of a row whose columns `chatgpt_account_id, id_token, access_token, refresh_token, _, _,
/// last_refresh` start at `at` (ChatGPT accounts only).
pub(super) fn tokens_at(r: &dyn Cells, kind: AccountKind, at: usize) -> anyhow::Result<Option<Tokens>> {
    Ok(match (kind, r.text(at + 2)?, r.text(at + 3)?) {
        (AccountKind::Chatgpt, Some(access_token), Some(refresh_token)) => Some(Tokens {
            id_token: r.text(at + 1)?.unwrap_or_default(),
            access_token,
            refresh_token,
            account_id: r.text(at)?.unwrap_or_default(),
            last_refresh: need(r.int(at + 6)?, "accounts.last_refresh")?,
        }),
        _ => None,
    })
}

/// Accounts on the store's backend.
impl Store {
    pub fn list_accounts(&self) -> anyhow::Result<Vec<StoredAccount>> {
        self.query(&format!("SELECT {COLUMNS} FROM accounts ORDER BY created_at, id"), vec![], account_of)
    }

    pub fn get_account(&self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        self.query_opt(&format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"), vec![text(id)], account_of)
    }

    /// Insert or replace an account (import, login).
    pub fn upsert_account(&self, a: &StoredAccount) -> anyhow::Result<()> {
        // A row read with a kind this build does not know is never written back (it would lose the kind).
        anyhow::ensure!(a.kind != AccountKind::Unrecognized, "account {} has a kind this build cannot store", a.id);
        // On PostgreSQL new tokens (a login, an import) are a new token version like any rotation.
        let version = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres(_) => ", token_version = accounts.token_version + 1",
        };
        let sql = format!(
            "INSERT INTO accounts ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, COALESCE(?18, 'normal'))
             ON CONFLICT (id) DO UPDATE SET kind=excluded.kind, label=COALESCE(excluded.label, accounts.label),
                email=excluded.email, plan=excluded.plan, chatgpt_account_id=excluded.chatgpt_account_id,
                id_token=excluded.id_token, access_token=excluded.access_token, refresh_token=excluded.refresh_token,
                api_key=excluded.api_key, base_url=excluded.base_url, last_refresh=excluded.last_refresh,
                status=excluded.status, status_reason=excluded.status_reason, proxy=excluded.proxy,
                models=excluded.models, policy=COALESCE(?18, accounts.policy){version}"
        );
        let t = a.tokens.as_ref();
        let values = vec![
            text(&a.id),
            text(a.kind.as_str()),
            opt(a.label.as_deref()),
            opt(a.email.as_deref()),
            opt(a.plan.as_deref()),
            Val::Text(t.map(|t| t.account_id.clone())),
            Val::Text(t.map(|t| t.id_token.clone())),
            Val::Text(t.map(|t| t.access_token.clone())),
            Val::Text(t.map(|t| t.refresh_token.clone())),
            opt(a.api_key.as_deref()),
            opt(a.base_url.as_deref()),
            int(t.map(|t| t.last_refresh).unwrap_or(0)),
            text(a.status.as_str()),
            opt(a.status_reason.as_deref()),
            int(a.created_at),
            opt(a.proxy.as_deref()),
            Val::Text(a.models.as_ref().and_then(|m| serde_json::to_string(m).ok())),
            opt(a.policy.as_deref()),
        ];
        self.exec(&sql, values)?;
        Ok(())
    }

    /// Commit rotated tokens. Called the moment the token endpoint answers, before anything uses them (on SQLite
    /// the store's connection commits with `synchronous=FULL`).
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Sqlite => {
                let sql = "UPDATE accounts SET id_token=?2, access_token=?3, refresh_token=?4, chatgpt_account_id=?5,
                           last_refresh=?6, status='active', status_reason=NULL WHERE id=?1";
                let values = vec![
                    text(id),
                    text(&t.id_token),
                    text(&t.access_token),
                    text(&t.refresh_token),
                    text(&t.account_id),
                    int(t.last_refresh),
                ];
                anyhow::ensure!(self.exec(sql, values)? == 1, "account {id} is not in the store");
                Ok(())
            }
            Backend::Postgres(pg) => pg.save_tokens(id, t),
        }
    }

    pub fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<bool> {
        Ok(self.exec("UPDATE accounts SET label=?2 WHERE id=?1", vec![text(id), opt(label)])? == 1)
    }

    pub fn set_proxy(&self, id: &str, proxy: Option<&str>) -> anyhow::Result<bool> {
        Ok(self.exec("UPDATE accounts SET proxy=?2 WHERE id=?1", vec![text(id), opt(proxy)])? == 1)
    }

    /// Write the owner's policy (the caller checked it: `accounts::manage::set_policy`); false when no account
    /// has this id.
    pub fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<bool> {
        Ok(self.exec("UPDATE accounts SET policy=?2 WHERE id=?1", vec![text(id), text(policy)])? == 1)
    }

    pub fn remove_account(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self.exec("DELETE FROM accounts WHERE id=?1", vec![text(id)])? == 1)
    }

    /// The account's installation id: the one it has, or `fresh` written as its first (a random UUID made by the
    /// caller; on a team store the first instance to write one wins). Made once and kept: it never changes across
    /// restarts, and no two accounts share one.
    pub fn installation_id(&self, id: &str, fresh: &str) -> anyhow::Result<Option<String>> {
        let sql = "UPDATE accounts SET installation_id=?2 WHERE id=?1 AND installation_id IS NULL";
        self.exec(sql, vec![text(id), text(fresh)])?;
        let found =
            self.query_opt("SELECT installation_id FROM accounts WHERE id=?1", vec![text(id)], |r| r.text(0))?;
        Ok(found.flatten())
    }

    pub fn set_status(&self, id: &str, status: AccountStatus, reason: Option<&str>) -> anyhow::Result<()> {
        let values = vec![text(id), text(status.as_str()), opt(reason)];
        self.exec("UPDATE accounts SET status=?2, status_reason=?3 WHERE id=?1", values)?;
        Ok(())
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

    /// A status this build does not know (a newer version's, a hand edit) used to read as `active` and put the
    /// account back into service. Now the row is read as `unrecognized`, with the stored value in its reason,
    /// in every listing; writing a known status repairs it.
    #[test]
    fn unknown_stored_status_is_unrecognized_not_active() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-status-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let acct = StoredAccount {
            id: "k".into(),
            kind: AccountKind::ApiKey,
            label: None,
            email: None,
            plan: None,
            tokens: None,
            api_key: Some("sk-1".into()),
            base_url: None,
            proxy: None,
            models: None,
            status: AccountStatus::Active,
            status_reason: None,
            created_at: 1,
            policy: None,
        };
        store.upsert_account(&acct)?;
        store.file.lock().execute("UPDATE accounts SET status='paused', status_reason='by v9' WHERE id='k'", [])?;
        let back = store.get_account("k")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!(back.status, AccountStatus::Unrecognized);
        assert_eq!(back.status_reason.as_deref(), Some(r#"unknown account status "paused" in the store"#));
        let listed = store.list_accounts()?;
        assert_eq!(listed.len(), 1, "the row is listed, not dropped");
        assert_eq!(listed[0].status, AccountStatus::Unrecognized);
        store.set_status("k", AccountStatus::Active, None)?;
        assert_eq!(store.get_account("k")?.map(|a| a.status), Some(AccountStatus::Active));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// A kind this build does not know used to read as `chatgpt`: its credentials went to the Codex backend. Now
    /// the row reads as kind and status `unrecognized`, the stored kind in its reason, whatever its stored status;
    /// it is listed, and never written back.
    #[test]
    fn unknown_stored_kind_is_unrecognized_not_chatgpt() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-store-kind-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let tokens = Tokens {
            id_token: "i".into(),
            access_token: "a".into(),
            refresh_token: "r".into(),
            account_id: "acc".into(),
            last_refresh: 5,
        };
        let acct = StoredAccount {
            id: "p".into(),
            kind: AccountKind::Chatgpt,
            label: Some("from v9".into()),
            email: None,
            plan: None,
            tokens: Some(tokens),
            api_key: None,
            base_url: None,
            proxy: None,
            models: None,
            status: AccountStatus::Active,
            status_reason: None,
            created_at: 1,
            policy: None,
        };
        store.upsert_account(&acct)?;
        store.file.lock().execute("UPDATE accounts SET kind='passkey' WHERE id='p'", [])?;
        let back = store.get_account("p")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!((back.kind, back.status), (AccountKind::Unrecognized, AccountStatus::Unrecognized));
        assert_eq!(back.status_reason.as_deref(), Some(r#"unknown account kind "passkey" in the store"#));
        assert!(back.tokens.is_none(), "no credentials are handed out for it");
        let listed = store.list_accounts()?;
        assert_eq!(listed.len(), 1, "the row is listed, not dropped");
        assert_eq!(listed[0].kind, AccountKind::Unrecognized);
        assert!(store.upsert_account(&back).is_err(), "a row read as unrecognized is never written back");
        let raw: (String, String, Option<String>, Option<String>) = store.file.lock().query_row(
            "SELECT kind, status, refresh_token, label FROM accounts WHERE id='p'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        assert_eq!(
            raw,
            ("passkey".into(), "active".into(), Some("r".into()), Some("from v9".into())),
            "the row is intact"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
