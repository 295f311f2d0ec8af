//! The `users` and `user_sessions` tables (users/ decides what they mean): people who sign in to the dashboard
//! and the admin API, each with a role, and the sessions they hold. One DDL text for both backends, like the
//! accounts' columns; the statements are written once (`sql.rs`).
//! Secrets stay hashed where they can: a password as its argon2id PHC string, a session as the SHA-256 of its
//! token. A TOTP secret has to be readable to check a code, so it is stored as the accounts' tokens are.
//!
//! On PostgreSQL a write to either table bumps the change counter every instance follows
//! (`postgres/watch.rs`), so a session ended or a user disabled on one instance is refused on the others at
//! their next poll.

use super::Store;
use super::sql::{Cells, Val, count, insert, int, need, opt, text};

/// Migration 18: users, their sessions, and who owns a client key (`NULL`: the gateway, as for every key made before
/// users existed).
pub(crate) const SCHEMA: &str = "
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT,
    password_hash TEXT,
    totp_secret TEXT,
    max_keys BIGINT
);
CREATE TABLE user_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    method TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
ALTER TABLE client_keys ADD COLUMN owner TEXT;
";

/// Migration 19 (PostgreSQL only): users and sessions move the change counter, as accounts and keys do (a key's
/// owner is a column of `client_keys`, whose trigger already moves it).
pub(crate) const POSTGRES_TRIGGERS: &str = "
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TRIGGER user_sessions_changed AFTER INSERT OR UPDATE OR DELETE ON user_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
";

/// Migration 23: each user's consecutive failed sign-ins and the time (unix ms) before which the next attempt is
/// refused (a pause, or a lockout once the count reaches `[dashboard.attempts] lockout_failures`: users/limits.rs).
/// Kept with the user, so every instance of a team holds the same count and lockout, and an admin's unlock on one
/// instance lifts it on all.
pub(crate) const SIGN_IN_FAILURES: &str = "
ALTER TABLE users ADD COLUMN failed_sign_ins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN sign_in_wait_until BIGINT;
";

/// A user's failed sign-ins ([`SIGN_IN_FAILURES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInFailures {
    /// Consecutive failures since the last sign-in (or unlock).
    pub failures: u32,
    /// Unix ms before which an attempt is refused.
    pub wait_until_ms: Option<i64>,
}

fn failures_of(r: &dyn Cells) -> anyhow::Result<SignInFailures> {
    Ok(SignInFailures {
        failures: r.int(0)?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        wait_until_ms: r.int(1)?,
    })
}

/// One row of `users`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// `usr_` + 12 hex characters.
    pub id: String,
    /// The sign-in name (often an e-mail address), unique.
    pub name: String,
    /// `admin`, `member` or `viewer` (users/access.rs reads it; anything else reads as no role at all).
    pub role: String,
    /// Unix seconds.
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// argon2id, PHC string format.
    pub password_hash: Option<String>,
    /// RFC 6238 secret, base32.
    pub totp_secret: Option<String>,
    /// Client keys the user may hold at once (`None`: the default).
    pub max_keys: Option<u32>,
    /// The user's budget across all their keys: a key's kinds of limit (migration 20, store/attribution.rs).
    pub limits: super::Limits,
}

impl std::fmt::Debug for StoredUser {
    // Neither the password's hash nor the TOTP secret, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("disabled_at", &self.disabled_at)
            .field("password", &self.password_hash.is_some())
            .field("totp", &self.totp_secret.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

/// One row of `user_sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Lower-case hex SHA-256 of the session token (the token itself is only in the holder's cookie or header).
    pub token_sha256: String,
    pub user_id: String,
    /// How the user signed in (`password`, `password+totp`, later `oidc`).
    pub method: String,
    pub created_at: i64,
    pub expires_at: i64,
}

const USER_COLUMNS: &str = "id, name, role, created_at, disabled_at, password_hash, totp_secret, max_keys, rpm, \
                            concurrency, daily_tokens, monthly_tokens";
const SESSION_COLUMNS: &str = "token_sha256, user_id, method, created_at, expires_at";

fn user_of(r: &dyn Cells) -> anyhow::Result<StoredUser> {
    Ok(StoredUser {
        id: need(r.text(0)?, "users.id")?,
        name: need(r.text(1)?, "users.name")?,
        role: need(r.text(2)?, "users.role")?,
        created_at: need(r.int(3)?, "users.created_at")?,
        disabled_at: r.int(4)?,
        password_hash: r.text(5)?,
        totp_secret: r.text(6)?,
        max_keys: r.int(7)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        limits: super::Limits::read(r, 8)?,
    })
}

fn session_of(r: &dyn Cells) -> anyhow::Result<StoredSession> {
    Ok(StoredSession {
        token_sha256: need(r.text(0)?, "user_sessions.token_sha256")?,
        user_id: need(r.text(1)?, "user_sessions.user_id")?,
        method: need(r.text(2)?, "user_sessions.method")?,
        created_at: need(r.int(3)?, "user_sessions.created_at")?,
        expires_at: need(r.int(4)?, "user_sessions.expires_at")?,
    })
}

/// Users and sessions on the store's backend.
impl Store {
    /// Every user, oldest first.
    pub fn list_users(&self) -> anyhow::Result<Vec<StoredUser>> {
        self.query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"), vec![], user_of)
    }

