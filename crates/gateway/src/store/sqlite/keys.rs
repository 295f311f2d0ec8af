//! The `client_keys` table in the SQLite file (tests).

#[cfg(test)]
mod tests {
    use crate::store::{Limits, Store, StoredKey};

    #[test]
    fn keys_round_trip() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-keys-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let mut k = StoredKey {
            id: "key_1".into(),
            name: "ci".into(),
            prefix: "cgw_abcd".into(),
            secret_sha256: "00".repeat(32),
            models: Some(vec!["gpt-5".into()]),
            limits: Limits { rpm: Some(60), concurrency: None, daily_tokens: Some(1_000), monthly_tokens: None },
            expires_at: Some(1_800_000_000),
            created_at: 1_700_000_000,
            revoked_at: None,
            suspended: None,
            opportunistic: true,
            owner: Some("usr_1".into()),
        };
        store.insert_key(&k)?;
        assert_eq!(store.get_key("key_1")?.as_ref(), Some(&k));
        k.revoked_at = Some(1_700_000_100);
        k.opportunistic = false;
        k.models = None;
        k.limits.daily_tokens = None;
        assert!(store.update_key(&k)?);
        assert_eq!(store.list_keys()?, vec![k.clone()]);
        // A suspension is its own write, which an update of the rest leaves alone.
        let suspension = crate::store::Suspension { at: 1_700_000_200, reason: "policy".into() };
        assert!(store.set_key_suspension("key_1", Some(&suspension))?);
        assert!(store.update_key(&k)?);
        assert_eq!(store.get_key("key_1")?.and_then(|k| k.suspended), Some(suspension));
        assert!(store.set_key_suspension("key_1", None)?);
        assert_eq!(store.list_keys()?, vec![k]);
        assert!(!store.set_key_suspension("nope", None)?);
        assert!(store.get_key("nope")?.is_none());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
