//! Single sign-on in the store (users/oidc/, dashboard/sso.rs): `user_identities` links a provider's user
//! (issuer and subject, the pair OpenID Connect Core 1.0 section 2 says identifies them) to a gateway user, and
//! `sso_pending` keeps each sign-in started but not finished (its nonce, PKCE verifier and redirect URI, found by
//! the SHA-256 of its state), so the provider's answer may come back to any instance of a team. A pending row is
//! taken (deleted) by the one callback that finds it: a replayed state finds nothing. One DDL text for both
//! backends, as store/users.rs.

use super::Store;
use super::sql::{Cells, count, insert, int, need, text};

/// Migration 21.
pub(crate) const SCHEMA: &str = "
CREATE TABLE user_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);
CREATE TABLE sso_pending (
    state_sha256 TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
";

/// Sign-ins started and not finished that the store keeps at once: beyond it a start is refused (the start page
/// needs no login, so this bounds what anonymous visitors can make the store hold).
pub const MAX_PENDING: i64 = 10_000;

/// A sign-in started (the state itself is only in the browser's cookie and the provider's redirect).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub state_sha256: String,
    pub nonce: String,
    /// The PKCE code verifier (RFC 7636).
    pub verifier: String,
    pub redirect_uri: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn").field("expires_at", &self.expires_at).finish()
    }
}

/// One row of `user_identities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub created_at: i64,
}

fn identity_of(r: &dyn Cells) -> anyhow::Result<Identity> {
    Ok(Identity {
        issuer: need(r.text(0)?, "user_identities.issuer")?,
        subject: need(r.text(1)?, "user_identities.subject")?,
        user_id: need(r.text(2)?, "user_identities.user_id")?,
        created_at: need(r.int(3)?, "user_identities.created_at")?,
    })
}

const PENDING_COLUMNS: &str = "state_sha256, nonce, verifier, redirect_uri, expires_at";

fn pending_of(r: &dyn Cells) -> anyhow::Result<PendingSignIn> {
    Ok(PendingSignIn {
        state_sha256: need(r.text(0)?, "sso_pending.state_sha256")?,
        nonce: need(r.text(1)?, "sso_pending.nonce")?,
        verifier: need(r.text(2)?, "sso_pending.verifier")?,
        redirect_uri: need(r.text(3)?, "sso_pending.redirect_uri")?,
        expires_at: need(r.int(4)?, "sso_pending.expires_at")?,
    })
}

impl Store {
    /// Keep a sign-in started; expired ones are dropped first. `false` (nothing written) when
    /// [`MAX_PENDING`] are already waiting.
    pub fn insert_pending_sign_in(&self, p: &PendingSignIn, now: i64) -> anyhow::Result<bool> {
        self.exec("DELETE FROM sso_pending WHERE expires_at <= ?1", vec![int(now)])?;
        if self.query_opt("SELECT count(*) FROM sso_pending", vec![], count)?.unwrap_or(0) >= MAX_PENDING {
            return Ok(false);
        }
        let values =
            vec![text(&p.state_sha256), text(&p.nonce), text(&p.verifier), text(&p.redirect_uri), int(p.expires_at)];
        Ok(self.exec(&insert("sso_pending", PENDING_COLUMNS), values)? == 1)
    }

    /// Take the sign-in whose state hashes to `state_sha256`: deleted as it is read, so only one callback gets
    /// it. `None` when there is none (never started, already taken) or it expired at `now`.
    pub fn take_pending_sign_in(&self, state_sha256: &str, now: i64) -> anyhow::Result<Option<PendingSignIn>> {
        let sql = format!("DELETE FROM sso_pending WHERE state_sha256 = ?1 RETURNING {PENDING_COLUMNS}");
        Ok(self.query_opt(&sql, vec![text(state_sha256)], pending_of)?.filter(|p| p.expires_at > now))
    }

    /// The gateway user linked to the provider's user `subject` at `issuer`.
    pub fn find_identity(&self, issuer: &str, subject: &str) -> anyhow::Result<Option<String>> {
        let sql = "SELECT user_id FROM user_identities WHERE issuer = ?1 AND subject = ?2";
        self.query_opt(sql, vec![text(issuer), text(subject)], |r| need(r.text(0)?, "user_id"))
    }

    /// Every link (`store migrate` copies them).
    pub fn list_identities(&self) -> anyhow::Result<Vec<Identity>> {
        let sql = "SELECT issuer, subject, user_id, created_at FROM user_identities ORDER BY created_at";
        self.query(sql, vec![], identity_of)
    }

    /// Link the provider's user to `user_id`, replacing a link to a user that no longer exists. Whether it was
    /// written.
    pub fn link_identity(&self, issuer: &str, subject: &str, user_id: &str, now: i64) -> anyhow::Result<bool> {
        let sql = "INSERT INTO user_identities (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                   ON CONFLICT (issuer, subject) DO UPDATE SET user_id = excluded.user_id, created_at = excluded.created_at";
        let values = vec![text(issuer), text(subject), text(user_id), int(now)];
        Ok(self.exec(sql, values)? >= 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_sign_ins_are_taken_once_and_identities_link() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-sso-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let p = PendingSignIn {
            state_sha256: "ab".repeat(32),
            nonce: "n".into(),
            verifier: "v".repeat(43),
            redirect_uri: "http://127.0.0.1/dashboard/sso/callback".into(),
            expires_at: 100,
        };
        assert!(store.insert_pending_sign_in(&p, 10)?);
        assert_eq!(store.take_pending_sign_in(&p.state_sha256, 50)?, Some(p.clone()));
        assert_eq!(store.take_pending_sign_in(&p.state_sha256, 50)?, None, "taken once");
        assert!(store.insert_pending_sign_in(&p, 10)?);
        assert_eq!(store.take_pending_sign_in(&p.state_sha256, 100)?, None, "expired");
        assert_eq!(store.find_identity("https://idp", "sub-1")?, None);
        assert!(store.link_identity("https://idp", "sub-1", "usr_1", 10)?);
        assert!(store.link_identity("https://idp", "sub-1", "usr_2", 11)?);
        assert_eq!(store.find_identity("https://idp", "sub-1")?.as_deref(), Some("usr_2"));
        assert_eq!(store.find_identity("https://other", "sub-1")?, None);
        let all = store.list_identities()?;
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].user_id.as_str(), all[0].created_at), ("usr_2", 11));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
