//! Account management shared by the CLI (`codex-gateway accounts ...`) and the admin API (`/admin/accounts`):
//! import from every supported source, export, enable/disable, label, the owner's policy, proxy, remove. Each
//! setting is validated here, once for every surface.

use anyhow::{Context, bail};
use planner::Policy;
use serde_json::{Value, json};

use super::{Pool, stored_from_api_key, stored_from_tokens};
use crate::auth::codex_file::{AuthFile, FileCredentials};
use crate::auth::refresh::{RefreshReason, TokenCall, refresh};
use crate::auth::{Tokens, now_unix};
use crate::store::audit::{Note, redact_url};
use crate::store::{AccountKind, AccountStatus, Store, StoredAccount};

const EXPORT_VERSION: u64 = 1;

#[derive(Debug, Clone)]
pub enum ImportSource {
    /// A Codex CLI auth.json (ChatGPT tokens or an API key).
    AuthJson(Value),
    /// A file written by `accounts export --include-secrets`.
    Export(Value),
    /// A bare refresh token: exchanged once for fresh tokens.
    RefreshToken(String),
    /// An OpenAI API key, or with `base_url` a relay (any Responses-compatible service).
    ApiKey { key: String, base_url: Option<String>, models: Option<Vec<String>> },
}

impl ImportSource {
    /// Recognise a JSON document or a bare token string.
    pub fn detect(text: &str) -> anyhow::Result<ImportSource> {
        let trimmed = text.trim();
        if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
            if v.get("accounts").is_some_and(Value::is_array) {
                return Ok(ImportSource::Export(v));
            }
            if v.get("tokens").is_some() || v.get("OPENAI_API_KEY").is_some() {
                return Ok(ImportSource::AuthJson(v));
            }
            bail!("this JSON is neither a Codex auth.json nor a codex-gateway export");
        }
        if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
            bail!("expected an auth.json, an export file, or a bare refresh token");
        }
        if trimmed.starts_with("sk-") {
            return Ok(ImportSource::ApiKey { key: trimmed.to_string(), base_url: None, models: None });
        }
        Ok(ImportSource::RefreshToken(trimmed.to_string()))
    }
}

/// Turn an import source into store rows (a bare refresh token is refreshed once to get the other tokens).
pub async fn resolve(
    source: ImportSource,
    label: Option<String>,
    http: &reqwest::Client,
    issuer: &str,
    client: &crate::config::client::ClientIdentity,
) -> anyhow::Result<Vec<StoredAccount>> {
    let label = checked_label(label.as_deref())?;
    Ok(match source {
        ImportSource::AuthJson(v) => {
            let file: AuthFile = serde_json::from_value(v).context("not a Codex auth.json")?;
            match file.credentials() {
                Some(FileCredentials::Chatgpt(tokens)) => vec![stored_from_tokens(tokens, label)],
                Some(FileCredentials::ApiKey(key)) => vec![stored_from_api_key(&key, label, None)],
                None => bail!("the auth.json holds no tokens and no API key"),
            }
        }
        ImportSource::Export(v) => from_export(&v)?,
        ImportSource::RefreshToken(rt) => {
            let seed = Tokens { refresh_token: rt, ..Tokens::default() };
            let to = TokenCall { issuer, client, reason: RefreshReason::Forced };
            let tokens = refresh(http, to, &seed).await.context("the refresh token was not accepted")?;
            vec![stored_from_tokens(tokens, label)]
        }
        ImportSource::ApiKey { key, base_url, models } => {
            let mut a = stored_from_api_key(&key, label, base_url);
            a.models = models;
            vec![a]
        }
    })
}

/// Save imported accounts (from [`resolve`]) into the running pool, the admin API's and the dashboard's, and
/// re-read it. Answers the audit note of the change; `from` is the source's kind (`audit::import_kind`).
pub fn save(pool: &Pool, from: &str, rows: &[StoredAccount]) -> anyhow::Result<Note> {
    for row in rows {
        pool.store().upsert_account(row)?;
    }
    pool.reload()?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    Ok(Note::target(ids.join(",")).with("from", from).with("accounts", accounts_detail(rows)))
}

