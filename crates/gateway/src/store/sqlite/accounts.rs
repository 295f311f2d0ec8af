//! The `accounts` table in the SQLite file: rows in and out, and the token commit (`synchronous=FULL`, see
//! `mod.rs`).

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::store::{AccountKind, AccountStatus, StoredAccount, Tokens};

impl SqliteStore {
    pub fn list_accounts(&self) -> anyhow::Result<Vec<StoredAccount>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token, api_key,
                    base_url, last_refresh, status, status_reason, created_at, proxy, models, policy FROM accounts ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], row_to_account)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn get_account(&self, id: &str) -> anyhow::Result<Option<StoredAccount>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token, api_key,
                    base_url, last_refresh, status, status_reason, created_at, proxy, models, policy FROM accounts WHERE id = ?1",
        )?;
        Ok(stmt.query_row([id], row_to_account).optional()?)
    }

    /// Insert or replace an account (import, login).
    pub fn upsert_account(&self, a: &StoredAccount) -> anyhow::Result<()> {
        // A row read with a kind this build does not know is never written back (it would lose the kind).
        anyhow::ensure!(a.kind != AccountKind::Unrecognized, "account {} has a kind this build cannot store", a.id);
        let conn = self.conn.lock();
        let t = a.tokens.as_ref();
        conn.execute(
            "INSERT INTO accounts (id, kind, label, email, plan, chatgpt_account_id, id_token, access_token, refresh_token,
                                   api_key, base_url, last_refresh, status, status_reason, created_at, proxy, models,
                                   policy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, COALESCE(?18, 'normal'))
             ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, label=COALESCE(excluded.label, accounts.label),
                email=excluded.email, plan=excluded.plan, chatgpt_account_id=excluded.chatgpt_account_id,
                id_token=excluded.id_token, access_token=excluded.access_token, refresh_token=excluded.refresh_token,
                api_key=excluded.api_key, base_url=excluded.base_url, last_refresh=excluded.last_refresh,
                status=excluded.status, status_reason=excluded.status_reason, proxy=excluded.proxy,
                models=excluded.models, policy=COALESCE(?18, accounts.policy)",
            params![
                a.id,
                a.kind.as_str(),
                a.label,
                a.email,
                a.plan,
                t.map(|t| t.account_id.clone()),
                t.map(|t| t.id_token.clone()),
                t.map(|t| t.access_token.clone()),
                t.map(|t| t.refresh_token.clone()),
                a.api_key,
                a.base_url,
                t.map(|t| t.last_refresh).unwrap_or(0),
                a.status.as_str(),
                a.status_reason,
                a.created_at,
                a.proxy,
                a.models.as_ref().and_then(|m| serde_json::to_string(m).ok()),
                a.policy,
            ],
        )?;
        Ok(())
    }

    /// Commit rotated tokens. Called the moment the token endpoint answers, before anything uses them.
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "UPDATE accounts SET id_token=?2, access_token=?3, refresh_token=?4, chatgpt_account_id=?5, last_refresh=?6,
                    status='active', status_reason=NULL WHERE id=?1",
            params![id, t.id_token, t.access_token, t.refresh_token, t.account_id, t.last_refresh],
        )?;
        anyhow::ensure!(n == 1, "account {id} is not in the store");
        Ok(())
    }

    pub fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("UPDATE accounts SET label=?2 WHERE id=?1", params![id, label])? == 1)
    }

    pub fn set_proxy(&self, id: &str, proxy: Option<&str>) -> anyhow::Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("UPDATE accounts SET proxy=?2 WHERE id=?1", params![id, proxy])? == 1)
    }

    pub fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("UPDATE accounts SET policy=?2 WHERE id=?1", params![id, policy])? == 1)
    }

    pub fn remove_account(&self, id: &str) -> anyhow::Result<bool> {
        let conn = self.conn.lock();
        Ok(conn.execute("DELETE FROM accounts WHERE id=?1", params![id])? == 1)
    }

    /// The account's installation id: the one it has, or `fresh` written as its first (a random UUID made by the
    /// caller). Made once and kept: it never changes across restarts, and no two accounts share one.
    pub fn installation_id(&self, id: &str, fresh: &str) -> anyhow::Result<Option<String>> {
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE accounts SET installation_id=?2 WHERE id=?1 AND installation_id IS NULL",
            params![id, fresh],
        )?;
        let found =
            conn.query_row("SELECT installation_id FROM accounts WHERE id=?1", params![id], |r| r.get(0)).optional()?;
        Ok(found.flatten())
    }

    pub fn set_status(&self, id: &str, status: AccountStatus, reason: Option<&str>) -> anyhow::Result<()> {
        let conn = self.conn.lock();
        conn.execute(
            "UPDATE accounts SET status=?2, status_reason=?3 WHERE id=?1",
            params![id, status.as_str(), reason],
        )?;
        Ok(())
    }
}

