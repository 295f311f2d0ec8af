//! Budgets of users (docs/configuration.md, "User budgets"): the limits an admin sets on a user, held across
//! every request made for the user whichever of their keys it came with; the same counters as a key's, kept,
//! charged, seeded and raised to the team's spend exactly as a key's.

use std::collections::HashMap;
use std::sync::Arc;

use super::limits::Limits;
use super::{KeyState, Keys, Snapshot, Whose};
use crate::auth::now_unix;
use crate::store::users::StoredUser;

/// A user's budget as requests see it.
#[derive(Debug)]
pub struct UserBudget {
    pub id: Arc<str>,
    pub name: String,
    pub limits: Limits,
    /// Kept across reloads (a changed budget applies to what the user already used).
    pub(super) state: Arc<KeyState>,
}

impl UserBudget {
    /// What `Keys::admit_all` checks for this user.
    pub(super) fn limited(&self) -> (Whose<'_>, &Limits, &Arc<KeyState>) {
        (Whose::User(&self.name), &self.limits, &self.state)
    }
}

/// The users of the next snapshot, each keeping the counters it had in `old`.
pub(super) fn budgets(old: &Snapshot, rows: Vec<StoredUser>) -> HashMap<Arc<str>, Arc<UserBudget>> {
    rows.into_iter()
        .map(|u| {
            let id: Arc<str> = u.id.as_str().into();
            let state = old.users.get(&id).map(|b| b.state.clone()).unwrap_or_default();
            (id.clone(), Arc::new(UserBudget { id, name: u.name, limits: u.limits, state }))
        })
        .collect()
}

impl Keys {
    /// The budget of the user with this id.
    pub fn user_budget(&self, id: &str) -> Option<Arc<UserBudget>> {
        self.snapshot.load().users.get(id).cloned()
    }

    /// A user as `/admin/users` and the Users page show one (`users::manage::summary`), with their budget's use on
    /// this instance's counters (raised to the team's spend once a second on a team store: team.rs).
    pub fn user_with_usage(&self, row: &StoredUser) -> serde_json::Value {
        let mut v = crate::users::manage::summary(row);
        if let Some(b) = self.user_budget(&row.id) {
            v["usage"] = b.state.usage(now_unix());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::manage::{KeySpec, Owner, create};
    use crate::store::Store;
    use crate::store::usage::Spender;

    /// Two keys of one user share the user's budget and rate; a key of another user does not.
    #[test]
    fn a_users_budget_holds_across_their_keys() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-user-budget-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::open(&dir.join("gateway.db"))?);
        let user = |id: &str, limits: Limits| StoredUser {
            id: id.into(),
            name: format!("{id}@example.com"),
            role: "member".into(),
            created_at: 1,
            disabled_at: None,
            password_hash: None,
            totp_secret: None,
            max_keys: None,
            limits,
        };
        store.insert_user(&user("usr_ana", Limits { daily_tokens: Some(100), rpm: Some(3), ..Default::default() }))?;
        store.insert_user(&user("usr_bob", Limits::default()))?;
        let key = |name: &str, owner: &str| {
            let owner = Owner { id: owner, name: owner, max_keys: None };
            create(&store, KeySpec { name: name.into(), ..Default::default() }, Some(owner), 1)
        };
        let (_, a1) = key("a1", "usr_ana")?;
        let (_, a2) = key("a2", "usr_ana")?;
        let (_, b1) = key("b1", "usr_bob")?;
        let keys = Keys::load(store.clone())?;
        let found = |s: &str| keys.find(s).ok_or_else(|| anyhow::anyhow!("key not found"));
        let (a1, a2, b1) = (found(&a1)?, found(&a2)?, found(&b1)?);
        // The rate is the user's: three requests over two keys, the fourth refused on either.
        for k in [&a1, &a2, &a1] {
            keys.admit(k, "gpt-5.4", "gpt-5.4").map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let refused = keys.admit(&a2, "gpt-5.4", "gpt-5.4").err().and_then(|e| e.code);
        assert_eq!(refused.as_deref(), Some("user_rate_limit_exceeded"));
        assert!(keys.admit(&b1, "gpt-5.4", "gpt-5.4").is_ok(), "another user's key is not held by it");
        // The budget: charged through one key, refused on the other.
        keys.charge(Spender::User, "usr_ana", 100);
        keys.reload()?;
        let over = keys.admit(&a2, "gpt-5.4", "gpt-5.4").err();
        assert_eq!(over.as_ref().and_then(|e| e.code.as_deref()), Some("user_daily_token_budget_exceeded"));
        assert!(over.is_some_and(|e| e.message.contains("ana@example.com") && e.message.contains("100 of 100")));
        assert_eq!(
            keys.user_budget("usr_ana").map(|u| u.state.usage(now_unix())["tokens_today"] == 100),
            Some(true),
            "kept by the reload"
        );
        assert_eq!(keys.budget_ids(Spender::User), vec![Arc::<str>::from("usr_ana")]);
        // A key whose owner is gone is refused at the next re-read, revoked or not.
        store.delete_user("usr_bob")?;
        keys.reload()?;
        assert!(!b1.revoked && keys.get(&b1.id).is_some_and(|k| k.revoked), "bob's key still usable");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
