//! Creating, changing and revoking client keys in the store, shared by the admin API and the CLI.

use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use super::limits::{Limits, parse_expiry};
use crate::auth::codex_file::format_rfc3339;
use crate::store::{NameClaim, Store, StoredKey};
use crate::users::manage::some;

/// Characters of the secret kept as its visible prefix (`cgw_` and 8 random ones).
const PREFIX_LEN: usize = 12;

/// A new key's settings (`POST /admin/keys`, `keys create`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub rpm: Option<u32>,
    pub concurrency: Option<u32>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    /// `2027-01-31` (valid through that day, UTC) or an RFC 3339 time.
    pub expires: Option<String>,
    /// Served only from quota that would otherwise expire (the planner's `Ask::opportunistic`).
    #[serde(default)]
    pub opportunistic: bool,
}

/// A change (`PATCH /admin/keys/{id}`, `keys update`): a field left out stays, `null` removes the limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "some")]
    pub rpm: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    pub concurrency: Option<Option<u32>>,
    #[serde(default, deserialize_with = "some")]
    pub daily_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub monthly_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "some")]
    pub expires: Option<Option<String>>,
    /// `true` or `false`; `null` is refused (a key is opportunistic or not: there is no limit to remove).
    #[serde(default, deserialize_with = "some")]
    pub opportunistic: Option<bool>,
    /// `false` lifts a suspension (docs/accounts.md, "Risk signals"); `true` suspends the key by hand.
    pub suspended: Option<bool>,
}

/// Why a key could not be created or changed: the caller's input, or the store.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    Invalid(String),
    #[error("no client key `{0}`")]
    NotFound(String),
    /// Another key that is not revoked has this name (names pick keys in the CLI).
    #[error("the client key {id} is already named `{name}`: choose another name, or revoke that key first")]
    NameTaken { name: String, id: String },
    /// The owner holds the most keys an admin allows them (users/manage.rs); checked in one step with the insert.
    #[error("{name} already holds {held} client keys, the most they may hold: revoke one first")]
    TooManyKeys { name: String, held: usize },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

fn expiry(s: &str) -> Result<i64, ManageError> {
    parse_expiry(s)
        .ok_or_else(|| ManageError::Invalid(format!("expires `{s}` is not a date (2027-01-31) or an RFC 3339 time")))
}

fn check_limits(models: &Option<Vec<String>>, limits: &Limits) -> Result<(), ManageError> {
    limits.check().map_err(ManageError::Invalid)?;
    if models.as_ref().is_some_and(|m| m.is_empty() || m.iter().any(|m| m.trim().is_empty())) {
        return Err(ManageError::Invalid("models must name at least one model, and no empty name".into()));
    }
    Ok(())
}

/// A key's name, trimmed, when it is not empty; whether another key has it is decided in one step with the write
/// (`Store::*_claiming_name`), so two gateways creating one name at once cannot both get it.
fn valid_name(name: &str) -> Result<String, ManageError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ManageError::Invalid("a key needs a name".into()));
    }
    Ok(name.to_string())
}

/// The outcome of a write that claims `row`'s name. `owner`: the owner's name, for a refusal.
fn claimed(claim: NameClaim, row: &StoredKey, owner: Option<&str>) -> Result<(), ManageError> {
    match claim {
        NameClaim::Written => Ok(()),
        NameClaim::Taken(id) => Err(ManageError::NameTaken { name: row.name.clone(), id }),
        NameClaim::Missing => Err(ManageError::NotFound(row.id.clone())),
        NameClaim::OwnerFull(held) => {
            let name = owner.or(row.owner.as_deref()).unwrap_or_default().to_string();
            Err(ManageError::TooManyKeys { name, held })
        }
    }
}

/// Whose a new key is: the user's id, their name (for a refusal) and the most keys they may hold.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub max_keys: Option<u32>,
}

