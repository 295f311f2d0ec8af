//! Passwords, hashed with argon2id (the crate's defaults, RFC 9106's second recommendation) as PHC strings. A
//! sign-in without a user spends the same work on a fixed hash, so a name that does not exist is not told apart.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted.
pub const MIN_LEN: usize = 10;
/// Longest (argon2 takes any length; a bound keeps one sign-in from costing much more than another).
pub const MAX_LEN: usize = 1024;

/// Why a password was refused before it was hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password may have at most {MAX_LEN} characters")]
    TooLong,
    #[error("the password could not be hashed")]
    Hash,
}

/// The PHC string of `password` under a new random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    match password.chars().count() {
        n if n < MIN_LEN => return Err(PasswordError::TooShort),
        n if n > MAX_LEN => return Err(PasswordError::TooLong),
        _ => {}
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| PasswordError::Hash)
}

/// Whether `password` is the one `phc` was made from (`None`: no password set, or no such user; the work is
/// spent all the same).
pub fn verify(phc: Option<&str>, password: &str) -> bool {
    let (phc, real) = phc.map_or((decoy().as_str(), false), |p| (p, true));
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let password = if password.len() > MAX_LEN * 4 { "" } else { password };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    ok && real
}

/// A fixed hash with the default parameters, made once.
fn decoy() -> &'static String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("no user has this password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_argon2id_salted_and_verifies_only_its_password() {
        let a = hash("correct horse battery").unwrap_or_default();
        let b = hash("correct horse battery").unwrap_or_default();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify(Some(&a), "correct horse battery"));
        assert!(!verify(Some(&a), "correct horse battery!"));
        assert!(!verify(None, "no user has this password"), "the decoy never signs anyone in");
        assert!(!verify(Some("not a phc string"), "x"));
    }

    #[test]
    fn short_and_long_passwords_are_refused() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
    }
}
