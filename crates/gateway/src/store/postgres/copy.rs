//! Copy a single instance's SQLite store into a PostgreSQL team store (`codex-gateway store migrate`):
//! accounts with their tokens and policies, client keys, and users with their single sign-on links (store/users.rs,
//! store/identities.rs; their sessions are not copied: people sign in again). Idempotent: rows already there are overwritten with the SQLite file's (a user
//! whose name another user of the team store has is left out, and named). Stop the single gateway first, so the
//! refresh tokens copied are the live ones; the usage ledger stays in each instance's SQLite file.

use std::path::PathBuf;

use anyhow::Context;

use super::{is_postgres_url, redact_url};
use crate::store::users::StoredUser;
use crate::store::{AccountKind, Store};

/// What a migration copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub accounts: usize,
    pub keys: usize,
    /// Accounts whose kind this build cannot store (kept in the SQLite file as they are).
    pub skipped: Vec<String>,
    pub users: usize,
    /// Users whose name another user of the team store has (not copied).
    pub users_skipped: Vec<String>,
}

/// Copy `from` (`sqlite:PATH`) into `to` (a PostgreSQL URL, migrated first).
pub fn migrate(from: &str, to: &str) -> anyhow::Result<Copied> {
    let path = from
        .strip_prefix("sqlite:")
        .map(PathBuf::from)
        .with_context(|| format!("--from {from:?}: expected sqlite:PATH"))?;
    anyhow::ensure!(path.is_file(), "--from: {} is not a file", path.display());
    anyhow::ensure!(is_postgres_url(to), "--to: expected a postgres:// URL (got {})", redact_url(to));
    let source = Store::open(&path)?;
    // The team store through the store's handle (its own file is the source's, untouched).
    let target = Store::open_with(&path, Some(to))?;
    let mut copied = Copied::default();
    for account in source.list_accounts()? {
        if account.kind == AccountKind::Unrecognized {
            copied.skipped.push(account.id);
            continue;
        }
        target.upsert_account(&account).with_context(|| format!("account {}", account.id))?;
        copied.accounts += 1;
    }
    for key in source.list_keys()? {
        let written = match target.get_key(&key.id)? {
            Some(_) => target.update_key(&key)?,
            None => target.insert_key(&key).map(|()| true)?,
        };
        copied.keys += usize::from(written);
    }
    for user in source.list_users()? {
        let written = match target.find_user(&user.id)? {
            Some(there) if there.id == user.id && there.name == user.name => {
                target.update_user(&StoredUser { created_at: there.created_at, ..user.clone() })?
            }
            Some(_) => false,
            None => target.insert_user(&user)?,
        };
        match written {
            true => copied.users += 1,
            false => copied.users_skipped.push(user.name),
        }
    }
    // Single sign-on links (store/identities.rs), for the users copied: without them a user made at a sign-in
    // would be refused at the next one (a user of that name exists and is not linked).
    for link in source.list_identities()? {
        if target.find_user(&link.user_id)?.is_some_and(|u| u.id == link.user_id) {
            target.link_identity(&link.issuer, &link.subject, &link.user_id, link.created_at)?;
        }
    }
    Ok(copied)
}
