//! The `users` and `user_sessions` tables (users/ decides what they mean): people who sign in to the dashboard
//! and the admin API, each with a role, and the sessions they hold. One DDL text for both backends, like the
//! accounts' columns; the statements are written once with `?N` placeholders, which PostgreSQL reads as `$N`.
//! Secrets stay hashed where they can: a password as its argon2id PHC string, a session as the SHA-256 of its
//! token. A TOTP secret has to be readable to check a code, so it is stored as the accounts' tokens are.
//!
//! On PostgreSQL a write to either table bumps the change counter every instance follows
//! (`postgres/watch.rs`), so a session ended or a user disabled on one instance is refused on the others at
//! their next poll.

use super::{Backend, Store};

/// Migration 13 (SQLite) and 15 (PostgreSQL): users, their sessions, and who owns a client key (`NULL`: the
/// gateway, as for every key made before users existed).
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

/// Migration 16 (PostgreSQL only): users and sessions move the change counter, as accounts and keys do (a key's
/// owner is a column of `client_keys`, whose trigger already moves it).
pub(crate) const POSTGRES_TRIGGERS: &str = "
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TRIGGER user_sessions_changed AFTER INSERT OR UPDATE OR DELETE ON user_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
";

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
    /// The user's budget across all their keys: a key's kinds of limit (migration 14 / 17, store/attribution.rs).
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

/// A bound value (oauth.rs binds its own the same way).
pub(super) enum Val {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Val {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        match self {
            Val::Text(s) => s,
            Val::Int(i) => i,
        }
    }

    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Val::Text(s) => s,
            Val::Int(i) => i,
        }
    }
}

pub(super) fn text(s: &str) -> Val {
    Val::Text(Some(s.to_string()))
}

const USER_COLUMNS: &str = "id, name, role, created_at, disabled_at, password_hash, totp_secret, max_keys, rpm, \
                            concurrency, daily_tokens, monthly_tokens";
const SESSION_COLUMNS: &str = "token_sha256, user_id, method, created_at, expires_at";

/// A row read from either backend, by column index.
pub(super) trait Cells {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>>;
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>>;
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.get(i)?)
    }
}

impl Cells for tokio_postgres::Row {
    fn text(&self, i: usize) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
}

