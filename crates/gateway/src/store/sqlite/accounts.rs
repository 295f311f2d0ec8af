//! How the `accounts` table in the SQLite file reads rows this build does not know (tests).

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
