//! Token freshness: the `Authorization` value for a request, the single-flight refresh per account (on demand,
//! ahead of expiry, forced by the admin), adopting tokens the Codex CLI refreshed in a linked auth.json, and
//! committing rotated tokens (a failed commit keeps them in memory, flags the account and is retried).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dialects::{ErrorKind, GatewayError};
use reqwest::header::HeaderValue;
use tokio::sync::{Mutex, MutexGuard, watch};
use tracing::{info, warn};

use super::shared_refresh::Coordinated;
use super::{Account, Pool, Source, UnsavedTokens, bearer_header};
use crate::auth::codex_file::{self, FileCredentials};
use crate::auth::refresh::{RefreshError, RefreshReason, TokenCall, needs_refresh, refresh_within};
use crate::auth::{Tokens, jwt, now_unix};
use crate::store::AccountStatus;

/// Refreshes slower than this are logged.
const SLOW_REFRESH: Duration = Duration::from_secs(3);
/// Commits of rotated tokens tried before the request goes on with them unsaved (the upkeep retries later).
/// SQLite already waits out a busy database (`busy_timeout`); a second try covers a passing I/O error.
const COMMIT_ATTEMPTS: u32 = 2;
const COMMIT_PAUSE: Duration = Duration::from_millis(100);
/// Added to `token_refresh_timeout_secs` to make a caller's wait for an account's refresh: the attempt it waits
/// for ends its token call within the bound, then commits what it got (a local write, or the team store's
/// compare-and-swap) and lets go of the lock.
const WAIT_GRACE: Duration = Duration::from_millis(500);

/// What one request may spend on token refreshes: one attempt (issues 58, 71). A request that needs a refresh
/// makes it, or waits for the one in flight and takes its outcome, whoever started it (another request, the
/// upkeep, an admin, another instance of a team); so does any attempt that ended since the request began (the
/// catalog fetched on its way, say). Once one failed, the request's next account that needs a refresh fails at
/// once with that failure instead of another wait on the same token endpoint. So a request waits for refreshes
/// at most about one `token_refresh_timeout_secs`, however many accounts it tries.
#[derive(Debug)]
pub struct RefreshBudget {
    /// When the request began: an attempt that ended after it is one the request waited through.
    began: Instant,
    failed: Option<GatewayError>,
}

impl RefreshBudget {
    /// The budget of a request that began at `began` (an attempt that ended since then answers it).
    pub fn since(began: Instant) -> RefreshBudget {
        RefreshBudget { began, failed: None }
    }

    /// Spend the budget on `failure`: the caller's error now, and the outcome of its next refresh wait.
    fn fail<T>(&mut self, failure: GatewayError) -> Result<T, GatewayError> {
        self.failed = Some(failure.clone());
        Err(failure)
    }
}

/// The budget of a call or background job that begins now.
impl Default for RefreshBudget {
    fn default() -> RefreshBudget {
        RefreshBudget::since(Instant::now())
    }
}

/// An account's single-flight refresh: the lock one attempt holds while it runs (and the commits that must not
/// race it), and how the last attempt ended, which wakes whoever waits for it.
#[derive(Debug)]
pub(crate) struct RefreshFlight {
    lock: Mutex<()>,
    ended: watch::Sender<Option<AttemptEnd>>,
}

/// When a refresh attempt ended, and its failure (`None`: new tokens are in place).
#[derive(Debug, Clone)]
struct AttemptEnd {
    at: Instant,
    failure: Option<GatewayError>,
}

impl RefreshFlight {
    pub(crate) fn new() -> RefreshFlight {
        RefreshFlight { lock: Mutex::new(()), ended: watch::Sender::new(None) }
    }

    /// The failure of the last attempt if it ended after `since` (one the caller waited through).
    fn failed_since(&self, since: Instant) -> Option<GatewayError> {
        match &*self.ended.borrow() {
            Some(AttemptEnd { at, failure: Some(failure) }) if *at > since => Some(failure.clone()),
            _ => None,
        }
    }

    /// Whether the last attempt ended after `since` with new tokens.
    fn succeeded_since(&self, since: Instant) -> bool {
        matches!(&*self.ended.borrow(), Some(AttemptEnd { at, failure: None }) if *at > since)
    }

    fn end(&self, failure: Option<GatewayError>) {
        self.ended.send_replace(Some(AttemptEnd { at: Instant::now(), failure }));
    }
}

