//! Creating and changing users in the store, shared by the admin API, the dashboard and the CLI. Disabling or
//! removing a user ends their sessions and revokes their keys in the store, so every instance refuses them.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_MAX_KEYS, Role, password, totp};
use crate::store::Store;
use crate::store::users::StoredUser;

/// Longest user name.
const MAX_NAME: usize = 200;
/// Most keys an admin may allow one user.
const MAX_MAX_KEYS: u32 = 1000;

/// Why a user could not be created or changed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("no user `{0}`")]
    NotFound(String),
    #[error("a user is already named `{0}`")]
    NameTaken(String),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// `POST /admin/users`, `users add`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub role: String,
    pub password: Option<String>,
    pub max_keys: Option<u32>,
}

/// A present field (even `null`) is `Some`; a missing one stays `None` through `#[serde(default)]` (a key's
/// patch reads its fields so too).
pub(crate) fn some<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `PATCH /admin/users/{id}`: a field left out stays; a budget's limit set to `null` is removed (as a key's).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<String>,
    pub disabled: Option<bool>,
    pub max_keys: Option<u32>,
    /// The user's budget across all their keys (keys/users.rs).
    #[serde(default, deserialize_with = "some")]
    pub rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    pub concurrency: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    pub daily_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub monthly_tokens: Option<Option<u64>>,
}

impl UserPatch {
    /// Whether the patch changes the budget (the audit trail names such a change `user.budget`).
    pub fn sets_budget(&self) -> bool {
        self.rpm.is_some() || self.concurrency.is_some() || self.daily_tokens.is_some() || self.monthly_tokens.is_some()
    }
}

/// What a change ended besides itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ended {
    pub sessions: u64,
    /// The ids of the client keys revoked.
    pub keys: Vec<String>,
}

fn role(s: &str) -> Result<Role, UserError> {
    Role::parse(s.trim()).ok_or_else(|| UserError::Invalid(format!("role `{s}` is not admin, member or viewer")))
}

fn max_keys(n: u32) -> Result<u32, UserError> {
    if n > MAX_MAX_KEYS {
        return Err(UserError::Invalid(format!("max_keys may be at most {MAX_MAX_KEYS}")));
    }
    Ok(n)
}

fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UserError::Invalid(format!(
            "a user name is 1 to {MAX_NAME} characters without spaces (an e-mail address, a login)"
        )));
    }
    if name.starts_with("usr_") {
        return Err(UserError::Invalid("a user name may not start with `usr_` (user ids do)".into()));
    }
    Ok(name.to_string())
}

/// The user with this id or name.
pub fn find(store: &Store, id_or_name: &str) -> Result<StoredUser, UserError> {
    store.find_user(id_or_name)?.ok_or_else(|| UserError::NotFound(id_or_name.to_string()))
}