/// A login committed to the store (`save_login`).
#[derive(Debug)]
pub struct SavedLogin {
    pub account: StoredAccount,
    /// The store already held this identity (a re-login): its tokens were replaced.
    pub replaced: bool,
}

/// Commit a fresh login (a flow of `auth/login/`); a re-login replaces its tokens and keeps its label unless a
/// new one is given.
pub fn save_login(store: &Store, tokens: Tokens, label: Option<String>) -> anyhow::Result<SavedLogin> {
    let account = stored_from_tokens(tokens, label);
    let replaced = store.get_account(&account.id)?.is_some();
    store.upsert_account(&account)?;
    Ok(SavedLogin { account, replaced })
}

/// The accounts an import wrote: id, kind, email and label of each (their tokens and keys stay out).
pub fn accounts_detail(rows: &[StoredAccount]) -> Value {
    let one = |r: &StoredAccount| serde_json::json!({"id": r.id, "kind": r.kind.as_str(), "email": r.email, "label": r.label, "base_url": r.base_url.as_deref().map(redact_url)});
    Value::Array(rows.iter().map(one).collect())
}

fn from_export(v: &Value) -> anyhow::Result<Vec<StoredAccount>> {
    let mut out = Vec::new();
    for (i, a) in v.get("accounts").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let s = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
        let at = || format!("account {i} in the export");
        // An unknown kind is refused, not guessed (it was read as `chatgpt`).
        let kind = AccountKind::parse(&s("kind").unwrap_or_default()).with_context(at)?;
        let tokens = a.get("tokens").filter(|t| t.is_object()).map(|t| {
            let f = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            Tokens {
                id_token: f("id_token"),
                access_token: f("access_token"),
                refresh_token: f("refresh_token"),
                account_id: f("account_id"),
                last_refresh: t.get("last_refresh").and_then(Value::as_i64).unwrap_or(0),
            }
        });
        let redacted = |x: &Option<String>| x.as_deref().is_some_and(|v| v.contains('…') || v == "***");
        if tokens.as_ref().is_some_and(|t| t.refresh_token.is_empty() || t.refresh_token.contains('…'))
            || redacted(&s("api_key"))
            || (kind == AccountKind::Chatgpt && tokens.is_none())
            || (kind != AccountKind::Chatgpt && s("api_key").is_none())
        {
            bail!("account {i} in the export has no secrets: export with --include-secrets to move accounts");
        }
        out.push(StoredAccount {
            id: s("id").context("an exported account has no id")?,
            kind,
            label: s("label"),
            email: s("email"),
            plan: s("plan"),
            tokens,
            api_key: s("api_key"),
            base_url: s("base_url"),
            proxy: s("proxy"),
            models: a.get("models").and_then(|m| serde_json::from_value(m.clone()).ok()),
            // No status: active (as an account added any other way). An unknown one is refused, not guessed.
            status: match s("status") {
                None => AccountStatus::Active,
                Some(status) => AccountStatus::parse(&status).with_context(at)?,
            },
            status_reason: s("status_reason"),
            created_at: a.get("created_at").and_then(Value::as_i64).unwrap_or_else(now_unix),
            // No policy (an export of a build before policies): the account's own, or `normal` when it is new. An
            // unknown one is refused, not guessed.
            policy: s("policy").map(|text| parse_policy(&text).with_context(at).map(|p| p.as_text())).transpose()?,
        });
    }
    Ok(out)
}

/// The export document. Secrets are redacted unless `include_secrets`.
pub fn export(store: &Store, include_secrets: bool) -> anyhow::Result<Value> {
    let secret = |s: &str| if include_secrets { s.to_string() } else { crate::auth::redact(s) };
    let accounts: Vec<Value> = store
        .list_accounts()?
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id,
                "kind": a.kind.as_str(),
                "label": a.label,
                "email": a.email,
                "plan": a.plan,
                "status": a.status.as_str(),
                "status_reason": a.status_reason,
                "base_url": a.base_url,
                "proxy": a.proxy.as_deref().map(|p| if include_secrets { p.to_string() } else { super::redact_proxy(p) }),
                "models": a.models,
                "policy": a.policy,
                "created_at": a.created_at,
                "api_key": a.api_key.as_deref().map(secret),
                "tokens": a.tokens.map(|t| json!({
                    "id_token": secret(&t.id_token),
                    "access_token": secret(&t.access_token),
                    "refresh_token": secret(&t.refresh_token),
                    "account_id": t.account_id,
                    "last_refresh": t.last_refresh,
                })),
            })
        })
        .collect();
    Ok(json!({"version": EXPORT_VERSION, "secrets": include_secrets, "accounts": accounts}))
}