/// What waiting for an account's refresh lock gave.
enum Waited<'a> {
    /// The lock: no attempt ended meanwhile that answers the caller.
    Locked(MutexGuard<'a, ()>),
    /// An attempt the caller waited for ended: its outcome (a fresh access token, or its failure).
    Answered(Result<String, GatewayError>),
}

impl Pool {
    /// An access token for `account`, refreshed first when it is about to expire. With `after_401` set to the
    /// token the upstream just refused, a refresh is forced unless another request already replaced it. Calls
    /// that share one `budget` wait for one refresh attempt at most between them (a catalog fetch's workspace
    /// check and catalog call; see [`RefreshBudget`]).
    pub(super) async fn token_within(
        &self,
        account: &Account,
        after_401: Option<&str>,
        budget: &mut RefreshBudget,
    ) -> Result<String, GatewayError> {
        let now = now_unix();
        // The common case, every request: the current token is fresh. Read it without copying the other tokens.
        if let Some((token, _)) = account.creds.read().access_token(now).filter(|&(token, due)| match after_401 {
            Some(refused) => token != refused,
            None => !due,
        }) {
            return Ok(token.to_string());
        }
        if account.tokens().is_none() {
            return account.api_key().ok_or_else(|| GatewayError::internal("account has no credentials"));
        }
        let stale = |t: &Tokens| match after_401 {
            Some(refused) => t.access_token == refused,
            None => needs_refresh(t, now),
        };
        let reason = match after_401 {
            Some(_) => RefreshReason::UnauthorizedRecovery,
            None => RefreshReason::ProactiveExpiry,
        };
        // Boxed: every request's future would otherwise carry room for the refresh (an HTTP exchange) inline.
        Box::pin(self.refresh_locked(account, &stale, reason, budget)).await
    }

    /// The `Authorization` value for an upstream request through `account`: the prebuilt one while the access
    /// token is fresh (every request), else built from [`Pool::token_within`] (refresh due, API keys, after a 401),
    /// within the request's refresh `budget`.
    pub async fn authorization(
        &self,
        account: &Account,
        after_401: Option<&str>,
        budget: &mut RefreshBudget,
    ) -> Result<HeaderValue, GatewayError> {
        if after_401.is_none()
            && let Some(value) = account.creds.read().fresh_bearer(now_unix())
        {
            return Ok(value);
        }
        let token = self.token_within(account, after_401, budget).await?;
        bearer_header(&token)
            .ok_or_else(|| GatewayError::internal("the account's credential cannot be sent in a header"))
    }

    /// Refresh now, whatever the token's age (admin `refresh`). An attempt already in flight is waited for and
    /// its outcome taken: it replaces the token as this one would.
    pub async fn force_refresh(&self, account: &Account) -> Result<(), GatewayError> {
        let Some(current) = account.tokens() else {
            return Err(GatewayError::invalid("only ChatGPT accounts have tokens to refresh"));
        };
        let stale = |t: &Tokens| t.access_token == current.access_token;
        self.refresh_locked(account, &stale, RefreshReason::Forced, &mut RefreshBudget::default()).await.map(|_| ())
    }

