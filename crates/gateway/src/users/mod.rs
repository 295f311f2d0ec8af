//! People who sign in (docs/dashboard.md, "Users and roles"): the users of the store, each with a [`Role`], and
//! their sessions, kept in memory as a snapshot ([`Users`]) re-read after every change, every poll and on a team
//! store's change, so a user removed on one instance is refused on every instance within a poll. With no user at
//! all, the admin key and the loopback dashboard are all there is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::audit::Actor;
use crate::auth::now_unix;
use crate::store::Store;
use crate::store::users::{StoredSession, StoredUser};

pub mod access;
pub mod attempt;
pub mod limits;
pub mod manage;
pub mod oidc;
pub mod password;
pub mod prune;
pub mod table;
pub mod totp;
pub mod trail;
pub mod unseen;

pub use access::Role;

/// What every session token starts with (the guard tells them from keys by it).
pub const SESSION_PREFIX: &str = "cgs_";
/// What every access token of the Codex CLI's gateway sign-in starts with (oauth/): accepted on the model routes only.
pub const ACCESS_PREFIX: &str = "cga_";
/// Client keys a user may hold at once unless an admin sets another maximum.
pub const DEFAULT_MAX_KEYS: u32 = 10;
/// How often a gateway on a local store re-reads the users and sessions (what `codex-gateway users` changed).
pub const USERS_POLL: Duration = Duration::from_secs(2);
/// How long a failed sign-in waits before it answers, unless `[dashboard.attempts] failure_delay_ms` says otherwise:
/// that request alone waits (users/limits.rs; no attempt holds up another).
pub const SIGN_IN_DELAY: Duration = Duration::from_secs(1);

/// A user as the gates see one: no secret in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub max_keys: u32,
}

/// How a session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Password,
    PasswordTotp,
    /// Single sign-on with the OpenID Connect provider of `[dashboard.oidc]` (oidc/).
    Oidc,
    /// An access token of the Codex CLI's gateway sign-in (oauth/): never a dashboard or admin API session.
    OAuth,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PasswordTotp => "password+totp",
            Method::Oidc => "oidc",
            Method::OAuth => "oauth",
        }
    }
}

/// A live session: whose, and until when.
#[derive(Clone)]
pub struct SignedIn {
    pub user: User,
    pub method: String,
    pub expires_at: i64,
    /// Lower-case hex SHA-256 of the token.
    pub token_sha256: String,
    /// The session's CSRF token (derived from the token's hash: the store keeps no second secret).
    pub csrf: String,
}

impl std::fmt::Debug for SignedIn {
    // Neither the token's hash nor the CSRF token, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user)
            .field("method", &self.method)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Who is asking, as the dashboard's gate and the admin API's layer found out.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The admin key, on the admin API.
    AdminKey,
    /// The admin API of a single-user install with no admin credential and no users.
    AdminOpen,
    /// A dashboard session opened with the admin key.
    DashboardAdminKey,
    /// A dashboard session opened on loopback without a login.
    DashboardLoopback,
    User(Arc<SignedIn>),
}

impl Principal {
    /// The credentials that are not a person act as admins.
    pub fn role(&self) -> Role {
        self.user().map_or(Role::Admin, |u| u.role)
    }

    pub fn actor(&self) -> Actor {
        match self {
            Principal::AdminKey => Actor::AdminKey,
            Principal::AdminOpen => Actor::AdminOpen,
            Principal::DashboardAdminKey => Actor::DashboardAdminKey,
            Principal::DashboardLoopback => Actor::DashboardLoopback,
            Principal::User(s) => Actor::User { name: s.user.name.clone() },
        }
    }

    /// The user, when a person is asking.
    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::User(s) => Some(&s.user),
            _ => None,
        }
    }
}

/// Why a sign-in was refused. The first two read alike (a name that exists is not told apart).
#[derive(Debug, thiserror::Error)]
pub enum SignInRefused {
    #[error("wrong name or password")]
    WrongNameOrPassword,
    /// The user is disabled, or has no role this build knows.
    #[error("wrong name or password")]
    NotAllowed,
    /// The password was right; the user has a second factor and sent no code.
    #[error("this user needs a one-time code from their authenticator app")]
    CodeNeeded,
    #[error("wrong one-time code")]
    WrongCode,
    /// Too many failures of the name or the client address: refused before anything is checked.
    #[error("{}", .0.message())]
    Limited(limits::Wait),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl SignInRefused {
    /// The refusal's name in the audit trail (never what was typed).
    pub fn reason(&self) -> &'static str {
        match self {
            SignInRefused::WrongNameOrPassword => "wrong_name_or_password",
            SignInRefused::NotAllowed => "disabled_or_no_role",
            SignInRefused::CodeNeeded => "code_needed",
            SignInRefused::WrongCode => "wrong_code",
            SignInRefused::Limited(wait) => wait.reason(),
            SignInRefused::Store(_) => "store_error",
        }
    }
}