/// Create a key belonging to `owner` (`None`: the gateway's), who may not hold more than their maximum: returns its
/// row and its secret, which is shown this once and stored only as a hash.
pub fn create(
    store: &Store,
    spec: KeySpec,
    owner: Option<Owner<'_>>,
    now: i64,
) -> Result<(StoredKey, String), ManageError> {
    let KeySpec { name, models, rpm, concurrency, daily_tokens, monthly_tokens, expires, opportunistic } = spec;
    let name = valid_name(&name)?;
    let limits = Limits { rpm, concurrency, daily_tokens, monthly_tokens };
    check_limits(&models, &limits)?;
    let expires_at = expires.as_deref().map(expiry).transpose()?;
    let secret = new_secret();
    let row = StoredKey {
        id: format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        name,
        prefix: secret[..PREFIX_LEN].to_string(),
        secret_sha256: crate::users::sha256_hex(&secret),
        models,
        limits,
        expires_at,
        created_at: now,
        revoked_at: None,
        suspended: None,
        opportunistic,
        owner: owner.map(|o| o.id.to_string()),
    };
    let max = owner.and_then(|o| o.max_keys);
    claimed(store.insert_key_claiming_name(&row, max)?, &row, owner.map(|o| o.name))?;
    Ok((row, secret))
}

/// Apply a change to a key.
pub fn update(store: &Store, id: &str, patch: KeyPatch) -> Result<StoredKey, ManageError> {
    let mut row = store.get_key(id)?.ok_or_else(|| ManageError::NotFound(id.to_string()))?;
    if let Some(name) = patch.name {
        row.name = valid_name(&name)?;
    }
    row.models = patch.models.unwrap_or(row.models);
    let l = &mut row.limits;
    patch.rpm.into_iter().for_each(|v| l.rpm = v);
    patch.concurrency.into_iter().for_each(|v| l.concurrency = v);
    patch.daily_tokens.into_iter().for_each(|v| l.daily_tokens = v);
    patch.monthly_tokens.into_iter().for_each(|v| l.monthly_tokens = v);
    if let Some(e) = patch.expires {
        row.expires_at = e.as_deref().map(expiry).transpose()?;
    }
    row.opportunistic = patch.opportunistic.unwrap_or(row.opportunistic);
    check_limits(&row.models, &row.limits)?;
    claimed(store.update_key_claiming_name(&row)?, &row, None)?;
    // Its own write: the rest of the row never carries a suspension (`Store::set_key_suspension`).
    match patch.suspended {
        Some(false) if row.suspended.is_some() => {
            store.set_key_suspension(&row.id, None)?;
            row.suspended = None;
        }
        Some(true) if row.suspended.is_none() => {
            let s = crate::store::Suspension { at: crate::auth::now_unix(), reason: "suspended by an operator".into() };
            store.set_key_suspension(&row.id, Some(&s))?;
            row.suspended = Some(s);
        }
        Some(_) | None => {}
    }
    Ok(row)
}

/// Whether `user` sees `row`: a member (their id) their own keys only; `None` (an admin, a viewer) every key.
pub fn visible(row: &StoredKey, user: Option<&str>) -> bool {
    user.is_none_or(|u| row.owner.as_deref() == Some(u))
}

/// The key `id` if `user` sees it ([`visible`]): another user's is as absent as a key that never was.
pub fn find_visible(store: &Store, id: &str, user: Option<&str>) -> Result<StoredKey, ManageError> {
    store.get_key(id)?.filter(|row| visible(row, user)).ok_or_else(|| ManageError::NotFound(id.to_string()))
}

/// Revoke a key (kept in the store, so past requests stay attributed to it). Revoking twice is no error.
pub fn revoke(store: &Store, id: &str, now: i64) -> Result<StoredKey, ManageError> {
    let mut row = store.get_key(id)?.ok_or_else(|| ManageError::NotFound(id.to_string()))?;
    if row.revoked_at.is_none() {
        row.revoked_at = Some(now);
        store.update_key(&row)?;
    }
    Ok(row)
}