    /// Refresh ahead of expiry (background): when the token expires within `window`.
    pub async fn refresh_ahead(&self, account: &Account, window: i64) -> Result<(), GatewayError> {
        let now = now_unix();
        let stale = |t: &Tokens| match jwt::claims(&t.access_token).and_then(|c| c.exp) {
            Some(exp) => exp - now < window,
            None => needs_refresh(t, now),
        };
        match account.tokens() {
            Some(t) if stale(&t) => self
                .refresh_locked(account, &stale, RefreshReason::Scheduled, &mut RefreshBudget::default())
                .await
                .map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The single-flight refresh: one attempt per account at a time. A caller waits for ONE bounded attempt at
    /// most, whoever started it: an attempt that ends while it waits answers it, success or failure (a failure
    /// that ended since its `budget` began too), and its wait for the lock ends with the bound
    /// (`token_refresh_timeout_secs` and a grace for the holder's commit) rather than behind whatever queued for
    /// the lock after that attempt. Only a caller that got the lock with a whole bound still ahead of it starts
    /// an attempt of its own.
    async fn refresh_locked(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
        reason: RefreshReason,
        budget: &mut RefreshBudget,
    ) -> Result<String, GatewayError> {
        if let Some(failed) = budget.failed.clone() {
            return Err(failed);
        }
        let limit = self.config.timeouts.token_refresh;
        let called = Instant::now();
        let deadline = called + limit + WAIT_GRACE;
        let _guard = match self.wait_for_refresh(account, (budget.began, called), deadline).await {
            Waited::Locked(guard) => guard,
            Waited::Answered(Ok(token)) => return Ok(token),
            Waited::Answered(Err(failure)) => return budget.fail(failure),
        };
        let Some(mut current) = account.tokens() else {
            return Err(GatewayError::internal("account has no tokens"));
        };
        if let Some(file_tokens) = linked_newer(account, &current) {
            // The Codex CLI refreshed: adopt its tokens rather than spending our (now dead) refresh token.
            info!(account = %account.id, "adopting tokens refreshed by the Codex CLI");
            current = file_tokens;
            account.creds.write().set_tokens(current.clone());
            *account.status.write() = (AccountStatus::Active, None);
        }
        if !stale(&current) {
            return Ok(current.access_token);
        }
        if account.status().0 == AccountStatus::NeedsLogin {
            return Err(self.no_account_error());
        }
        if let Some(failure) = account.refresh.failed_since(budget.began) {
            // An attempt ended while this caller took the lock, and failed: its outcome is this caller's too,
            // rather than a second wait on the same token endpoint.
            return budget.fail(failure);
        }
        if account.refresh.succeeded_since(called) {
            // It renewed the tokens: they are what an attempt of this caller's would get, although `stale` may
            // still call them due (an issuer whose tokens live shorter than the refresh window).
            return Ok(current.access_token);
        }
        if deadline.saturating_duration_since(Instant::now()) < limit {
            // The lock came late (a slow commit held it): an attempt started now could not end within the
            // caller's bound, and one cut short might spend the single-use refresh token for an answer never read.
            return budget.fail(refresh_timeout(account, limit));
        }
        let outcome = self.attempt(account, stale, current, reason, deadline).await;
        // Whoever waits for this attempt takes its outcome (and wakes now, not when the lock comes its way).
        account.refresh.end(outcome.as_ref().err().cloned());
        outcome.or_else(|failure| budget.fail(failure))
    }

    /// Wait until `deadline` for `account`'s refresh lock, or for an attempt to answer the caller: one that
    /// failed after the caller's request `began`, or succeeded after this wait was `called`. (A success from
    /// before the call does not answer it: its token may be the one the upstream just refused.)
    async fn wait_for_refresh<'a>(
        &self,
        account: &'a Account,
        (began, called): (Instant, Instant),
        deadline: Instant,
    ) -> Waited<'a> {
        let flight = &account.refresh;
        let mut ended = flight.ended.subscribe();
        // The sender lives in the account, so it outlives this wait; were it gone, the lock and the deadline
        // would still end the wait.
        let mut watching = true;
        // One acquisition for the whole wait: a new one per wake-up would lose the caller's place in the queue.
        let lock = flight.lock.lock();
        tokio::pin!(lock);
        loop {
            ended.borrow_and_update();
            if let Some(failure) = flight.failed_since(began) {
                return Waited::Answered(Err(failure));
            }
            if flight.succeeded_since(called)
                && let Some(t) = account.tokens()
            {
                return Waited::Answered(Ok(t.access_token));
            }
            tokio::select! {
                guard = &mut lock => return Waited::Locked(guard),
                changed = ended.changed(), if watching => watching = changed.is_ok(),
                () = tokio::time::sleep_until(deadline.into()) => {
                    warn!(account = %account.id, "the account's token refresh did not end within its bound; not waiting longer");
                    return Waited::Answered(Err(refresh_timeout(account, self.config.timeouts.token_refresh)));
                }
            }
        }
    }

