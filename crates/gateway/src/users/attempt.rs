//! One password sign-in attempt (dashboard/signin.rs calls it for the login form and `POST /admin/sign-in`): the
//! name's count of failures first, then the password and one-time code. A user's count is in the store (every
//! instance of a team holds it, an admin unlocks it); a name that is nobody's is counted in memory under the same
//! policy (users/limits.rs), so both read alike: the same answers, the same lockout after the same failures, and
//! an argon2id hash either way. The client address's count is the caller's (it comes before the store is asked).

use std::time::{Duration, Instant};

use super::limits::{Charge, Wait};
use super::{SignInRefused, Users, password, totp, user_of};
use crate::auth::now_unix;
use crate::store::users::{SignInFailures, StoredUser};
use crate::usage::when::now_ms;

/// What an attempt came to.
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<StoredUser, SignInRefused>,
    /// This failure locked a user out (for the audit trail).
    pub locked_out: Option<LockedOut>,
}

/// A lockout that began.
#[derive(Debug, Clone)]
pub struct LockedOut {
    pub user_id: String,
    pub name: String,
    pub failures: u32,
    pub until_ms: i64,
}

/// How the attempt was counted, to be given back when it was no failure.
enum Counted {
    Stored { id: String, before: SignInFailures, counted: u32 },
    Name(Charge),
}

impl Attempt {
    fn refused(e: SignInRefused) -> Attempt {
        Attempt { result: Err(e), locked_out: None }
    }
}

impl Users {
    /// Check `name`, `password` and `code` (if the user enrolled one), counted against the name. Blocking.
    pub fn attempt(&self, name: &str, password: &str, code: Option<&str>) -> Attempt {
        let name = name.trim();
        let row = match self.store.find_user(name) {
            Ok(row) => row.filter(|u| u.name == name),
            Err(e) => return Attempt::refused(e.into()),
        };
        let policy = self.guards.account_policy();
        let counted = match &row {
            Some(u) => match self.count_stored(&u.id) {
                Ok(c) => c,
                Err(e) => return Attempt::refused(e),
            },
            None => match self.guards.names.admit(name, Instant::now()) {
                Ok(charge) => Counted::Name(charge),
                Err(wait) => return Attempt::refused(SignInRefused::Limited(wait)),
            },
        };
        let result = check(row, password, code);
        let mut locked_out = None;
        let outcome = match (&result, counted) {
            (Ok(_), Counted::Stored { id, .. }) => self.store.clear_sign_in_failures(&id).map(drop),
            (Ok(_), Counted::Name(_)) => {
                self.guards.names.clear(name);
                Ok(())
            }
            // Not a guess: the password was right and the form now asks for the code; or the store failed.
            (Err(SignInRefused::CodeNeeded | SignInRefused::Store(_)), Counted::Stored { id, before, counted }) => {
                self.store.restore_sign_in_failures(&id, counted, before).map(drop)
            }
            (Err(SignInRefused::CodeNeeded | SignInRefused::Store(_)), Counted::Name(c)) => {
                self.guards.names.refund(c);
                Ok(())
            }
            (Err(_), Counted::Stored { id, counted, .. }) => {
                if policy.lockout_begins(counted) {
                    let until_ms = now_ms() + millis(policy.wait_after(counted));
                    locked_out = Some(LockedOut { user_id: id, name: name.to_string(), failures: counted, until_ms });
                }
                Ok(())
            }
            (Err(_), Counted::Name(_)) => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::warn!("could not keep a user's failed sign-ins in the store: {e:#}");
        }
        Attempt { result, locked_out }
    }

    /// Count an attempt on the user `id` in the store, unless the user must wait.
    fn count_stored(&self, id: &str) -> Result<Counted, SignInRefused> {
        let policy = self.guards.account_policy();
        let before = self.store.sign_in_failures(id)?.unwrap_or_default();
        let now = now_ms();
        if let Some(until) = before.wait_until_ms.filter(|until| *until > now) {
            let retry_after = Duration::from_millis(u64::try_from(until - now).unwrap_or(0));
            return Err(SignInRefused::Limited(Wait { retry_after, locked: policy.locks(before.failures) }));
        }
        let counted = before.failures.saturating_add(1);
        let next = SignInFailures { failures: counted, wait_until_ms: Some(now + millis(policy.wait_after(counted))) };
        if !self.store.count_sign_in_failure(id, before.failures, next)? {
            // Another attempt on the same name was counted in between (here or on another instance).
            return Err(SignInRefused::Limited(Wait { retry_after: Duration::from_secs(1), locked: false }));
        }
        Ok(Counted::Stored { id: id.to_string(), before, counted })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The password (hashed even for a name that is nobody's, so both take as long) and the one-time code.
fn check(row: Option<StoredUser>, password: &str, code: Option<&str>) -> Result<StoredUser, SignInRefused> {
    if !password::verify(row.as_ref().and_then(|u| u.password_hash.as_deref()), password) {
        return Err(SignInRefused::WrongNameOrPassword);
    }
    let Some(row) = row else { return Err(SignInRefused::WrongNameOrPassword) };
    if user_of(&row).is_none() {
        return Err(SignInRefused::NotAllowed);
    }
    if let Some(secret) = &row.totp_secret {
        match code.map(str::trim).filter(|c| !c.is_empty()) {
            None => return Err(SignInRefused::CodeNeeded),
            Some(c) if !totp::verify(secret, c, now_unix()) => return Err(SignInRefused::WrongCode),
            Some(_) => {}
        }
    }
    Ok(row)
}
