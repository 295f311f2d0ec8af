//! The `oauth_grants` and `oauth_refresh_tokens` tables (oauth/ decides what they mean): the authorization codes
//! and device codes on their way to a token, and the refresh tokens the Codex CLI's gateway sign-in holds. Every
//! secret is kept as the SHA-256 of its value; the access tokens themselves are sessions of `user_sessions`
//! (users.rs), so whatever ends a user's sessions ends them too, and every instance follows them as it follows
//! sessions. Written once for both backends (`sql.rs`).

use super::Store;
use super::sql::{Cells, Val, insert, int, need, opt, text};

/// Migration 22: the gateway's OAuth authorization server for the Codex CLI (docs/dashboard.md, "The Codex CLI's
/// sign-in").
pub(crate) const SCHEMA: &str = "
CREATE TABLE oauth_grants (
    id_sha256 TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_code_sha256 TEXT,
    client_id TEXT NOT NULL,
    user_id TEXT,
    redirect_uri TEXT,
    code_challenge TEXT,
    scope TEXT,
    state TEXT NOT NULL,
    family TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    polled_at BIGINT
);
CREATE INDEX oauth_grants_user_code ON oauth_grants (user_code_sha256);
CREATE TABLE oauth_refresh_tokens (
    token_sha256 TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT,
    access_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX oauth_refresh_family ON oauth_refresh_tokens (family);
CREATE INDEX oauth_refresh_user ON oauth_refresh_tokens (user_id);
";

/// One row of `oauth_grants`: an authorization code (`kind = "code"`) or a device code (`"device"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    /// SHA-256 of the code or device code.
    pub id_sha256: String,
    pub kind: String,
    /// SHA-256 of the user code a device grant is approved with.
    pub user_code_sha256: Option<String>,
    pub client_id: String,
    /// Whose: set when made (a code) or approved (a device code).
    pub user_id: Option<String>,
    pub redirect_uri: Option<String>,
    /// The PKCE S256 challenge of a code.
    pub code_challenge: Option<String>,
    pub scope: Option<String>,
    /// `pending`, `approved`, `denied` or `used`.
    pub state: String,
    /// The refresh token family the grant's exchange started (revoked when the code comes back).
    pub family: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub polled_at: Option<i64>,
}

/// One row of `oauth_refresh_tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefresh {
    pub token_sha256: String,
    /// Every refresh token rotated from one grant shares it; a reused one revokes them all.
    pub family: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: Option<String>,
    /// SHA-256 of the access token issued with it (a session of `user_sessions`).
    pub access_sha256: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// How long a grant is kept past its expiry (each lives minutes): a used code that comes back meanwhile still
/// revokes what it was exchanged for (RFC 6749 §4.1.2), rather than being refused as unknown.
pub const GRANT_KEPT_SECS: i64 = 86_400;

/// What one [`Store::prune_expired_sign_ins`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub refresh_tokens: u64,
    pub grants: u64,
    pub sessions: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.refresh_tokens + self.grants + self.sessions
    }
}

const GRANT_COLUMNS: &str = "id_sha256, kind, user_code_sha256, client_id, user_id, redirect_uri, code_challenge, \
                             scope, state, family, created_at, expires_at, polled_at";
const REFRESH_COLUMNS: &str =
    "token_sha256, family, user_id, client_id, scope, access_sha256, created_at, expires_at, used_at";

fn grant_of(r: &dyn Cells) -> anyhow::Result<StoredGrant> {
    Ok(StoredGrant {
        id_sha256: need(r.text(0)?, "oauth_grants.id_sha256")?,
        kind: need(r.text(1)?, "oauth_grants.kind")?,
        user_code_sha256: r.text(2)?,
        client_id: need(r.text(3)?, "oauth_grants.client_id")?,
        user_id: r.text(4)?,
        redirect_uri: r.text(5)?,
        code_challenge: r.text(6)?,
        scope: r.text(7)?,
        state: need(r.text(8)?, "oauth_grants.state")?,
        family: r.text(9)?,
        created_at: need(r.int(10)?, "oauth_grants.created_at")?,
        expires_at: need(r.int(11)?, "oauth_grants.expires_at")?,
        polled_at: r.int(12)?,
    })
}