    /// One refresh attempt, under the account's lock: coordinated with the team (a store account), the token
    /// call within `token_refresh_timeout_secs`, and what its result does to the account.
    async fn attempt(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
        mut current: Tokens,
        reason: RefreshReason,
        deadline: Instant,
    ) -> Result<String, GatewayError> {
        // Team store (docs/team.md): one refresh per account cluster-wide; another instance's result is adopted.
        let mut leased = false;
        if account.source == Source::Store {
            match self.coordinate_refresh(account, stale, deadline).await? {
                Coordinated::Adopted(access_token) => return Ok(access_token),
                Coordinated::Refresh(newest) => (current, leased) = (newest, true),
                Coordinated::Alone => {}
            }
        }
        let started = Instant::now();
        let limit = self.config.timeouts.token_refresh;
        let to = TokenCall { issuer: &self.config.auth_issuer, client: &self.config.client, reason };
        let result = refresh_within(account.http(), to, &current, limit).await;
        if leased && result.is_err() {
            // The refresh token was not spent (or the login is gone): the next instance may try.
            let _ = self.store.end_refresh_lease(&account.id).await;
        }
        self.refreshes.count(&result);
        if started.elapsed() > SLOW_REFRESH {
            warn!(account = %account.id, ms = started.elapsed().as_millis() as u64, "the token refresh was slow");
        }
        self.refreshed(account, stale, &current, result).await
    }

    /// What a refresh's result does to the account, and the caller's token or error.
    async fn refreshed(
        &self,
        account: &Account,
        stale: &(dyn Fn(&Tokens) -> bool + Sync),
        current: &Tokens,
        result: Result<Tokens, RefreshError>,
    ) -> Result<String, GatewayError> {
        match result {
            Ok(new_tokens) => {
                // The old refresh token died when the issuer answered: these are the only live tokens. They are
                // committed before anything uses them. A commit that fails does not drop them (that would lose
                // the login): they are used from memory, the account is flagged, and the commit is retried.
                self.commit_tokens(account, &new_tokens, COMMIT_ATTEMPTS).await;
                account.creds.write().set_tokens(new_tokens.clone());
                *account.status.write() = (AccountStatus::Active, None);
                account.discovery_due.store(true, Ordering::Relaxed);
                info!(account = %account.id, "access token refreshed");
                Ok(new_tokens.access_token)
            }
            // Every way a refresh fails, decided here: the login is gone (needs login), or it stays and the
            // client hears why this request could not be served.
            Err(RefreshError::LoginGone(gone)) if self.adopt_linked(account, current) => {
                info!(account = %account.id, reason = %gone, "refresh refused, but the Codex CLI just saved newer tokens; using those");
                match account.tokens() {
                    Some(t) if !stale(&t) => Ok(t.access_token),
                    _ => Err(GatewayError::new(
                        ErrorKind::UpstreamUnavailable,
                        "The shared Codex login changed during a refresh; retry.",
                    )),
                }
            }
            Err(RefreshError::LoginGone(gone)) => {
                warn!(account = %account.id, reason = %gone, "refresh token rejected: account needs login");
                // The issuer's code (`refresh_token_reused`, ...), as `accounts list` has always shown it.
                let reason = gone.code().to_string();
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
            Err(RefreshError::TimedOut(limit)) => {
                warn!(account = %account.id, "the token endpoint did not answer in time; the login is kept");
                Err(refresh_timeout(account, limit))
            }
            Err(
                e @ (RefreshError::Unavailable { .. }
                | RefreshError::Rejected { .. }
                | RefreshError::Transport(_)
                | RefreshError::Malformed(_)
                | RefreshError::Undecodable(_)),
            ) => {
                // The failure and its causes (a refused connection, the parser's complaint), in one line.
                let e = upstream_transport::with_causes(&e);
                warn!(account = %account.id, error = %e, "token refresh failed; the login is kept");
                Err(GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    format!("Could not refresh the ChatGPT login: {e}"),
                ))
            }
        }
    }

    /// Linked mode: if auth.json now holds a different refresh token than `spent`, adopt the file's tokens.
    fn adopt_linked(&self, account: &Account, spent: &Tokens) -> bool {
        linked_newer(account, spent).map(|t| account.creds.write().set_tokens(t)).is_some()
    }