/// One row as a [`StoredAccount`]. A row whose kind or status cannot be read is still returned, as
/// [`AccountStatus::Unrecognized`] with the parse error as its reason: failing the whole read would take every
/// account out of service for one bad row, and skipping the row would hide it. The pool never serves it and logs
/// it (`Pool::reload`).
fn row_to_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAccount> {
    // An unknown kind wins over the status: whatever the status says, the account cannot be used.
    let (kind, status, status_reason) =
        match (AccountKind::parse(&r.get::<_, String>(1)?), AccountStatus::parse(&r.get::<_, String>(12)?)) {
            (Err(e), _) => (AccountKind::Unrecognized, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Err(e)) => (kind, AccountStatus::Unrecognized, Some(format!("{e} in the store"))),
            (Ok(kind), Ok(status)) => (kind, status, r.get(13)?),
        };
    let refresh: Option<String> = r.get(8)?;
    let access: Option<String> = r.get(7)?;
    let tokens = match (kind, access, refresh) {
        (AccountKind::Chatgpt, Some(access_token), Some(refresh_token)) => Some(Tokens {
            id_token: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            access_token,
            refresh_token,
            account_id: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            last_refresh: r.get(11)?,
        }),
        _ => None,
    };
    Ok(StoredAccount {
        id: r.get(0)?,
        kind,
        label: r.get(2)?,
        email: r.get(3)?,
        plan: r.get(4)?,
        tokens,
        api_key: r.get(9)?,
        base_url: r.get(10)?,
        status,
        status_reason,
        created_at: r.get(14)?,
        proxy: r.get(15)?,
        models: r.get::<_, Option<String>>(16)?.and_then(|m| serde_json::from_str(&m).ok()),
        policy: Some(r.get(17)?),
    })
}

#[cfg(test)]
mod tests {
    use crate::store::{AccountKind, AccountStatus, Store, StoredAccount, Tokens};

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
        store
            .file
            .conn
            .lock()
            .execute("UPDATE accounts SET status='paused', status_reason='by v9' WHERE id='k'", [])?;
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
        store.file.conn.lock().execute("UPDATE accounts SET kind='passkey' WHERE id='p'", [])?;
        let back = store.get_account("p")?.ok_or_else(|| anyhow::anyhow!("missing"))?;
        assert_eq!((back.kind, back.status), (AccountKind::Unrecognized, AccountStatus::Unrecognized));
        assert_eq!(back.status_reason.as_deref(), Some(r#"unknown account kind "passkey" in the store"#));
        assert!(back.tokens.is_none(), "no credentials are handed out for it");
        let listed = store.list_accounts()?;
        assert_eq!(listed.len(), 1, "the row is listed, not dropped");
        assert_eq!(listed[0].kind, AccountKind::Unrecognized);
        assert!(store.upsert_account(&back).is_err(), "a row read as unrecognized is never written back");
        let raw: (String, String, Option<String>, Option<String>) = store.file.conn.lock().query_row(
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
