//! Checking an ID token (OpenID Connect Core 1.0, section 3.1.3.7): its signature with a key of the provider's
//! JWKS (`jsonwebtoken`'s verification; this module chooses the key and the rules) and its claims.

use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::users::ct_eq;

/// Clock difference tolerated between the provider and the gateway.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Why an ID token was refused. The text names the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a signed JWT")]
    Malformed,
    #[error("the ID token is signed with {0}, which the gateway does not accept")]
    Algorithm(String),
    /// No key of the provider's JWKS has the token's `kid` (after fetching the set again).
    #[error("no key of the provider's key set signed the ID token")]
    UnknownKey,
    #[error("the ID token's signature is wrong")]
    Signature,
    #[error("the ID token was issued by another issuer")]
    Issuer,
    #[error("the ID token was issued for another client")]
    Audience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token was issued in the future")]
    IssuedInFuture,
    #[error("the ID token's nonce does not match this sign-in")]
    Nonce,
    #[error("the ID token lacks the claim {0}")]
    Missing(&'static str),
}

impl IdTokenError {
    /// The refusal's name in the audit trail.
    pub fn reason(&self) -> &'static str {
        match self {
            IdTokenError::Malformed => "id_token_malformed",
            IdTokenError::Algorithm(_) => "id_token_algorithm",
            IdTokenError::UnknownKey => "id_token_unknown_key",
            IdTokenError::Signature => "id_token_signature",
            IdTokenError::Issuer => "id_token_issuer",
            IdTokenError::Audience => "id_token_audience",
            IdTokenError::Expired => "id_token_expired",
            IdTokenError::IssuedInFuture => "id_token_iat",
            IdTokenError::Nonce => "id_token_nonce",
            IdTokenError::Missing(_) => "id_token_missing_claim",
        }
    }
}

/// What the token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: i64,
}

/// The RSA algorithms accepted.
fn rsa(alg: Algorithm) -> bool {
    use Algorithm::*;
    matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
}

/// The elliptic-curve algorithms accepted.
fn ec(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::ES256 | Algorithm::ES384)
}

/// The token's header: its algorithm (refused when not accepted) and key id.
pub fn header(token: &str) -> Result<(Algorithm, Option<String>), IdTokenError> {
    let h = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    // Asymmetric ones only, so a token can never be checked against a public key used as an HMAC secret.
    if !rsa(h.alg) && !ec(h.alg) {
        return Err(IdTokenError::Algorithm(format!("{:?}", h.alg)));
    }
    Ok((h.alg, h.kid))
}

/// The keys of a JWKS document that can verify signatures (one of a kind this build does not read is skipped).
pub fn signing_keys(jwks: &Value) -> Vec<Jwk> {
    let keys = jwks.get("keys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    keys.iter()
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter(|k| k.get("kty").and_then(Value::as_str) != Some("oct"))
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .collect()
}

/// The key in `keys` that the header names: by `kid`, or the only key when the token names none.
pub fn key_for<'a>(keys: &'a [Jwk], kid: Option<&str>, alg: Algorithm) -> Option<&'a Jwk> {
    let fits = |k: &&Jwk| {
        k.common.key_algorithm.is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
            && match &k.algorithm {
                AlgorithmParameters::RSA(_) => rsa(alg),
                AlgorithmParameters::EllipticCurve(_) => ec(alg),
                _ => false,
            }
    };
    match kid {
        Some(kid) => keys.iter().filter(fits).find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut candidates = keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        }
    }
}

/// Verify `token` with `key` and check its claims: the claims, as the provider wrote them.
pub fn verify(token: &str, key: &Jwk, alg: Algorithm, want: &Expected<'_>) -> Result<Map<String, Value>, IdTokenError> {
    let decoding = DecodingKey::from_jwk(key).map_err(|_| IdTokenError::UnknownKey)?;
    let mut v = Validation::new(alg);
    v.leeway = LEEWAY.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.set_issuer(&[want.issuer]);
    v.set_audience(&[want.client_id]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::Crypto(_) => IdTokenError::Signature,
            K::ExpiredSignature | K::ImmatureSignature => IdTokenError::Expired,
            K::InvalidIssuer => IdTokenError::Issuer,
            K::InvalidAudience => IdTokenError::Audience,
            K::MissingRequiredClaim(c) => {
                IdTokenError::Missing(["exp", "iss", "aud"].into_iter().find(|n| *n == c.as_str()).unwrap_or("sub"))
            }
            K::InvalidAlgorithm => IdTokenError::Algorithm(format!("{alg:?}")),
            _ => IdTokenError::Malformed,
        }
    })?;
    let claims = data.claims;
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(60);
    match claims.get("iat").and_then(Value::as_i64) {
        None => return Err(IdTokenError::Missing("iat")),
        Some(iat) if iat > want.now + leeway => return Err(IdTokenError::IssuedInFuture),
        Some(_) => {}
    }
    // Several audiences: the token must have been issued to this client (Core 1.0, 3.1.3.7 items 4 and 5).
    // jsonwebtoken checked `aud` is a string or a list of strings that names the client.
    if claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1)
        && claims.get("azp").and_then(Value::as_str).is_none_or(|azp| azp != want.client_id)
    {
        return Err(IdTokenError::Audience);
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if ct_eq(n, want.nonce) => {}
        _ => return Err(IdTokenError::Nonce),
    }
    if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(IdTokenError::Missing("sub"));
    }
    Ok(claims)
}

#[cfg(test)]
#[path = "id_token_tests.rs"]
mod tests;