#[derive(Default)]
struct Snapshot {
    users: HashMap<String, User>,
    sessions: HashMap<String, Arc<SignedIn>>,
}

/// The users and sessions in memory.
pub struct Users {
    store: Arc<Store>,
    snapshot: ArcSwap<Snapshot>,
    any: AtomicBool,
    lifetime: Duration,
    reloading: parking_lot::Mutex<()>,
    /// Failed attempts at the sign-in pages, per name, address and session (limits.rs).
    pub guards: limits::Guards,
    /// The Codex CLI's tokens this instance has not seen, looked up in the store (unseen.rs).
    unseen: unseen::Unseen,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot.load();
        f.debug_struct("Users").field("users", &s.users.len()).field("sessions", &s.sessions.len()).finish()
    }
}

/// The SHA-256 of `text` (a client key's or a token's digest, as looked up).
pub fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Lower-case hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `a` and `b` are equal, compared in constant time.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

/// 256 random bits, base64url: the body of a session or access token.
pub use crate::auth::login::random_state as random_token;

pub(crate) fn user_of(u: &StoredUser) -> Option<User> {
    let role = Role::parse(&u.role)?;
    (u.disabled_at.is_none()).then(|| User {
        id: u.id.clone(),
        name: u.name.clone(),
        role,
        max_keys: u.max_keys.unwrap_or(DEFAULT_MAX_KEYS),
    })
}

fn signed_in(user: User, s: &StoredSession) -> Arc<SignedIn> {
    Arc::new(SignedIn {
        user,
        method: s.method.clone(),
        expires_at: s.expires_at,
        csrf: sha256_hex(&format!("csrf:{}", s.token_sha256)),
        token_sha256: s.token_sha256.clone(),
    })
}