/// A key as the admin API and `keys list --json` show it: never the secret or its hash.
pub fn summary(row: &StoredKey, now: i64) -> Value {
    let status = match (row.revoked_at, row.expires_at, &row.suspended) {
        (Some(_), _, _) => "revoked",
        (None, Some(t), _) if now >= t => "expired",
        (None, _, Some(_)) => "suspended",
        (None, _, None) => "active",
    };
    json!({
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "status": status,
        "models": row.models,
        "rpm": row.limits.rpm,
        "concurrency": row.limits.concurrency,
        "daily_tokens": row.limits.daily_tokens,
        "monthly_tokens": row.limits.monthly_tokens,
        "opportunistic": row.opportunistic,
        "expires_at": row.expires_at.map(format_rfc3339),
        "created_at": format_rfc3339(row.created_at),
        "revoked_at": row.revoked_at.map(format_rfc3339),
        "suspended_at": row.suspended.as_ref().map(|s| format_rfc3339(s.at)),
        "suspended_reason": row.suspended.as_ref().map(|s| s.reason.clone()),
        "owner": row.owner,
    })
}

/// `cgw_` + 256 random bits from the OS (base64url): the secret cannot be guessed, so its unsalted SHA-256 is safe.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("cgw_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_hash_is_stored() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-manage-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let spec = |name: &str| KeySpec { name: name.into(), rpm: Some(5), ..Default::default() };
        let (a, secret_a) = create(&store, spec("ci"), None, 1_700_000_000)?;
        let (_, secret_b) = create(&store, spec("ci2"), None, 1_700_000_000)?;
        assert_ne!(secret_a, secret_b);
        assert_eq!(secret_a.len(), 4 + 43);
        assert!(secret_a.starts_with(&a.prefix));
        assert_eq!(a.secret_sha256, crate::users::sha256_hex(&secret_a));
        let shown = summary(&a, 1_700_000_000).to_string();
        assert!(!shown.contains(&secret_a) && !shown.contains(&a.secret_sha256), "{shown}");
        // A patch changes what it names; null removes a limit.
        let patch: KeyPatch = serde_json::from_str(r#"{"rpm": null, "daily_tokens": 10}"#)?;
        let b = update(&store, &a.id, patch)?;
        assert_eq!(b.limits, Limits { daily_tokens: Some(10), ..Default::default() });
        assert!(matches!(update(&store, "key_x", KeyPatch::default()), Err(ManageError::NotFound(_))));
        let bad: KeyPatch = serde_json::from_str(r#"{"concurrency": 0}"#)?;
        assert!(matches!(update(&store, &a.id, bad), Err(ManageError::Invalid(_))));
        // Opportunistic: off unless asked, set and cleared by a patch, shown in the summary; `null` is no value.
        assert!(!a.opportunistic && summary(&a, 1)["opportunistic"] == false);
        let on: KeyPatch = serde_json::from_str(r#"{"opportunistic": true}"#)?;
        let c = update(&store, &a.id, on)?;
        assert!(c.opportunistic && summary(&c, 1)["opportunistic"] == true);
        assert!(update(&store, &a.id, KeyPatch::default())?.opportunistic, "left out: it stays");
        let off: KeyPatch = serde_json::from_str(r#"{"opportunistic": false}"#)?;
        assert!(!update(&store, &a.id, off)?.opportunistic);
        assert!(serde_json::from_str::<KeyPatch>(r#"{"opportunistic": null}"#).is_err());
        assert!(serde_json::from_str::<KeyPatch>(r#"{"opportunistic": "yes"}"#).is_err());
        let spec: KeySpec = serde_json::from_str(r#"{"name": "spare", "opportunistic": true}"#)?;
        let (spare, _) = create(&store, spec, None, 1_700_000_000)?;
        assert_eq!(store.get_key(&spare.id)?.map(|k| k.opportunistic), Some(true));
        let r = revoke(&store, &a.id, 1_700_000_500)?;
        assert_eq!(summary(&r, 1_700_000_600)["status"], "revoked");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn two_keys_that_are_not_revoked_never_share_a_name() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-manage-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let named = |name: &str| KeySpec { name: name.into(), ..Default::default() };
        let (alice, _) = create(&store, named("alice"), None, 1_700_000_000)?;
        let (bob, _) = create(&store, named("bob"), None, 1_700_000_000)?;
        // Taken, also with the spaces that are trimmed away, and by a rename.
        for attempt in [
            create(&store, named("alice"), None, 1).map(|(k, _)| k),
            create(&store, named(" alice "), None, 1).map(|(k, _)| k),
        ] {
            assert!(matches!(&attempt, Err(ManageError::NameTaken { id, .. }) if *id == alice.id), "{attempt:?}");
        }
        let rename = |name: &str| KeyPatch { name: Some(name.into()), ..Default::default() };
        assert!(matches!(update(&store, &bob.id, rename("alice")), Err(ManageError::NameTaken { .. })));
        // A key keeps its own name through an update, and the refused attempts stored nothing.
        assert_eq!(update(&store, &alice.id, rename("alice"))?.name, "alice");
        assert_eq!(store.list_keys()?.len(), 2);
        // Once revoked, its name is free again, for a new key and for a rename.
        revoke(&store, &alice.id, 1_700_000_500)?;
        let (again, _) = create(&store, named("alice"), None, 1_700_000_600)?;
        assert_ne!(again.id, alice.id);
        revoke(&store, &again.id, 1_700_000_700)?;
        assert_eq!(update(&store, &bob.id, rename("alice"))?.name, "alice");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Sixteen connections (as many gateways or commands) create one name at the same moment: one key gets it.
    #[test]
    fn one_name_created_at_once_from_many_connections_goes_to_one_key() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-manage-{}", uuid::Uuid::new_v4()));
        let path = dir.join("gateway.db");
        drop(Store::open(&path)?);
        let stores = (0..16).map(|_| Store::open(&path)).collect::<anyhow::Result<Vec<_>>>()?;
        let start = std::sync::Barrier::new(stores.len());
        let outcomes: Vec<Result<StoredKey, ManageError>> = std::thread::scope(|scope| {
            let runs: Vec<_> = stores
                .iter()
                .map(|store| {
                    let start = &start;
                    scope.spawn(move || {
                        start.wait();
                        create(store, KeySpec { name: "race".into(), ..Default::default() }, None, 1).map(|(k, _)| k)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| run.join().unwrap_or_else(|_| Err(ManageError::Invalid("panicked".into()))))
                .collect()
        });
        let created: Vec<&StoredKey> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert_eq!(created.len(), 1, "{outcomes:?}");
        for o in &outcomes {
            assert!(o.is_ok() || matches!(o, Err(ManageError::NameTaken { id, .. }) if *id == created[0].id), "{o:?}");
        }
        assert_eq!(stores[0].list_keys()?.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// Two keys given one name before names were checked: each can still be changed, and neither lends its name.
    #[test]
    fn keys_that_already_share_a_name_can_still_be_changed() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-manage-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("gateway.db"))?;
        let (first, _) = create(&store, KeySpec { name: "ci".into(), ..Default::default() }, None, 1)?;
        let twin = StoredKey { id: "key_twin".into(), secret_sha256: "00".repeat(32), ..first.clone() };
        store.insert_key(&twin)?;
        let patch: KeyPatch = serde_json::from_str(r#"{"rpm": 7, "name": "ci"}"#)?;
        assert_eq!(update(&store, &twin.id, patch)?.limits.rpm, Some(7));
        let (other, _) = create(&store, KeySpec { name: "other".into(), ..Default::default() }, None, 2)?;
        let rename = KeyPatch { name: Some("ci".into()), ..Default::default() };
        assert!(matches!(update(&store, &other.id, rename), Err(ManageError::NameTaken { id, .. }) if id == first.id));
        assert!(matches!(update(&store, "key_gone", KeyPatch::default()), Err(ManageError::NotFound(_))));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