    /// Commit rotated tokens where the account's credentials live, trying `attempts` times. On success the
    /// account's `tokens_not_saved` flag is cleared; on failure it is set (or its count of attempts grows) and
    /// the tokens stay in memory for [`Pool::retry_unsaved_tokens`]. Callers hold the account's refresh lock.
    async fn commit_tokens(&self, account: &Account, tokens: &Tokens, attempts: u32) {
        let mut error = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(COMMIT_PAUSE).await;
            }
            match self.write_tokens(account, tokens).await {
                Ok(()) => {
                    if let Some(unsaved) = account.unsaved.lock().take() {
                        info!(account = %account.id, after = unsaved.attempts, "the rotated tokens are saved now");
                    }
                    return;
                }
                Err(e) => error = format!("{e:#}"),
            }
        }
        warn!(
            account = %account.id,
            "could not save the rotated tokens ({error}); they stay in memory and saving is retried: until it \
             succeeds, a restart loses this login"
        );
        let mut unsaved = account.unsaved.lock();
        let u = unsaved.get_or_insert_with(|| UnsavedTokens { since: now_unix(), attempts: 0, error: String::new() });
        u.attempts = u.attempts.saturating_add(attempts);
        u.error = error;
    }

    /// Try again to commit the tokens of every account flagged `tokens_not_saved` (each upkeep round). Under
    /// the account's refresh lock, so it cannot race a refresh; it saves whatever tokens are newest by then.
    pub async fn retry_unsaved_tokens(&self) {
        for account in self.accounts().iter() {
            if account.unsaved.lock().is_none() {
                continue;
            }
            let _guard = account.refresh.lock.lock().await;
            if let Some(tokens) = account.tokens() {
                self.commit_tokens(account, &tokens, 1).await;
            }
        }
    }

    async fn write_tokens(&self, account: &Account, tokens: &Tokens) -> anyhow::Result<()> {
        let t = tokens.clone();
        let write = match &account.source {
            Source::Store => {
                let (store, id) = (self.store.clone(), account.id.clone());
                tokio::task::spawn_blocking(move || store.save_tokens(&id, &t))
            }
            Source::Linked(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || codex_file::write_tokens(&path, &t))
            }
            Source::Env => return Ok(()),
        };
        write.await.unwrap_or_else(|e| Err(anyhow::anyhow!("the task saving the tokens failed: {e}")))
    }
}

/// The 504 of a refresh that did not end within `limit` (`token_refresh_timeout_secs`): the token endpoint's
/// silence, or an attempt the caller waited for that ran out its bound. The login is kept either way.
fn refresh_timeout(account: &Account, limit: Duration) -> GatewayError {
    let why =
        format!("Could not refresh the ChatGPT login of {}: the token endpoint did not answer", account.describe());
    timed_out(why, limit)
}

/// The 504 of a refresh `why` did not end within `limit`: the login is kept.
pub(super) fn timed_out(why: String, limit: Duration) -> GatewayError {
    let message = format!(
        "{why} within {} s (token_refresh_timeout_secs). The login is kept; retry shortly.",
        limit.as_secs_f64()
    );
    GatewayError::new(ErrorKind::Timeout, message).with_code("token_refresh_timeout")
}

/// The tokens of a linked account's auth.json when they replace `current`: a different, non-empty refresh token
/// (the Codex CLI refreshed or logged in). Not while the account's own rotated tokens are unsaved: the file then
/// still holds the refresh token they replaced, which is spent; only a later login (a newer `last_refresh`) wins.
fn linked_newer(account: &Account, current: &Tokens) -> Option<Tokens> {
    let Source::Linked(path) = &account.source else { return None };
    let Ok(Some(FileCredentials::Chatgpt(file))) = codex_file::read(path).map(|f| f.credentials()) else { return None };
    let wins = file.refresh_token != current.refresh_token
        && !file.refresh_token.is_empty()
        && (account.unsaved.lock().is_none() || file.last_refresh > current.last_refresh);
    wins.then_some(file)
}

/// Token refresh calls since start, by outcome: counted where the call returns, read by the metrics.
#[derive(Debug, Default)]
pub struct RefreshCounts {
    ok: AtomicU64,
    login_gone: AtomicU64,
    failed: AtomicU64,
}

impl RefreshCounts {
    fn count<T>(&self, result: &Result<T, RefreshError>) {
        let counter = match result {
            Ok(_) => &self.ok,
            Err(RefreshError::LoginGone(_)) => &self.login_gone,
            Err(
                RefreshError::Unavailable { .. }
                | RefreshError::Rejected { .. }
                | RefreshError::Transport(_)
                | RefreshError::Malformed(_)
                | RefreshError::Undecodable(_)
                | RefreshError::TimedOut(_),
            ) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(outcome, count)`: `ok`, `login_gone` (the account needs a new login), `failed` (the login stays).
    pub fn snapshot(&self) -> [(&'static str, u64); 3] {
        [
            ("ok", self.ok.load(Ordering::Relaxed)),
            ("login_gone", self.login_gone.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
        ]
    }
}