impl Users {
    /// Read the users and live sessions of `store`; sessions last `lifetime`; failed attempts limited by `limits`.
    pub fn load(store: Arc<Store>, lifetime: Duration, limits: crate::config::AttemptLimits) -> anyhow::Result<Users> {
        let users = Users {
            store,
            snapshot: ArcSwap::default(),
            any: AtomicBool::new(false),
            lifetime,
            reloading: parking_lot::Mutex::new(()),
            guards: limits::Guards::new(limits),
            unseen: unseen::Unseen::default(),
        };
        users.reload()?;
        Ok(users)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Re-read the store: a user removed, disabled or changed, a session ended anywhere, applies from here on.
    pub fn reload(&self) -> anyhow::Result<()> {
        let _one = self.reloading.lock();
        let rows = self.store.list_users()?;
        let users: HashMap<String, User> = rows.iter().filter_map(user_of).map(|u| (u.id.clone(), u)).collect();
        let live = self.store.live_sessions(now_unix())?;
        let session = |s: &StoredSession| Some((s.token_sha256.clone(), signed_in(users.get(&s.user_id)?.clone(), s)));
        let sessions = live.iter().filter_map(session).collect();
        self.any.store(!rows.is_empty(), Ordering::Relaxed);
        self.snapshot.store(Arc::new(Snapshot { users, sessions }));
        Ok(())
    }

    /// Whether any user exists (none: a single-user install, nobody signs in).
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// The live session of `token`, from memory.
    pub fn session(&self, token: &str) -> Option<Arc<SignedIn>> {
        self.live(token, SESSION_PREFIX).filter(|s| s.method != Method::OAuth.as_str())
    }

    /// The live access token `token` of the Codex CLI's sign-in (oauth/), from memory.
    pub fn access(&self, token: &str) -> Option<Arc<SignedIn>> {
        self.live(token, ACCESS_PREFIX).filter(|s| s.method == Method::OAuth.as_str())
    }

    /// The unexpired session of `token`, if it has `prefix`: found by its SHA-256 as client keys are (`Keys::find`).
    fn live(&self, token: &str, prefix: &str) -> Option<Arc<SignedIn>> {
        let hash = token.starts_with(prefix).then(|| sha256_hex(token))?;
        self.snapshot.load().sessions.get(&hash).filter(|s| s.expires_at > now_unix()).cloned()
    }

    /// Issue an access token for the user `user_id` living `lifetime`: the token and its session. Blocking.
    pub fn issue_access(&self, user_id: &str, lifetime: Duration) -> anyhow::Result<(String, Arc<SignedIn>)> {
        let user = self.enabled_user(user_id)?.ok_or_else(|| anyhow::anyhow!("user {user_id} may not sign in"))?;
        self.open(user, Method::OAuth, lifetime)
    }

    /// The user with id `user_id` as the last re-read found them (enabled, with a role).
    pub fn user(&self, user_id: &str) -> Option<User> {
        self.snapshot.load().users.get(user_id).cloned()
    }

    /// The user with id `user_id` as the gates see one, if enabled with a role (the store read now).
    pub fn enabled_user(&self, user_id: &str) -> anyhow::Result<Option<User>> {
        Ok(self.store.find_user(user_id)?.filter(|u| u.id == user_id).as_ref().and_then(user_of))
    }

    /// [`Users::session`], else the store (a session made on another instance since the last re-read).
    pub async fn resolve(self: &Arc<Self>, token: &str) -> Option<Arc<SignedIn>> {
        if !token.starts_with(SESSION_PREFIX) {
            return None;
        }
        if let Some(s) = self.session(token) {
            return Some(s);
        }
        let (me, hash) = (self.clone(), sha256_hex(token));
        blocking("look-up", move || me.look_up(&hash)).await.unwrap_or_else(|e| {
            tracing::warn!("could not look a session up in the store: {e:#}");
            None
        })
    }

    fn look_up(&self, hash: &str) -> anyhow::Result<Option<Arc<SignedIn>>> {
        let Some(s) = self.store.find_session(hash, now_unix())? else { return Ok(None) };
        let Some(user) = self.store.find_user(&s.user_id)?.as_ref().and_then(user_of) else { return Ok(None) };
        let signed = signed_in(user, &s);
        self.remember(&signed);
        Ok(Some(signed))
    }

    fn remember(&self, s: &Arc<SignedIn>) {
        self.snapshot.rcu(|old| {
            let mut sessions = old.sessions.clone();
            sessions.insert(s.token_sha256.clone(), s.clone());
            Snapshot { users: old.users.clone(), sessions }
        });
    }

    /// Open a session for `user`, however they proved who they are: the token (shown once) and the session.
    pub fn sign_in(&self, user: &StoredUser, method: Method) -> anyhow::Result<(String, Arc<SignedIn>)> {
        let user = user_of(user).ok_or_else(|| anyhow::anyhow!("user {} may not sign in", user.id))?;
        self.open(user, method, self.lifetime)
    }

    /// A new session of `user` living `lifetime`: its token (its method's prefix and 256 random bits) and the session.
    fn open(&self, user: User, method: Method, lifetime: Duration) -> anyhow::Result<(String, Arc<SignedIn>)> {
        let prefix = if method == Method::OAuth { ACCESS_PREFIX } else { SESSION_PREFIX };
        let token = format!("{prefix}{}", random_token());
        let now = now_unix();
        let row = StoredSession {
            token_sha256: sha256_hex(&token),
            user_id: user.id.clone(),
            method: method.as_str().into(),
            created_at: now,
            expires_at: now + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2),
        };
        self.store.insert_session(&row)?;
        let signed = signed_in(user, &row);
        self.remember(&signed);
        Ok((token, signed))
    }

    /// End one session, here and (through the store) everywhere.
    pub fn sign_out(&self, s: &SignedIn) -> anyhow::Result<()> {
        self.store.delete_session(&s.token_sha256)?;
        self.reload()
    }

    /// Re-read the store every `period`, forever.
    pub async fn follow_store(self: Arc<Self>, period: Duration) {
        reread_every(period, "users", move || self.reload()).await
    }
}

/// `f` on the blocking threads (the store, argon2id); a task that did not complete is `E`'s internal error.
pub async fn blocking<T: Send + 'static, E: From<anyhow::Error> + Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(anyhow::anyhow!("the {what} task failed: {e}").into()))
}

/// Run `reload` off the request workers (which may be a single one) every `period`, forever.
pub(crate) async fn reread_every(
    period: Duration,
    what: &str,
    reload: impl Fn() -> anyhow::Result<()> + Clone + Send + 'static,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = blocking("re-read", reload.clone()).await {
            tracing::warn!("could not re-read the {what}: {e:#}");
        }
    }
}