fn refresh_of(r: &dyn Cells) -> anyhow::Result<StoredRefresh> {
    Ok(StoredRefresh {
        token_sha256: need(r.text(0)?, "oauth_refresh_tokens.token_sha256")?,
        family: need(r.text(1)?, "oauth_refresh_tokens.family")?,
        user_id: need(r.text(2)?, "oauth_refresh_tokens.user_id")?,
        client_id: need(r.text(3)?, "oauth_refresh_tokens.client_id")?,
        scope: r.text(4)?,
        access_sha256: need(r.text(5)?, "oauth_refresh_tokens.access_sha256")?,
        created_at: need(r.int(6)?, "oauth_refresh_tokens.created_at")?,
        expires_at: need(r.int(7)?, "oauth_refresh_tokens.expires_at")?,
        used_at: r.int(8)?,
    })
}

/// The OAuth tables on the store's backend.
impl Store {
    /// Insert a code or device grant (old ones go in [`Store::prune_expired_sign_ins`], not here: a sign-in
    /// nobody starts again would keep them).
    pub fn insert_grant(&self, g: &StoredGrant) -> anyhow::Result<()> {
        let sql = insert("oauth_grants", GRANT_COLUMNS);
        let values = vec![
            text(&g.id_sha256),
            text(&g.kind),
            opt(g.user_code_sha256.as_deref()),
            text(&g.client_id),
            opt(g.user_id.as_deref()),
            opt(g.redirect_uri.as_deref()),
            opt(g.code_challenge.as_deref()),
            opt(g.scope.as_deref()),
            text(&g.state),
            opt(g.family.as_deref()),
            int(g.created_at),
            int(g.expires_at),
            Val::Int(g.polled_at),
        ];
        self.exec(&sql, values)?;
        Ok(())
    }