    /// Whether any user exists (none: the gateway works as a single-user install, with no sign-in).
    pub fn any_user(&self) -> anyhow::Result<bool> {
        Ok(self.query_opt("SELECT count(*) FROM users", vec![], count)?.unwrap_or(0) > 0)
    }

    /// The user with this id or, failing that, this name.
    pub fn find_user(&self, id_or_name: &str) -> anyhow::Result<Option<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1");
        self.query_opt(&sql, vec![text(id_or_name)], user_of)
    }

    /// Insert a user; `false` when the name is taken (nothing written).
    pub fn insert_user(&self, u: &StoredUser) -> anyhow::Result<bool> {
        let sql = format!("{} ON CONFLICT (name) DO NOTHING", insert("users", USER_COLUMNS));
        Ok(self.exec(&sql, user_values(u))? == 1)
    }

    /// Write a user's role, disabled time, password hash, TOTP secret, key maximum and budget (the id, name and
    /// creation stay). Whether a user has this id.
    pub fn update_user(&self, u: &StoredUser) -> anyhow::Result<bool> {
        let sql = "UPDATE users SET role = ?3, disabled_at = ?5, password_hash = ?6, totp_secret = ?7, max_keys = ?8, \
                   rpm = ?9, concurrency = ?10, daily_tokens = ?11, monthly_tokens = ?12 \
                   WHERE id = ?1 AND name = ?2 AND created_at = ?4";
        Ok(self.exec(sql, user_values(u))? == 1)
    }

    /// Delete a user, its sessions and its single sign-on links (its keys are the caller's: users/manage.rs revokes them first).
    pub fn delete_user(&self, id: &str) -> anyhow::Result<bool> {
        self.exec("DELETE FROM user_sessions WHERE user_id = ?1", vec![text(id)])?;
        self.exec("DELETE FROM user_identities WHERE user_id = ?1", vec![text(id)])?;
        Ok(self.exec("DELETE FROM users WHERE id = ?1", vec![text(id)])? == 1)
    }

    /// The failed sign-ins of the user `id` (none: no such user).
    pub fn sign_in_failures(&self, id: &str) -> anyhow::Result<Option<SignInFailures>> {
        let sql = "SELECT failed_sign_ins, sign_in_wait_until FROM users WHERE id = ?1";
        self.query_opt(sql, vec![text(id)], failures_of)
    }

    /// Count one more failure of the user `id`, if the count is still `seen` (a compare-and-set: two attempts
    /// at once on two instances are not both let through on the same count). Whether it was counted.
    pub fn count_sign_in_failure(&self, id: &str, seen: u32, now: SignInFailures) -> anyhow::Result<bool> {
        let sql =
            "UPDATE users SET failed_sign_ins = ?3, sign_in_wait_until = ?4 WHERE id = ?1 AND failed_sign_ins = ?2";
        let values = vec![text(id), int(i64::from(seen)), int(i64::from(now.failures)), Val::Int(now.wait_until_ms)];
        Ok(self.exec(sql, values)? == 1)
    }

    /// Put back the count `before` of the user `id` if it is still `counted` (an attempt that was no failure).
    pub fn restore_sign_in_failures(&self, id: &str, counted: u32, before: SignInFailures) -> anyhow::Result<bool> {
        self.count_sign_in_failure(id, counted, before)
    }

    /// Forget the failed sign-ins of the user `id` (a sign-in, an admin's unlock). Whether there were any.
    pub fn clear_sign_in_failures(&self, id: &str) -> anyhow::Result<bool> {
        let sql = "UPDATE users SET failed_sign_ins = 0, sign_in_wait_until = NULL \
                   WHERE id = ?1 AND (failed_sign_ins <> 0 OR sign_in_wait_until IS NOT NULL)";
        Ok(self.exec(sql, vec![text(id)])? == 1)
    }

