//! The gateway's OAuth authorization server for the official Codex CLI's gateway sign-in (docs/dashboard.md, "The
//! Codex CLI's sign-in"): an authorization code with PKCE S256 to a loopback redirect, or a device code (RFC 8628),
//! then a short-lived access token (a session of users/ with its own method, ended with the user's sessions) and a
//! rotating refresh token. Codes and tokens are kept as the SHA-256 of their values.

pub mod error;
pub mod flows;

pub use error::OAuthError;

/// How long an authorization code may wait for its exchange.
pub const CODE_SECS: i64 = 120;
/// How long a device code may wait for the user.
pub const DEVICE_SECS: i64 = 600;
/// The device flow's polling interval (RFC 8628 §3.2), seconds.
pub const DEVICE_INTERVAL: i64 = 2;
/// The letters of a user code: no vowels (no words), none that read alike (RFC 8628 §6.1).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Whether `uri` is a loopback redirect the CLI listens on (RFC 8252 §7.3), with an explicit port.
pub fn loopback_redirect(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else { return false };
    let host_ok = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    u.scheme() == "http"
        && host_ok
        && u.port().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.fragment().is_none()
}

/// A PKCE S256 challenge as RFC 7636 §4.2 shapes it: 43 base64url characters.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` (43 to 128 unreserved characters, RFC 7636 §4.1) hashes to `challenge`, in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !shaped {
        return false;
    }
    crate::users::ct_eq(&crate::auth::login::s256(verifier), challenge)
}

/// A new user code, `XXXX-XXXX` (20^8: guessing one in the ten minutes it lives is out of reach).
pub fn new_user_code() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let letters: String =
        (0..8).map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())])).collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// A user code as typed (any case, with or without the dash or spaces) in its canonical form.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let letters: Vec<u8> =
        typed.bytes().filter(|b| !matches!(b, b'-' | b' ')).map(|b| b.to_ascii_uppercase()).collect();
    if letters.len() != 8 || !letters.iter().all(|b| USER_CODE_ALPHABET.contains(b)) {
        return None;
    }
    let (a, b) = letters.split_at(4);
    Some(format!("{}-{}", String::from_utf8_lossy(a), String::from_utf8_lossy(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_redirects() {
        for ok in ["http://127.0.0.1:1457/callback", "http://localhost:9/cb", "http://[::1]:8080/x"] {
            assert!(loopback_redirect(ok), "{ok}");
        }
        for bad in [
            "https://127.0.0.1:1457/callback",
            "http://127.0.0.1/callback",
            "http://evil.example:1457/callback",
            "http://127.0.0.1.evil.example:1457/",
            "http://user@127.0.0.1:1457/",
            "http://127.0.0.1:1457/#frag",
            "not a url",
        ] {
            assert!(!loopback_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn pkce_s256_as_rfc_7636_appendix_b() {
        // RFC 7636 Appendix B's example pair.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_challenge(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx", challenge));
        assert!(!verifier_matches("short", challenge));
    }

    #[test]
    fn user_codes_read_back_however_typed() {
        let code = new_user_code();
        assert_eq!(normalize_user_code(&code.to_lowercase().replace('-', " ")), Some(code.clone()));
        assert_eq!(normalize_user_code("ABCD-EFGH"), None, "vowels are never in a code");
        assert_eq!(normalize_user_code("BCDF"), None);
    }
}