    /// The grant whose code or device code hashes to `id_sha256`.
    pub fn find_grant(&self, id_sha256: &str) -> anyhow::Result<Option<StoredGrant>> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id_sha256 = ?1");
        self.query_opt(&sql, vec![text(id_sha256)], grant_of)
    }

    /// The pending device grant whose user code hashes to `user_code_sha256`, unless it expired at `now`.
    pub fn find_device_by_user_code(&self, user_code_sha256: &str, now: i64) -> anyhow::Result<Option<StoredGrant>> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE user_code_sha256 = ?1 AND kind = 'device' \
             AND state = 'pending' AND expires_at > ?2"
        );
        self.query_opt(&sql, vec![text(user_code_sha256), int(now)], grant_of)
    }

    /// Move a grant from state `from` to `to` (with its user and family when given), in one statement: whether
    /// this call did it (two instances redeeming one code at once: one wins).
    pub fn move_grant(
        &self,
        id_sha256: &str,
        from: &str,
        to: &str,
        user_id: Option<&str>,
        family: Option<&str>,
    ) -> anyhow::Result<bool> {
        let sql = "UPDATE oauth_grants SET state = ?3, user_id = COALESCE(?4, user_id), family = COALESCE(?5, family) \
                   WHERE id_sha256 = ?1 AND state = ?2";
        let values = vec![text(id_sha256), text(from), text(to), opt(user_id), opt(family)];
        Ok(self.exec(sql, values)? == 1)
    }

    /// Note a device grant's poll (the `slow_down` answer compares the next one with it).
    pub fn note_poll(&self, id_sha256: &str, now: i64) -> anyhow::Result<()> {
        self.exec("UPDATE oauth_grants SET polled_at = ?2 WHERE id_sha256 = ?1", vec![text(id_sha256), int(now)])?;
        Ok(())
    }

    pub fn insert_refresh(&self, r: &StoredRefresh) -> anyhow::Result<()> {
        let sql = insert("oauth_refresh_tokens", REFRESH_COLUMNS);
        let values = vec![
            text(&r.token_sha256),
            text(&r.family),
            text(&r.user_id),
            text(&r.client_id),
            opt(r.scope.as_deref()),
            text(&r.access_sha256),
            int(r.created_at),
            int(r.expires_at),
            Val::Int(r.used_at),
        ];
        self.exec(&sql, values)?;
        Ok(())
    }

    pub fn find_refresh(&self, token_sha256: &str) -> anyhow::Result<Option<StoredRefresh>> {
        let sql = format!("SELECT {REFRESH_COLUMNS} FROM oauth_refresh_tokens WHERE token_sha256 = ?1");
        self.query_opt(&sql, vec![text(token_sha256)], refresh_of)
    }

    /// Mark a refresh token used, in one statement, unless it was used already or expired at `now`: whether this
    /// call did it (a second presentation of the same token finds it used: a reuse).
    pub fn use_refresh(&self, token_sha256: &str, now: i64) -> anyhow::Result<bool> {
        let sql = "UPDATE oauth_refresh_tokens SET used_at = ?2 WHERE token_sha256 = ?1 AND used_at IS NULL \
                   AND expires_at > ?2";
        Ok(self.exec(sql, vec![text(token_sha256), int(now)])? == 1)
    }

    /// Revoke a family: its refresh tokens and the access tokens (sessions) issued with them. How many refresh
    /// tokens it held.
    pub fn revoke_family(&self, family: &str) -> anyhow::Result<u64> {
        self.exec(
            "DELETE FROM user_sessions WHERE token_sha256 IN \
             (SELECT access_sha256 FROM oauth_refresh_tokens WHERE family = ?1)",
            vec![text(family)],
        )?;
        self.exec("DELETE FROM oauth_refresh_tokens WHERE family = ?1", vec![text(family)])
    }

    /// Delete what expired at `now` (unix seconds), in three statements: refresh tokens past their expiry (one
    /// presented later is refused as unknown rather than as expired: `invalid_grant` either way), grants
    /// [`GRANT_KEPT_SECS`] past theirs, and the expired sessions, access tokens included ([`Store::prune_sessions`]).
    /// Run every few minutes by the leader of a team, always on the SQLite file (users/prune.rs).
    pub fn prune_expired_sign_ins(&self, now: i64) -> anyhow::Result<Pruned> {
        Ok(Pruned {
            refresh_tokens: self.exec("DELETE FROM oauth_refresh_tokens WHERE expires_at <= ?1", vec![int(now)])?,
            grants: self.exec("DELETE FROM oauth_grants WHERE expires_at < ?1", vec![int(now - GRANT_KEPT_SECS)])?,
            sessions: self.prune_sessions(now)?,
        })
    }

    /// Revoke every refresh token of a user (disabled, removed, a new password); their access tokens are sessions,
    /// which the caller ends with the others.
    pub fn revoke_refresh_of(&self, user_id: &str) -> anyhow::Result<u64> {
        self.exec("DELETE FROM oauth_refresh_tokens WHERE user_id = ?1", vec![text(user_id)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::StoredSession;

    #[test]
    fn grants_move_once_and_a_family_goes_with_its_sessions() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-oauth-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let g = StoredGrant {
            id_sha256: "aa".repeat(32),
            kind: "code".into(),
            user_code_sha256: None,
            client_id: "codex-cli".into(),
            user_id: Some("usr_1".into()),
            redirect_uri: Some("http://127.0.0.1:1455/callback".into()),
            code_challenge: Some("x".into()),
            scope: None,
            state: "pending".into(),
            family: None,
            created_at: 100,
            expires_at: 160,
            polled_at: None,
        };
        store.insert_grant(&g)?;
        assert!(store.move_grant(&g.id_sha256, "pending", "used", None, Some("fam"))?);
        assert!(!store.move_grant(&g.id_sha256, "pending", "used", None, None)?, "a code is redeemed once");
        assert_eq!(store.find_grant(&g.id_sha256)?.and_then(|g| g.family), Some("fam".into()));
        let session = StoredSession {
            token_sha256: "bb".repeat(32),
            user_id: "usr_1".into(),
            method: "oauth".into(),
            created_at: 100,
            expires_at: 200,
        };
        store.insert_session(&session)?;
        let r = StoredRefresh {
            token_sha256: "cc".repeat(32),
            family: "fam".into(),
            user_id: "usr_1".into(),
            client_id: "codex-cli".into(),
            scope: None,
            access_sha256: session.token_sha256.clone(),
            created_at: 100,
            expires_at: 1000,
            used_at: None,
        };
        store.insert_refresh(&r)?;
        assert!(store.use_refresh(&r.token_sha256, 150)?);
        assert!(!store.use_refresh(&r.token_sha256, 151)?, "used once");
        assert_eq!(store.revoke_family("fam")?, 1);
        assert_eq!(store.find_session(&session.token_sha256, 150)?, None, "its access token went with it");
        assert_eq!(store.find_refresh(&r.token_sha256)?, None);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn a_prune_deletes_expired_refresh_tokens_old_grants_and_expired_sessions_only() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-oauth-prune-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let now = 1_000_000;
        let grant = |id: &str, expires_at: i64| StoredGrant {
            id_sha256: id.repeat(32),
            kind: "device".into(),
            user_code_sha256: None,
            client_id: "codex-cli".into(),
            user_id: None,
            redirect_uri: None,
            code_challenge: None,
            scope: None,
            state: "pending".into(),
            family: None,
            created_at: expires_at - 600,
            expires_at,
            polled_at: None,
        };
        let refresh = |id: &str, expires_at: i64| StoredRefresh {
            token_sha256: id.repeat(32),
            family: "fam".into(),
            user_id: "usr_1".into(),
            client_id: "codex-cli".into(),
            scope: None,
            access_sha256: "00".repeat(32),
            created_at: 0,
            expires_at,
            used_at: None,
        };
        let session = |id: &str, expires_at: i64| StoredSession {
            token_sha256: id.repeat(32),
            user_id: "usr_1".into(),
            method: "oauth".into(),
            created_at: 0,
            expires_at,
        };
        // Gone: a grant more than a day past its expiry, a refresh token and a session past theirs.
        store.insert_grant(&grant("g1", now - GRANT_KEPT_SECS - 1))?;
        store.insert_refresh(&refresh("r1", now))?;
        store.insert_session(&session("s1", now))?;
        // Kept: a grant that expired within the day, live ones.
        store.insert_grant(&grant("g2", now - 60))?;
        store.insert_grant(&grant("g3", now + 60))?;
        store.insert_refresh(&refresh("r2", now + 1))?;
        store.insert_session(&session("s2", now + 1))?;
        let pruned = store.prune_expired_sign_ins(now)?;
        assert_eq!(pruned, Pruned { refresh_tokens: 1, grants: 1, sessions: 1 });
        assert_eq!(store.find_grant(&"g1".repeat(32))?, None);
        assert!(store.find_grant(&"g2".repeat(32))?.is_some() && store.find_grant(&"g3".repeat(32))?.is_some());
        assert_eq!(store.find_refresh(&"r1".repeat(32))?, None);
        assert!(store.find_refresh(&"r2".repeat(32))?.is_some());
        assert_eq!(store.find_session(&"s1".repeat(32), now - 1)?, None, "deleted, not only expired");
        assert!(store.find_session(&"s2".repeat(32), now)?.is_some());
        assert_eq!(store.prune_expired_sign_ins(now)?.total(), 0, "nothing left to prune");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