    /// Every user with failed sign-ins: id and failures (the Users page, `users list`).
    pub fn all_sign_in_failures(&self) -> anyhow::Result<Vec<(String, SignInFailures)>> {
        let sql = "SELECT failed_sign_ins, sign_in_wait_until, id FROM users WHERE failed_sign_ins > 0";
        self.query(sql, vec![], |r| Ok((need(r.text(2)?, "users.id")?, failures_of(r)?)))
    }

    pub fn insert_session(&self, s: &StoredSession) -> anyhow::Result<()> {
        let sql = insert("user_sessions", SESSION_COLUMNS);
        let values =
            vec![text(&s.token_sha256), text(&s.user_id), text(&s.method), int(s.created_at), int(s.expires_at)];
        self.exec(&sql, values)?;
        Ok(())
    }

    /// Sessions that have not expired at `now` (unix seconds). A read only: the expired ones are deleted by
    /// [`Store::prune_sessions`] (on a team store by the leader alone, not by every instance at every re-read).
    pub fn live_sessions(&self, now: i64) -> anyhow::Result<Vec<StoredSession>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE expires_at > ?1");
        self.query(&sql, vec![int(now)], session_of)
    }

    /// Delete the sessions expired at `now`; how many. Only when there are some: on PostgreSQL any DELETE moves
    /// the change counter and every instance re-reads on it (a DELETE of nothing each round would have the team
    /// re-read for nothing).
    pub fn prune_sessions(&self, now: i64) -> anyhow::Result<u64> {
        let expired =
            self.query_opt("SELECT count(*) FROM user_sessions WHERE expires_at <= ?1", vec![int(now)], count)?;
        if expired.unwrap_or(0) == 0 {
            return Ok(0);
        }
        self.exec("DELETE FROM user_sessions WHERE expires_at <= ?1", vec![int(now)])
    }

    /// The session whose token hashes to `token_sha256`, unless it expired at `now`.
    pub fn find_session(&self, token_sha256: &str, now: i64) -> anyhow::Result<Option<StoredSession>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE token_sha256 = ?1 AND expires_at > ?2");
        self.query_opt(&sql, vec![text(token_sha256), int(now)], session_of)
    }

    /// End one session (sign-out). Whether it existed.
    pub fn delete_session(&self, token_sha256: &str) -> anyhow::Result<bool> {
        Ok(self.exec("DELETE FROM user_sessions WHERE token_sha256 = ?1", vec![text(token_sha256)])? == 1)
    }

    /// End every session of a user; how many there were.
    pub fn delete_sessions_of(&self, user_id: &str) -> anyhow::Result<u64> {
        self.exec("DELETE FROM user_sessions WHERE user_id = ?1", vec![text(user_id)])
    }
}

fn user_values(u: &StoredUser) -> Vec<Val> {
    let mut values = vec![
        text(&u.id),
        text(&u.name),
        text(&u.role),
        int(u.created_at),
        Val::Int(u.disabled_at),
        opt(u.password_hash.as_deref()),
        opt(u.totp_secret.as_deref()),
        Val::Int(u.max_keys.map(i64::from)),
    ];
    values.extend(u.limits.values());
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_sessions_round_trip_on_sqlite() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-users-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        assert!(!store.any_user()?);
        let mut u = StoredUser {
            id: "usr_1".into(),
            name: "ana@example.com".into(),
            role: "member".into(),
            created_at: 10,
            disabled_at: None,
            password_hash: Some("$argon2id$...".into()),
            totp_secret: None,
            max_keys: Some(3),
            limits: crate::store::Limits { daily_tokens: Some(1000), ..Default::default() },
        };
        assert!(store.insert_user(&u)?);
        assert!(!store.insert_user(&StoredUser { id: "usr_2".into(), ..u.clone() })?, "a name is one user's");
        u.role = "viewer".into();
        u.totp_secret = Some("JBSWY3DPEHPK3PXP".into());
        assert!(store.update_user(&u)?);
        assert_eq!(store.find_user("ana@example.com")?, Some(u.clone()));
        assert_eq!(store.find_user("usr_1")?, Some(u.clone()));
        let s = StoredSession {
            token_sha256: "ab".repeat(32),
            user_id: u.id.clone(),
            method: "password".into(),
            created_at: 10,
            expires_at: 100,
        };
        store.insert_session(&s)?;
        assert_eq!(store.find_session(&s.token_sha256, 50)?, Some(s.clone()));
        assert_eq!(store.find_session(&s.token_sha256, 100)?, None, "expired");
        assert_eq!(store.live_sessions(50)?, vec![s.clone()]);
        assert!(store.delete_user(&u.id)?);
        assert_eq!(store.live_sessions(50)?, vec![]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