pub fn create(store: &Store, new: NewUser, now: i64) -> Result<StoredUser, UserError> {
    let name = valid_name(&new.name)?;
    let role = role(&new.role)?;
    let password_hash = new.password.as_deref().map(password::hash).transpose()?;
    let row = StoredUser {
        id: format!("usr_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        name,
        role: role.as_str().into(),
        created_at: now,
        disabled_at: None,
        password_hash,
        totp_secret: None,
        max_keys: new.max_keys.map(max_keys).transpose()?,
        limits: Default::default(),
    };
    if !store.insert_user(&row)? {
        return Err(UserError::NameTaken(row.name));
    }
    Ok(row)
}

/// Change a user's role, whether they are disabled, their key maximum. Disabling ends what [`end`] ends.
pub fn update(store: &Store, id: &str, patch: UserPatch, now: i64) -> Result<(StoredUser, Ended), UserError> {
    let mut row = find(store, id)?;
    if let Some(r) = &patch.role {
        row.role = role(r)?.as_str().into();
    }
    if let Some(n) = patch.max_keys {
        row.max_keys = Some(max_keys(n)?);
    }
    let l = &mut row.limits;
    patch.rpm.into_iter().for_each(|v| l.rpm = v);
    patch.concurrency.into_iter().for_each(|v| l.concurrency = v);
    patch.daily_tokens.into_iter().for_each(|v| l.daily_tokens = v);
    patch.monthly_tokens.into_iter().for_each(|v| l.monthly_tokens = v);
    // The same bounds as a key's limits.
    row.limits.check().map_err(UserError::Invalid)?;
    let disabling = patch.disabled == Some(true) && row.disabled_at.is_none();
    if let Some(disabled) = patch.disabled {
        row.disabled_at = if disabled { row.disabled_at.or(Some(now)) } else { None };
    }
    if !store.update_user(&row)? {
        return Err(UserError::NotFound(id.to_string()));
    }
    let ended = if disabling { end(store, &row.id, now)? } else { Ended::default() };
    Ok((row, ended))
}

/// Remove a user, after ending their sessions and revoking their keys.
pub fn remove(store: &Store, id: &str, now: i64) -> Result<(StoredUser, Ended), UserError> {
    let row = find(store, id)?;
    let ended = end(store, &row.id, now)?;
    store.delete_user(&row.id)?;
    Ok((row, ended))
}

/// A new password (the user's sessions end: whoever had the old one is out).
pub fn set_password(store: &Store, id: &str, new: &str) -> Result<(StoredUser, Ended), UserError> {
    let mut row = find(store, id)?;
    row.password_hash = Some(password::hash(new)?);
    store.update_user(&row)?;
    store.revoke_refresh_of(&row.id)?;
    let sessions = store.delete_sessions_of(&row.id)?;
    Ok((row, Ended { sessions, keys: Vec::new() }))
}

/// Enrol a new TOTP secret (replacing any): the user and the `otpauth://` URI, to be shown once.
pub fn enrol_totp(store: &Store, id: &str) -> Result<(StoredUser, String), UserError> {
    let mut row = find(store, id)?;
    let secret = totp::new_secret();
    row.totp_secret = Some(secret.clone());
    store.update_user(&row)?;
    let uri = totp::uri(&secret, &row.name);
    Ok((row, uri))
}

/// Take a user's second factor away (a lost phone).
pub fn drop_totp(store: &Store, id: &str) -> Result<StoredUser, UserError> {
    let mut row = find(store, id)?;
    row.totp_secret = None;
    store.update_user(&row)?;
    Ok(row)
}

/// Forget a user's failed sign-ins and lift their lockout (users/limits.rs), on every instance: the user, and
/// whether there were any.
pub fn unlock(store: &Store, id: &str) -> Result<(StoredUser, bool), UserError> {
    let row = find(store, id)?;
    let had = store.clear_sign_in_failures(&row.id)?;
    Ok((row, had))
}

/// End every session of a user and revoke every key they own that is not revoked yet.
pub fn end(store: &Store, user_id: &str, now: i64) -> Result<Ended, UserError> {
    // The Codex CLI's refresh tokens first: its access tokens are sessions, ended with the others.
    store.revoke_refresh_of(user_id)?;
    let sessions = store.delete_sessions_of(user_id)?;
    let mut keys = Vec::new();
    for mut k in store.list_keys()? {
        if k.owner.as_deref() == Some(user_id) && k.revoked_at.is_none() {
            k.revoked_at = Some(now);
            store.update_key(&k)?;
            keys.push(k.id);
        }
    }
    Ok(Ended { sessions, keys })
}

/// A user as the API and the pages show one: never the password's hash or the TOTP secret.
pub fn summary(u: &StoredUser) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "role": u.role,
        "created_at": u.created_at,
        "disabled_at": u.disabled_at,
        "password": u.password_hash.is_some(),
        "totp": u.totp_secret.is_some(),
        "max_keys": u.max_keys.unwrap_or(DEFAULT_MAX_KEYS),
        "rpm": u.limits.rpm,
        "concurrency": u.limits.concurrency,
        "daily_tokens": u.limits.daily_tokens,
        "monthly_tokens": u.limits.monthly_tokens,
    })
}

/// `summary` with the user's failed sign-ins (users/limits.rs): `sign_in_failures`, and `locked_until` (RFC 3339)
/// while a lockout after `lockout_after` failures holds.
pub fn with_failures(mut v: Value, f: Option<crate::store::users::SignInFailures>, lockout_after: u32) -> Value {
    let f = f.unwrap_or_default();
    let now = crate::usage::when::now_ms();
    let locked = f.wait_until_ms.filter(|until| *until > now && f.failures >= lockout_after);
    v["sign_in_failures"] = f.failures.into();
    v["locked_until"] = locked.map(|ms| crate::auth::codex_file::format_rfc3339(ms.div_euclid(1000) + 1)).into();
    v
}

/// What the audit trail keeps of a change to a user (never a secret).
pub fn note(u: &StoredUser, ended: &Ended) -> crate::audit::Note {
    crate::audit::Note::target(u.id.clone())
        .with("name", u.name.clone())
        .with("role", u.role.clone())
        .with("disabled", u.disabled_at.is_some())
        .with("max_keys", u.max_keys)
        .with("rpm", u.limits.rpm)
        .with("concurrency", u.limits.concurrency)
        .with("daily_tokens", u.limits.daily_tokens)
        .with("monthly_tokens", u.limits.monthly_tokens)
        .with("has_totp", u.totp_secret.is_some())
        .with("sessions_ended", ended.sessions)
        .with("keys_revoked", ended.keys.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_refused_before_the_store() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-users-manage-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let new = |name: &str, role: &str, pw: Option<&str>| NewUser {
            name: name.into(),
            role: role.into(),
            password: pw.map(Into::into),
            max_keys: None,
        };
        assert!(matches!(create(&store, new("ana", "owner", None), 1), Err(UserError::Invalid(_))));
        assert!(matches!(create(&store, new("a b", "member", None), 1), Err(UserError::Invalid(_))));
        assert!(matches!(create(&store, new("usr_x", "member", None), 1), Err(UserError::Invalid(_))));
        assert!(matches!(create(&store, new("ana", "member", Some("short")), 1), Err(UserError::Password(_))));
        let ana = create(&store, new("ana", "member", None), 1)?;
        assert!(matches!(create(&store, new("ana", "viewer", None), 1), Err(UserError::NameTaken(_))));
        let (row, ended) = update(&store, "ana", UserPatch { disabled: Some(true), ..Default::default() }, 5)?;
        assert_eq!((row.disabled_at, ended), (Some(5), Ended::default()));
        assert!(matches!(find(&store, "bob"), Err(UserError::NotFound(_))));
        let text = summary(&enrol_totp(&store, &ana.id)?.0).to_string();
        assert!(!text.contains("password_hash") && !text.contains("secret"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