/// Enable or disable. Enabling does not revive an account that needs login (only a new login does). An account
/// of a kind this build does not know stays as it is, unusable and unwritten (its status is `unrecognized`).
pub fn set_enabled(store: &Store, id: &str, enabled: bool) -> anyhow::Result<AccountStatus> {
    let a = store.get_account(id)?.with_context(|| format!("no account `{id}`"))?;
    if a.kind == AccountKind::Unrecognized {
        return Ok(AccountStatus::Unrecognized);
    }
    let status = match (enabled, a.status) {
        (true, AccountStatus::NeedsLogin) => AccountStatus::NeedsLogin,
        (true, _) => AccountStatus::Active,
        (false, _) => AccountStatus::Disabled,
    };
    let reason = (status == AccountStatus::Disabled).then_some("disabled by the user");
    store.set_status(id, status, reason)?;
    Ok(status)
}

/// A policy text none of the accepted forms reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an account policy: use `normal`, `burn_first`, `preserve` (keeps {default}% of each window for \
     its owner) or `preserve:PERCENT` (PERCENT from 1 to 100)",
    default = Policy::DEFAULT_FLOOR
)]
pub struct BadPolicy(pub String);

/// The policy `text` names (`normal`, `burn_first`, `preserve`, `preserve:N`; spaces around it ignored).
pub fn parse_policy(text: &str) -> Result<Policy, BadPolicy> {
    Policy::parse(text.trim()).ok_or_else(|| BadPolicy(text.to_string()))
}

