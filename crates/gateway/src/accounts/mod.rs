//! The account pool: which credentials serve the next request, and keeping their tokens fresh.
//!
//! Accounts come from the gateway's store; with none there, the Codex CLI's auth.json is used in *linked* mode
//! (read it, write refreshed tokens back, re-read before refreshing); else `OPENAI_API_KEY`. Token refresh is
//! single-flight per account: one refresh at a time, others wait and reuse its result.

use std::path::PathBuf;
use std::sync::Arc;

use dialects::{ErrorKind, GatewayError};
use parking_lot::RwLock;
use tracing::{info, warn};

use crate::auth::codex_file::{self, FileCredentials};
use crate::auth::refresh::{RefreshError, needs_refresh, refresh};
use crate::auth::{Tokens, jwt, now_unix};
use crate::config::Config;
use crate::store::{AccountKind, AccountStatus, Store, StoredAccount};

pub mod quota;

pub use quota::QuotaSnapshot;

/// Where an account's credentials live, which decides where a refresh is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Store,
    /// The Codex CLI's auth.json, shared with it.
    Linked(PathBuf),
    /// `OPENAI_API_KEY` from the environment (never written).
    Env,
}

#[derive(Debug, Clone)]
struct Creds {
    tokens: Option<Tokens>,
    api_key: Option<String>,
}

/// One upstream identity.
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    pub source: Source,
    pub label: Option<String>,
    pub email: Option<String>,
    pub plan: Option<String>,
    creds: RwLock<Creds>,
    status: RwLock<(AccountStatus, Option<String>)>,
    refresh_lock: tokio::sync::Mutex<()>,
    pub quota: RwLock<QuotaSnapshot>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("id", &self.id).field("kind", &self.kind).field("source", &self.source).finish()
    }
}

impl Account {
    fn new(stored: StoredAccount, source: Source) -> Account {
        Account {
            id: stored.id,
            kind: stored.kind,
            source,
            label: stored.label,
            email: stored.email,
            plan: stored.plan,
            creds: RwLock::new(Creds { tokens: stored.tokens, api_key: stored.api_key }),
            status: RwLock::new((stored.status, stored.status_reason)),
            refresh_lock: tokio::sync::Mutex::new(()),
            quota: RwLock::new(QuotaSnapshot::default()),
        }
    }

    pub fn status(&self) -> (AccountStatus, Option<String>) {
        self.status.read().clone()
    }

    /// The ChatGPT account id sent as `ChatGPT-Account-ID`.
    pub fn chatgpt_account_id(&self) -> Option<String> {
        self.creds.read().tokens.as_ref().map(|t| t.account_id.clone()).filter(|a| !a.is_empty())
    }

    pub fn api_key(&self) -> Option<String> {
        self.creds.read().api_key.clone()
    }

    fn tokens(&self) -> Option<Tokens> {
        self.creds.read().tokens.clone()
    }

    /// A short, safe description for logs and `accounts list`.
    pub fn describe(&self) -> String {
        let who = self.label.clone().or_else(|| self.email.clone()).unwrap_or_else(|| self.id.clone());
        format!("{who} ({})", self.kind.as_str())
    }
}

/// Build a store row from ChatGPT tokens (import, login).
pub fn stored_from_tokens(tokens: Tokens, label: Option<String>) -> StoredAccount {
    let claims = jwt::claims(&tokens.id_token).or_else(|| jwt::claims(&tokens.access_token)).unwrap_or_default();
    let email = claims.email.clone();
    let id = account_key(&tokens.account_id, email.as_deref());
    StoredAccount {
        id,
        kind: AccountKind::Chatgpt,
        label,
        email,
        plan: claims.plan,
        tokens: Some(tokens),
        api_key: None,
        base_url: None,
        status: AccountStatus::Active,
        status_reason: None,
        created_at: now_unix(),
    }
}

