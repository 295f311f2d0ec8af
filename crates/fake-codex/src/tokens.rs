//! Token material: unsigned JWTs shaped like the ones auth.openai.com issues, random ids, PKCE
//! S256, and the sealed `encrypted_content` of reasoning items (opaque to clients, checkable by
//! the fake so a test can tell whether a gateway round-trips it byte for byte and to the same
//! account). Pure helpers; the state that remembers which token is valid lives in `state.rs`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The client id of the official Codex CLI; the token endpoint accepts no other.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix time in microseconds (stream-end timestamps a benchmark compares with its own clock).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// `len` random alphanumeric characters.
pub fn random_string(len: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A random id with a prefix, e.g. `resp_...`, `call_...`.
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", random_string(24))
}

/// base64url(SHA-256(verifier)), the PKCE S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Identity baked into tokens.
pub struct Identity<'a> {
    pub account_id: &'a str,
    pub user_id: &'a str,
    pub email: &'a str,
    pub plan: &'a str,
}

fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(b"fake-codex-signature");
    format!("{header}.{payload}.{sig}")
}

fn auth_claim(id: &Identity<'_>) -> Value {
    json!({
        "chatgpt_account_id": id.account_id,
        "chatgpt_plan_type": id.plan,
        "chatgpt_user_id": id.user_id,
        "user_id": id.user_id,
    })
}

/// An id token (JWT) for the identity.
pub fn id_token(id: &Identity<'_>, issuer: &str, iat: i64, exp: i64) -> String {
    jwt(&json!({
        "iss": issuer,
        "aud": [CLIENT_ID],
        "sub": id.user_id,
        "email": id.email,
        "email_verified": true,
        "iat": iat,
        "exp": exp,
        "auth_time": iat,
        "https://api.openai.com/auth": auth_claim(id),
    }))
}

/// An access token (JWT) for the identity; the `jti` makes each one unique.
pub fn access_token(id: &Identity<'_>, issuer: &str, iat: i64, exp: i64) -> String {
    jwt(&json!({
        "iss": issuer,
        "aud": ["https://api.openai.com/v1"],
        "sub": id.user_id,
        "client_id": CLIENT_ID,
        "email": id.email,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scp": ["openid", "profile", "email", "offline_access"],
        "https://api.openai.com/auth": auth_claim(id),
        "https://api.openai.com/profile": {"email": id.email, "email_verified": true},
    }))
}

/// An opaque refresh token.
pub fn refresh_token() -> String {
    format!("rt_{}", random_string(48))
}

/// Decode the claims segment of a JWT (no signature check), for tests and tools.
pub fn decode_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

const SEAL_PREFIX: &str = "gAAAAA";

/// Seal `(owner, counter)` into an opaque `encrypted_content` string.
pub fn seal_reasoning(secret: &[u8], owner: &str, counter: u64) -> String {
    let payload = json!({"o": owner, "n": counter, "r": random_string(16)}).to_string();
    let mac = mac(secret, payload.as_bytes());
    let mut raw = payload.into_bytes();
    raw.extend_from_slice(&mac);
    format!("{SEAL_PREFIX}{}", STANDARD.encode(raw))
}

/// Why a sealed `encrypted_content` was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SealError {
    /// Not produced by this fake, or modified.
    Tampered,
    /// Produced for a different account (or API key).
    WrongOwner,
}

/// Check a sealed `encrypted_content` came back unmodified and for the same owner.
pub fn open_reasoning(secret: &[u8], sealed: &str, owner: &str) -> Result<u64, SealError> {
    let b64 = sealed.strip_prefix(SEAL_PREFIX).ok_or(SealError::Tampered)?;
    let raw = STANDARD.decode(b64).map_err(|_| SealError::Tampered)?;
    if raw.len() < 32 {
        return Err(SealError::Tampered);
    }
    let (payload, tag) = raw.split_at(raw.len() - 32);
    if mac(secret, payload).as_slice() != tag {
        return Err(SealError::Tampered);
    }
    let v: Value = serde_json::from_slice(payload).map_err(|_| SealError::Tampered)?;
    if v.get("o").and_then(Value::as_str) != Some(owner) {
        return Err(SealError::WrongOwner);
    }
    v.get("n").and_then(Value::as_u64).ok_or(SealError::Tampered)
}

fn mac(secret: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(payload);
    h.update(secret);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper() {
        let s = seal_reasoning(b"k", "acct", 7);
        assert_eq!(open_reasoning(b"k", &s, "acct"), Ok(7));
        assert_eq!(open_reasoning(b"k", &s, "other"), Err(SealError::WrongOwner));
        let mut t = s.clone();
        t.push('A');
        assert!(open_reasoning(b"k", &t, "acct").is_err());
    }

    #[test]
    fn pkce_rfc7636_vector() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