pub(super) fn need<T>(v: Option<T>, what: &str) -> anyhow::Result<T> {
    v.ok_or_else(|| anyhow::anyhow!("{what} is NULL"))
}

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
        limits: super::Limits {
            rpm: r.int(8)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            concurrency: r.int(9)?.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            daily_tokens: r.int(10)?.map(|n| u64::try_from(n).unwrap_or(0)),
            monthly_tokens: r.int(11)?.map(|n| u64::try_from(n).unwrap_or(0)),
        },
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
        self.users_query(format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, id"), vec![], user_of)
    }

    /// Whether any user exists (none: the gateway works as a single-user install, with no sign-in).
    pub fn any_user(&self) -> anyhow::Result<bool> {
        let n = self.users_query("SELECT count(*) FROM users".into(), vec![], |r| need(r.int(0)?, "count"))?;
        Ok(n.first().copied().unwrap_or(0) > 0)
    }

    /// The user with this id or, failing that, this name.
    pub fn find_user(&self, id_or_name: &str) -> anyhow::Result<Option<StoredUser>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1 OR name = ?1 ORDER BY id = ?1 DESC LIMIT 1");
        Ok(self.users_query(sql, vec![text(id_or_name)], user_of)?.into_iter().next())
    }

    /// Insert a user; `false` when the name is taken (nothing written).
    pub fn insert_user(&self, u: &StoredUser) -> anyhow::Result<bool> {
        let sql = format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (name) DO NOTHING"
        );
        Ok(self.users_exec(sql, user_values(u))? == 1)
    }

    /// Write a user's role, disabled time, password hash, TOTP secret, key maximum and budget (the id, name and
    /// creation stay). Whether a user has this id.
    pub fn update_user(&self, u: &StoredUser) -> anyhow::Result<bool> {
        let sql = "UPDATE users SET role = ?3, disabled_at = ?5, password_hash = ?6, totp_secret = ?7, max_keys = ?8, \
                   rpm = ?9, concurrency = ?10, daily_tokens = ?11, monthly_tokens = ?12 \
                   WHERE id = ?1 AND name = ?2 AND created_at = ?4";
        Ok(self.users_exec(sql.into(), user_values(u))? == 1)
    }

    /// Delete a user, its sessions and its single sign-on links (its keys are the caller's: users/manage.rs revokes them first).
    pub fn delete_user(&self, id: &str) -> anyhow::Result<bool> {
        self.users_exec("DELETE FROM user_sessions WHERE user_id = ?1".into(), vec![text(id)])?;
        self.users_exec("DELETE FROM user_identities WHERE user_id = ?1".into(), vec![text(id)])?;
        Ok(self.users_exec("DELETE FROM users WHERE id = ?1".into(), vec![text(id)])? == 1)
    }

    pub fn insert_session(&self, s: &StoredSession) -> anyhow::Result<()> {
        let sql = format!("INSERT INTO user_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)");
        let values = vec![
            text(&s.token_sha256),
            text(&s.user_id),
            text(&s.method),
            Val::Int(Some(s.created_at)),
            Val::Int(Some(s.expires_at)),
        ];
        self.users_exec(sql, values)?;
        Ok(())
    }

    /// Sessions that have not expired at `now` (unix seconds); expired ones are deleted on the way, only when
    /// there are some: on PostgreSQL any DELETE moves the change counter, and every instance re-reads on it (a
    /// DELETE of nothing at each re-read would have them re-read each other forever).
    pub fn live_sessions(&self, now: i64) -> anyhow::Result<Vec<StoredSession>> {
        let expired = self.users_query(
            "SELECT count(*) FROM user_sessions WHERE expires_at <= ?1".into(),
            vec![Val::Int(Some(now))],
            |r| need(r.int(0)?, "count"),
        )?;
        if expired.first().copied().unwrap_or(0) > 0 {
            self.users_exec("DELETE FROM user_sessions WHERE expires_at <= ?1".into(), vec![Val::Int(Some(now))])?;
        }
        let sql = format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE expires_at > ?1");
        self.users_query(sql, vec![Val::Int(Some(now))], session_of)
    }

    /// The session whose token hashes to `token_sha256`, unless it expired at `now`.
    pub fn find_session(&self, token_sha256: &str, now: i64) -> anyhow::Result<Option<StoredSession>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM user_sessions WHERE token_sha256 = ?1 AND expires_at > ?2");
        let rows = self.users_query(sql, vec![text(token_sha256), Val::Int(Some(now))], session_of)?;
        Ok(rows.into_iter().next())
    }

    /// End one session (sign-out). Whether it existed.
    pub fn delete_session(&self, token_sha256: &str) -> anyhow::Result<bool> {
        Ok(self.users_exec("DELETE FROM user_sessions WHERE token_sha256 = ?1".into(), vec![text(token_sha256)])? == 1)
    }

    /// End every session of a user; how many there were.
    pub fn delete_sessions_of(&self, user_id: &str) -> anyhow::Result<u64> {
        self.users_exec("DELETE FROM user_sessions WHERE user_id = ?1".into(), vec![text(user_id)])
    }

    /// Rows changed by `sql`.
    pub(super) fn users_exec(&self, sql: String, values: Vec<Val>) -> anyhow::Result<u64> {
        match &self.backend {
            Backend::Sqlite => self.with_conn(|c| {
                let n = c.execute(&sql, rusqlite::params_from_iter(values.iter().map(Val::sqlite)))?;
                Ok(n as u64)
            }),
            Backend::Postgres(pg) => {
                let pool = pg.pool();
                pg.block(async move {
                    let client = pool.get().await?;
                    let params: Vec<_> = values.iter().map(Val::postgres).collect();
                    Ok(client.execute(&sql.replace('?', "$"), &params).await?)
                })
            }
        }
    }

    pub(super) fn users_query<T: Send + 'static>(
        &self,
        sql: String,
        values: Vec<Val>,
        map: fn(&dyn Cells) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        match &self.backend {
            Backend::Sqlite => {
                let mut out = Vec::new();
                let mut failed = None;
                self.with_conn(|c| {
                    let mut stmt = c.prepare(&sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(values.iter().map(Val::sqlite)))?;
                    while let Some(r) = rows.next()? {
                        match map(r) {
                            Ok(v) => out.push(v),
                            Err(e) => failed = Some(e),
                        }
                    }
                    Ok(())
                })?;
                failed.map_or(Ok(out), Err)
            }
            Backend::Postgres(pg) => {
                let pool = pg.pool();
                pg.block(async move {
                    let client = pool.get().await?;
                    let params: Vec<_> = values.iter().map(Val::postgres).collect();
                    let rows = client.query(&sql.replace('?', "$"), &params).await?;
                    rows.iter().map(|r| map(r)).collect()
                })
            }
        }
    }
}

fn user_values(u: &StoredUser) -> Vec<Val> {
    vec![
        text(&u.id),
        text(&u.name),
        text(&u.role),
        Val::Int(Some(u.created_at)),
        Val::Int(u.disabled_at),
        Val::Text(u.password_hash.clone()),
        Val::Text(u.totp_secret.clone()),
        Val::Int(u.max_keys.map(i64::from)),
        Val::Int(u.limits.rpm.map(i64::from)),
        Val::Int(u.limits.concurrency.map(i64::from)),
        Val::Int(u.limits.daily_tokens.map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
        Val::Int(u.limits.monthly_tokens.map(|n| i64::try_from(n).unwrap_or(i64::MAX))),
    ]
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