/// A stable id for a ChatGPT identity: one workspace account may hold several users.
pub fn account_key(chatgpt_account_id: &str, email: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{chatgpt_account_id}\n{}", email.unwrap_or("")).as_bytes());
    format!("acc-{}", d.iter().take(5).map(|b| format!("{b:02x}")).collect::<String>())
}

pub fn stored_from_api_key(key: &str, label: Option<String>) -> StoredAccount {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    StoredAccount {
        id: format!("key-{}", d.iter().take(5).map(|b| format!("{b:02x}")).collect::<String>()),
        kind: AccountKind::ApiKey,
        label,
        email: None,
        plan: None,
        tokens: None,
        api_key: Some(key.to_string()),
        base_url: None,
        status: AccountStatus::Active,
        status_reason: None,
        created_at: now_unix(),
    }
}

pub struct Pool {
    accounts: Vec<Arc<Account>>,
    store: Arc<Store>,
    http: reqwest::Client,
    issuer: String,
}

impl Pool {
    /// The store's accounts; if it has none, the linked auth.json; then `OPENAI_API_KEY`.
    pub fn load(config: &Config, store: Arc<Store>, http: reqwest::Client) -> anyhow::Result<Pool> {
        let mut accounts: Vec<Arc<Account>> =
            store.list_accounts()?.into_iter().map(|a| Arc::new(Account::new(a, Source::Store))).collect();
        if accounts.is_empty() {
            let path = config.codex_auth_file();
            match codex_file::read(&path).map(|f| f.credentials()) {
                Ok(Some(FileCredentials::Chatgpt(tokens))) => {
                    info!(path = %path.display(), "using the Codex CLI login (linked mode)");
                    accounts.push(Arc::new(Account::new(
                        stored_from_tokens(tokens, Some("codex-cli".into())),
                        Source::Linked(path),
                    )));
                }
                Ok(Some(FileCredentials::ApiKey(key))) => {
                    accounts.push(Arc::new(Account::new(
                        stored_from_api_key(&key, Some("codex-cli key".into())),
                        Source::Env,
                    )));
                }
                Ok(None) => {}
                Err(e) if path.exists() => warn!("ignoring {}: {e:#}", path.display()),
                Err(_) => {}
            }
        }
        if let Some(key) = &config.openai_api_key
            && !accounts.iter().any(|a| a.api_key().as_deref() == Some(key.as_str()))
        {
            accounts.push(Arc::new(Account::new(stored_from_api_key(key, Some("OPENAI_API_KEY".into())), Source::Env)));
        }
        Ok(Pool { accounts, store, http, issuer: config.auth_issuer.clone() })
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    /// Any account that can serve requests now.
    pub fn has_usable(&self) -> bool {
        self.accounts.iter().any(|a| a.status().0 == AccountStatus::Active)
    }

    /// The account for the next request, skipping `exclude` (accounts already tried for this request).
    pub fn pick(&self, exclude: &[String]) -> Result<Arc<Account>, GatewayError> {
        if let Some(a) =
            self.accounts.iter().find(|a| a.status().0 == AccountStatus::Active && !exclude.contains(&a.id))
        {
            return Ok(a.clone());
        }
        Err(self.no_account_error())
    }

    fn no_account_error(&self) -> GatewayError {
        if self.accounts.is_empty() {
            return GatewayError::new(
                ErrorKind::NotLoggedIn,
                "codex-gateway has no credentials. Log in with the Codex CLI (`codex login`, the gateway then uses \
                 ~/.codex/auth.json), or run `codex-gateway accounts import [PATH]`, or set OPENAI_API_KEY; then \
                 restart the gateway.",
            )
            .with_code("not_logged_in");
        }
        let needing: Vec<String> =
            self.accounts.iter().filter(|a| a.status().0 == AccountStatus::NeedsLogin).map(|a| a.describe()).collect();
        if !needing.is_empty() {
            return GatewayError::new(
                ErrorKind::NotLoggedIn,
                format!(
                    "The login of {} is no longer valid. Log in again (`codex login`, then `codex-gateway accounts import`) and restart the gateway.",
                    needing.join(", ")
                ),
            )
            .with_code("needs_login");
        }
        GatewayError::new(ErrorKind::Overloaded, "No account is available to serve this request right now.")
            .with_code("no_account_available")
    }

    /// An access token for `account`, refreshed first when it is about to expire. With `after_401` set to the
    /// token the upstream just refused, a refresh is forced unless another request already replaced it.
    pub async fn access_token(&self, account: &Account, after_401: Option<&str>) -> Result<String, GatewayError> {
        let Some(tokens) = account.tokens() else {
            return account.api_key().ok_or_else(|| GatewayError::internal("account has no credentials"));
        };
        let stale = |t: &Tokens| match after_401 {
            Some(refused) => t.access_token == refused,
            None => needs_refresh(t, now_unix()),
        };
        if !stale(&tokens) {
            return Ok(tokens.access_token);
        }
        let _guard = account.refresh_lock.lock().await;
        // Someone may have refreshed while we waited for the lock.
        let mut current = account.tokens().unwrap_or(tokens);
        if let Source::Linked(path) = &account.source {
            // The Codex CLI may have refreshed: adopt its tokens rather than spending our (now dead) one.
            if let Ok(Some(FileCredentials::Chatgpt(file_tokens))) = codex_file::read(path).map(|f| f.credentials())
                && file_tokens.refresh_token != current.refresh_token
                && !file_tokens.refresh_token.is_empty()
            {
                info!(account = %account.id, "adopting tokens refreshed by the Codex CLI");
                current = file_tokens;
                account.creds.write().tokens = Some(current.clone());
            }
        }
        if !stale(&current) {
            return Ok(current.access_token);
        }
        if account.status().0 == AccountStatus::NeedsLogin {
            return Err(self.no_account_error());
        }
        match refresh(&self.http, &self.issuer, &current).await {
            Ok(new_tokens) => {
                // Persist before anything uses the new tokens: the old refresh token is already dead.
                self.persist(account, &new_tokens).await;
                account.creds.write().tokens = Some(new_tokens.clone());
                *account.status.write() = (AccountStatus::Active, None);
                info!(account = %account.id, "access token refreshed");
                Ok(new_tokens.access_token)
            }
            Err(RefreshError::Permanent(reason)) => {
                warn!(account = %account.id, %reason, "refresh token rejected: account needs login");
                *account.status.write() = (AccountStatus::NeedsLogin, Some(reason.clone()));
                if account.source == Source::Store {
                    let (store, id) = (self.store.clone(), account.id.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        store.set_status(&id, AccountStatus::NeedsLogin, Some(&reason))
                    })
                    .await;
                }
                Err(self.no_account_error())
            }
            Err(RefreshError::Transient(msg)) => {
                warn!(account = %account.id, %msg, "token refresh failed");
                Err(GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    format!("Could not refresh the ChatGPT login: {msg}"),
                ))
            }
        }
    }

    async fn persist(&self, account: &Account, tokens: &Tokens) {
        let result = match &account.source {
            Source::Store => {
                let (store, id, t) = (self.store.clone(), account.id.clone(), tokens.clone());
                tokio::task::spawn_blocking(move || store.save_tokens(&id, &t))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("store task failed: {e}")))
            }
            Source::Linked(path) => {
                let (path, t) = (path.clone(), tokens.clone());
                tokio::task::spawn_blocking(move || codex_file::write_tokens(&path, &t))
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("file task failed: {e}")))
            }
            Source::Env => Ok(()),
        };
        if let Err(e) = result {
            // The tokens still work in memory; say loudly that they are not saved.
            warn!(account = %account.id, "could not save refreshed tokens: {e:#}");
        }
    }
}