/// Why a stored account's setting (label, policy, proxy) was not changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The value is not accepted; the message says what is.
    #[error("{0}")]
    Bad(String),
    #[error("no account `{0}` in the store")]
    NoAccount(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// The longest label, in characters: it is shown in tables and the dashboard's cards.
pub const LABEL_MAX: usize = 100;

/// A label as every surface takes it: spaces around it dropped, empty meaning none, at most [`LABEL_MAX`] characters.
pub fn checked_label(text: Option<&str>) -> Result<Option<String>, ChangeError> {
    let label = text.map(str::trim).filter(|l| !l.is_empty());
    if label.is_some_and(|l| l.chars().count() > LABEL_MAX) {
        return Err(ChangeError::Bad(format!("A label is at most {LABEL_MAX} characters.")));
    }
    Ok(label.map(str::to_string))
}

/// Set a stored account's label (the CLI's, the admin API's and the dashboard's); answers the label kept.
pub fn set_label(store: &Store, id: &str, text: Option<&str>) -> Result<Option<String>, ChangeError> {
    let label = checked_label(text)?;
    found(store.set_label(id, label.as_deref())?, id).map(|()| label)
}

/// Set the owner's policy of a stored account (docs/accounts.md, "Policies"); the pool applies it at its next
/// re-read (the caller's, or a team's change counter).
pub fn set_policy(store: &Store, id: &str, text: &str) -> Result<Policy, ChangeError> {
    let policy = parse_policy(text).map_err(|e| ChangeError::Bad(e.to_string()))?;
    found(store.set_policy(id, &policy.as_text())?, id).map(|()| policy)
}

/// Set a stored account's own proxy (`http`, `https`, `socks5` URL; none: the global setting), refused unless
/// the HTTP client can use it; answers the proxy kept.
pub fn set_proxy(store: &Store, id: &str, url: Option<&str>) -> Result<Option<String>, ChangeError> {
    let proxy = url.map(str::trim).filter(|p| !p.is_empty());
    if let Some(p) = proxy {
        reqwest::Proxy::all(p)
            .map_err(|e| ChangeError::Bad(format!("Invalid proxy URL: {:#}", anyhow::Error::from(e))))?;
    }
    found(store.set_proxy(id, proxy)?, id).map(|()| proxy.map(str::to_string))
}

fn found(found: bool, id: &str) -> Result<(), ChangeError> {
    if found { Ok(()) } else { Err(ChangeError::NoAccount(id.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every surface (CLI, admin API, dashboard) sets a label and a proxy through these: one rule for all.
    #[test]
    fn settings_are_checked_once_for_every_surface() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-accounts-manage-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let row = stored_from_api_key("sk-test", None, None);
        store.upsert_account(&row)?;
        let id = row.id.as_str();
        let bad = |r: Result<Option<String>, ChangeError>| matches!(r, Err(ChangeError::Bad(_)));

        assert_eq!(set_label(&store, id, Some("  work  "))?, Some("work".into()));
        assert_eq!(store.get_account(id)?.and_then(|a| a.label), Some("work".into()));
        assert_eq!(set_label(&store, id, Some("   "))?, None);
        assert_eq!(set_label(&store, id, Some(&"é".repeat(LABEL_MAX)))?.map(|l| l.chars().count()), Some(LABEL_MAX));
        assert!(bad(set_label(&store, id, Some(&"x".repeat(LABEL_MAX + 1)))));
        assert!(matches!(set_label(&store, "acc-none", Some("x")), Err(ChangeError::NoAccount(_))));

        assert!(bad(set_proxy(&store, id, Some("not a url"))));
        assert_eq!(store.get_account(id)?.and_then(|a| a.proxy), None, "a refused proxy is not stored");
        let proxy = "socks5://127.0.0.1:1080";
        assert_eq!(set_proxy(&store, id, Some(&format!(" {proxy} ")))?.as_deref(), Some(proxy));
        assert_eq!(store.get_account(id)?.and_then(|a| a.proxy).as_deref(), Some(proxy));
        assert_eq!(set_proxy(&store, id, Some(""))?, None);
        assert!(matches!(set_policy(&store, id, "keep:40"), Err(ChangeError::Bad(_))));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn policies_parse_in_every_accepted_form_and_nothing_else() {
        let ok = |t: &str| parse_policy(t).ok();
        assert_eq!(ok("normal"), Some(Policy::Normal));
        assert_eq!(ok(" burn_first "), Some(Policy::BurnFirst));
        assert_eq!(ok("preserve"), Some(Policy::Preserve { floor_percent: Policy::DEFAULT_FLOOR }));
        assert_eq!(ok("preserve:40"), Some(Policy::Preserve { floor_percent: 40 }));
        assert_eq!(ok("preserve:100"), Some(Policy::Preserve { floor_percent: 100 }));
        for bad in ["", "Normal", "burn-first", "preserve:0", "preserve:101", "preserve:-5", "preserve:x", "keep:40"] {
            let e = parse_policy(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("normal") && e.contains("burn_first") && e.contains("preserve:PERCENT"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_policy_is_set_checked_and_carried_by_an_export() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-manage-policy-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let row = stored_from_api_key("sk-1", None, None);
        store.upsert_account(&row)?;
        assert_eq!(set_policy(&store, &row.id, "preserve:40")?, Policy::Preserve { floor_percent: 40 });
        assert!(matches!(set_policy(&store, &row.id, "preserve:0"), Err(ChangeError::Bad(_))));
        assert!(matches!(set_policy(&store, "key-none", "normal"), Err(ChangeError::NoAccount(_))));
        let doc = export(&store, true)?;
        assert_eq!(doc["accounts"][0]["policy"], "preserve:40");
        let back = from_export(&doc)?;
        assert_eq!(back[0].policy.as_deref(), Some("preserve:40"));
        // Into another store: the policy comes along.
        let other = Store::open(&dir.join("other.db"))?;
        other.upsert_account(&back[0])?;
        assert_eq!(other.get_account(&row.id)?.and_then(|a| a.policy).as_deref(), Some("preserve:40"));
        // An export without one (an older build's) keeps what the store has; an unknown one is refused.
        let mut older = doc.clone();
        older["accounts"][0].as_object_mut().map(|a| a.shift_remove("policy"));
        assert_eq!(from_export(&older)?[0].policy, None);
        let mut newer = doc;
        newer["accounts"][0]["policy"] = json!("lend:10");
        let refused = from_export(&newer).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(refused.contains("`lend:10` is not an account policy"), "{refused}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn detects_sources() {
        assert!(matches!(ImportSource::detect(r#"{"tokens":{}}"#), Ok(ImportSource::AuthJson(_))));
        assert!(matches!(ImportSource::detect(r#"{"version":1,"accounts":[]}"#), Ok(ImportSource::Export(_))));
        assert!(matches!(ImportSource::detect("rt_abc123\n"), Ok(ImportSource::RefreshToken(_))));
        assert!(matches!(ImportSource::detect("sk-proj-1"), Ok(ImportSource::ApiKey { .. })));
        assert!(ImportSource::detect("two words").is_err());
        assert!(ImportSource::detect(r#"{"x":1}"#).is_err());
    }

    #[test]
    fn redacted_exports_cannot_be_imported() {
        let v = json!({"accounts":[{"id":"a","kind":"chatgpt","tokens":{"refresh_token":"rt_1…(40 chars)"}}]});
        assert!(from_export(&v).is_err());
        let v = json!({"accounts":[{"id":"a","kind":"chatgpt","tokens":{"refresh_token":"rt_full","access_token":"x","id_token":"y","account_id":"z"}}]});
        assert_eq!(from_export(&v).map(|a| a.len()).ok(), Some(1));
    }

    /// An export's unknown (or missing) kind used to be read as `chatgpt`.
    #[test]
    fn an_unknown_kind_in_an_export_is_refused() {
        let tokens = json!({"refresh_token":"rt_full","access_token":"x","id_token":"y","account_id":"z"});
        for kind in [json!("passkey"), json!("unrecognized"), json!(null)] {
            let v = json!({"accounts":[{"id":"a","kind":kind,"tokens":tokens,"api_key":"sk-1"}]});
            assert!(from_export(&v).is_err(), "{kind}");
        }
        let v = json!({"accounts":[{"id":"a","kind":"relay","api_key":"sk-1","base_url":"http://127.0.0.1:1"}]});
        assert_eq!(from_export(&v).ok().map(|a| a[0].kind), Some(AccountKind::Relay));
    }

    /// Enabling an account of an unknown kind used to write `active` (and the account was then served as
    /// `chatgpt`); now nothing is written and the answer says it stays unrecognized.
    #[test]
    fn enabling_an_account_of_an_unknown_kind_changes_nothing() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-manage-kind-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let mut row = stored_from_api_key("sk-1", None, None);
        row.status = AccountStatus::Disabled;
        store.upsert_account(&row)?;
        let db = rusqlite::Connection::open(dir.join("gateway.db"))?;
        db.execute("UPDATE accounts SET kind = 'passkey' WHERE id = ?1", [&row.id])?;
        assert_eq!(set_enabled(&store, &row.id, true)?, AccountStatus::Unrecognized);
        assert_eq!(set_enabled(&store, &row.id, false)?, AccountStatus::Unrecognized);
        let raw: (String, String) =
            db.query_row("SELECT kind, status FROM accounts WHERE id = ?1", [&row.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        assert_eq!(raw, ("passkey".into(), "disabled".into()));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn an_unknown_status_in_an_export_is_refused() {
        let tokens = json!({"refresh_token":"rt_full","access_token":"x","id_token":"y","account_id":"z"});
        let v = json!({"accounts":[{"id":"a","kind":"chatgpt","status":"paused","tokens":tokens}]});
        assert!(from_export(&v).is_err());
        let v = json!({"accounts":[{"id":"a","kind":"chatgpt","status":"disabled","tokens":tokens}]});
        assert_eq!(from_export(&v).ok().map(|a| a[0].status), Some(AccountStatus::Disabled));
    }
}
